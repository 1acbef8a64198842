"""CPU instructions per training step, this checkout against an older one: a noise-free check
of the NumPy path's overhead where wall-clock rounds on a shared machine scatter by ±30%.

    python bench/instructions.py /tmp/xpnet-baseline-a0d1959     # make bench-compare makes it

For each model and checkout, valgrind's callgrind counts the instructions of a process that
trains `FEW` epochs and of one that trains `MANY` (6,000 images, batch 100, one BLAS thread);
the difference is the instructions of the extra steps alone, without imports and setup.
Run as `python bench/instructions.py --worker MODEL EPOCHS` it is the process counted.
"""
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FEW, MANY = 1, 4
STEPS_PER_EPOCH = 60


def worker(model, epochs):
    import numpy as np

    sys.path.insert(0, str(ROOT / "bench"))
    from impls import MODELS
    from runs import XpnetRun

    rng = np.random.default_rng(0)
    x = rng.random((6000, 784)).astype(np.float32)
    t = rng.integers(0, 10, 6000).astype(np.int64)
    spec = MODELS[model]
    run = XpnetRun("numpy", spec, [784, *spec["hidden"], 10], 100, x, t)
    for _ in range(epochs):
        run.epoch()


def count(pythonpath, model, epochs):
    """Instructions of one worker process under callgrind."""
    env = dict(os.environ, PYTHONPATH=str(pythonpath), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    done = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                           sys.executable, __file__, "--worker", model, str(epochs)],
                          env=env, capture_output=True, text=True, check=True)
    return int(re.search(r"Collected : (\d+)", done.stderr).group(1))


def main(baseline):
    checkouts = {"this checkout": ROOT, "baseline": Path(baseline).resolve()}
    jobs = [(name, model, epochs) for model in "AB" for name in checkouts for epochs in (FEW, MANY)]
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
        counts = dict(zip(jobs, pool.map(lambda job: count(checkouts[job[0]], *job[1:]), jobs)))
    print(f"{'model':<6}{'checkout':<16}{'instructions per step':>24}")
    for model in "AB":
        per_step = {name: (counts[name, model, MANY] - counts[name, model, FEW])
                    / ((MANY - FEW) * STEPS_PER_EPOCH) for name in checkouts}
        for name, value in per_step.items():
            print(f"{model:<6}{name:<16}{value:>24,.0f}")
        print(f"{model:<6}{'ratio':<16}{per_step['this checkout'] / per_step['baseline']:>23.3f}x")


if __name__ == "__main__":
    if sys.argv[1] == "--worker":
        worker(sys.argv[2], int(sys.argv[3]))
    else:
        main(sys.argv[1])
