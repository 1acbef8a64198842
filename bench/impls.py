"""The benchmarks' one list of implementations and models: what each impl is, where it runs,
and the order every table and plot shows them in.

xpnet-B: xpnet on backend B; torch-D: the PyTorch peer on device D; plain-L: the same training
written directly in library L; matmuls-L: only the epoch's matmuls in L (a floor).
"""
#: Every impl's initial weights and batch order come from this seed.
SEED = 0
#: IMPL@baseline imports the xpnet of the older checkout this variable names.
BASELINE_VAR = "XPNET_BENCH_BASELINE"

#: The benchmark plan's models. A: the book's TwoLayerNet with SGD; B: a deeper ReLU net with Adam.
MODELS = {
    "A": {"title": "TwoLayerNet 784-50-10, sigmoid, SGD",
          "hidden": [50], "activation": "sigmoid", "init": 0.01, "optimizer": "sgd", "lr": 0.1},
    "B": {"title": "784-100×5-10, ReLU, He init, Adam",
          "hidden": [100] * 5, "activation": "relu", "init": "he", "optimizer": "adam", "lr": 0.001},
}

#: name -> where it runs: "cpu", "gpu", or "both" (the backend's device decides).
DEVICES = {
    "xpnet-numpy": "cpu", "xpnet-jax": "both", "xpnet-torch": "both", "xpnet-cupy": "gpu",
    "torch-cpu": "cpu", "torch-cuda": "gpu",
    "matmuls-jax": "cpu", "matmuls-numpy": "cpu", "plain-jax": "cpu", "plain-numpy": "cpu",
}
IMPLS = tuple(DEVICES)  # the order of tables and plots
CPU_IMPLS = tuple(i for i in IMPLS if DEVICES[i] in ("cpu", "both"))
GPU_IMPLS = tuple(i for i in IMPLS if DEVICES[i] in ("gpu", "both"))
#: The impls `make bench-compare` also runs on an older checkout's xpnet, as IMPL@baseline.
BASELINE_IMPLS = ("xpnet-numpy", "xpnet-jax", "xpnet-cupy")
