"""What each benchmark worker runs: one model trained by xpnet on a backend (XpnetRun), by the
PyTorch peer (TorchRun) or by hand in plain NumPy or JAX (PlainRun; the conv model's book-style
NumPy run is bench/conv_runs.py's BookRun), and the library's matmul peak; all from the same
initial weights and batches (SEED). bench/peers.py serves them.

An eager run's `epoch(limit)` trains the first `limit` batches of its epoch only (a short
warm-up); a compiled epoch is one program of a fixed length and always trains them all."""
import os
import time
from pathlib import Path

import numpy as np

from impls import BASELINE_VAR, SEED


def host_order(epoch, n, batch_size):
    """Epoch `epoch`'s batches as a NumPy array: the order xpnet's `fit` draws, for the peers."""
    from xpnet import get_backend
    return _batch_order()(SEED, epoch, n, batch_size, get_backend("numpy"))


def _batch_order():
    """xpnet's batch_order: in nn.batching now, in nn.training in older checkouts (@baseline)."""
    try:
        from xpnet.nn.batching import batch_order
    except ImportError:
        from xpnet.nn.training import batch_order
    return batch_order


def load_data(dataset, limit):
    from xpnet.data import load_dataset

    data = load_dataset(dataset)
    (x, t), _ = data.arrays(normalize=True, flatten=True)
    return x[:limit], t[:limit].astype(np.int64)


class XpnetRun:
    """One model trained by xpnet exactly as `fit` does: an epoch is one compiled program on JAX,
    eager steps elsewhere (torch.compile is opt-in). The backend's device comes from the worker's
    environment (JAX_PLATFORMS, XPNET_DEVICE), so `get_backend(name)` works on older xpnets too."""

    def __init__(self, backend_name, spec, sizes, batch_size, x, t):
        from xpnet import get_backend
        from xpnet.nn import MultiLayerNet, make_optimizer
        from xpnet.nn.training import (compiled_epoch, initial_train_state,
                                       make_train_step, run_epoch)

        self.backend = backend = get_backend(backend_name)
        if "conv" in spec:
            from conv_runs import conv_net
            net = conv_net(spec, backend)
        else:
            net = MultiLayerNet(sizes[0], sizes[1:-1], sizes[-1], activation=spec["activation"],
                                weight_init_std=spec["init"], backend=backend, seed=SEED)
        optimizer = make_optimizer(spec["optimizer"], lr=spec["lr"])
        step = make_train_step(net.model, optimizer, backend, backend.key(SEED))
        self.x, self.t = net.to_device(x, t.astype(np.int32))
        self.orders = [_batch_order()(SEED, e, len(x), batch_size, backend) for e in (1, 2)]
        self.state = initial_train_state(net, optimizer)
        start = time.perf_counter()
        if backend.compiles:
            self.epoch_fn = backend.compile(compiled_epoch(step, backend), self.state, self.x, self.t,
                                            self.orders[0])
        else:
            self.epoch_fn = lambda state, x, t, order: run_epoch(step, state, x, t, order)
        self.compile_seconds = time.perf_counter() - start if backend.compiles else None
        self.device = device_name(backend)
        self.count = 0

    def epoch(self, limit=None):
        order = self.orders[self.count % 2]
        if limit is not None and not self.backend.compiles:
            order = order[:limit]
        self.count += 1
        start = time.perf_counter()
        self.state, losses = self.epoch_fn(self.state, self.x, self.t, order)
        self.backend.sync(self.state)
        seconds = time.perf_counter() - start
        return seconds, float(np.mean(self.backend.to_numpy(losses)))


def device_name(backend):
    """The backend's own device as `devices()` names it (with the model where there is one); an
    older xpnet has no `device_name` and lists its own device first."""
    names, own = backend.devices(), getattr(backend, "device_name", None)
    mine = [d for d in names if own and (d == own or d.startswith(f"{own} ("))]
    return (mine or [own or names[0]])[0]


def check_baseline_import():
    """Raise unless this worker's xpnet is the baseline checkout's: with xpnet installed in the
    venv, a missing or broken checkout would otherwise measure the current code under its name."""
    import xpnet

    folder = Path(os.environ[BASELINE_VAR]).resolve()
    if folder not in Path(xpnet.__file__).resolve().parents:
        raise RuntimeError(f"imported xpnet from {Path(xpnet.__file__).parent}, not from {folder}")


class TorchRun:
    """The PyTorch peer: the same layers, initial weights, batches and float32, written the way a
    PyTorch user would (nn.Linear, F.cross_entropy, torch.optim), data resident on the device."""

    def __init__(self, device, spec, sizes, batch_size, x, t):
        import torch
        from torch import nn

        self.torch, self.device = torch, torch.device(device)
        if "conv" in spec:  # nn.Conv2d, max-pooling and nn.Linear, xpnet's initial weights too
            from conv_runs import torch_layers
            layers = torch_layers(spec)
        else:
            layers = self._linear_layers(spec, sizes)
        self.model = nn.Sequential(*layers).to(self.device)
        if spec["optimizer"] == "sgd":
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=spec["lr"])
        else:
            self.optimizer = torch.optim.Adam(self.model.parameters(), lr=spec["lr"], eps=1e-7)
        self.x = torch.from_numpy(x).to(self.device)
        self.t = torch.from_numpy(t).to(self.device)
        self.orders = [torch.from_numpy(host_order(e, len(x), batch_size).astype(np.int64)).to(self.device)
                       for e in (1, 2)]
        self.compile_seconds, self.count = None, 0
        self.device_name = str(self.device)

    def _linear_layers(self, spec, sizes):
        from torch import nn

        from xpnet.nn.init import affine_params, host_rng

        host = affine_params(host_rng(SEED), sizes, spec["init"])  # xpnet's initial weights
        layers = []
        for i in range(1, len(sizes)):
            linear = nn.Linear(sizes[i - 1], sizes[i])
            with self.torch.no_grad():
                linear.weight.copy_(self.torch.from_numpy(host[f"W{i}"].T.astype(np.float32)))
                linear.bias.copy_(self.torch.from_numpy(host[f"b{i}"].astype(np.float32)))
            layers.append(linear)
            if i < len(sizes) - 1:
                layers.append(nn.Sigmoid() if spec["activation"] == "sigmoid" else nn.ReLU())
        return layers

    def _sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def epoch(self, limit=None):
        torch, functional = self.torch, self.torch.nn.functional
        order = self.orders[self.count % 2][:limit]
        self.count += 1
        self._sync()
        start = time.perf_counter()
        losses = []
        for batch in order:
            loss = functional.cross_entropy(self.model(self.x[batch]), self.t[batch])
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            losses.append(loss.detach())
        self._sync()
        seconds = time.perf_counter() - start
        return seconds, float(torch.stack(losses).mean())


class PlainRun:
    """The same training written directly, without xpnet: the book's NumPy code (in-place
    updates), or one `lax.scan` epoch in plain JAX. What xpnet's abstractions are measured against.

    `matmuls_only` keeps nothing but the epoch's matmuls (and the batch gathers and a weight
    update, which keep them in order): what the matmul library alone takes at these shapes, a
    floor for any implementation on that library."""

    def __init__(self, library, spec, sizes, batch_size, x, t, matmuls_only=False):
        from xpnet.nn.init import affine_params, host_rng

        host = affine_params(host_rng(SEED), sizes, spec["init"])
        self.n_layers = len(sizes) - 1
        params = [(host[f"W{i}"].astype(np.float32), host[f"b{i}"].astype(np.float32))
                  for i in range(1, len(sizes))]
        order = [host_order(e, len(x), batch_size) for e in (1, 2)]
        self.spec, self.library, self.count, self.compile_seconds = spec, library, 0, None
        self.matmuls_only = matmuls_only
        if matmuls_only:
            self.spec = {**spec, "optimizer": "sgd", "lr": 1e-9}  # one pass over each weight
        if library == "numpy":
            self.params, self.x, self.t, self.orders = params, x, t, order
            self.slots = [[(np.zeros_like(w), np.zeros_like(b)) for w, b in params] for _ in range(2)]
            self.device = "cpu"
        else:
            import jax
            import jax.numpy as jnp

            self.jax = jax
            self.state = ([(jnp.asarray(w), jnp.asarray(b)) for w, b in params],
                          tuple([(jnp.zeros_like(w), jnp.zeros_like(b)) for w, b in params] for _ in range(2)),
                          jnp.zeros((), jnp.float32))
            self.x, self.t = jnp.asarray(x), jnp.asarray(t.astype(np.int32))
            self.orders = [jnp.asarray(o) for o in order]
            start = time.perf_counter()
            self.epoch_fn = jax.jit(self._jax_epoch).lower(self.state, self.x, self.t, self.orders[0]).compile()
            self.compile_seconds = time.perf_counter() - start
            self.device = str(jax.devices()[0])

    def _grads(self, xp, params, xb, tb):
        """Loss and gradients of one batch, by hand."""
        if self.matmuls_only:
            return self._matmul_chain(params, xb)
        sigmoid = self.spec["activation"] == "sigmoid"
        acts, h = [xb], xb
        for i, (w, b) in enumerate(params):
            h = h @ w + b
            if i < self.n_layers - 1:
                h = 1 / (1 + xp.exp(-h)) if sigmoid else xp.maximum(h, 0)
            acts.append(h)
        e = xp.exp(h - h.max(axis=1, keepdims=True))
        y = e / e.sum(axis=1, keepdims=True)
        rows = xp.arange(len(tb))
        loss = -xp.log(y[rows, tb] + 1e-7).mean()
        one_hot = (tb[:, None] == xp.arange(y.shape[1])).astype(y.dtype)
        dout = (y - one_hot) / len(tb)
        grads = [None] * self.n_layers
        for i in reversed(range(self.n_layers)):
            grads[i] = (acts[i].T @ dout, dout.sum(axis=0))
            if i > 0:
                dout = dout @ params[i][0].T
                a = acts[i]
                dout = dout * a * (1 - a) if sigmoid else dout * (a > 0)
        return loss, grads

    def _matmul_chain(self, params, xb):
        """The products backprop computes, alone: forward, then each layer's weight gradient and
        (but the first layer's) input gradient, with the scores standing in for the loss gradient."""
        acts = [xb]
        for w, _ in params:
            acts.append(acts[-1] @ w)
        dout, grads = acts[-1], [None] * self.n_layers
        for i in reversed(range(self.n_layers)):
            grads[i] = (acts[i].T @ dout, 0 * params[i][1])
            if i > 0:
                dout = dout @ params[i][0].T
        return acts[-1][0, 0], grads

    def _jax_epoch(self, state, x, t, order):
        jnp = self.jax.numpy

        def step(state, batch):
            params, (m, v), count = state
            loss, grads = self._grads(jnp, params, x[batch], t[batch])
            if self.spec["optimizer"] == "sgd":
                params = [(w - self.spec["lr"] * gw, b - self.spec["lr"] * gb)
                          for (w, b), (gw, gb) in zip(params, grads)]
                return (params, (m, v), count), loss
            count = count + 1
            lr_t = self.spec["lr"] * jnp.sqrt(1 - 0.999 ** count) / (1 - 0.9 ** count)
            new_params, new_m, new_v = [], [], []
            for (w, b), (gw, gb), (mw, mb), (vw, vb) in zip(params, grads, m, v):
                pair_p, pair_m, pair_v = [], [], []
                for p_, g_, m_, v_ in ((w, gw, mw, vw), (b, gb, mb, vb)):
                    m_ = m_ + 0.1 * (g_ - m_)
                    v_ = v_ + 0.001 * (g_ * g_ - v_)
                    pair_p.append(p_ - lr_t * m_ / (jnp.sqrt(v_) + 1e-7))
                    pair_m.append(m_)
                    pair_v.append(v_)
                new_params.append(tuple(pair_p))
                new_m.append(tuple(pair_m))
                new_v.append(tuple(pair_v))
            return (new_params, (new_m, new_v), count), loss

        return self.jax.lax.scan(step, state, order)

    def epoch(self):
        order = self.orders[self.count % 2]
        self.count += 1
        start = time.perf_counter()
        if self.library == "numpy":
            losses = [self._numpy_step(batch) for batch in order]
        else:
            self.state, losses = self.epoch_fn(self.state, self.x, self.t, order)
            self.jax.block_until_ready(self.state)
        seconds = time.perf_counter() - start
        return seconds, float(np.mean(losses))

    def _numpy_step(self, batch):
        """The book's way: gradients, then in-place updates."""
        loss, grads = self._grads(np, self.params, self.x[batch], self.t[batch])
        lr = np.float32(self.spec["lr"])
        if self.spec["optimizer"] == "adam":
            self.adam_count = getattr(self, "adam_count", 0) + 1
            lr = np.float32(lr * np.sqrt(1 - 0.999 ** self.adam_count) / (1 - 0.9 ** self.adam_count))
        for (w, b), (gw, gb), (mw, mb), (vw, vb) in zip(self.params, grads, *self.slots):
            for p_, g_, m_, v_ in ((w, gw, mw, vw), (b, gb, mb, vb)):
                if self.spec["optimizer"] == "sgd":
                    p_ -= lr * g_
                else:
                    m_ += np.float32(0.1) * (g_ - m_)
                    v_ += np.float32(0.001) * (g_ * g_ - v_)
                    p_ -= lr * m_ / (np.sqrt(v_) + np.float32(1e-7))
        return loss


def matmul_gflops(impl, n=2048, repeat=5):
    """The float32 matmul throughput this implementation's library reaches on an n×n product."""
    impl = impl.partition("@")[0]
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    if impl.startswith(("plain-", "matmuls-", "book-")):
        impl = "xpnet-" + impl.split("-", 1)[1]  # the same library underneath
    if impl.startswith("torch"):
        import torch

        device = "cuda" if impl == "torch-cuda" else "cpu"
        x = torch.from_numpy(a).to(device)
        run = (lambda: (x @ x, torch.cuda.synchronize() if device == "cuda" else None))
        library = f"torch {torch.__version__}"
    else:
        from xpnet import get_backend

        backend = get_backend(impl.split("-", 1)[1])
        x = backend.asarray(a)
        matmul = backend.jit(lambda m: m @ m)
        run = (lambda: backend.sync(matmul(x)))
        library = f"{backend.name} ({', '.join(f'{k} {v}' for k, v in backend.versions().items())})"
    run()
    best = min(_timed(run) for _ in range(repeat))
    return {"gflops": 2 * n ** 3 / best / 1e9, "library": library, "n": n, "dtype": "float32"}


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start
