"""Running a module of this very oomscope in a new interpreter, safely as root.

``python -m MODULE`` puts the working folder first on the module path: a root process started in
a folder that others can write (``cd /tmp && sudo oomscope record``) would import their
``oomscope/``. So the folder is never searched: ``-P`` (Python 3.11+), or on older Pythons a
``-c`` stub that drops it before importing anything but the built-in ``sys``. The package's own
folder goes first on PYTHONPATH: the new interpreter runs the same oomscope as this one (an
installed copy, or a checkout under test).
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Dict, List, Sequence, Tuple

# sys is built in (never looked up on the path); the working folder ("" first on the path with -c)
# is dropped before runpy, a file of the standard library, is imported
_STUB = ("import sys; del sys.path[0]; m = sys.argv.pop(1); sys.argv[0] = m; "
         "import runpy; runpy.run_module(m, run_name='__main__', alter_sys=True)")


def module_command(module: str, args: Sequence[str] = (), safe_path_flag: bool = None) -> Tuple[List[str], Dict[str, str]]:
    """argv and environment that run ``python -m MODULE ARGS`` with this oomscope, the working
    folder never searched. ``safe_path_flag`` (default: this Python has -P) is for tests."""
    if safe_path_flag is None:
        safe_path_flag = sys.version_info >= (3, 11)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    # an empty or relative PYTHONPATH entry is the working folder again ("/x:" ends with one)
    inherited = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if os.path.isabs(p)]
    env["PYTHONPATH"] = os.pathsep.join([root] + inherited)
    # this interpreter's own flags (-I, -E, -s, -X ..., -O) carry over, as multiprocessing does it
    flags = [f for f in getattr(subprocess, "_args_from_interpreter_flags", list)() if f != "-P"]
    if safe_path_flag:
        return [sys.executable, *flags, "-P", "-m", module, *args], env
    return [sys.executable, *flags, "-c", _STUB, module, *args], env
