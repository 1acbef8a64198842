"""The book's `common.trainer.Trainer`: its loop, its printed lines and its lists, as the book.

Batches are drawn with `np.random.choice` (with replacement, from the global generator), an
epoch is train_size / mini_batch_size iterations, and each iteration runs the net's backprop,
the optimizer's update and the net's loss on the batch; the net's work runs on the run's backend.
"""
import numpy as np

from xpnet.book.served.common.optimizer import BY_NAME
from xpnet.errors import ConfigError


class Trainer:
    def __init__(self, network, x_train, t_train, x_test, t_test, epochs=20, mini_batch_size=100,
                 optimizer="SGD", optimizer_param={"lr": 0.01}, evaluate_sample_num_per_epoch=None,
                 verbose=True):
        if str(optimizer).lower() not in BY_NAME:
            raise ConfigError(f"Trainer: unknown optimizer {optimizer!r}; choose one of "
                              "SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam")
        self.network, self.verbose = network, verbose
        self.x_train, self.t_train, self.x_test, self.t_test = x_train, t_train, x_test, t_test
        self.epochs, self.batch_size = epochs, mini_batch_size
        self.evaluate_sample_num_per_epoch = evaluate_sample_num_per_epoch
        self.optimizer = BY_NAME[str(optimizer).lower()](**optimizer_param)
        self.train_size = x_train.shape[0]
        self.iter_per_epoch = max(self.train_size / mini_batch_size, 1)
        self.max_iter = int(epochs * self.iter_per_epoch)
        self.current_iter, self.current_epoch = 0, 0
        self.train_loss_list, self.train_acc_list, self.test_acc_list = [], [], []

    def train_step(self):
        """One mini-batch; at the start of each epoch, the accuracies on the (first
        evaluate_sample_num_per_epoch) training and test samples."""
        batch = np.random.choice(self.train_size, self.batch_size)
        x_batch, t_batch = self.x_train[batch], self.t_train[batch]
        grads = self.network.gradient(x_batch, t_batch)
        self.optimizer.update(self.network.params, grads)
        loss = self.network.loss(x_batch, t_batch)
        self.train_loss_list.append(loss)
        if self.verbose:
            print("train loss:" + str(loss))
        if self.current_iter % self.iter_per_epoch == 0:
            self.current_epoch += 1
            n = self.evaluate_sample_num_per_epoch
            train_acc = self.network.accuracy(self.x_train[:n], self.t_train[:n])
            test_acc = self.network.accuracy(self.x_test[:n], self.t_test[:n])
            self.train_acc_list.append(train_acc)
            self.test_acc_list.append(test_acc)
            if self.verbose:
                print(f"=== epoch:{self.current_epoch}, train acc:{train_acc}, "
                      f"test acc:{test_acc} ===")
        self.current_iter += 1

    def train(self):
        for _ in range(self.max_iter):
            self.train_step()
        test_acc = self.network.accuracy(self.x_test, self.t_test)
        if self.verbose:
            print("=============== Final Test Accuracy ===============")
            print("test acc:" + str(test_acc))
