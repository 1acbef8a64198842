"""DeepConvNet's accuracy in PyTorch, for comparing with `xpnet train --model deep-conv`.

The same net as xpnet's DeepConvNet(final_dropout=False) (six 3×3 convolutions, three 2×2 max
poolings, Affine 50, ReLU, Dropout 0.5, Affine 10), started from xpnet's initial weights (seed
0), trained with Adam lr 0.001 on xpnet's batch order (`epoch_orders`, seed 0) in float32; the
test accuracy after each epoch is printed.

    .venv/bin/python bench/deep_accuracy_peer.py [EPOCHS] [DATASET]    # default: 5 fashion-mnist
"""
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from xpnet.data import load_mnist
from xpnet.nn.batching import epoch_orders
from xpnet.nn.convnets import DEEP_CONVS, DeepConvNet


def main(epochs=5, dataset="fashion-mnist"):
    torch.manual_seed(0)
    (x, t), (x_test, t_test) = load_mnist(flatten=False, dataset=dataset)
    net = DeepConvNet(backend="numpy", seed=0, final_dropout=False)
    weights = {name: torch.nn.Parameter(torch.from_numpy(np.asarray(value, dtype=np.float32)))
               for name, value in net.params.items()}

    def scores(xb, train):
        h = xb
        for i, (_, pad) in enumerate(DEEP_CONVS, start=1):
            h = F.relu(F.conv2d(h, weights[f"W{i}"], weights[f"b{i}"], padding=pad))
            if i % 2 == 0:
                h = F.max_pool2d(h, 2, 2)
        h = F.dropout(F.relu(h.reshape(len(h), -1) @ weights["W7"] + weights["b7"]), 0.5, train)
        return h @ weights["W8"] + weights["b8"]

    optimizer = torch.optim.Adam(weights.values(), lr=0.001)
    x, t = torch.from_numpy(x), torch.from_numpy(t.astype(np.int64))
    x_test, t_test = torch.from_numpy(x_test), torch.from_numpy(t_test.astype(np.int64))
    for epoch, order in enumerate(epoch_orders(0, len(x), 100, epochs), start=1):
        start = time.perf_counter()
        for batch in order:
            batch = torch.from_numpy(batch)
            loss = F.cross_entropy(scores(x[batch], True), t[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            right = sum(int((scores(x_test[i:i + 500], False).argmax(1) == t_test[i:i + 500]).sum())
                        for i in range(0, len(x_test), 500))
        print(f"epoch {epoch}  test_acc {right / len(x_test):.4f}  "
              f"time {time.perf_counter() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main(*(int(a) if a.isdigit() else a for a in sys.argv[1:]))
