"""The book's Trainer (xpnet/nn/trainer.py): its history lists, its printed lines, user callbacks
and checkpoints through it."""
import re

import numpy as np
import pytest

from xpnet.nn import SGD, MultiLayerNet, Trainer
from xpnet.nn.callbacks import LambdaCallback
from tests.test_training import toy_data


def make_trainer(epochs, net_seed=0, **kwargs):
    """A Trainer of a small MultiLayerNet on the toy data (400 training, 100 test samples)."""
    x, t = toy_data()
    net = MultiLayerNet(20, [10, 10], 3, backend="numpy", seed=net_seed)
    options = dict(epochs=epochs, mini_batch_size=40, optimizer="Adam", optimizer_param={"lr": 0.01})
    return Trainer(net, x[:400], t[:400], x[400:], t[400:], **{**options, **kwargs})


def test_trainer_keeps_the_books_history_lists(capsys):
    trainer = make_trainer(3, evaluate_sample_num_per_epoch=50)
    result = trainer.train()
    assert len(trainer.train_loss_list) == 3 * 10 and len(trainer.test_acc_list) == 3
    assert len(trainer.train_acc_list) == 3 and len(trainer.epoch_seconds) == 3
    assert trainer.train_loss_list[-1] < trainer.train_loss_list[0]
    assert all(acc * 50 == pytest.approx(round(acc * 50)) for acc in trainer.train_acc_list)  # 50 evaluated
    assert repr(trainer.optimizer) == "Adam(lr=0.01, beta1=0.9, beta2=0.999)"
    out = capsys.readouterr().out
    assert out.count("=== epoch") == 3 and "Final Test Accuracy" in out
    assert result.epochs[-1].test_acc == trainer.test_acc_list[-1]
    # the book's line per epoch, with this run's numbers
    lines = re.findall(r"=== epoch (\d)/3, train acc ([\d.]+), test acc ([\d.]+), loss ([\d.]+), "
                       r"[\d.]+ s ===", out)
    assert [(int(e), float(a), float(b), float(loss)) for e, a, b, loss in lines] == [
        (r.epoch, round(r.train_acc, 4), round(r.test_acc, 4), round(r.train_loss, 4))
        for r in result.epochs]


def test_a_quiet_trainer_prints_nothing_and_runs_the_users_callbacks(capsys):
    seen = []
    trainer = make_trainer(2, verbose=False, optimizer=SGD(lr=0.1),
                           callbacks=[LambdaCallback(on_epoch_end=lambda run, r: seen.append(r))])
    result = trainer.train()
    assert capsys.readouterr().out == ""
    assert seen == result.epochs and [r.epoch for r in seen] == [1, 2]
    assert trainer.test_acc_list == [r.test_acc for r in seen]
    assert repr(trainer.optimizer) == "SGD(lr=0.1)"  # an optimizer object is used as given


def test_a_trainer_resumes_exactly_from_its_checkpoint(tmp_path):
    straight = make_trainer(2, verbose=False)
    straight.train()
    path = tmp_path / "run.npz"
    make_trainer(1, verbose=False, checkpoint=path).train()
    resumed = make_trainer(2, net_seed=9, verbose=False, checkpoint=path, resume=True)
    resumed.train()
    assert resumed.test_acc_list == straight.test_acc_list  # the saved epoch's history, then its own
    assert resumed.train_loss_list == straight.train_loss_list[10:]  # only the batches trained now
    for name, value in straight.network.params.items():
        np.testing.assert_array_equal(resumed.network.params[name], value, err_msg=name)
