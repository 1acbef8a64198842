"""What a served book module computes for: the backend, data set and chapter of the run.

`xpnet book run` starts a session before the script runs; the served modules read
`current()` when called, never at import, so one process can run scripts on several backends.
Without a session (the modules imported directly), `current()` starts the default one:
`$XPNET_BACKEND` (else numpy), its default device, the `auto` data set.
"""
import contextlib
from typing import Any, NamedTuple

from xpnet.backends import get_backend

#: The book's weights are float64 (`np.random.randn`), and so are the served nets'.
BOOK_DTYPE = "float64"


class BookSession(NamedTuple):
    backend: Any          # the xpnet Backend every served net and layer computes on
    dataset: str = "auto"  # what `dataset.mnist.load_mnist` loads (auto, mnist, mnist-5k, ...)
    chapter: str = ""     # the script's folder name: "ch04" serves the sigmoid TwoLayerNet


_sessions = []


@contextlib.contextmanager
def session(backend=None, device=None, dataset="auto", chapter=""):
    """Serve the book's modules on `backend`/`device` with `dataset` inside the block."""
    _sessions.append(BookSession(get_backend(backend, device), dataset, chapter))
    try:
        yield _sessions[-1]
    finally:
        _sessions.pop()


def current():
    """The innermost running session, or the default one (read from the environment each time)."""
    return _sessions[-1] if _sessions else BookSession(get_backend())
