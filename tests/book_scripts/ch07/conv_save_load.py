# SimpleConvNet on images loaded with flatten=False: gradient check, save_params/load_params
# round trip, and the im2col helpers of common.util.
import sys, os
sys.path.append(os.pardir)
import numpy as np
from dataset.mnist import load_mnist
from simple_convnet import SimpleConvNet
from common.util import im2col, col2im, conv_output_size

(x_train, t_train), (x_test, t_test) = load_mnist(flatten=False)
x = np.random.rand(2, 1, 12, 12)  # as the book's check: blank pixels would sit on ReLU's kink
network = SimpleConvNet(input_dim=(1, 12, 12),
                        conv_param={'filter_num': 4, 'filter_size': 3, 'pad': 0, 'stride': 1},
                        hidden_size=10, output_size=10, weight_init_std=0.1)
grad_numerical = network.numerical_gradient(x, t_train[:2])
grad_backprop = network.gradient(x, t_train[:2])
for key in grad_numerical.keys():
    print(key + ":" + str(np.average(np.abs(grad_backprop[key] - grad_numerical[key]))))

network.save_params("params.pkl")
other = SimpleConvNet(input_dim=(1, 12, 12),
                      conv_param={'filter_num': 4, 'filter_size': 3, 'pad': 0, 'stride': 1},
                      hidden_size=10, output_size=10, weight_init_std=0.1)
other.load_params("params.pkl")
print("same after load:" + str(np.array_equal(network.predict(x), other.predict(x))))

col = im2col(x, 3, 3, stride=1, pad=1)
print("im2col shape:" + str(col.shape) + " out size:" + str(conv_output_size(12, 3, 1, 1)))
back = col2im(np.ones_like(col), x.shape, 3, 3, stride=1, pad=1)
print("col2im center count:" + str(back[0, 0, 5, 5]))
