"""Checkpoints (xpnet/nn/checkpoint.py): a resumed run is bit for bit an uninterrupted one, a
checkpoint loads on every backend and carries a run between backends, saves are atomic, and bad or
foreign checkpoints are refused by name."""
import numpy as np
import pytest

from xpnet.backends import dtype_name, get_backend
from xpnet.errors import DataError
from xpnet.nn import Adam
from xpnet.nn.checkpoint import _flatten, load_checkpoint, save_checkpoint
from xpnet.nn.training import initial_train_state
from tests.test_training import (ADAM_ATOL, ADAM_RTOL, assert_epochs_agree, extend_net, fit_extend,
                                 needs)

def test_resumed_run_ends_exactly_where_a_straight_run_ends(backend, tmp_path):
    straight = extend_net(backend)
    straight_result = fit_extend(straight, 3)
    path = tmp_path / "run.npz"
    fit_extend(extend_net(backend), 1, checkpoint=path)
    resumed = extend_net(backend, seed=99)  # other initial weights: all must come from the file
    resumed_result = fit_extend(resumed, 3, checkpoint=path, resume=True)
    assert [r.epoch for r in resumed_result.epochs] == [1, 2, 3]
    assert len(resumed_result.batch_losses) == 2 * (400 // 16)
    for a, b in zip(resumed_result.epochs, straight_result.epochs):
        assert (a.train_loss, a.train_acc, a.test_acc) == (b.train_loss, b.train_acc, b.test_acc)
    for name, value in straight.params.items():
        np.testing.assert_array_equal(backend.to_numpy(resumed.params[name]), backend.to_numpy(value))
    for name, value in straight.state.items():
        np.testing.assert_array_equal(backend.to_numpy(resumed.state[name]), backend.to_numpy(value))
    # resuming a finished run trains nothing and leaves the saved params in the net
    again = extend_net(backend, seed=7)
    assert fit_extend(again, 3, checkpoint=path, resume=True).batch_losses == []
    np.testing.assert_array_equal(backend.to_numpy(again.params["W1"]), backend.to_numpy(straight.params["W1"]))


def flat(tree):
    """The arrays of a state tree by their checkpoint names."""
    out = {}
    _flatten(tree, "", out)
    return out


def test_a_checkpoint_loads_on_every_backend(backend, tmp_path):
    path = tmp_path / "numpy.npz"
    saved_net = extend_net("numpy")
    fit_extend(saved_net, 1, checkpoint=path)
    saved, meta = load_checkpoint(path, initial_train_state(saved_net, Adam()), get_backend("numpy"))
    net = extend_net(backend)
    loaded, meta_here = load_checkpoint(path, initial_train_state(net, Adam()), backend)
    assert meta == meta_here and meta["epoch"] == 1 and len(meta["history"]) == 1
    flat_saved, flat_loaded = flat(saved), flat(loaded)
    assert sorted(flat_saved) == sorted(flat_loaded) and "opt_state/m/W1" in flat_saved
    assert "net_state/running_mean1" in flat_saved and "opt_state/hyper/lr" in flat_saved
    for name, value in flat_saved.items():
        assert backend.owns(flat_loaded[name]), name
        assert dtype_name(flat_loaded[name].dtype) == value.dtype.name, name
        np.testing.assert_array_equal(backend.to_numpy(flat_loaded[name]), value, err_msg=name)
    # and the net trains on from it
    assert fit_extend(net, 2, checkpoint=path, resume=True).epochs[-1].epoch == 2


@pytest.mark.parametrize("route", [
    pytest.param(("torch", "jax", "torch"), marks=needs("torch", "jax")),
    pytest.param(("jax", "torch", "jax"), marks=needs("torch", "jax")),
    pytest.param(("torch", "array-api-strict", "torch"), marks=needs("torch", "array-api-strict")),
    pytest.param(("array-api-strict", "jax", "array-api-strict"), marks=needs("jax", "array-api-strict")),
], ids="-".join)
def test_a_run_moves_between_backends_through_its_checkpoint(route, tmp_path):
    """Saved on one backend, resumed on another and back: the checkpoint carries every array
    losslessly (a run resumed from it after a round trip through the other backend is bit for
    bit an uninterrupted one), and training on the other backend in between ends where an
    uninterrupted run ends, up to rounding."""
    first, other = get_backend(route[0]), get_backend(route[1])
    dropout = "jax" not in route  # JAX draws Dropout masks from keys of its own
    straight = extend_net(first, dropout=dropout)
    straight_result = fit_extend(straight, 3)
    path = tmp_path / "run.npz"
    fit_extend(extend_net(first, dropout=dropout), 1, checkpoint=path)

    # loaded on the other backend and saved from there: nothing is lost on the way
    loaded, meta = load_checkpoint(path, initial_train_state(extend_net(other, dropout=dropout), Adam()),
                                   other)
    assert all(other.owns(a) for a in flat(loaded).values())
    hop = tmp_path / "hop.npz"
    save_checkpoint(hop, loaded, meta)
    resumed = extend_net(first, dropout=dropout, seed=99)
    resumed_result = fit_extend(resumed, 3, checkpoint=hop, resume=True)
    assert len(resumed_result.batch_losses) == 2 * (400 // 16)
    for a, b in zip(resumed_result.epochs, straight_result.epochs, strict=True):
        assert (a.train_loss, a.train_acc, a.test_acc) == (b.train_loss, b.train_acc, b.test_acc)
    for name, value in {**straight.params, **straight.state}.items():
        here = {**resumed.params, **resumed.state}[name]
        np.testing.assert_array_equal(first.to_numpy(here), first.to_numpy(value), err_msg=name)

    # epoch 2 trained on the other backend, epoch 3 back on the first one
    moved = extend_net(other, dropout=dropout, seed=98)
    assert [e.epoch for e in fit_extend(moved, 2, checkpoint=path, resume=True).epochs] == [1, 2]
    assert all(other.owns(p) for p in moved.params.values())
    back = extend_net(first, dropout=dropout, seed=97)
    back_result = fit_extend(back, 3, checkpoint=path, resume=True)
    assert len(back_result.batch_losses) == 400 // 16
    a, b = back_result.epochs[0], straight_result.epochs[0]  # epoch 1: the first backend's own
    assert (a.train_loss, a.train_acc, a.test_acc) == (b.train_loss, b.train_acc, b.test_acc)
    assert_epochs_agree(back_result, straight_result, rtol=ADAM_RTOL)
    for name, value in {**straight.params, **straight.state}.items():
        here = {**back.params, **back.state}[name]
        assert first.owns(here)
        np.testing.assert_allclose(first.to_numpy(here), first.to_numpy(value), rtol=ADAM_RTOL,
                                   atol=ADAM_ATOL, err_msg=name)


def test_an_interrupted_save_leaves_the_previous_checkpoint(tmp_path):
    path = tmp_path / "run.npz"
    save_checkpoint(path, {"w": np.arange(3.0)}, {"epoch": 1})
    before = path.read_bytes()
    # the second array cannot be written (objects would need pickle): the save fails midway
    with pytest.raises(ValueError, match="allow_pickle=False"):
        save_checkpoint(path, {"a": np.ones(1000), "z": np.array([object()], dtype=object)}, {"epoch": 2})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.npz"]  # no temporary file left


def test_bad_checkpoints_are_named(tmp_path):
    numpy = get_backend("numpy")
    template = {"w": np.zeros(3)}
    with pytest.raises(DataError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.npz", template, numpy)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(DataError, match="is not a readable xpnet checkpoint"):
        load_checkpoint(garbage, template, numpy)
    other = tmp_path / "other.npz"
    save_checkpoint(other, {"w": np.zeros(4)}, {})
    with pytest.raises(DataError, match=r"w is float64\[4\], this run needs float64\[3\]"):
        load_checkpoint(other, template, numpy)
    with pytest.raises(DataError, match=r"missing \['v'\]"):
        load_checkpoint(other, {"w": np.zeros(4), "v": np.zeros(1)}, numpy)


def test_resume_refuses_a_checkpoint_of_a_different_run(tmp_path):
    path = tmp_path / "run.npz"
    fit_extend(extend_net("numpy"), 1, checkpoint=path, config={"model": "A"})
    with pytest.raises(DataError, match=r"different run: model 'A' there, 'B' now"):
        fit_extend(extend_net("numpy"), 2, checkpoint=path, resume=True, config={"model": "B"})


def test_a_checkpoint_from_before_every_net_kept_its_weight_decay_still_resumes(tmp_path):
    """Checkpoints of nets without weight decay had no `weight_decay` entry: λ = 0 is taken."""
    from xpnet.nn import SGD, TwoLayerNet
    from xpnet.nn.training import fit
    from tests.test_training import toy_data

    x, t = toy_data()

    def run(path, epochs, resume=False):
        net = TwoLayerNet(20, 10, 3, backend="numpy", seed=5, dtype="float64")
        result = fit(net, SGD(lr=0.1), (x[:400], t[:400]), (x[400:], t[400:]), epochs=epochs,
                     batch_size=16, progress=False, checkpoint=path, resume=resume)
        return net, result

    path, old = tmp_path / "run.npz", tmp_path / "old.npz"
    run(path, 1)
    with np.load(path) as data:
        assert "weight_decay" in data.files
        arrays = {name: data[name] for name in data.files if name != "weight_decay"}
    np.savez(old, **arrays)
    (net_new, new), (net_old, from_old) = run(path, 2, resume=True), run(old, 2, resume=True)
    assert [e[:4] for e in new.epochs] == [e[:4] for e in from_old.epochs]  # all but the times
    np.testing.assert_array_equal(net_new.params["W1"], net_old.params["W1"])
