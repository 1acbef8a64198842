"""A chapter-6 style script (bench/book_scripts/ch06/batchnorm_compare.py, the BatchNorm
comparison: 6 weight scales × 2 nets × 100 SGD steps on 1,000 images, then their accuracies) run
the book's way, with the plain-NumPy modules of bench/book_style, and through `xpnet book run` on
each backend; every run must print the same numbers. The summary divides each by the plain run.

Each timed round is a whole run of the script in this process (data loading included, the same
for all; JAX's compiling is done by the warm-up run, whose programs later nets of the same shape
reuse). The smoke run (--benchmark-disable) runs the script's --quick size once.
"""
import re
from pathlib import Path

import numpy as np
import pytest

from xpnet.backends import available_backends
from xpnet.book.runner import run_script

HERE = Path(__file__).parent
SCRIPT = HERE / "book_scripts" / "ch06" / "batchnorm_compare.py"
PLAIN = "plain numpy (bench/book_style)"
IMPLS = (PLAIN, "numpy", "jax", "torch")
NUMBER = re.compile(r"\d+\.\d+(?:e[-+]?\d+)?")
PRINTED = {}  # impl -> the numbers its run printed


@pytest.mark.parametrize("impl", IMPLS)
def test_book_script(benchmark, impl, quick, capsys, record_book_median):
    if impl != PLAIN and not available_backends()[impl][0]:
        pytest.skip(f"{impl} is not installed")
    options = {"book_root": HERE / "book_style"} if impl == PLAIN else {"backend": impl}

    def run():
        assert run_script(SCRIPT, ["--quick"] if quick else [], dataset="mnist-5k", seed=0,
                          **options) == 0

    run()  # imports, the data set's first read, JAX's compiling
    PRINTED[impl] = [float(n) for n in NUMBER.findall(capsys.readouterr().out)]
    benchmark.pedantic(run, rounds=1 if quick else 3, iterations=1)
    capsys.readouterr()
    record_book_median(impl, benchmark)
    if impl != PLAIN and PLAIN in PRINTED:
        np.testing.assert_allclose(PRINTED[impl], PRINTED[PLAIN], rtol=1e-9, atol=1e-9)
