"""Atomic, checksum-verified downloads (standard library only).

The file is written to a temporary name next to its destination, verified, and only
then renamed over it (``xpnet.files.atomic_write``), so an interrupted or corrupt
download never leaves a half-written data file behind.

A whole download must finish within a deadline (``XPNET_DOWNLOAD_DEADLINE`` seconds,
default 600), so a server that trickles bytes cannot hang it.  While downloading, a
process holds an exclusive ``flock`` on ``.NAME.lock`` beside the destination; holding
it, it removes the ``.NAME.*.part`` files that a killed download (``kill -9``) left
behind, which no live downloader of that destination can be writing at that moment.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import math
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from xpnet.errors import DataError
from xpnet.files import HAVE_FLOCK, atomic_write, exclusive_lock, remove_stale_parts

_CHUNK = 1 << 20

#: Seconds a whole download may take unless ``XPNET_DOWNLOAD_DEADLINE`` says otherwise
#: (the largest MNIST file is 9.9 MB: about 17 kB/s at least).
DEFAULT_DEADLINE = 600.0
DEADLINE_ENV = "XPNET_DOWNLOAD_DEADLINE"


class _DeadlinePassed(Exception):
    """The download's deadline went by (turned into a DataError by ``download``)."""


def sha256_of(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def download_deadline() -> float:
    """Seconds a whole download may take: ``$XPNET_DOWNLOAD_DEADLINE``, else ``DEFAULT_DEADLINE``."""
    raw = os.environ.get(DEADLINE_ENV, "").strip()
    if not raw:
        return DEFAULT_DEADLINE
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise DataError(f"{DEADLINE_ENV}={raw} is not a positive number of seconds")
    return value


def download(url: str, dest: str | os.PathLike, sha256: str, timeout: float = 60.0,
             deadline: float | None = None) -> Path:
    """Download ``url`` to ``dest`` atomically, checking its SHA-256; return ``dest``.

    ``timeout`` bounds each network wait; ``deadline`` (seconds, default ``download_deadline()``)
    bounds the whole download.  On any failure the temporary file is removed and an existing
    ``dest`` is left untouched.  Network problems, a passed deadline and checksum mismatches
    raise ``DataError``.  Stale ``.part`` files of ``dest`` from killed downloads are removed.
    """
    dest = Path(dest)
    deadline = download_deadline() if deadline is None else float(deadline)
    if not (math.isfinite(deadline) and deadline > 0):
        raise ValueError(f"deadline must be a positive number of seconds, got {deadline}")
    stop = time.monotonic() + deadline
    too_slow = (f"downloading {url} took longer than {deadline:g} s; gave up and saved nothing to {dest} "
                f"(a slow or stalled server; set {DEADLINE_ENV}=SECONDS to allow longer)")

    def busy(pid):
        return DataError(f"{dest}: another process (pid {pid}) has been downloading it for over "
                         f"{deadline:g} s; try again later")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(dest.parent / f".{dest.name}.lock", busy, wait=deadline):
            if HAVE_FLOCK:  # holding the lock, no one else writes dest: its parts are killed
                remove_stale_parts(dest)  # downloads' (without flock, atomic_write's age rule)
            with atomic_write(dest) as out:
                actual = _fetch(url, out, timeout, stop)
                if actual != sha256.lower():
                    raise DataError(f"{dest}: SHA-256 mismatch for the download from {url}: "
                                    f"expected {sha256.lower()}, got {actual}")
    except _DeadlinePassed:
        raise DataError(too_slow) from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        if _is_timeout(exc) and time.monotonic() >= stop - 0.1:  # the wait was cut to the deadline
            raise DataError(too_slow) from None
        raise DataError(f"{dest}: download from {url} failed ({_describe(exc)})") from exc
    return dest


def _remaining(timeout: float, stop: float) -> float:
    """The wait allowed for the next network step: ``timeout``, cut short by the deadline."""
    left = stop - time.monotonic()
    if left <= 0:
        raise _DeadlinePassed
    return min(timeout, left)


def _fetch(url: str, out, timeout: float, stop: float) -> str:
    """Copy the body of ``url`` to ``out`` before ``stop``; return its hex SHA-256."""
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=_remaining(timeout, stop)) as response:
        # The socket's timeout applies per read, so it is cut to what is left of the deadline
        # before each read; read1 returns what has arrived instead of waiting for a full chunk.
        sock = getattr(getattr(getattr(response, "fp", None), "raw", None), "_sock", None)
        read = getattr(response, "read1", response.read)
        while True:
            wait = _remaining(timeout, stop)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.settimeout(wait)
            chunk = read(_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _describe(exc: BaseException) -> str:
    """A short reason for a failed download."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


def _is_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` is a network wait that ran out (directly or wrapped by urllib)."""
    return isinstance(exc, TimeoutError) or (
        isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, TimeoutError))
