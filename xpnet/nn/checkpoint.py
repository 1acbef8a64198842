"""Checkpoints: a training run's arrays and progress in one portable `.npz` file, no pickle.

Every array (params, optimizer state, BatchNorm state, step counter) is stored by its path in the
state tree ("params/W1", "opt_state/m/W1", …) as a plain NumPy array, so a checkpoint written on
one backend loads on any other. The epoch, the per-epoch history and the run's configuration go in
as one JSON text. Writes are atomic: an interrupted save leaves the previous checkpoint intact.
`claim_checkpoint` guards a run's checkpoint path: it refuses to replace what it should not and
locks the path so two runs never write one checkpoint.
"""
import contextlib
import json
import zipfile
import zlib
from pathlib import Path

import numpy as np

from xpnet.backends import backend_of, dtype_name
from xpnet.errors import DataError, XpnetError
from xpnet.files import atomic_write, check_writable, exclusive_lock, remove_stale_parts

FORMAT = "xpnet-checkpoint-1"
#: Entries a checkpoint of this format may lack, which then take the run's own value: λ, stored
#: only for nets with weight decay before every net applied it (as 0 where it has none).
DEFAULTED = ("weight_decay",)
_META = "__meta__"


def save_checkpoint(path, tree, meta):
    """Write the arrays of `tree` (dicts, NamedTuples and arrays) and the JSON-able `meta`.
    A failed write (a full disk...) raises XpnetError and leaves the previous checkpoint."""
    arrays = {}
    _flatten(tree, "", arrays)
    arrays = {name: backend_of(value).to_numpy(value) for name, value in arrays.items()}
    arrays[_META] = np.array(json.dumps({"format": FORMAT, **meta}))
    try:
        with atomic_write(path, "wb") as f:
            np.savez(f, allow_pickle=False, **arrays)
    except OSError as exc:
        raise XpnetError(f"cannot save checkpoint {path}: {exc.strerror or exc}; the previous "
                         "one (if any) is kept") from None


def load_checkpoint(path, template, backend, config=None, required=("epoch", "history")):
    """(tree, meta) from `path`; `tree` has the structure, shapes and dtypes of `template`, its
    arrays on `backend`. With `config`, the run configuration saved as meta["config"] must equal it.
    Raises DataError naming the file and what does not fit; meta["epoch"] is then an int >= 0,
    meta["history"] a list of dicts and meta["config"], when there, a dict. `required`: the
    meta entries a training checkpoint must have (none for a file of params alone)."""
    stored = _read_arrays(path)
    meta = _meta_of(path, stored.pop(_META, None))
    _check_meta(path, meta, required=())  # the types first: the config is compared next
    if config is not None and meta.get("config") != config:
        saved = meta.get("config") or {}
        changed = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
        raise DataError(f"{path} was saved by a different run: " + "; ".join(
            f"{k} {saved.get(k)!r} there, {config.get(k)!r} now" for k in changed))
    expected = {}
    _flatten(template, "", expected)
    for name in set(DEFAULTED) & set(expected) - set(stored):  # a checkpoint from before it was kept
        stored[name] = backend_of(expected[name]).to_numpy(expected[name])
    missing, extra = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    if missing or extra:
        raise DataError(f"{path} does not fit this run: missing {_some(missing)}, unexpected "
                        f"{_some(extra)} (a different model or optimizer?)")
    for name, like in expected.items():
        value, dtype = stored[name], dtype_name(like.dtype)
        if value.shape != tuple(like.shape) or value.dtype.name != dtype:
            raise DataError(f"{path}: {name} is {value.dtype}{list(value.shape)}, this run needs "
                            f"{dtype}{list(like.shape)}")
    _check_meta(path, meta, required)
    return _unflatten(template, "", {k: backend.asarray(v) for k, v in stored.items()}), meta


@contextlib.contextmanager
def claim_checkpoint(path, *, resume=False, overwrite=False):
    """Hold checkpoint `path` for one training run (a context manager yielding it as a Path).

    Before a run starts, so that nothing is lost at its end: the path must be writable
    (XpnetError otherwise); an existing checkpoint is kept unless `resume` (continue it) or
    `overwrite` (start over); a file that is not an xpnet checkpoint is never replaced; `resume`
    needs a checkpoint. Those refusals raise DataError. The path is locked (`PATH.lock`, by
    flock: the kernel frees it when its process dies, so even a kill -9'd run never blocks the
    next one) and a second claim meanwhile raises DataError; holding the lock, the `.part` files
    of killed saves are removed. The lock file goes on exit, also on errors."""
    if resume and overwrite:
        raise XpnetError("--resume and --overwrite contradict each other: --resume continues the "
                         "checkpoint, --overwrite starts it over")
    check_writable(path, "checkpoint")
    path = Path(path)

    def busy(pid):
        return DataError(f"{path} is in use by another run (pid {pid}); wait for it to end or "
                         "stop it, or choose another --checkpoint path")
    with exclusive_lock(f"{path}.lock", busy):
        _check_existing(path, resume, overwrite)
        remove_stale_parts(path)
        yield path


def _check_existing(path, resume, overwrite):
    """Raise DataError unless this run may use what is at `path` (see claim_checkpoint)."""
    if not path.exists():
        if resume:
            raise DataError(f"no checkpoint at {path} to resume")
        return
    try:
        meta = _meta_of(path, _read_arrays(path, names={_META}).get(_META))
    except DataError:
        if resume:
            raise
        raise DataError(f"{path} is not an xpnet checkpoint; refusing to replace it") from None
    if resume:
        _check_meta(path, meta)
    elif not overwrite:
        epoch = meta.get("epoch")
        held = f" (epoch {epoch})" if type(epoch) is int else ""
        raise DataError(f"{path} already holds a checkpoint{held}; pass --resume to continue it "
                        "or --overwrite to start over")


def _read_arrays(path, names=None):
    """The arrays of the `.npz` at `path` (those in `names` only, when given) as NumPy arrays;
    DataError naming the file when it is missing or not a readable archive of plain arrays."""
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"no checkpoint at {path}") from None
    except (ValueError, EOFError, zipfile.BadZipFile):
        data = None
    except OSError as exc:
        raise DataError(f"{path} is not a readable xpnet checkpoint: {exc.strerror or exc}") from None
    if not isinstance(data, np.lib.npyio.NpzFile):  # also a lone .npy array
        raise DataError(f"{path} is not a readable xpnet checkpoint (not a .npz archive)")
    try:
        with data:
            return {name: data[name] for name in data.files if names is None or name in names}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error):
        raise DataError(f"{path} is not a readable xpnet checkpoint (a damaged archive, or one "
                        "holding Python objects)") from None


def _meta_of(path, raw):
    """The metadata dict stored as `raw` (None when absent); DataError unless it is a JSON
    object of this checkpoint format, i.e. unless `path` is an xpnet checkpoint."""
    try:
        meta = json.loads(str(raw)) if raw is not None and raw.ndim == 0 else None
    except ValueError:
        meta = None
    if not isinstance(meta, dict):
        raise DataError(f"{path} is not an xpnet checkpoint (no readable metadata)")
    if meta.get("format") != FORMAT:
        raise DataError(f"{path}: unknown checkpoint format {meta.get('format')!r}, expected {FORMAT}")
    return meta


def _check_meta(path, meta, required=("epoch", "history")):
    """DataError naming `path` unless the meta's fields have the shapes a run relies on:
    "epoch" an int >= 0, "history" a list of dicts, "config" a dict; `required` must be there."""
    for key in required:
        if key not in meta:
            raise DataError(f"{path}: damaged checkpoint metadata: no {key!r}")
    epoch, history, config = meta.get("epoch", 0), meta.get("history", []), meta.get("config", {})
    if type(epoch) is not int or epoch < 0:
        raise DataError(f"{path}: damaged checkpoint metadata: epoch {epoch!r} is not a whole "
                        "number >= 0")
    if not isinstance(history, list) or not all(isinstance(e, dict) for e in history):
        raise DataError(f"{path}: damaged checkpoint metadata: history is not a list of objects")
    if not isinstance(config, dict):
        raise DataError(f"{path}: damaged checkpoint metadata: config is not an object")


def _some(names, shown=4):
    if not names:
        return "nothing"
    return str(names[:shown]) + (f" and {len(names) - shown} more" if len(names) > shown else "")


def _flatten(tree, prefix, out):
    if tree is None:
        return
    if isinstance(tree, dict):
        for key in tree:
            _flatten(tree[key], f"{prefix}/{key}", out)
    elif isinstance(tree, tuple) and hasattr(tree, "_fields"):
        for field in tree._fields:
            _flatten(getattr(tree, field), f"{prefix}/{field}", out)
    else:
        out[prefix.lstrip("/")] = tree


def _unflatten(template, prefix, arrays):
    if template is None:
        return None
    if isinstance(template, dict):
        return {key: _unflatten(value, f"{prefix}/{key}", arrays) for key, value in template.items()}
    if isinstance(template, tuple) and hasattr(template, "_fields"):
        return type(template)(*(_unflatten(getattr(template, f), f"{prefix}/{f}", arrays)
                                for f in template._fields))
    return arrays[prefix.lstrip("/")]
