# Labels as one-hot rows, as integers and as an (N, 1) column give the same loss, accuracy and
# gradient; predict returns a NumPy array the script takes argmax of.
import sys, os
sys.path.append(os.pardir)
import numpy as np
from dataset.mnist import load_mnist
from two_layer_net import TwoLayerNet

(x_train, t_train), _ = load_mnist(one_hot_label=False)
network = TwoLayerNet(input_size=784, hidden_size=30, output_size=10)
x = x_train[:40]
forms = {"int": t_train[:40], "onehot": np.eye(10)[t_train[:40]], "column": t_train[:40].reshape(-1, 1)}
for name, t in forms.items():
    grad = network.gradient(x, t)
    print(name + " loss:" + str(network.loss(x, t)) + " acc:" + str(network.accuracy(x, t))
          + " gradW1:" + str(np.sum(grad['W1'] ** 2)))
y = network.predict(x)
print("argmax agrees:" + str(np.mean(np.argmax(y, axis=1) == t_train[:40])) + " type:"
      + type(y).__name__)
print("dtypes:" + " ".join(sorted({str(v.dtype) for v in [*network.params.values(), *grad.values(), y]})))
