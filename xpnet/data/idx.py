"""Read and write IDX files, the simple binary format MNIST and Fashion-MNIST ship in.

An IDX file is: two zero bytes, a type code, the number of dimensions, then one
big-endian uint32 per dimension, then the values in big-endian C order.  Files
are usually gzip'd.  Everything is parsed with ``np.frombuffer`` (no per-byte loops).
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from xpnet.errors import DataError
from xpnet.files import atomic_write

# IDX type code -> big-endian NumPy dtype.
IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# Magic numbers of the MNIST files, with a name for error messages.
IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801
MAGIC_NAMES = {IDX_IMAGES_MAGIC: "IDX images", IDX_LABELS_MAGIC: "IDX labels"}

_GZIP_MAGIC = b"\x1f\x8b"


def read_idx(path: str | os.PathLike, magic: int | None = None) -> np.ndarray:
    """Read a gzip'd or plain IDX file into a NumPy array (native byte order).

    ``magic``, if given, is the exact 32-bit number the file must start with
    (e.g. ``0x803`` for MNIST images), so a swapped file is caught early.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    return parse_idx(raw, path, magic)


def parse_idx(raw: bytes, path: str | os.PathLike, magic: int | None = None) -> np.ndarray:
    """Parse the bytes of an IDX file already read from ``path`` (used for error messages).

    Split from ``read_idx`` so callers can checksum the bytes without reading the file twice.
    """
    data = _gunzip(raw, Path(path))
    if len(data) < 4:
        raise DataError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    found = int.from_bytes(data[:4], "big")
    if magic is not None and found != magic:
        kind = MAGIC_NAMES.get(magic, "IDX")
        raise DataError(f"{path}: wrong magic number 0x{found:08X}, expected 0x{magic:08X} ({kind})")
    if data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: not an IDX file (magic number 0x{found:08X} does not start with two zero bytes)")
    type_code, ndim = data[2], data[3]
    if type_code not in IDX_DTYPES:
        raise DataError(f"{path}: unknown IDX type code 0x{type_code:02X} in magic number 0x{found:08X}")
    if ndim == 0:
        raise DataError(f"{path}: IDX header says 0 dimensions")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise DataError(
            f"{path}: truncated IDX header ({len(data)} bytes, need {header_size} for {ndim} dimensions)"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    actual = len(data) - header_size
    if actual < expected:
        raise DataError(
            f"{path}: truncated payload: {actual} bytes, but the header shape {shape} needs {expected}"
        )
    if actual > expected:
        raise DataError(
            f"{path}: oversized payload: {actual} bytes, but the header shape {shape} needs only {expected}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)
    # Native byte order and a writable array, so callers can use it freely.
    return array.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write ``array`` as an IDX file; gzip'd when ``path`` ends with ``.gz``.

    Handy for tests and for users converting their own data to the MNIST layout.
    """
    path = Path(path)
    array = np.asarray(array)
    codes = {dt.newbyteorder("=").str: code for code, dt in IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("=").str)
    if code is None:
        raise DataError(
            f"{path}: cannot write dtype {array.dtype} as IDX (use uint8, int8, int16, int32, float32 or float64)"
        )
    if not 1 <= array.ndim <= 255:
        raise DataError(f"{path}: cannot write a {array.ndim}-dimensional array as IDX (need 1 to 255 dimensions)")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    data = header + payload
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    with atomic_write(path) as f:
        f.write(data)
    return path


def _gunzip(raw: bytes, path: Path) -> bytes:
    """Return the decompressed bytes when ``raw`` is gzip'd, else ``raw`` itself."""
    if raw[:2] != _GZIP_MAGIC:
        if path.name.endswith(".gz"):
            raise DataError(f"{path}: not a gzip file (starts with {raw[:4].hex() or 'nothing'})")
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt gzip data ({exc})") from exc
