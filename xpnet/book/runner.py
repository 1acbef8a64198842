"""Run one of the book's scripts as `__main__`, its imports of the book's modules served by xpnet.

The script runs in its own folder (its working directory and `sys.path[0]`, as `python
script.py` would), with `sys.argv` set to the script and its arguments. Every name in `SERVED`
resolves to `xpnet.book.served.<name>` first, whatever the script's folder or the book's root
holds. `figures` saves what `plt.show()` would show; `seed` seeds the global NumPy generator the
scripts draw from. Everything is put back afterwards, so one process can run many scripts.
"""
import contextlib
import importlib
import importlib.abc
import importlib.util
import os
import runpy
import sys
from pathlib import Path

import numpy as np

from xpnet.book.session import session
from xpnet.checks import check_seed
from xpnet.errors import ConfigError, XpnetError

#: The book's module names that xpnet serves, as the scripts import them.
SERVED = ("dataset", "dataset.mnist", "common", "common.functions", "common.gradient",
          "common.layers", "common.optimizer", "common.multi_layer_net",
          "common.multi_layer_net_extend", "common.trainer", "common.util", "two_layer_net",
          "simple_convnet", "deep_convnet")
SERVED_PACKAGE = "xpnet.book.served"


class _ServedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds the names of SERVED before any other finder; each one is the already-imported
    `xpnet.book.served.<name>` module under its book name (one module object, two names)."""

    def find_spec(self, name, path=None, target=None):
        if name not in SERVED:
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        return importlib.import_module(f"{SERVED_PACKAGE}.{spec.name}")

    def exec_module(self, module):
        """Nothing to run: `create_module` returned the imported module."""


def run_script(script, args=(), backend=None, device=None, dataset="auto", figures=None,
               seed=None, book_root=None):
    """Run `script` (a path) with `args` as its command-line arguments; returns its exit status
    (0 when it ends normally, as `python script.py`). Exceptions of the script propagate.

    With `book_root`, a folder holding modules of the book's names (a checkout of the book, or
    the plain-NumPy baseline in bench/book_style), those are imported instead of xpnet's: the
    same script, run the book's way, for comparisons."""
    path = Path(script).resolve()
    book_root = None if book_root is None else Path(book_root).resolve()  # before the chdir
    if not path.is_file():
        raise XpnetError(f"no script at {script}" if not path.exists() else
                         f"{script} is not a file; give the path of a .py script")
    if check_seed(seed) is not None and seed >= 2**32:
        raise ConfigError(f"seed must be below 2**32 (np.random.seed takes 32 bits), got {seed}")
    with session(backend, device, dataset, chapter=path.parent.name), \
            _as_main(path, args), _served(path.parent, book_root), _shown_figures(figures):
        if seed is not None:
            np.random.seed(seed)
        try:
            runpy.run_path(str(path), run_name="__main__")
        except SystemExit as exc:
            return _exit_status(exc.code)
    return 0


def _exit_status(code):
    """What `python` would exit with for `sys.exit(code)` (it prints a message code itself)."""
    if code is None or isinstance(code, int):
        return code or 0
    print(code, file=sys.stderr)
    return 1


@contextlib.contextmanager
def _as_main(path, args):
    """The script's folder as working directory and sys.path[0], sys.argv its own."""
    saved_argv, saved_path, saved_cwd = sys.argv[:], sys.path[:], os.getcwd()
    sys.argv = [str(path), *map(str, args)]
    sys.path.insert(0, str(path.parent))
    os.chdir(path.parent)
    try:
        yield
    finally:
        sys.argv[:], sys.path[:] = saved_argv, saved_path
        os.chdir(saved_cwd)


@contextlib.contextmanager
def _served(folder, book_root=None):
    """SERVED names resolve to xpnet's modules (or to those in `book_root`); afterwards they and
    the modules imported from the script's folder are forgotten, so the next script imports
    afresh."""
    finder = _ServedModules()
    stale = {name: sys.modules.pop(name) for name in SERVED if name in sys.modules}
    if book_root is None:
        sys.meta_path.insert(0, finder)
    else:
        sys.path.insert(1, str(book_root))  # after the script's own folder
    try:
        yield
    finally:
        if book_root is None:
            sys.meta_path.remove(finder)
        for name in [*SERVED, *_modules_under(folder),
                     *(_modules_under(book_root) if book_root else ())]:
            sys.modules.pop(name, None)
        sys.modules.update(stale)


def _modules_under(folder):
    folder = str(folder) + os.sep
    return [name for name, module in list(sys.modules.items())
            if str(getattr(module, "__file__", None) or "").startswith(folder)]


@contextlib.contextmanager
def _shown_figures(folder):
    """With `folder`, headless matplotlib whose `plt.show()` saves every open figure there as
    figure-01.png, figure-02.png, ... (said on stderr) and closes them; without, nothing changes."""
    if folder is None:
        yield
        return
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise XpnetError(f"cannot make the figures folder {folder}: {exc.strerror or exc}") \
            from None
    import matplotlib
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    saved = []

    def show(*args, **kwargs):
        for number in plt.get_fignums():
            path = folder / f"figure-{len(saved) + 1:02d}.png"
            plt.figure(number).savefig(path)
            saved.append(path)
            print(f"xpnet book: saved figure {path}", file=sys.stderr)
        plt.close("all")

    original, plt.show = plt.show, show
    try:
        yield
    finally:
        plt.show = original
        plt.close("all")
