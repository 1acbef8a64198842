"""Checks of the numbers a user gives (xpnet/checks.py): each accepts what it should, returns it
normalised, and refuses the rest with one ConfigError naming the value."""
import numpy as np
import pytest

from xpnet.checks import (available_memory, check_fits_in_memory, check_float_dtype, check_int,
                          check_number, check_seed)
from xpnet.errors import ConfigError


@pytest.mark.parametrize("value, minimum", [(1, 1), (7, 1), (0, 0), (np.int64(3), 1), (np.uint8(2), 2)])
def test_check_int_returns_a_python_int(value, minimum):
    checked = check_int(value, "n", minimum)
    assert checked == value and type(checked) is int


@pytest.mark.parametrize("value, minimum, shown", [
    (0, 1, "0"), (-3, 0, "-3"), (2.0, 1, "2.0"), (True, 0, "True"), ("3", 1, "'3'"), (None, 1, "None"),
])
def test_check_int_refuses_what_is_not_a_whole_number_in_range(value, minimum, shown):
    with pytest.raises(ConfigError, match=rf"^n must be an integer >= {minimum}, got {shown}$"):
        check_int(value, "n", minimum)


def test_check_seed_takes_none_or_a_whole_number_from_zero():
    assert check_seed(None) is None
    assert check_seed(0) == 0 and check_seed(np.int32(5)) == 5
    with pytest.raises(ConfigError, match=r"^seed must be an integer >= 0, got -1$"):
        check_seed(-1)
    with pytest.raises(ConfigError, match=r"^trial seed must be an integer >= 0, got 1.5$"):
        check_seed(1.5, "trial seed")


@pytest.mark.parametrize("value, bounds", [
    (0.5, {}), (0, {"low": 0}), (1, {"high": 1}), (1e-9, {"low": 0, "low_open": True}),
    (np.float32(0.25), {"low": 0, "high": 1, "high_open": True}),
])
def test_check_number_returns_a_float_within_its_bounds(value, bounds):
    checked = check_number(value, "x", **bounds)
    assert checked == value and type(checked) is float


@pytest.mark.parametrize("value, bounds, message", [
    (float("nan"), {}, "x must be a finite number, got nan"),
    (float("inf"), {"low": 0}, "x must be a finite number >= 0, got inf"),
    (0.0, {"low": 0, "low_open": True}, "x must be a finite number > 0, got 0.0"),
    (1, {"low": 0, "high": 1, "high_open": True}, "x must be a finite number >= 0 and < 1, got 1"),
    (2, {"high": 1}, "x must be a finite number <= 1, got 2"),
    (True, {}, "x must be a finite number, got True"),
    ("0.1", {}, "x must be a finite number, got '0.1'"),
])
def test_check_number_refuses_and_names_its_bounds(value, bounds, message):
    with pytest.raises(ConfigError, match="^" + message.replace(".", r"\.") + "$"):
        check_number(value, "x", **bounds)


def test_check_float_dtype_names_float_dtypes_of_any_library(backend):
    for name in ("float32", "float64"):
        assert check_float_dtype(name) == name
        assert check_float_dtype(np.dtype(name)) == name
        assert check_float_dtype(backend.asarray(np.zeros(1, name)).dtype) == name


@pytest.mark.parametrize("dtype", ["int32", np.int64, "float16", None, object()])
def test_check_float_dtype_refuses_others(dtype):
    with pytest.raises(ConfigError, match=r"^dtype must be one of float32, float64, got .+ "
                                          r"\(integer weights cannot learn\)$"):
        check_float_dtype(dtype)


def test_check_fits_in_memory_refuses_what_this_machine_cannot_hold():
    free = available_memory()
    assert isinstance(free, int) and free > 0  # Linux says, in /proc/meminfo
    check_fits_in_memory(1000, 8, "small arrays")  # fine: returns without a word
    with pytest.raises(ConfigError, match=r"^the weights need 8e\+06 GB, more than the [\d.e+]+ GB of "
                                          "memory available; use smaller layers$"):
        check_fits_in_memory(10**15, 8, "the weights")


def test_config_errors_are_value_errors_too():
    """As Python's own are for a bad argument, so `except ValueError` catches them."""
    with pytest.raises(ValueError, match="epochs must be an integer >= 1, got 0"):
        check_int(0, "epochs")
