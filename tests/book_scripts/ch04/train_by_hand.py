# The chapter-4 loop: host batches by np.random.choice, params[key] -= lr * grad[key], losses
# appended to a list and plotted, then a gradient check printed with NumPy functions.
import sys, os
sys.path.append(os.pardir)
import numpy as np
import matplotlib.pyplot as plt
from dataset.mnist import load_mnist
from two_layer_net import TwoLayerNet

(x_train, t_train), (x_test, t_test) = load_mnist(normalize=True, one_hot_label=True)
network = TwoLayerNet(input_size=784, hidden_size=20, output_size=10)

losses = []
for i in range(60):
    mask = np.random.choice(x_train.shape[0], 50)
    x_batch, t_batch = x_train[mask], t_train[mask]
    grad = network.gradient(x_batch, t_batch)
    for key in ('W1', 'b1', 'W2', 'b2'):
        network.params[key] -= 2.0 * grad[key]
    losses.append(network.loss(x_batch, t_batch))
    if i % 20 == 0:
        print("loss:" + str(losses[-1]))

print("train acc:" + str(network.accuracy(x_train[:500], t_train[:500])) + " test acc:"
      + str(network.accuracy(x_test, t_test)))
print("first loss:" + str(losses[0]) + " last loss:" + str(losses[-1]))

numerical = network.numerical_gradient(x_batch[:3], t_batch[:3])
backprop = network.gradient(x_batch[:3], t_batch[:3])
for key in numerical.keys():
    print("diff " + key + ":" + str(np.average(np.abs(backprop[key] - numerical[key]))))

plt.plot(np.arange(len(losses)), losses)
plt.xlabel("iteration")
plt.show()
