# The chapter-6 BatchNorm comparison, our own script in the book's style: for several initial
# weight scales, train a net of five hidden layers with and without BatchNorm on 1,000 images
# and print both training accuracies. `--quick` (after --) makes it a smoke run.
import sys, os
sys.path.append(os.pardir)
import numpy as np
from dataset.mnist import load_mnist
from common.multi_layer_net_extend import MultiLayerNetExtend
from common.optimizer import SGD

quick = '--quick' in sys.argv
(x_train, t_train), _ = load_mnist(normalize=True)
x_train, t_train = x_train[:1000], t_train[:1000]
epochs = 2 if quick else 10
batch_size = 100
iter_per_epoch = x_train.shape[0] // batch_size
optimizer = SGD(lr=0.01)

for scale in ([0.1, 0.01] if quick else np.logspace(-0.5, -3, num=6)):
    bn_network = MultiLayerNetExtend(input_size=784, hidden_size_list=[100] * 5, output_size=10,
                                     weight_init_std=scale, use_batchnorm=True)
    network = MultiLayerNetExtend(input_size=784, hidden_size_list=[100] * 5, output_size=10,
                                  weight_init_std=scale)
    for i in range(epochs * iter_per_epoch):
        batch_mask = np.random.choice(x_train.shape[0], batch_size)
        for net in (bn_network, network):
            grads = net.gradient(x_train[batch_mask], t_train[batch_mask])
            optimizer.update(net.params, grads)
    print("scale " + str(scale) + ": with BatchNorm " + str(bn_network.accuracy(x_train, t_train))
          + ", without " + str(network.accuracy(x_train, t_train)))
