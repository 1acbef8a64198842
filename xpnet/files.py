"""Writing files so that an interruption never leaves a half-written one behind."""
import contextlib
import os
import re
import stat
import tempfile
import time
from pathlib import Path

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
