"""The book's `save_params`/`load_params`, in xpnet's pickle-free format whatever the file name.

The book pickles its params; loading a pickle can run any code, so xpnet writes a checkpoint
(`xpnet.nn.checkpoint`: a NumPy .npz archive of plain arrays) under the name the script gives,
says so on stderr, and refuses a pickle with a sentence saying what to do instead.
"""
import sys

from xpnet.backends import get_backend
from xpnet.errors import DataError
from xpnet.nn.checkpoint import load_checkpoint, save_checkpoint

#: The first bytes of a pickle of protocol 2 or later (what the book's `pickle.dump` writes).
PICKLE_START = b"\x80"


def save_params(path, params, net_name):
    """Write `params` (host arrays) to `path` atomically, and say in what format."""
    save_checkpoint(path, {"params": params}, {"book_net": net_name})
    print(f"xpnet book: saved the params of {net_name} to {path} in xpnet's pickle-free format "
          "(a NumPy .npz archive, whatever the name; the book's pickle.load cannot read it)",
          file=sys.stderr)


def load_params(path, params):
    """{name: host array} read from `path`, with the names, shapes and dtypes of `params`."""
    try:
        with open(path, "rb") as f:
            start = f.read(len(PICKLE_START))
    except OSError as exc:
        raise DataError(f"cannot read params from {path}: {exc.strerror or exc}") from None
    if start == PICKLE_START:
        raise DataError(f"{path} is a pickle (the book's own format), and xpnet never loads a "
                        "pickle, since loading one can run any code; run the script that saves "
                        "it with `xpnet book run`, which writes xpnet's format under that name")
    loaded, _ = load_checkpoint(path, {"params": params}, get_backend("numpy"), required=())
    return loaded["params"]
