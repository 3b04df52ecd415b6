"""``oomscope import``: post-mortems of kills from kernel logs, for kills from before record ran.

sources.py: where the lines come from (files, .gz, stdin, /dev/kmsg, the journal); kills.py: a
pure iterator from lines to one capture per kill (its state kept by KillReader, to read a log in
parts); run.py: the command, writing each kill as record does (capture/writer.py, then the
post-mortem stage, postmortem/stage.py); split.py: a large log read by two processes.
"""

from ..errors import ImportProblem
from .kills import Imported, import_reports, iter_imports
from .sources import host_log, open_log

__all__ = ["ImportProblem", "Imported", "host_log", "import_reports", "iter_imports", "open_log"]
