"""The conv model's parts of the benchmark workers (bench/runs.py, bench/peers.py): xpnet's
SimpleConvNet built from a model spec, its initial params on the host for the peers, the PyTorch
peer's layers, the epoch's FLOPs, and the run of the book-style NumPy net (bench/book_convnet.py)."""
import time

import numpy as np

from impls import SEED


def conv_net(spec, backend, dtype="float32"):
    """xpnet's SimpleConvNet of the model `spec` on `backend`, its initial weights from SEED."""
    from xpnet.nn.convnets import SimpleConvNet

    return SimpleConvNet(input_dim=spec["input_dim"], conv_param=dict(spec["conv"]),
                         hidden_size=spec["hidden"][0], output_size=10,
                         weight_init_std=spec["init"], backend=backend, seed=SEED, dtype=dtype)


def host_params(spec, dtype=np.float32):
    """xpnet's initial params of the conv model as NumPy arrays: what every peer starts from."""
    from xpnet import get_backend

    backend = get_backend("numpy")
    net = conv_net(spec, backend, dtype="float64")
    return {name: backend.to_numpy(value).astype(dtype) for name, value in net.params.items()}


def conv_output(spec):
    """The height (= width) of the convolution's output."""
    conv, size = spec["conv"], spec["input_dim"][1]
    return (size + 2 * conv["pad"] - conv["filter_size"]) // conv["stride"] + 1


def torch_layers(spec):
    """The PyTorch peer's SimpleConvNet (nn.Conv2d, ReLU, max-pooling, nn.Linear) with xpnet's
    initial weights; the flattened pooling output is (channel, row, column) in both."""
    import torch
    from torch import nn

    host, conv = host_params(spec), spec["conv"]
    channels = spec["input_dim"][0]
    pooled = conv["filter_num"] * (conv_output(spec) // 2) ** 2
    layers = [nn.Conv2d(channels, conv["filter_num"], conv["filter_size"], stride=conv["stride"],
                        padding=conv["pad"]), nn.ReLU(), nn.MaxPool2d(2, stride=2), nn.Flatten(),
              nn.Linear(pooled, spec["hidden"][0]), nn.ReLU(), nn.Linear(spec["hidden"][0], 10)]
    with torch.no_grad():
        layers[0].weight.copy_(torch.from_numpy(host["W1"]))
        layers[0].bias.copy_(torch.from_numpy(host["b1"]))
        for layer, i in ((layers[4], 2), (layers[6], 3)):
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(host[f"W{i}"].T)))
            layer.bias.copy_(torch.from_numpy(host[f"b{i}"]))
    return layers


def conv_epoch_flops(spec, n_batches, batch_size):
    """FLOPs an epoch of the conv model cannot avoid: the convolution's forward product and its
    filter gradient, 2·B·OH·OW·FN·C·FH·FW each (its input needs no gradient), and per Affine layer
    the forward matmul, the weight gradient and the input gradient, 2·B·in·out each. Pooling,
    ReLU, the loss and the update are elementwise and not counted."""
    conv, channels, out = spec["conv"], spec["input_dim"][0], conv_output(spec)
    per_batch = 2 * 2 * batch_size * out * out * conv["filter_num"] * channels * conv["filter_size"] ** 2
    sizes = [conv["filter_num"] * (out // 2) ** 2, *spec["hidden"], 10]
    per_batch += sum(3 * 2 * batch_size * n_in * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    return per_batch * n_batches


class BookRun:
    """The conv model trained by the book-style NumPy net and Adam (bench/book_convnet.py), from
    xpnet's initial params, on the batches xpnet draws."""

    def __init__(self, spec, batch_size, x, t):
        from book_convnet import Adam, SimpleConvNet
        from runs import host_order

        self.net = SimpleConvNet(host_params(spec), spec["conv"]["stride"], spec["conv"]["pad"])
        self.optimizer = Adam(lr=spec["lr"])
        self.x, self.t = x, t
        self.orders = [host_order(e, len(x), batch_size) for e in (1, 2)]
        self.compile_seconds, self.count, self.device = None, 0, "cpu"

    def epoch(self, limit=None):
        order = self.orders[self.count % 2][:limit]
        self.count += 1
        start = time.perf_counter()
        losses = []
        for batch in order:
            grads = self.net.gradient(self.x[batch], self.t[batch])
            self.optimizer.update(self.net.params, grads)
            losses.append(self.net.last_loss)
        seconds = time.perf_counter() - start
        return seconds, float(np.mean(losses))
