# optimizer.update(network.params, grads) for every optimizer, and on a dict of plain floats.
import sys, os
sys.path.append(os.pardir)
import numpy as np
from dataset.mnist import load_mnist
from common.optimizer import *
from common.multi_layer_net import MultiLayerNet

(x_train, t_train), _ = load_mnist()
optimizers = {'SGD': SGD(lr=0.1), 'Momentum': Momentum(), 'Nesterov': Nesterov(), 'AdaGrad': AdaGrad(),
              'RMSprop': RMSprop(), 'Adam': Adam()}
for name, optimizer in optimizers.items():
    network = MultiLayerNet(input_size=784, hidden_size_list=[40, 40], output_size=10)
    first = None
    for i in range(40):
        mask = np.random.choice(x_train.shape[0], 64)
        grads = network.gradient(x_train[mask], t_train[mask])
        optimizer.update(network.params, grads)
        loss = network.loss(x_train[mask], t_train[mask])
        first = loss if first is None else first
    print(name + " first:" + str(first) + " last:" + str(loss))

params = {'x': -7.0, 'y': 2.0}
optimizer = Adam(lr=0.3)
for i in range(30):
    grads = {'x': params['x'] / 10.0, 'y': 2.0 * params['y']}
    optimizer.update(params, grads)
print("floats x:" + str(params['x']) + " y:" + str(params['y']) + " type:" + type(params['x']).__name__)
