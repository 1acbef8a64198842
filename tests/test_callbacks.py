"""Callbacks around the training loop (xpnet/nn/callbacks.py): a user's callback sees every hook
in order, can stop a run or change its learning rate; ProgressBar counts batches; Checkpoint saves
after every epoch, resumes exactly and lets go of its path however the run ends."""
import io
import json

import numpy as np
import pytest

from xpnet.errors import DataError, DivergedError
from xpnet.nn import SGD, MultiLayerNet
from xpnet.nn.callbacks import Callback, Checkpoint, EpochLog, LambdaCallback, ProgressBar
from xpnet.nn.checkpoint import claim_checkpoint, load_checkpoint
from xpnet.nn.training import fit
from tests.test_training import (extend_net, fit_extend, host_params, reference_run, small_net,
                                 toy_data, train)

#: `train` runs 400 samples in batches of 8.
BATCHES = 400 // 8


class Recorder(Callback):
    """Records every hook as (name, what it was given)."""

    def __init__(self):
        self.calls = []

    def on_train_begin(self, run):
        self.calls.append(("begin", len(run.history)))

    def on_epoch_begin(self, run, epoch):
        self.calls.append(("epoch", epoch))

    def on_batches(self, n):
        self.calls.append(("batches", n))

    def on_epoch_end(self, run, result):
        # the net holds the epoch's params when its callbacks run
        same = all(run.net.params[k] is v for k, v in run.state.params.items())
        self.calls.append(("end", result.epoch, same, run.history[-1] is result))

    def on_train_end(self, run):
        self.calls.append(("done", len(run.history)))


def hooks(calls):
    """The calls with consecutive on_batches merged into one count (eager epochs report each
    batch, a compiled epoch all at once)."""
    merged = []
    for call in calls:
        if call[0] == "batches" and merged and merged[-1][0] == "batches":
            merged[-1] = ("batches", merged[-1][1] + call[1])
        else:
            merged.append(call)
    return merged


def test_a_user_callback_sees_every_hook_in_order(backend):
    recorder = Recorder()
    _, result = train(backend, "float32", epochs=3, callbacks=[recorder])
    each_epoch = [c for e in (1, 2, 3)
                  for c in (("epoch", e), ("batches", BATCHES), ("end", e, True, True))]
    assert hooks(recorder.calls) == [("begin", 0), *each_epoch, ("done", 3)]
    assert [e.epoch for e in result.epochs] == [1, 2, 3]
    steps = [c[1] for c in recorder.calls if c[0] == "batches"]
    assert steps == ([BATCHES] * 3 if backend.compiles else [1] * 3 * BATCHES)


def test_a_callback_can_stop_a_run_which_resumes_exactly(tmp_path):
    path = tmp_path / "run.npz"

    def stop_after_2(run, result):
        run.stop_training = result.epoch == 2

    stopped = fit_extend(extend_net("numpy"), 4, checkpoint=path,
                         callbacks=[LambdaCallback(on_epoch_end=stop_after_2)])
    assert [e.epoch for e in stopped.epochs] == [1, 2]
    assert saved_epoch(path) == 2
    resumed_net, straight_net = extend_net("numpy", seed=99), extend_net("numpy")
    resumed = fit_extend(resumed_net, 4, checkpoint=path, resume=True)
    straight = fit_extend(straight_net, 4)
    numbers = [(e.epoch, e.train_loss, e.train_acc, e.test_acc) for e in straight.epochs]
    assert [(e.epoch, e.train_loss, e.train_acc, e.test_acc) for e in resumed.epochs] == numbers
    assert resumed.batch_losses == straight.batch_losses[len(stopped.batch_losses):]
    for name, value in {**straight_net.params, **straight_net.state}.items():
        here = {**resumed_net.params, **resumed_net.state}[name]
        np.testing.assert_array_equal(here, value, err_msg=name)


def saved_epoch(path):
    """The epoch the checkpoint at `path` says it holds (read from its metadata alone)."""
    with np.load(path, allow_pickle=False) as data:
        return json.loads(str(data["__meta__"]))["epoch"]


def test_a_callback_can_change_the_learning_rate_between_epochs(backend):
    """A callback may replace run.state: here lr 0 from epoch 2 on, so the params stay those
    of epoch 1 (on JAX in the same compiled epoch: the rate is an array of the state)."""
    params = []

    def freeze_after_1(run, result):
        params.append(host_params(run.net))
        if result.epoch == 1:
            frozen = run.optimizer.with_hyper(run.state.opt_state, lr=0.0)
            run.state = run.state._replace(opt_state=frozen)

    _, result = train(backend, "float32", epochs=3,
                      callbacks=[LambdaCallback(on_epoch_end=freeze_after_1)])
    for later in params[1:]:
        for name, value in params[0].items():
            np.testing.assert_array_equal(later[name], value, err_msg=name)
    assert len({(e.train_acc, e.test_acc) for e in result.epochs}) == 1
    assert not np.array_equal(params[0]["W1"], host_params(small_net(backend, "float32"))["W1"])


def test_the_progress_bar_counts_the_batches_a_run_has_left(tmp_path):
    bar = ProgressBar(show=False)
    train("numpy", "float32", epochs=3, callbacks=[bar])
    assert bar.done == bar.total == 3 * BATCHES
    path = tmp_path / "run.npz"
    train("numpy", "float32", epochs=1, checkpoint=path)
    train("numpy", "float32", epochs=3, checkpoint=path, resume=True, callbacks=[bar])
    assert bar.done == bar.total == 2 * BATCHES  # counted afresh: the resumed epoch is not left


def test_a_shown_bar_goes_to_stderr_and_a_users_bar_replaces_progress(capsys):
    train("numpy", "float32", epochs=1, callbacks=[ProgressBar(show=True)])
    captured = capsys.readouterr()
    assert f"training on numpy:   0%|          | 0/{BATCHES}" in captured.err and captured.out == ""
    x, t = toy_data()
    fit(small_net("numpy", "float32"), SGD(), (x, t), (x, t), epochs=1, progress=True,
        callbacks=[ProgressBar(show=False)])
    assert capsys.readouterr().err == ""  # no second bar from progress=True


def test_the_checkpoint_callback_saves_every_epoch_and_resumes_exactly(tmp_path):
    path = tmp_path / "run.npz"
    saved = []

    def read_back(run, result):  # after the Checkpoint, in the same epoch
        meta = load_checkpoint(path, run.state, run.backend, run.config)[1]
        saved.append((meta["epoch"], len(meta["history"]), meta["config"]["seed"]))

    train("numpy", "float32", epochs=2,
          callbacks=[Checkpoint(path), LambdaCallback(on_epoch_end=read_back)])
    assert saved == [(1, 1, 3), (2, 2, 3)]
    net, result = train("numpy", "float32", epochs=3, callbacks=[Checkpoint(path, resume=True)])
    params, expected = reference_run("numpy", "float32", epochs=3)
    assert result.batch_losses == expected.batch_losses[2 * BATCHES:]
    assert [(e.train_loss, e.test_acc) for e in result.epochs] == \
        [(e.train_loss, e.test_acc) for e in expected.epochs]
    for name, value in params.items():
        np.testing.assert_array_equal(net.params[name], value, err_msg=name)
    with pytest.raises(DataError, match="already holds a checkpoint"):  # never replaced unasked
        train("numpy", "float32", epochs=1, callbacks=[Checkpoint(path)])


def test_callbacks_let_go_when_a_run_fails(tmp_path):
    """on_train_end runs for every callback whose on_train_begin returned, also on an error:
    the checkpoint's lock goes (a new run may claim it); a callback after the one that failed to
    begin was never begun, so it is not ended either."""
    x, t = toy_data()
    path = tmp_path / "run.npz"
    before, after = Recorder(), Recorder()
    with pytest.raises(DataError, match="no checkpoint at"):
        train("numpy", "float32", callbacks=[before, Checkpoint(path, resume=True), after])
    assert before.calls == [("begin", 0), ("done", 0)] and after.calls == []
    assert not path.with_name("run.npz.lock").exists()

    recorder = Recorder()
    with pytest.raises(DivergedError, match="at epoch 1"):
        fit(MultiLayerNet(20, [16, 16], 3, seed=0), SGD(lr=1e12), (x, t), (x, t), epochs=2,
            batch_size=50, progress=False, callbacks=[Checkpoint(path), recorder])
    assert recorder.calls[-1] == ("done", 0) and not any(c[0] == "end" for c in recorder.calls)
    assert not path.exists()  # nothing finite to save
    with claim_checkpoint(path):  # free again
        pass

    train("numpy", "float32", epochs=1, checkpoint=path)
    with pytest.raises(DataError, match="different run"):  # a failed resume lets go at once
        train("numpy", "float32", epochs=2, checkpoint=path, resume=True, config={"model": "other"})
    with claim_checkpoint(path, resume=True):
        pass


def test_epoch_log_writes_a_line_per_epoch():
    out = io.StringIO()
    log = EpochLog("{epoch}/{epochs} acc {test_acc:.4f} loss {train_loss:.3f}", file=out)
    _, result = train("numpy", "float32", epochs=2, callbacks=[log])
    assert out.getvalue().splitlines() == [f"{r.epoch}/2 acc {r.test_acc:.4f} loss {r.train_loss:.3f}"
                                           for r in result.epochs]


def test_on_epoch_is_a_lambda_callback_called_after_the_checkpoint_is_saved(tmp_path):
    path = tmp_path / "run.npz"
    epochs_saved = []
    train("numpy", "float32", epochs=2, checkpoint=path,
          on_epoch=lambda r: epochs_saved.append((r.epoch, saved_epoch(path))))
    assert epochs_saved == [(1, 1), (2, 2)]


def test_bad_callbacks_are_refused_before_training():
    with pytest.raises(TypeError, match=r"unknown callback hooks \['on_epoch'\]"):
        LambdaCallback(on_epoch=print)
    with pytest.raises(TypeError, match="callbacks must be xpnet.nn.callbacks.Callback objects"):
        train("numpy", "float32", epochs=1, callbacks=[print])
