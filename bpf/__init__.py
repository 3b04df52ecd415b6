# Package marker: setup maps this directory to oomscope.bpf so the C files ship with the package.
