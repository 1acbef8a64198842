"""The backend registry: selection by name and XPNET_BACKEND, clear errors, host round trips."""
import numpy as np
import pytest

import xpnet
from xpnet.backends import BACKEND_NAMES, backend_of, namespace_of
from xpnet.errors import BackendError


def test_available_backends_reports_each_with_a_reason():
    report = xpnet.available_backends()
    assert set(report) == set(BACKEND_NAMES)
    for ok, reason in report.values():
        assert isinstance(ok, bool) and reason
    assert report["numpy"][0]


def test_default_is_numpy_and_env_var_selects(monkeypatch):
    monkeypatch.delenv("XPNET_BACKEND", raising=False)
    assert xpnet.get_backend().name == "numpy"
    monkeypatch.setenv("XPNET_BACKEND", "NumPy")
    assert xpnet.get_backend().name == "numpy"
    if xpnet.available_backends()["jax"][0]:
        monkeypatch.setenv("XPNET_BACKEND", "jax")
        assert xpnet.get_backend().name == "jax"
        assert xpnet.get_backend("numpy").name == "numpy"  # an argument wins over the variable


def test_unknown_backend_names_what_exists(monkeypatch):
    with pytest.raises(BackendError, match=r"unknown backend 'torch'; xpnet has numpy \(available\)"):
        xpnet.get_backend("torch")
    monkeypatch.setenv("XPNET_BACKEND", "tensorflow")
    with pytest.raises(BackendError, match="unknown backend 'tensorflow'"):
        xpnet.get_backend()


@pytest.mark.parametrize("name", ["jax", "cupy"])
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
    assert device.dtype == np.dtype(dtype) and device.shape == (2, 3)
    assert backend_of(device) is backend and namespace_of(device) is backend.xp
    back = backend.to_numpy(device)
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, host)
    tree = {"a": device, "b": [device * 2]}
    assert backend.sync(tree) is tree
    assert backend.devices() and "numpy" in backend.versions()


def test_jit_gives_the_same_result_as_eager(backend):
    def f(x):
        return backend.xp.tanh(x) * 2

    x = backend.asarray(np.linspace(-1, 1, 5), "float64")
    np.testing.assert_allclose(backend.to_numpy(backend.jit(f)(x)), backend.to_numpy(f(x)), rtol=1e-12)


def test_python_values_belong_to_numpy():
    assert namespace_of(3.0) is np and namespace_of([1, 2]) is np
