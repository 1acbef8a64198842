"""Where the data sets live: the data folder (`$XPNET_DATA`, else the user's cache), and checks
that a folder given there is one this process can use, with errors that name the setting."""
import os
import stat
from pathlib import Path

from xpnet.errors import DataError


def default_data_dir() -> Path:
    """Where downloads live: ``$XPNET_DATA``, else ``$XDG_CACHE_HOME/xpnet``, else ``~/.cache/xpnet``."""
    if os.environ.get("XPNET_DATA"):
        return _expand(os.environ["XPNET_DATA"], f"XPNET_DATA={os.environ['XPNET_DATA']}")
    cache = os.environ.get("XDG_CACHE_HOME")
    if cache:
        return _expand(cache, f"XDG_CACHE_HOME={cache}") / "xpnet"
    return _expand("~/.cache", "the default data folder ~/.cache/xpnet") / "xpnet"


def _expand(path: str | os.PathLike, label: str) -> Path:
    """``path`` with ``~`` expanded; a ``~`` that cannot be expanded is a DataError starting with ``label``."""
    try:
        return Path(path).expanduser()
    except RuntimeError:  # ~nosuchuser, or no $HOME and no passwd entry
        raise DataError(f"{label}: cannot expand '~' (no such user, or no home directory); "
                        f"give a full path, or set XPNET_DATA to a folder") from None


def data_dir_path(data_dir: str | os.PathLike | None) -> Path:
    return default_data_dir() if data_dir is None else _expand(data_dir, f"data_dir={data_dir}")


def data_dir_label(data_dir: str | os.PathLike | None, root: Path) -> str:
    """How error messages name the data folder: by the setting it came from."""
    if data_dir is not None:
        return f"data_dir={data_dir}"
    if os.environ.get("XPNET_DATA"):
        return f"XPNET_DATA={os.environ['XPNET_DATA']}"
    return f"the data folder {root}"


def check_folder(path: Path, label: str) -> bool:
    """True when ``path`` is a readable folder, False when it does not exist (yet).

    Anything else (a file, a path under a file, a folder that cannot be read or searched)
    is a DataError that starts with ``label``.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        blocker = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), None)
        where = "" if blocker is None else f": {blocker} is a {'file' if blocker.is_file() else 'non-folder'}"
        raise DataError(f"{label} is not a directory{where}") from None
    except OSError as exc:  # EACCES on a folder above it, ELOOP, ...
        raise DataError(f"{label} cannot be reached ({exc.strerror or exc})") from None
    if not stat.S_ISDIR(mode):
        raise DataError(f"{label} is not a directory (it is a {file_kind(mode)})")
    if not os.access(path, os.R_OK | os.X_OK):
        raise DataError(f"{label} cannot be read (permission denied on the folder {path})")
    return True


def file_kind(mode: int) -> str:
    """A word for what a path that should be a folder or a regular file is."""
    kinds = ((stat.S_ISDIR, "directory"), (stat.S_ISREG, "file"), (stat.S_ISFIFO, "named pipe"),
             (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"))
    for test, word in kinds:
        if test(mode):
            return word
    return "special file"
