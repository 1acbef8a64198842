"""Fixtures for tests/ and bench/: every backend present on the machine, in float32 and float64."""
import pytest

from xpnet.backends import BACKEND_NAMES, available_backends, get_backend


@pytest.fixture(params=BACKEND_NAMES)
def backend(request):
    """Each backend in turn; one that cannot run here is skipped with its reason."""
    ok, reason = available_backends()[request.param]
    if not ok:
        pytest.skip(f"backend {request.param} unavailable: {reason}")
    return get_backend(request.param)


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param
