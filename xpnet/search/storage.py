"""The study's sqlite storage: one search at a time (an exclusive lock beside the file), WAL
without an fsync per commit, and a file that is not an sqlite database, or a corrupt one,
refused with one line and left as it is."""
import contextlib
import sqlite3
from pathlib import Path

from xpnet.errors import XpnetError
from xpnet.files import exclusive_lock
from xpnet.search.common import one_line


def sqlite_pragmas(connection, _record):
    """SQLAlchemy's "connect" listener for a study in sqlite."""
    # WAL with synchronous=NORMAL: a commit no longer waits for an fsync (4 ms each here, and a
    # search commits every epoch of every trial); the database stays consistent after a crash.
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")


def _sqlite_file(url):
    """The file of an sqlite storage URL (a Path), or None (another database, or in memory)."""
    import sqlalchemy

    if not isinstance(url, str):
        return None
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        return None  # the storage says what is wrong with it
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


@contextlib.contextmanager
def sqlite_guard(url):
    """For an sqlite storage: hold an exclusive flock on FILE.lock while the search uses the study
    (a second search of it is refused: it would fail the first one's running trials), and refuse
    a FILE that is not an sqlite database or fails sqlite's integrity check, leaving it as it
    is (read-only). Other storages: nothing."""
    path = _sqlite_file(url)
    if path is None:
        yield
        return

    def busy(pid):
        return XpnetError(f"the study {path} is in use by another search (pid {pid}); wait for it "
                          "to end, or use another out_dir")
    with exclusive_lock(f"{path}.lock", busy):
        _check_sqlite(path)
        yield


def _check_sqlite(path):
    """XpnetError naming `path` when it is not an sqlite database or is corrupt (opened read-only:
    nothing is written to it, not even a recovery of its journal)."""
    try:
        if path.stat().st_size == 0:
            return
    except OSError:
        return  # no file yet: the storage creates it (or says why it cannot)
    move = "; move it away to start a new search (or use another out_dir)"
    # Read-only; immutable (no -wal or -shm made beside it) unless a journal left by a crash is
    # there to be read with it.
    journal = any(Path(f"{path}{end}").exists() for end in ("-wal", "-journal"))
    try:
        with contextlib.closing(sqlite3.connect(
                f"{path.resolve().as_uri()}?{'mode=ro' if journal else 'immutable=1'}",
                uri=True)) as db:
            problems = [row[0] for row in db.execute("PRAGMA integrity_check").fetchall()]
    except sqlite3.DatabaseError as exc:
        name = getattr(exc, "sqlite_errorname", "")
        if name == "SQLITE_NOTADB":
            raise XpnetError(f"{path} is not an sqlite database (so no study){move}") from None
        if name == "SQLITE_CORRUPT":
            raise XpnetError(f"{path} is corrupt (sqlite: {one_line(exc)}){move}") from None
        return  # cannot open it (permissions, a lock...): the storage says why
    if problems != ["ok"]:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise XpnetError(f"{path} is corrupt (sqlite integrity check failed: "
                         f"{one_line(problems[0])}{more}){move}")
