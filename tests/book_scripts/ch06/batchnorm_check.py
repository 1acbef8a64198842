# The chapter-6 BatchNorm gradient check: numerical against backprop, printed per parameter.
import sys, os
sys.path.append(os.pardir)
import numpy as np
from dataset.mnist import load_mnist
from common.multi_layer_net_extend import MultiLayerNetExtend

(x_train, t_train), _ = load_mnist(normalize=True, one_hot_label=True)
network = MultiLayerNetExtend(input_size=784, hidden_size_list=[20, 20], output_size=10,
                              use_batchnorm=True)
x_batch, t_batch = x_train[:10], t_train[:10]
grad_numerical = network.numerical_gradient(x_batch, t_batch)
grad_backprop = network.gradient(x_batch, t_batch)
for key in grad_numerical.keys():
    print(key + ":" + str(np.average(np.abs(grad_backprop[key] - grad_numerical[key]))))
