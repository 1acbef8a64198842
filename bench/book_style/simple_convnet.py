"""The simple convnet: conv - relu - pool - affine - relu - affine - softmax."""
from collections import OrderedDict

import numpy as np

from common.layers import *
from common.gradient import numerical_gradient


class SimpleConvNet:
    """One convolution block and two affine layers, with params shared by reference."""

    def __init__(self, input_dim=(1, 28, 28),
                 conv_param={'filter_num': 30, 'filter_size': 5, 'pad': 0, 'stride': 1},
                 hidden_size=100, output_size=10, weight_init_std=0.01):
        filter_num = conv_param['filter_num']
        filter_size = conv_param['filter_size']
        filter_pad = conv_param['pad']
        filter_stride = conv_param['stride']
        input_size = input_dim[1]
        conv_output_size = (input_size - filter_size + 2 * filter_pad) / filter_stride + 1
        pool_output_size = int(filter_num * (conv_output_size / 2) * (conv_output_size / 2))

        self.params = {}
        self.params['W1'] = weight_init_std * np.random.randn(filter_num, input_dim[0],
                                                              filter_size, filter_size)
        self.params['b1'] = np.zeros(filter_num)
        self.params['W2'] = weight_init_std * np.random.randn(pool_output_size, hidden_size)
        self.params['b2'] = np.zeros(hidden_size)
        self.params['W3'] = weight_init_std * np.random.randn(hidden_size, output_size)
        self.params['b3'] = np.zeros(output_size)

        self.layers = OrderedDict()
        self.layers['Conv1'] = Convolution(self.params['W1'], self.params['b1'],
                                           filter_stride, filter_pad)
        self.layers['Relu1'] = Relu()
        self.layers['Pool1'] = Pooling(pool_h=2, pool_w=2, stride=2)
        self.layers['Affine1'] = Affine(self.params['W2'], self.params['b2'])
        self.layers['Relu2'] = Relu()
        self.layers['Affine2'] = Affine(self.params['W3'], self.params['b3'])
        self.last_layer = SoftmaxWithLoss()

    def predict(self, x):
        """Scores before the softmax."""
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x, t):
        """Cross-entropy loss of the softmax of the scores."""
        y = self.predict(x)
        return self.last_layer.forward(y, t)

    def accuracy(self, x, t, batch_size=100):
        """Fraction of samples classified right, batch_size samples per forward pass."""
        if t.ndim != 1:
            t = np.argmax(t, axis=1)
        acc = 0.0
        for start in range(0, x.shape[0], batch_size):
            tx = x[start:start + batch_size]
            tt = t[start:start + batch_size]
            y = np.argmax(self.predict(tx), axis=1)
            acc += np.sum(y == tt)
        return acc / x.shape[0]

    def numerical_gradient(self, x, t):
        """Gradients of the loss by central differences."""
        loss_w = lambda w: self.loss(x, t)
        grads = {}
        for idx in (1, 2, 3):
            grads['W' + str(idx)] = numerical_gradient(loss_w, self.params['W' + str(idx)])
            grads['b' + str(idx)] = numerical_gradient(loss_w, self.params['b' + str(idx)])
        return grads

    def gradient(self, x, t):
        """Gradients of the loss by backpropagation."""
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        for layer in reversed(list(self.layers.values())):
            dout = layer.backward(dout)
        grads = {}
        for idx, key in enumerate(('Conv1', 'Affine1', 'Affine2'), start=1):
            grads['W' + str(idx)] = self.layers[key].dW
            grads['b' + str(idx)] = self.layers[key].db
        return grads

    def save_params(self, file_name="params.pkl"):
        """Write the params to file_name in NumPy's .npz format (no pickle)."""
        with open(file_name, 'wb') as f:
            np.savez(f, **self.params)

    def load_params(self, file_name="params.pkl"):
        """Read params written by save_params and rebind the layers to them."""
        with np.load(file_name, allow_pickle=False) as data:
            self.params = {key: data[key] for key in data.files}
        for idx, key in enumerate(('Conv1', 'Affine1', 'Affine2'), start=1):
            self.layers[key].W = self.params['W' + str(idx)]
            self.layers[key].b = self.params['b' + str(idx)]
