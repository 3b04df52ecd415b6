"""The one place oomscope writes or removes files. It runs as root in folders other people may
reach, so every step is taken relative to an open directory and never follows a link.

- An output folder is opened with ``O_NOFOLLOW``; it is refused (one line, exit 5) when another
  user could change what is in it: owned by a user other than root or us, or writable by group or
  others without the sticky bit. ``--allow-shared-output`` lifts that, for a site that wants it.
  The path is opened one component at a time from ``/`` (or the current folder, for a relative
  path), each with ``O_NOFOLLOW``, so a link is seen wherever it is, not only as the last
  component (issue 24: a link of another user's in a parent folder of ``report -o`` was
  followed). A symbolic link is followed, by reading it and walking its target the same way,
  only when root or we own it *and* it sits in a folder only root or we can change (owned by
  root or us, and not writable by group or others unless sticky): no one else made it, and no
  one else can replace it between our look and our use. System links such as /var/run -> /run
  pass; a link in /tmp passes only when it is root's or ours. ``--allow-shared-output`` lifts
  this too. At most 40 links are followed in a path, as the kernel does (MAXSYMLINKS).
- A file is written to a new temporary name in the same folder (``O_CREAT|O_EXCL|O_NOFOLLOW``),
  fsynced, renamed over the target, then the folder is fsynced. Only a regular file that belongs
  to us is replaced: a FIFO, a device, a symbolic link, a folder or another user's file at the
  target is refused.
- Many kills at once (import): a :class:`Batch` defers the waits for the disk. Each file is
  written to its temporary name as above; ``flush()`` then fsyncs them all together, renames
  each into place only once its data is on disk (the target checked again), and fsyncs each
  folder touched. Nothing is reported written before its batch's flush returned. Concurrent
  fsyncs share the filesystem's journal commits: 1000 kill folders took 4.6 ms a kill one by
  one and 0.5 ms a kill as a batch (ext4 on this VM, measured for issue 18). Where the C library
  has syncfs(2) and the kernel reports write errors to it (5.8+), a flush is one syncfs of the
  filesystem before the renames and one after, instead of three fsyncs a kill (1118 kills: 14
  syncfs of 8 ms each, against 3364 fsyncs). It also writes out what other programs left dirty
  on that filesystem, which a busy disk makes longer.
- A kill folder is one that holds the marker ``.oomscope-kill`` (written by oomscope when it makes
  the folder), both owned by us; ``record --keep`` and the index look only at those, never through
  a link, and remove nothing but the files oomscope writes in them.

File modes are chosen, not left to umask or ``mkstemp`` (0600): captures and post-mortems 0644,
folders 0755, so that ``oomscope report`` and a browser work for anyone on the host who can read
the output folder (the README's "report ... no root"). What they hold (process and cgroup names,
command lines, memory figures) is what /proc and cgroupfs show every local user while the
workload runs; the kernel's log text, which ``dmesg_restrict`` may hide, is in them too. A site
that wants less sets ``--mode 0640`` (folders then get 0750: the read bits plus search) and gives
the output folder a group.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Any, Dict, Iterator, List, Optional, Tuple

from .errors import OomscopeError

MARKER = ".oomscope-kill"
OURS = ("capture.json", "postmortem.html")
TMP_PREFIX = ".tmp-"
DEFAULT_FILE_MODE = 0o644
MAX_READ = 256 << 20  # a capture larger than this is not one oomscope wrote

_O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
#: a folder on the way (open_dir): search permission is all it needs, as for a path opened whole
_O_STEP = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class UnsafeOutput(OomscopeError):
    """A place oomscope was asked to write to that it must not write to as root."""

    exit_code = 5


class _Settings:
    file_mode = DEFAULT_FILE_MODE
    allow_shared = False


settings = _Settings()


def configure(file_mode: Optional[int] = None, allow_shared: Optional[bool] = None) -> None:
    """Set before anything is written (configure_from_options)."""
    if file_mode is not None:
        settings.file_mode = file_mode
    if allow_shared is not None:
        settings.allow_shared = allow_shared


def configure_from_options(mode: Optional[str], allow_shared: bool) -> None:
    """``--mode`` (octal text, None: the default) and ``--allow-shared-output``, as the commands
    take them (cli.py; record/main.py after record's exec)."""
    configure(file_mode=parse_mode(mode) if mode is not None else None, allow_shared=bool(allow_shared))


def parse_mode(text: str) -> int:
    """``--mode``: an octal file mode such as 0644 or 640; permission bits only."""
    try:
        mode = int(text, 8)
    except ValueError:
        mode = -1
    if not 0 <= mode <= 0o777 or not mode & 0o600 == 0o600:
        raise OomscopeError(f"--mode must be an octal file mode that lets its owner read and write (0644, 0640), not {text!r}")
    return mode


def dir_mode(file_mode: int) -> int:
    """A folder's mode from the files': owner rwx, and read + search where the files are readable."""
    mode = 0o700
    if file_mode & 0o040:
        mode |= 0o050
    if file_mode & 0o004:
        mode |= 0o005
    return mode


def _euid() -> int:
    return os.geteuid()


def _trusted_uid(uid: int) -> bool:
    return uid in (0, _euid())


def check_dir_fd(fd: int, path: str) -> None:
    """Refuse a folder another user could change under us (unless --allow-shared-output)."""
    st = os.fstat(fd)
    if settings.allow_shared:
        return
    if not _trusted_uid(st.st_uid):
        raise UnsafeOutput(f"{path}: the folder belongs to user {st.st_uid}, who could redirect what oomscope writes "
                           f"there as root; use a folder of root's, or --allow-shared-output")
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        who = "group and others" if st.st_mode & 0o022 == 0o022 else "group" if st.st_mode & 0o020 else "others"
        raise UnsafeOutput(f"{path}: the folder is writable by {who} "
                           f"(mode {stat.S_IMODE(st.st_mode):04o}) without the sticky bit; chmod go-w it, or use --allow-shared-output")


def open_dir(path: str, create: bool = False) -> int:
    """An fd of the folder at ``path`` (made when ``create``), checked by check_dir_fd."""
    path = path or "."
    fd = _walk(path, create)
    try:
        check_dir_fd(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


_MAX_LINKS = 40  # MAXSYMLINKS, include/linux/namei.h


def _walk(path: str, create: bool) -> int:
    """An fd of the folder at ``path``, opened component by component (see the module's docstring);
    the folders missing are made when ``create``, each with the folders' mode whatever the umask."""
    todo = path.split("/")[::-1]  # the components still to open, the next one last
    fd = os.open("/" if path.startswith("/") else ".", _O_STEP)
    here = "/" if path.startswith("/") else ""  # where fd is, as a path for the messages
    links = 0
    try:
        while todo:
            name = todo.pop()
            if name in ("", "."):
                continue
            where = os.path.normpath(os.path.join(here, name))
            try:
                nfd = os.open(name, _O_STEP, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path) from None
                try:
                    os.mkdir(name, dir_mode(settings.file_mode), dir_fd=fd)
                except FileExistsError:
                    pass  # made meanwhile: opened (and looked at) as any other
                except OSError as exc:
                    raise UnsafeOutput(f"cannot make the folder {path}: {exc.strerror or exc}") from None
                else:
                    nfd = os.open(name, _O_DIR, dir_fd=fd)
                    os.close(fd)
                    fd, here = nfd, where
                    os.fchmod(fd, dir_mode(settings.file_mode))
                    continue
                todo.append(name)
                continue
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):  # a symbolic link (O_NOFOLLOW), or not a folder
                    raise
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    raise UnsafeOutput(f"{path}: {where} is not a folder" if where != path else f"{path}: not a folder") from None
                _check_link(fd, st, where, path)
                links += 1
                if links > _MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path) from None
                target = os.readlink(name, dir_fd=fd)
                todo.extend(target.split("/")[::-1])
                if target.startswith("/"):
                    os.close(fd)
                    fd, here = -1, "/"
                    fd = os.open("/", _O_STEP)  # fd is -1 should this fail: nothing left to close
                continue
            os.close(fd)
            fd, here = nfd, where
        return os.open(".", _O_DIR, dir_fd=fd)  # the folder itself, to read, list and fsync
    finally:
        if fd >= 0:
            os.close(fd)


def _check_link(dir_fd: int, st: os.stat_result, where: str, path: str) -> None:
    """Refuse to follow the link ``where`` (``st``, in the folder ``dir_fd``) unless no one but
    root or us made it or can replace it (see the module's docstring)."""
    if settings.allow_shared:
        return
    what = f"{path}: a symbolic link" if where == path else f"{path}: {where} is a symbolic link"
    fix = "oomscope does not follow it as root (use the folder it points to, or --allow-shared-output)"
    if not _trusted_uid(st.st_uid):
        raise UnsafeOutput(f"{what} of user {st.st_uid}; {fix}")
    holder = os.fstat(dir_fd)
    if not _trusted_uid(holder.st_uid):
        raise UnsafeOutput(f"{what} in a folder user {holder.st_uid} can change; {fix}")
    if holder.st_mode & 0o022 and not holder.st_mode & stat.S_ISVTX:
        raise UnsafeOutput(f"{what} in a folder {'group and others' if holder.st_mode & 0o022 == 0o022 else 'group' if holder.st_mode & 0o020 else 'others'} "
                           f"can write to (mode {stat.S_IMODE(holder.st_mode):04o}); {fix}")


class Dir:
    """A folder opened with :func:`open_dir`, as a context manager."""

    def __init__(self, path: str, create: bool = False, fd: Optional[int] = None, batch: Optional["Batch"] = None):
        self.path = path
        self.fd = open_dir(path, create) if fd is None else fd
        #: when set, write() leaves the fsyncs and the rename to the batch's flush()
        self.batch = batch
        #: a kill folder made here in this batch whose marker the next ones' are hard links to
        #: (-1: none yet; -2: this file system makes none)
        self._marked = -1

    def __enter__(self) -> "Dir":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self._marked >= 0:
            os.close(self._marked)
            self._marked = -1

    def lstat(self, name: str) -> Optional[os.stat_result]:
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def write(self, name: str, data, mode: Optional[int] = None, sync: bool = True) -> str:
        """Write ``data`` (str, bytes, or an iterable of str: written as it comes, WRITE_CHUNK bytes
        at a time) to ``name`` atomically; returns the path. In a batch the
        file is under ``name`` (and on disk) once the batch is flushed. ``sync=False`` (outside a
        batch): renamed into place without its two fsyncs, for a file made again from one that is
        durable (a post-mortem from its capture.json): a reader sees the old file or the whole new
        one, but a crash may leave it missing or empty."""
        _check_name(name)
        mode = settings.file_mode if mode is None else mode
        where = os.path.join(self.path, name)
        self._check_target(name)
        if isinstance(data, str):
            data = data.encode("utf-8")
        tmp = f"{TMP_PREFIX}{name}-{os.urandom(6).hex()}"  # secrets.token_hex, without its import (hmac, hashlib)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=self.fd)
        try:
            try:
                os.fchmod(fd, mode)  # the mode chosen, whatever the umask
                if isinstance(data, (bytes, bytearray, memoryview)):
                    _write_all(fd, data)
                else:
                    _write_chunks(fd, data)
                if self.batch is not None:
                    self.batch._file(fd, self, tmp, name)
                    fd = -1  # the batch's now
                    return where
                if sync:
                    os.fsync(fd)
            finally:
                if fd >= 0:
                    os.close(fd)
            os.replace(tmp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except BaseException:
            self._unlink_quietly(tmp)
            raise
        if sync:
            os.fsync(self.fd)
        return where

    def _check_target(self, name: str) -> None:
        where = os.path.join(self.path, name)
        st = self.lstat(name)
        if st is not None:
            if not stat.S_ISREG(st.st_mode):
                raise UnsafeOutput(f"{where}: {_kind(st.st_mode)} is there; oomscope replaces only a regular file it wrote")
            if st.st_uid != _euid():
                raise UnsafeOutput(f"{where}: the file belongs to user {st.st_uid}; oomscope replaces only its own files")

    def _unlink_quietly(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self.fd)
        except OSError:
            pass

    def read(self, name: str, limit: int = MAX_READ) -> bytes:
        """A regular file's bytes, never through a link; OSError otherwise."""
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=self.fd)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file")
            data = f.read(limit + 1)
        if len(data) > limit:
            raise OSError(errno.EFBIG, "file too large")
        return data

    def subdir(self, name: str) -> "Dir":
        """A folder inside this one, never through a link (not checked for ownership)."""
        return Dir(os.path.join(self.path, name), fd=os.open(name, _O_DIR, dir_fd=self.fd), batch=self.batch)

    def make_kill_folder(self, kill_id: str) -> "Dir":
        """A new kill folder with its marker; a suffix keeps two kills in the same millisecond apart."""
        base = _safe_name(kill_id)
        for n in range(1000):
            name = base if n == 0 else f"{base}.{n}"
            try:
                os.mkdir(name, dir_mode(settings.file_mode), dir_fd=self.fd)
            except FileExistsError:
                continue
            if self.batch is not None:
                self.batch._folder(self)  # the new entry is made durable by the flush
            sub = self.subdir(name)
            try:
                os.fchmod(sub.fd, dir_mode(settings.file_mode))
                # The folder is new and ours: the marker is created in place (O_EXCL, no link
                # followed) without the rename and fsyncs of write(); one lost in a crash only
                # keeps --keep away from that folder. In a batch (import) the markers after the
                # first are hard links to it: a name, not a new inode, whose allocation on ext4
                # scans for recently freed inodes (ext4_new_inode: a quarter of a storm import's
                # CPU in perf, issue 29); the same file for every reader (ours, regular, the text).
                if self._marked < 0 or not self._link_marker(sub):  # (-2 stays: links fail here)
                    fd = os.open(MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                                 settings.file_mode, dir_fd=sub.fd)
                    try:
                        os.fchmod(fd, settings.file_mode)
                        os.write(fd, b"oomscope kill folder: record --keep may remove it\n")
                    finally:
                        os.close(fd)
                    if self.batch is not None and self._marked == -1:
                        self._marked = os.dup(sub.fd)
            except BaseException:
                sub.close()
                raise
            return sub
        raise OSError(errno.EEXIST, f"too many kills named {kill_id} in {self.path}")

    def _link_marker(self, sub: "Dir") -> bool:
        """The marker of ``sub`` as a hard link to the first one of this batch; False where a link
        cannot be made (a file system without them, the link count at its limit): then it is a file."""
        try:
            os.link(MARKER, MARKER, src_dir_fd=self._marked, dst_dir_fd=sub.fd, follow_symlinks=False)
        except OSError as exc:
            os.close(self._marked)
            self._marked = -1 if exc.errno == errno.EMLINK else -2  # at the limit: the next file is linked to
            return False
        return True

    def kill_folders(self) -> Iterator[Tuple[str, float]]:
        """(name, time) of every kill folder in this one: a real folder of ours with our marker.
        The time is the capture's modification time (the marker's when there is none)."""
        for entry in os.scandir(self.fd):
            if not entry.is_dir(follow_symlinks=False):
                continue
            t = self._kill_folder_time(entry.name)
            if t is not None:
                yield entry.name, t

    def _kill_folder_time(self, name: str) -> Optional[float]:
        try:
            with self.subdir(name) as sub:
                if os.fstat(sub.fd).st_uid != _euid():
                    return None
                mark = sub.lstat(MARKER)
                if mark is None or not stat.S_ISREG(mark.st_mode) or mark.st_uid != _euid():
                    return None
                cap = sub.lstat("capture.json")
                if cap is not None and stat.S_ISREG(cap.st_mode):
                    return cap.st_mtime
                return mark.st_mtime
        except OSError:
            return None

    def remove_kill_folder(self, name: str) -> bool:
        """Removes oomscope's files from a kill folder, then the folder if nothing else is left.
        True when it was a kill folder."""
        if self._kill_folder_time(name) is None:
            return False
        with self.subdir(name) as sub:
            names = [n for n in os.listdir(sub.fd) if n in OURS or n.startswith(TMP_PREFIX)] + [MARKER]
            for n in names:
                st = sub.lstat(n)
                if st is not None and stat.S_ISREG(st.st_mode) and st.st_uid == _euid():
                    try:
                        os.unlink(n, dir_fd=sub.fd)
                    except OSError:
                        pass
        try:
            os.rmdir(name, dir_fd=self.fd)
        except OSError:
            pass  # something else lives there: leave it
        return True


class Batch:
    """Writes whose waits for the disk are taken together (see the module's docstring). Use:
    ``Dir(path, batch=b)``, then ``b.flush()``; ``close()`` removes what was never flushed.
    Holds an open descriptor per pending file and folder: flush every few hundred files."""

    def __init__(self, workers: int = 64):
        self.workers = workers
        self._files: List[Tuple[int, int, str, str, str]] = []  # (fd, dir fd, tmp, name, dir path)
        self._dirs: Dict[Tuple[int, int], int] = {}  # (st_dev, st_ino) of a folder -> a descriptor of it

    def __len__(self) -> int:
        return len(self._files)

    def _dir_fd(self, d: Dir) -> int:
        st = os.fstat(d.fd)
        key = (st.st_dev, st.st_ino)
        if key not in self._dirs:
            self._dirs[key] = os.dup(d.fd)
        return self._dirs[key]

    def _file(self, fd: int, d: Dir, tmp: str, name: str) -> None:
        self._files.append((fd, self._dir_fd(d), tmp, name, d.path))

    def _folder(self, d: Dir) -> None:
        self._dir_fd(d)

    def flush(self) -> None:
        """Every pending file on disk and under its name, every folder's entries on disk. A file
        that cannot be put in place is removed and its error raised once the rest are done."""
        from concurrent.futures import ThreadPoolExecutor  # here: 12 ms of record's worker's start (issue 29)

        files, self._files = self._files, []
        dirs, self._dirs = list(self._dirs.values()), {}
        error: Optional[BaseException] = None
        try:
            # One syncfs per filesystem instead of an fsync per file (3 a kill: two files and the
            # folder): the same data on disk, two waits a batch. Where syncfs is missing, or
            # fails, each file is fsynced, as before.
            whole = _syncfs_all(dirs) if files or dirs else None
            if whole is not None:
                synced: List[Optional[OSError]] = [None] * len(files)
            else:
                with ThreadPoolExecutor(max(1, min(self.workers, len(files)))) as pool:
                    synced = list(pool.map(_fsync_quietly, [f[0] for f in files]))
            for (fd, dfd, tmp, name, path), err in zip(files, synced):
                os.close(fd)
                d = Dir(path, fd=dfd)
                try:
                    if err is not None:
                        raise err
                    d._check_target(name)  # again: the target may have appeared since write()
                    os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
                except BaseException as exc:  # the others are still put in place
                    d._unlink_quietly(tmp)
                    error = error or exc
            # a kill folder's renames first, then the folder that holds the new kill folders
            if whole is not None:
                error = error or _syncfs_all(dirs, whole)
            else:
                with ThreadPoolExecutor(max(1, min(self.workers, len(dirs)))) as pool:
                    for err in pool.map(_fsync_quietly, dirs):
                        error = error or err
        finally:
            for dfd in dirs:
                os.close(dfd)
        if error is not None:
            raise error

    def close(self) -> None:
        """Drops what was not flushed: the temporary files are removed."""
        files, self._files = self._files, []
        for fd, dfd, tmp, _, path in files:
            os.close(fd)
            Dir(path, fd=dfd)._unlink_quietly(tmp)
        for dfd in self._dirs.values():
            os.close(dfd)
        self._dirs = {}


class Syncer:
    """The two fsyncs of files written with ``Dir.write(sync=False)`` (the file, then its folder),
    taken by a thread of its own in the order given, so that the writer goes on meanwhile: record
    writes a kill's capture.json and asks for its post-mortem at once, and says the kill (its
    line, the metrics) only once ``done`` has its fsyncs (issue 29: in record's loop they were
    4-11 ms of each kill, which every kill queued behind it in a storm waited for). Until then a
    crash may leave the file empty under its name (on ext4 a new name's data is allocated at
    writeback), as postmortem.html may be: the index leaves such a capture out and says why.
    One thread, not one per file: fsyncs taken all at once by a pool queued behind each other's
    journal commits and made a storm's p95 worse (bench/README.md)."""

    def __init__(self) -> None:
        import threading  # here: the post-mortem worker imports safefs and never syncs this way

        self._cond = threading.Condition()
        self._threading = threading
        self._queue: List[Tuple[object, int, int]] = []  # (token, file fd, folder fd), oldest first
        self._pending: Dict[object, int] = {}  # token -> files of it not synced yet
        self._errors: Dict[object, OSError] = {}
        self._thread: Optional[Any] = None  # a threading.Thread, started at the first add
        self._closed = False

    #: files waiting for their fsyncs at most (each holds two descriptors): beyond, ``add`` waits for
    #: the thread, so a disk slower than the kills holds the writer back instead of the descriptors
    #: growing without bound
    MAX_WAITING = 64

    def add(self, d: Dir, name: str, token: object) -> None:
        """Syncs ``name`` in ``d`` (written already) and then ``d``; ``token`` names it to ``done``.
        Waits while MAX_WAITING files wait for their fsyncs."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._queue) < self.MAX_WAITING or self._thread is None, 30.0)
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=d.fd)
        try:
            dfd = os.dup(d.fd)
        except OSError:
            os.close(fd)
            raise
        with self._cond:
            self._queue.append((token, fd, dfd))
            self._pending[token] = self._pending.get(token, 0) + 1
            if self._thread is None:
                self._thread = self._threading.Thread(target=self._run, name="fsync", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                token, fd, dfd = self._queue[0]
            err = _fsync_quietly(fd) or _fsync_quietly(dfd)
            os.close(fd)
            os.close(dfd)
            with self._cond:
                self._queue.pop(0)
                if err is not None and token not in self._errors:
                    self._errors[token] = err
                self._pending[token] -= 1
                if not self._pending[token]:
                    del self._pending[token]
                self._cond.notify_all()

    def done(self, token: object, timeout: float = 0.0) -> Tuple[bool, Optional[OSError]]:
        """(whether every file added with ``token`` is synced, waiting up to ``timeout`` seconds;
        the first error of their fsyncs, once, when they are). A token never added is done."""
        with self._cond:
            if timeout > 0:
                self._cond.wait_for(lambda: token not in self._pending, timeout)
            if token in self._pending:
                return False, None
            return True, self._errors.pop(token, None)

    def close(self, timeout: float = 30.0) -> None:
        """Syncs what was added (up to ``timeout`` seconds), then ends the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)


_libc_syncfs = None


def _kernel_reports_syncfs_errors() -> bool:
    """syncfs(2) returns the filesystem's writeback errors only since 5.8 (commit 735e4ae5ba28,
    "vfs: track per-sb writeback errors and report them to syncfs"); before, it said 0 after a
    failed write. Whether syncfs exists is found by trying it (ENOSYS, or no symbol: each file is
    fsynced); whether it reports a failed write cannot be tried without one, so the release is read
    here, the one place oomscope compares a kernel version."""
    try:
        major, minor = (int(x) for x in os.uname().release.split(".")[:2])
    except ValueError:
        return False
    return (major, minor) >= (5, 8)


def _syncfs(fd: int) -> None:
    """syncfs(2): everything of the filesystem that holds ``fd`` on disk."""
    global _libc_syncfs
    if _libc_syncfs is None:
        _libc_syncfs = False
        if _kernel_reports_syncfs_errors():
            import ctypes  # only a batch needs it

            fn = getattr(ctypes.CDLL(None, use_errno=True), "syncfs", None)
            if fn is not None:
                fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
                _libc_syncfs = (fn, ctypes)
    if not _libc_syncfs:
        raise OSError(errno.ENOSYS, "no syncfs that reports write errors here")
    fn, ctypes = _libc_syncfs
    if fn(fd) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def _syncfs_all(dirs: List[int], devices: Optional[Dict[int, int]] = None):
    """syncfs once on each filesystem of ``dirs``. Without ``devices`` (the first call of a flush):
    returns {st_dev: fd} done, or None when syncfs is not there (the caller then fsyncs each file).
    With them (the second call): returns the first error, or None."""
    first = devices is None
    if first:
        devices = {}
        for dfd in dirs:
            devices.setdefault(os.fstat(dfd).st_dev, dfd)
    for dfd in devices.values():
        try:
            _syncfs(dfd)
        except OSError as exc:
            if first:
                return None
            return exc
    return devices if first else None


def _fsync_quietly(fd: int) -> Optional[OSError]:
    try:
        os.fsync(fd)
    except OSError as exc:
        return exc
    return None


def _kind(mode: int) -> str:
    for test, what in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return what
    return "something other than a file"


#: bytes of an iterable's text written at a time (Dir.write)
WRITE_CHUNK = 64 << 10


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _write_chunks(fd: int, chunks) -> None:
    """An iterable of str (a template's output as jinja2 generates it), encoded and written as it
    comes: the file's text is never whole in memory. The post-mortem worker rewrites index.html
    and series.json (~0.7 KB a kill each) at every kill; made whole, their pieces and the text
    were ~4.8 KiB of its resident memory per kill folder, kept by the allocators between writes
    (bench/worker_growth.py: 7.6 -> 2.8 MiB per 1,000 folders; issue 24)."""
    buf: List[str] = []
    size = 0
    for chunk in chunks:
        buf.append(chunk)
        size += len(chunk)
        if size >= WRITE_CHUNK:
            _write_all(fd, "".join(buf).encode("utf-8"))
            buf.clear()
            size = 0
    if buf:
        _write_all(fd, "".join(buf).encode("utf-8"))


def _check_name(name: str) -> None:
    if not name or "/" in name or "\0" in name or name in (".", ".."):
        raise UnsafeOutput(f"not a file name: {name!r}")


def _safe_name(kill_id: str) -> str:
    name = "".join(ch if ch.isalnum() or ch in "-_.+" else "_" for ch in kill_id)[:200].lstrip(".")
    return name or "kill"


def read_regular_file(path: str, limit: int = MAX_READ) -> bytes:
    """A file a user named (``oomscope report CAPTURE``): a link is followed, as the user asked
    for that path, but only a regular file is read, and at most ``limit`` bytes. It is opened
    with ``O_PATH`` and checked before it is opened for reading, so a FIFO (which would wait for a
    writer forever) or a device (whose opening can act) is never opened. OSError otherwise, with
    a reason in words."""
    fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, f"{_kind(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise OSError(errno.EFBIG, f"{st.st_size} bytes, more than the {limit >> 20} MiB a capture can be")
        try:  # the same file again, for reading (no second lookup of the path)
            rfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY)
        except FileNotFoundError:  # no /proc: the path again, checked to be the same file
            rfd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
            again = os.fstat(rfd)
            if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino):
                os.close(rfd)
                raise OSError(errno.EAGAIN, "the file changed while it was opened") from None
    finally:
        os.close(fd)
    with os.fdopen(rfd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"more than the {limit >> 20} MiB a capture can be")
    return data


def atomic_write(path: str, text, mode: Optional[int] = None) -> str:
    """Write ``path`` atomically through its folder's descriptor (the folder must exist)."""
    directory, name = os.path.split(path)
    with Dir(directory or ".") as d:
        return d.write(name, text, mode)


def kill_folders(out_dir: str) -> List[Tuple[str, float]]:
    """The kill folders of ``out_dir`` (none when it does not exist)."""
    try:
        d = Dir(out_dir)
    except FileNotFoundError:
        return []
    with d:
        return list(d.kill_folders())
