"""Checkpoints: a training run's arrays and progress in one portable `.npz` file, no pickle.

Every array (params, optimizer state, BatchNorm state, step counter) is stored by its path in the
state tree ("params/W1", "opt_state/m/W1", …) as a plain NumPy array, so a checkpoint written on
one backend loads on any other. The epoch, the per-epoch history and the run's configuration go in
as one JSON text. Writes are atomic: an interrupted save leaves the previous checkpoint intact.
"""
import json
import zipfile

import numpy as np

from xpnet.backends import backend_of, dtype_name
from xpnet.errors import DataError
from xpnet.files import atomic_write

FORMAT = "xpnet-checkpoint-1"
_META = "__meta__"


def save_checkpoint(path, tree, meta):
    """Write the arrays of `tree` (dicts, NamedTuples and arrays) and the JSON-able `meta`."""
    arrays = {}
    _flatten(tree, "", arrays)
    arrays = {name: backend_of(value).to_numpy(value) for name, value in arrays.items()}
    arrays[_META] = np.array(json.dumps({"format": FORMAT, **meta}))
    with atomic_write(path, "wb") as f:
        np.savez(f, allow_pickle=False, **arrays)


def load_checkpoint(path, template, backend, config=None):
    """(tree, meta) from `path`; `tree` has the structure, shapes and dtypes of `template`, its
    arrays on `backend`. With `config`, the run configuration saved as meta["config"] must equal it.
    Raises DataError naming the file and what does not fit."""
    try:
        with np.load(path, allow_pickle=False) as data:
            stored = {name: data[name] for name in data.files}
    except FileNotFoundError:
        raise DataError(f"no checkpoint at {path}") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path} is not a readable xpnet checkpoint: {exc}") from None
    try:
        meta = json.loads(str(stored.pop(_META)))
    except (KeyError, json.JSONDecodeError):
        raise DataError(f"{path} is not an xpnet checkpoint (no readable metadata)") from None
    if meta.get("format") != FORMAT:
        raise DataError(f"{path}: unknown checkpoint format {meta.get('format')!r}, expected {FORMAT}")
    if config is not None and meta.get("config") != config:
        saved = meta.get("config") or {}
        changed = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
        raise DataError(f"{path} was saved by a different run: " + "; ".join(
            f"{k} {saved.get(k)!r} there, {config.get(k)!r} now" for k in changed))
    expected = {}
    _flatten(template, "", expected)
    missing, extra = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    if missing or extra:
        raise DataError(f"{path} does not fit this run: missing {_some(missing)}, unexpected "
                        f"{_some(extra)} (a different model or optimizer?)")
    for name, like in expected.items():
        value, dtype = stored[name], dtype_name(like.dtype)
        if value.shape != tuple(like.shape) or value.dtype.name != dtype:
            raise DataError(f"{path}: {name} is {value.dtype}{list(value.shape)}, this run needs "
                            f"{dtype}{list(like.shape)}")
    return _unflatten(template, "", {k: backend.asarray(v) for k, v in stored.items()}), meta


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
