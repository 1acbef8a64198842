"""The book's `Trainer` (chapter 6): the usual training loop behind one object, on `fit`."""
from xpnet.nn.callbacks import EpochLog
from xpnet.nn.optimizers import make_optimizer
from xpnet.nn.training import fit


class Trainer:
    """Train `network` on (x_train, t_train) for `epochs`, evaluating on (x_test, t_test).

    The book's arguments and history lists: `train_loss_list` (every mini-batch),
    `train_acc_list` and `test_acc_list` (every epoch), plus `epoch_seconds`. `optimizer` is a
    name (any case: sgd, momentum, nesterov, adagrad, rmsprop, adam) built with
    `optimizer_param`, or an optimizer object. Batches are drawn in a shuffled order per epoch
    from `seed` (the book samples with replacement); `evaluate_sample_num_per_epoch` limits the
    per-epoch accuracies to that many samples. `verbose` prints a line per epoch; a progress bar
    shows on a terminal (`progress`). `checkpoint`/`resume` and `callbacks` (more of your own)
    as in `fit`.
    """

    #: The line `verbose` prints after each epoch (an EpochLog).
    EPOCH_LINE = ("=== epoch {epoch}/{epochs}, train acc {train_acc:.4f}, test acc {test_acc:.4f}, "
                  "loss {train_loss:.4f}, {seconds:.3f} s ===")

    def __init__(self, network, x_train, t_train, x_test, t_test, epochs=20, mini_batch_size=100,
                 optimizer="SGD", optimizer_param=None, evaluate_sample_num_per_epoch=None,
                 verbose=True, seed=0, progress=None, gradient="backprop", checkpoint=None,
                 resume=False, callbacks=()):
        self.network = network
        self.train_data, self.test_data = (x_train, t_train), (x_test, t_test)
        self.epochs, self.batch_size = epochs, mini_batch_size
        if isinstance(optimizer, str):
            optimizer = make_optimizer(optimizer, **(optimizer_param or {"lr": 0.01}))
        self.optimizer = optimizer
        self.evaluate_sample_num_per_epoch = evaluate_sample_num_per_epoch
        self.verbose, self.seed, self.progress = verbose, seed, progress
        self.gradient, self.checkpoint, self.resume = gradient, checkpoint, resume
        self.callbacks = list(callbacks)
        self.train_loss_list, self.train_acc_list, self.test_acc_list = [], [], []
        self.epoch_seconds = []
        self.result = None

    def train(self):
        """Run the epochs; returns the FitResult and fills the history lists."""
        log = [EpochLog(self.EPOCH_LINE)] if self.verbose else []
        self.result = fit(self.network, self.optimizer, self.train_data, self.test_data, self.epochs,
                          self.batch_size, self.seed, callbacks=[*log, *self.callbacks],
                          progress=self.progress, gradient=self.gradient, checkpoint=self.checkpoint,
                          resume=self.resume, eval_samples=self.evaluate_sample_num_per_epoch)
        self.train_loss_list.extend(self.result.batch_losses)
        self.train_acc_list.extend(r.train_acc for r in self.result.epochs)
        self.test_acc_list.extend(r.test_acc for r in self.result.epochs)
        self.epoch_seconds.extend(r.seconds for r in self.result.epochs)
        if self.verbose:
            print(f"=============== Final Test Accuracy ===============\n"
                  f"test acc: {self.network.accuracy(*self.test_data):.4f}")
        return self.result
