# Trainer with its lists on a BatchNorm + Dropout + weight decay net, train_flg in predict,
# smooth_curve and shuffle_dataset from common.util, accuracies plotted.
import sys, os
sys.path.append(os.pardir)
import numpy as np
import matplotlib.pyplot as plt
from dataset.mnist import load_mnist
from common.multi_layer_net_extend import MultiLayerNetExtend
from common.trainer import Trainer
from common.util import smooth_curve, shuffle_dataset

(x_train, t_train), (x_test, t_test) = load_mnist(normalize=True)
x_train, t_train = shuffle_dataset(x_train[:300], t_train[:300])
network = MultiLayerNetExtend(input_size=784, hidden_size_list=[50, 50], output_size=10,
                              use_dropout=True, dropout_ration=0.2, use_batchnorm=True,
                              weight_decay_lambda=0.01)
trainer = Trainer(network, x_train, t_train, x_test[:200], t_test[:200], epochs=3,
                  mini_batch_size=50, optimizer='Momentum', optimizer_param={'lr': 0.05},
                  verbose=True)
trainer.train()
print("train acc list:" + str(trainer.train_acc_list))
print("test acc list:" + str(trainer.test_acc_list))
print("smoothed:" + str(smooth_curve(np.array(trainer.train_loss_list))[-1]))
a = network.predict(x_test[:5], train_flg=True)
b = network.predict(x_test[:5], train_flg=False)
print("train_flg changes the output:" + str(bool(np.any(a != b))))
plt.plot(trainer.train_acc_list, label="train")
plt.plot(trainer.test_acc_list, label="test")
plt.legend()
plt.show()
