"""The templates' compiled code kept beside the package's own bytecode, as Python keeps a module's.

jinja2 compiles a template with a lexer, parser and code generator written in Python: the three
pages' templates cost ~35 ms of CPU each time a process first renders them (an import's end,
record's worker at its start: bench/README.md, issue 29), against ~0.5 ms to load their code
compiled before. The code is kept in the ``__pycache__`` folder of this package, where Python
keeps the package's .pyc files, and is trusted as those are (code is loaded from it):
- read only from a folder and a parent that are real folders of this user or root, neither
  writable by group or others, from a regular file of this user or root that is not either;
  every open relative to the folder's descriptor, no link followed;
- written only where Python would write bytecode (not under PYTHONDONTWRITEBYTECODE or -B), by a
  new file renamed into place; a folder that cannot be written (a read-only install) is no error;
- keyed by the template's name, jinja2's version and this environment's options (jinja2's own key
  is the name alone), and checked against the template's source (jinja2's checksum): a changed
  template, jinja2 or Python is compiled again, never run from stale code.
"""

from __future__ import annotations

import hashlib
import os
import stat
import sys
from typing import Optional

import jinja2
from jinja2.bccache import Bucket, BytecodeCache

_PREFIX = "jinja2-"
_SUFFIX = ".cache"
#: a compiled template is a few hundred kB at most: anything larger is not one of ours
_MAX_BYTES = 8 << 20


def _trusted(st: os.stat_result, kind: int) -> bool:
    return stat.S_IFMT(st.st_mode) == kind and st.st_uid in (0, os.geteuid()) and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _fingerprint(env: jinja2.Environment) -> str:
    """The environment's options that change the code jinja2 generates (delimiters, whitespace,
    autoescape, finalize, extensions, ...), with jinja2's version."""
    simple = sorted((k, v) for k, v in vars(env).items() if isinstance(v, (bool, str, int, type(None))))
    return repr((jinja2.__version__, simple, env.finalize is not None, sorted(env.extensions),
                 getattr(env.autoescape, "__qualname__", env.autoescape)))


class PackageBytecodeCache(BytecodeCache):
    """jinja2's bytecode cache in ``folder`` (a ``__pycache__``), trusted as Python trusts it (above)."""

    def __init__(self, folder: str, env: jinja2.Environment):
        self.folder = folder
        self.salt = _fingerprint(env)

    def get_cache_key(self, name: str, filename: Optional[str] = None) -> str:
        return hashlib.sha256(f"{name}|{filename}|{self.salt}".encode("utf-8", "surrogateescape")).hexdigest()[:40]

    def _open_folder(self, create: bool) -> Optional[int]:
        parent = os.path.dirname(self.folder)
        try:
            if not _trusted(os.lstat(parent), stat.S_IFDIR):
                return None
            if create:
                try:
                    os.mkdir(self.folder, 0o755)
                except FileExistsError:
                    pass
            fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            if _trusted(os.fstat(fd), stat.S_IFDIR):
                return fd
        except OSError:
            pass
        os.close(fd)
        return None

    def load_bytecode(self, bucket: Bucket) -> None:
        fd = self._open_folder(create=False)
        if fd is None:
            return
        try:
            f = os.open(_PREFIX + bucket.key + _SUFFIX, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=fd)
        except OSError:
            os.close(fd)
            return
        os.close(fd)
        with os.fdopen(f, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not _trusted(st, stat.S_IFREG) or st.st_size > _MAX_BYTES:
                return
            bucket.load_bytecode(fh)  # (the magic, jinja2's and Python's, and the source's checksum checked)

    def dump_bytecode(self, bucket: Bucket) -> None:
        if sys.dont_write_bytecode:
            return
        fd = self._open_folder(create=True)
        if fd is None:
            return
        name = _PREFIX + bucket.key + _SUFFIX
        tmp = f"{name}.{os.getpid()}.tmp"
        try:
            f = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=fd)
            try:
                os.fchmod(f, 0o644)
                with os.fdopen(f, "wb") as fh:
                    f = -1
                    bucket.write_bytecode(fh)
            finally:
                if f >= 0:
                    os.close(f)
            os.replace(tmp, name, src_dir_fd=fd, dst_dir_fd=fd)
        except (OSError, TypeError, ValueError):  # a read-only install, a full disk: compiled each time, as before
            try:
                os.unlink(tmp, dir_fd=fd)
            except OSError:
                pass
        finally:
            os.close(fd)


def package_cache(env: jinja2.Environment) -> PackageBytecodeCache:
    """The cache for this package's templates: oomscope/report/__pycache__."""
    return PackageBytecodeCache(os.path.join(os.path.dirname(os.path.abspath(__file__)), "__pycache__"), env)
