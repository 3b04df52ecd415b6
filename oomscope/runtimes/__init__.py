"""What a runtime inside the cgroup saw of its own memory, read from outside the process."""
