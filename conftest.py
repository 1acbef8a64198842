"""Fixtures for tests/ and bench/: every backend present on the machine, in float32 and float64.

XPNET_TEST_BACKENDS=cupy,jax,torch limits the `backend` fixture to those backends (the GPU check
runs the suite so, on each library's default device: the GPU where there is one).
"""
import os

import pytest

from xpnet.backends import BACKEND_NAMES, available_backends, get_backend

TEST_BACKENDS_VAR = "XPNET_TEST_BACKENDS"


def _test_backends():
    chosen = [n.strip() for n in os.environ.get(TEST_BACKENDS_VAR, "").split(",") if n.strip()]
    unknown = sorted(set(chosen) - set(BACKEND_NAMES))
    if unknown:
        raise pytest.UsageError(f"{TEST_BACKENDS_VAR}: unknown backend(s) {', '.join(unknown)}; "
                                f"xpnet has {', '.join(BACKEND_NAMES)}")
    return chosen or list(BACKEND_NAMES)


@pytest.fixture(params=_test_backends())
def backend(request):
    """Each backend in turn; one that cannot run here is skipped with its reason."""
    ok, reason = available_backends()[request.param]
    if not ok:
        pytest.skip(f"backend {request.param} unavailable: {reason}")
    return get_backend(request.param)


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param
