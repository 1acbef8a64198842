"""Writing files so that an interruption never leaves a half-written one behind, and locks so
that two processes never write one thing at once."""
import contextlib
import os
import re
import stat
import tempfile
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no flock
    fcntl = None
HAVE_FLOCK = fcntl is not None

from xpnet.errors import XpnetError

#: A `.part` file untouched this long is left over from a crashed save, not one being written.
STALE_PART_SECONDS = 600


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """Yield a temporary file beside `path`; on success it replaces `path`, on any error it vanishes.

    Readers see either the previous file or the complete new one, never a partial write.
    """
    path = Path(path)
    remove_stale_parts(path, older_than=STALE_PART_SECONDS)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a new file should get the usual mode
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    _fsync_dir(path.parent)


def remove_stale_parts(path, older_than=0.0):
    """Delete the `.{name}.*.part` files that `atomic_write(path)` left beside `path` when its
    process was killed, if unmodified for `older_than` seconds; returns how many went.

    With the default 0 all go: only call it so while nobody can be writing `path` (e.g. holding
    its checkpoint lock). Never raises: a leftover file is untidy, not an error."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[^.]+\.part")  # mkstemp's names have no dot
    removed, now = 0, time.time()
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return 0
    for entry in entries:
        if not pattern.fullmatch(entry.name):
            continue
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
            if entry.is_file(follow_symlinks=False) and age >= older_than:
                os.remove(entry.path)
                removed += 1
        except OSError:
            pass
    return removed


@contextlib.contextmanager
def exclusive_lock(lock_path, busy, wait=0.0):
    """Hold an exclusive flock on the file `lock_path` (made if missing, holding this process's
    pid, removed on exit) while the block runs, so two processes never work on one thing.

    The kernel frees a flock when its holder dies, so even a kill -9'd process never blocks the
    next one. While another process holds it, wait up to `wait` seconds, then raise `busy(pid)`
    (pid as its holder wrote it, or "unknown"). Where there is no flock (Windows, some network
    file systems) nothing is held. The file is removed while still locked: a process waiting on
    it then finds the name gone or pointing elsewhere, and locks afresh."""
    if fcntl is None:
        yield
        return
    give_up = time.monotonic() + wait
    while True:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise XpnetError(f"cannot make the lock file {lock_path}: {exc.strerror or exc}") from None
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= give_up:
                        raise busy(_pid_in(fd)) from None
                    time.sleep(0.05)
        except OSError:  # flock is not supported here: hold nothing
            os.close(fd)
            yield
            return
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, lock_path):
            break
        os.close(fd)  # its holder removed it as we opened it: lock the one there now
    try:
        with contextlib.suppress(OSError):  # the pid is for messages only
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        if _same_file(fd, lock_path):
            with contextlib.suppress(OSError):
                os.remove(lock_path)
        os.close(fd)


def _pid_in(fd):
    """The pid written in an open lock file, or "unknown"."""
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return "unknown"
    return text if text.isdigit() else "unknown"


def _same_file(fd, path):
    """Whether `path` still names the file open as `fd`."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def check_writable(path, what):
    """Raise XpnetError unless a file can be written at `path` later (by `atomic_write`), so a
    bad output path fails before a long run instead of after it. `what` names the option in the
    message ("--json", "checkpoint"). Creates and removes only a temporary file beside `path`."""
    if path is None or str(path) == "":
        raise XpnetError(f"{what} needs a file path, but the path given is empty")
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    except OSError as exc:
        raise XpnetError(f"cannot write {what} {path}: {exc.strerror or exc}") from None
    if mode is not None and stat.S_ISDIR(mode):
        raise XpnetError(f"cannot write {what} {path}: it is a directory, not a file")
    if mode is not None and not stat.S_ISREG(mode):
        raise XpnetError(f"cannot write {what} {path}: it is not a regular file "
                         "(a device, pipe or socket); refusing to replace it")
    parent = path.parent
    if not parent.exists():
        raise XpnetError(f"cannot write {what} {path}: its folder {parent} does not exist")
    if not parent.is_dir():
        raise XpnetError(f"cannot write {what} {path}: {parent} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".xpnet-write-check.")
    except OSError as exc:
        raise XpnetError(f"cannot write {what} {path}: cannot create files in {parent} "
                         f"({exc.strerror or exc})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.remove(probe)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder):
    """Make the rename durable where the OS allows syncing a directory."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
