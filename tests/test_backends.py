"""The backend registry and the Backend members: selection by name/device and environment, clear
errors, arrays that stay on their device, scatter-add, keys, trees and the portable transforms."""
import re
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet.backends import BACKEND_NAMES, backend_of, dtype_name, get_backend, namespace_of
from xpnet.errors import BackendError

PACKAGE = Path(xpnet.__file__).parent


def test_available_backends_reports_each_with_a_reason():
    report = xpnet.available_backends()
    assert set(report) == set(BACKEND_NAMES) >= {"numpy", "jax", "torch", "cupy", "array-api-strict"}
    for ok, reason in report.values():
        assert isinstance(ok, bool) and reason
    assert report["numpy"][0]


def test_default_is_numpy_and_env_vars_select(monkeypatch):
    monkeypatch.delenv("XPNET_BACKEND", raising=False)
    monkeypatch.delenv("XPNET_DEVICE", raising=False)
    assert xpnet.get_backend().name == "numpy"
    monkeypatch.setenv("XPNET_BACKEND", "NumPy")
    assert xpnet.get_backend().name == "numpy"
    monkeypatch.setenv("XPNET_BACKEND", "array-api-strict")
    monkeypatch.setenv("XPNET_DEVICE", "device2")
    assert xpnet.get_backend().device_name == "device2"
    assert xpnet.get_backend("numpy", "cpu").name == "numpy"  # arguments win over the variables
    assert xpnet.get_backend("array-api-strict", "device1").device_name == "device1"


def test_unknown_backend_names_what_exists(monkeypatch):
    with pytest.raises(BackendError, match=r"unknown backend 'tensorflow'; xpnet has numpy \(available\)"):
        xpnet.get_backend("tensorflow")
    monkeypatch.setenv("XPNET_BACKEND", "mxnet")
    with pytest.raises(BackendError, match="unknown backend 'mxnet'"):
        xpnet.get_backend()


@pytest.mark.parametrize("name, device, message", [
    ("numpy", "cuda", "numpy computes on the CPU only"),
    ("array-api-strict", "device9", "array-api-strict devices are CPU_DEVICE, device1"),
    ("jax", "quantum", "jax devices are 'cpu', 'gpu'"),
    ("torch", "tpu:0", "torch devices are 'cpu', 'cuda'"),
])
def test_unknown_device_names_the_choices(name, device, message):
    if not xpnet.available_backends()[name][0]:
        pytest.skip(f"{name} is not installed")
    with pytest.raises(BackendError, match=message):
        xpnet.get_backend(name, device)


def test_a_device_the_machine_lacks_is_refused_without_fallback():
    for name, device in [("jax", "gpu"), ("torch", "cuda:7")]:
        ok, _ = xpnet.available_backends()[name]
        if not ok:
            continue
        try:
            backend = xpnet.get_backend(name, device)
        except BackendError as exc:
            assert device.partition(":")[0] in str(exc)
        else:  # a machine with that GPU: it must really be the one used
            assert backend.device_name.startswith(("gpu", "cuda"))


@pytest.mark.parametrize("name", ["jax", "torch", "cupy"])
def test_unusable_backend_raises_its_reason_without_fallback(name):
    ok, reason = xpnet.available_backends()[name]
    if ok:
        pytest.skip(f"{name} is usable on this machine")
    with pytest.raises(BackendError) as info:
        xpnet.get_backend(name)
    assert reason in str(info.value) and "usable now: numpy" in str(info.value)


def test_host_round_trip_and_sync(backend, dtype):
    host = np.arange(6, dtype=np.float64).reshape(2, 3)
    device = backend.asarray(host, dtype)
    assert dtype_name(device.dtype) == dtype and tuple(device.shape) == (2, 3)
    assert backend_of(device) is backend and namespace_of(device) is backend.xp
    assert backend.owns(device)
    back = backend.to_numpy(device)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, host)
    tree = {"a": device, "b": [device * 2]}
    assert backend.sync(tree) is tree
    assert backend.devices() and "numpy" in backend.versions()


def test_arrays_on_the_backend_pass_through_and_cast_on_the_device(backend):
    device = backend.asarray(np.arange(4.0), "float64")
    assert backend.asarray(device) is device
    assert backend.asarray(device, "float64") is device
    cast = backend.asarray(device, "float32")  # array-api-strict's device1 refuses a host trip
    assert backend.owns(cast) and dtype_name(cast.dtype) == "float32"
    np.testing.assert_array_equal(backend.to_numpy(cast), [0, 1, 2, 3])


def test_strict_device1_refuses_to_mix_with_the_host():
    """The stand-in for a GPU: if this did not fail, the strict test backend would prove nothing."""
    strict = get_backend("array-api-strict", "device1")
    on_device1 = strict.asarray(np.ones(3), "float64")
    on_cpu = strict.xp.asarray([1.0, 2.0, 3.0], device=strict.xp.Device("CPU_DEVICE"))
    with pytest.raises(ValueError, match="different devices"):
        on_device1 + on_cpu


def test_scatter_add_accumulates_repeated_indices(backend, dtype):
    target = backend.asarray(np.arange(8.0).reshape(4, 2), dtype)
    indices = backend.asarray(np.array([0, 3, 0, 0, 2]), backend.index_dtype)
    values = backend.asarray(np.arange(10.0).reshape(5, 2), dtype)
    expected = np.arange(8.0).reshape(4, 2)
    np.add.at(expected, [0, 3, 0, 0, 2], np.arange(10.0).reshape(5, 2))
    out = backend.scatter_add(target, indices, values)
    np.testing.assert_allclose(backend.to_numpy(out), expected)
    np.testing.assert_array_equal(backend.to_numpy(target), np.arange(8.0).reshape(4, 2))  # a copy


def test_keys_live_on_the_device_and_replay(backend, dtype):
    key = backend.key(7)
    assert backend.owns(key)
    step = backend.xp.zeros((), dtype=backend.xp.int32, device=backend.device) + 3
    folded = backend.fold_in(key, step)  # a device integer: no host round trip
    assert backend.owns(folded)
    np.testing.assert_array_equal(backend.to_numpy(folded), backend.to_numpy(backend.fold_in(key, 3)))
    u = backend.uniform(folded, (200, 50), dtype)
    assert backend.owns(u) and dtype_name(u.dtype) == dtype and tuple(u.shape) == (200, 50)
    host = backend.to_numpy(u)
    assert 0 <= host.min() and host.max() < 1 and abs(host.mean() - 0.5) < 0.01
    assert abs(np.corrcoef(host.ravel()[:-1], host.ravel()[1:])[0, 1]) < 0.02
    np.testing.assert_array_equal(host, backend.to_numpy(backend.uniform(folded, (200, 50), dtype)))
    other = backend.to_numpy(backend.uniform(backend.fold_in(key, 4), (200, 50), dtype))
    assert (other != host).mean() > 0.99


def test_portable_keys_give_the_same_numbers_on_every_backend_but_jax():
    draws = {}
    for name in ("numpy", "torch", "array-api-strict"):
        if xpnet.available_backends()[name][0]:
            be = get_backend(name, "cpu" if name == "torch" else None)
            draws[name] = be.to_numpy(be.uniform(be.fold_in(be.key(1), 5), (3, 4), "float32"))
    for values in draws.values():
        np.testing.assert_array_equal(values, draws["numpy"])


def test_vmap_scan_and_trees_agree_with_a_plain_loop(backend):
    xp = backend.xp
    rows = backend.asarray(np.arange(12.0).reshape(4, 3), "float64")
    scale = backend.asarray(np.array(2.0), "float64")

    def f(tree, s):
        return {"sum": xp.sum(tree["a"]) * s, "pair": (tree["a"] * s, tree["b"])}

    tree = {"a": rows, "b": rows[:, 0]}
    out = backend.vmap(f, in_axes=(0, None))(tree, scale)
    np.testing.assert_allclose(backend.to_numpy(out["sum"]), np.arange(12.0).reshape(4, 3).sum(1) * 2)
    np.testing.assert_allclose(backend.to_numpy(out["pair"][0]), np.arange(12.0).reshape(4, 3) * 2)
    stacked = backend.tree_stack([tree, tree])
    assert tuple(stacked["a"].shape) == (2, 4, 3)
    doubled = backend.tree_map(lambda a, b: a + b, tree, tree)
    np.testing.assert_allclose(backend.to_numpy(doubled["b"]), [0, 6, 12, 18])

    def body(carry, i):
        return carry + 1, (carry * 2, carry)

    carry, (twice, same) = backend.scan(body, xp.zeros((), dtype=xp.float64, device=backend.device), 3)
    assert float(backend.to_numpy(carry)) == 3
    np.testing.assert_allclose(backend.to_numpy(twice), [0, 2, 4])


def test_jit_gives_the_same_result_as_eager(backend):
    def f(x):
        return backend.xp.tanh(x) * 2

    x = backend.asarray(np.linspace(-1, 1, 5), "float64")
    np.testing.assert_allclose(backend.to_numpy(backend.jit(f)(x)), backend.to_numpy(f(x)), rtol=1e-12)


def test_python_values_belong_to_numpy():
    numpy_xp = get_backend("numpy").xp
    assert namespace_of(3.0) is numpy_xp and namespace_of([1, 2]) is numpy_xp


def test_only_the_backends_package_knows_the_array_libraries():
    """The Array API rule, checked on the source: outside xpnet/backends/ nothing imports jax,
    cupy or torch, nor asks a backend its name."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if "backends" in path.relative_to(PACKAGE).parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"^\s*(import|from) (jax|cupy|cupyx|torch)\b", line) or \
                    re.search(r"\.name\s*[!=]=\s*['\"](numpy|jax|torch|cupy)", line):
                offenders.append(f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_a_backend_that_says_it_shares_host_memory_does(backend):
    """`shares_host_memory`: a NumPy array handed to `asarray` is the backend array's memory."""
    host = np.arange(4.0)
    on_backend = backend.asarray(host, "float64")
    host[0] = 9.0
    if backend.shares_host_memory:
        assert backend.to_numpy(on_backend)[0] == 9.0
    else:
        assert backend.name != "numpy"
