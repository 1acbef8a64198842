"""The benchmarks' one list of implementations and models: what each impl is, where it runs,
which models it trains, and the order every table and plot shows them in.

xpnet-B: xpnet on backend B; torch-D: the PyTorch peer on device D; plain-L: the same training
written directly in library L; matmuls-L: only the epoch's matmuls in L (a floor); book-numpy:
the conv net in plain NumPy layers written the book's way (bench/book_convnet.py).
"""
#: Every impl's initial weights and batch order come from this seed.
SEED = 0
#: IMPL@baseline imports the xpnet of the older checkout this variable names.
BASELINE_VAR = "XPNET_BENCH_BASELINE"

#: The benchmark plan's models. A: the book's TwoLayerNet with SGD; B: a deeper ReLU net with Adam;
#: C: the book's SimpleConvNet (chapter 7) with Adam, as its train_convnet.py trains it. A model
#: with "conv" is a SimpleConvNet: "hidden" is its Affine layer, "input_dim" its images'
#: shape. Optional: "rounds" (the default number of rounds), "quick_images" (the smoke run's
#: images, default 6,000), "warmup_batches" (the batches of the untimed first epoch of an eager
#: impl, default all), "cpu_row_images" (on a GPU run, the images xpnet-numpy times on the host
#: as the CPU row; its time is scaled to the whole epoch).
MODELS = {
    "A": {"title": "TwoLayerNet 784-50-10, sigmoid, SGD",
          "hidden": [50], "activation": "sigmoid", "init": 0.01, "optimizer": "sgd", "lr": 0.1},
    "B": {"title": "784-100×5-10, ReLU, He init, Adam",
          "hidden": [100] * 5, "activation": "relu", "init": "he", "optimizer": "adam", "lr": 0.001},
    "C": {"title": "SimpleConvNet: conv 30×5×5, ReLU, max-pool 2×2, 4320-100-10 ReLU, Adam",
          "input_dim": (1, 28, 28), "conv": {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1},
          "hidden": [100], "activation": "relu", "init": 0.01, "optimizer": "adam", "lr": 0.001,
          "rounds": 3, "quick_images": 500, "warmup_batches": 10, "cpu_row_images": 2000},
}
CONV_MODELS = tuple(m for m, spec in MODELS.items() if "conv" in spec)

#: name -> where it runs: "cpu", "gpu", or "both" (the backend's device decides).
DEVICES = {
    "xpnet-numpy": "cpu", "xpnet-jax": "both", "xpnet-torch": "both", "xpnet-cupy": "gpu",
    "torch-cpu": "cpu", "torch-cuda": "gpu",
    "matmuls-jax": "cpu", "matmuls-numpy": "cpu", "plain-jax": "cpu", "plain-numpy": "cpu",
    "book-numpy": "cpu",
}
IMPLS = tuple(DEVICES)  # the order of tables and plots
CPU_IMPLS = tuple(i for i in IMPLS if DEVICES[i] in ("cpu", "both"))
GPU_IMPLS = tuple(i for i in IMPLS if DEVICES[i] in ("gpu", "both"))
#: The impls `make bench-compare` also runs on an older checkout's xpnet, as IMPL@baseline.
BASELINE_IMPLS = ("xpnet-numpy", "xpnet-jax", "xpnet-cupy")
#: The impls written for some models only (the others train every model): plain-* and matmuls-*
#: are the MLPs' hand-written peers, book-numpy is the conv net's.
ONLY = {**{i: tuple(m for m in MODELS if m not in CONV_MODELS) for i in IMPLS
           if i.startswith(("plain-", "matmuls-"))}, "book-numpy": CONV_MODELS}
#: On a GPU run the conv model also times this impl on the host: the CPU row its GPU rows must beat.
CPU_ROW = "xpnet-numpy"


def trains(impl, model):
    """Whether `impl` (IMPL or IMPL@baseline) has a version of `model`."""
    return model in ONLY.get(impl.partition("@")[0], (model,))
