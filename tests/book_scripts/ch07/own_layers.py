# A net of the reader's own, built from common.layers that hold references to its params and
# trained by updating those params in place: the update must reach the layers on every backend.
import sys, os
sys.path.append(os.pardir)
from collections import OrderedDict
import numpy as np
from dataset.mnist import load_mnist
from common.layers import Affine, Relu, SoftmaxWithLoss


class OwnNet:
    def __init__(self):
        self.params = {'W1': 0.1 * np.random.randn(784, 30), 'b1': np.zeros(30),
                       'W2': 0.1 * np.random.randn(30, 10), 'b2': np.zeros(10)}
        self.layers = OrderedDict()
        self.layers['Affine1'] = Affine(self.params['W1'], self.params['b1'])
        self.layers['Relu1'] = Relu()
        self.layers['Affine2'] = Affine(self.params['W2'], self.params['b2'])
        self.last_layer = SoftmaxWithLoss()

    def loss(self, x, t):
        for layer in self.layers.values():
            x = layer.forward(x)
        return self.last_layer.forward(x, t)

    def gradient(self, x, t):
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(list(self.layers.values())):
            dout = layer.backward(dout)
        return {'W1': self.layers['Affine1'].dW, 'b1': self.layers['Affine1'].db,
                'W2': self.layers['Affine2'].dW, 'b2': self.layers['Affine2'].db}


(x_train, t_train), _ = load_mnist()
net = OwnNet()
x, t = x_train[:200], t_train[:200]
first = net.loss(x, t)
for i in range(30):
    grads = net.gradient(x, t)
    for key in net.params:
        net.params[key] -= 0.5 * grads[key]
    if i % 10 == 0:
        print("loss:" + str(net.loss(x, t)))
print("own net first:" + str(first) + " last:" + str(net.loss(x, t)))
