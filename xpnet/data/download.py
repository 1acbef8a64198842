"""Atomic, checksum-verified downloads (standard library only).

The file is written to a temporary name next to its destination, verified, and only
then renamed over it (``xpnet.files.atomic_write``), so an interrupted or corrupt
download never leaves a half-written data file behind.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import urllib.error
import urllib.request
from pathlib import Path

from xpnet.errors import DataError
from xpnet.files import atomic_write

_CHUNK = 1 << 20


def sha256_of(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def download(url: str, dest: str | os.PathLike, sha256: str, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` atomically, checking its SHA-256; return ``dest``.

    On any failure the temporary file is removed and an existing ``dest`` is left untouched.
    Network problems and checksum mismatches raise ``DataError``.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_write(dest) as out:
            digest = hashlib.sha256()
            with urllib.request.urlopen(url, timeout=timeout) as response:
                while chunk := response.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            actual = digest.hexdigest()
            if actual != sha256.lower():
                raise DataError(f"{dest}: SHA-256 mismatch for the download from {url}: "
                                f"expected {sha256.lower()}, got {actual}")
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        raise DataError(f"{dest}: download from {url} failed ({_describe(exc)})") from exc
    return dest


def _describe(exc: BaseException) -> str:
    """A short reason for a failed download."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__
