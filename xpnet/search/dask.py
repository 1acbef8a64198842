"""The executor of a Dask cluster, and the probe that makes sure a Dask scheduler answers at an
address before a client is let near it. dask.distributed is imported only when one is made."""
import concurrent.futures
import contextlib
import threading

from xpnet.checks import check_number
from xpnet.errors import ConfigError, XpnetError
from xpnet.search.common import DASK_TIMEOUT, one_line


class DaskExecutor(concurrent.futures.Executor):
    """The executor of a Dask cluster (`distributed.Client(address).get_executor()`); shutting it
    down closes the client, not the cluster. Its workers need xpnet and the data set installed.

    The scheduler is probed first, within `timeout` seconds for the whole handshake (Dask's own
    connect timeout stops at the TCP connection: a peer that accepts and says nothing would hold
    the client for ever, one that answers in another protocol makes it allocate the "length" it
    read); a peer that does not answer as a Dask scheduler is refused with one XpnetError line."""

    def __init__(self, address, timeout=DASK_TIMEOUT):
        try:
            import distributed
        except ImportError:
            raise XpnetError("executor 'dask' needs dask.distributed: "
                             "pip install 'xpnet[search]'") from None
        if not address:
            raise needs_dask_address()
        timeout = check_number(timeout, "timeout", low=0, low_open=True)
        _probe_dask_scheduler(distributed, address, timeout)
        client = distributed.Client.__new__(distributed.Client)
        try:
            client.__init__(address, timeout=timeout, set_as_default=False)
        except Exception as exc:  # noqa: BLE001 -- whatever the client met: one line
            _discard_client(client)
            why = (f"no answer within {timeout:g} s" if isinstance(exc, TimeoutError)
                   and not str(exc) else one_line(exc))
            raise XpnetError(f"cannot connect to the Dask scheduler at {address}: {why}") from None
        self.client = client
        self.address = address
        self.workers = max(1, sum(self.client.nthreads().values()))
        self._executor = self.client.get_executor(pure=False)

    def submit(self, fn, /, *args, **kwargs):
        return self._executor.submit(fn, *args, **kwargs)

    def shutdown(self, wait=True, *, cancel_futures=False):
        self._executor.shutdown(wait=wait)
        self.client.close()


def needs_dask_address():
    return ConfigError("executor 'dask' needs dask_address (--dask ADDRESS on the command line): "
                       "the address of a running scheduler, e.g. tcp://host:8786")


def _probe_dask_scheduler(distributed, address, timeout):
    """Return when a Dask scheduler answers at `address` within `timeout` seconds (connection,
    handshake and an "identity" call); otherwise XpnetError. It runs on an event loop of its own
    in a thread of its own, so that it works whether or not the caller runs an event loop."""
    import asyncio

    from distributed.comm import connect, parse_address, parse_host_port, registry

    try:
        scheme, location = parse_address(address)
        registry.get_backend(scheme)
        if scheme in ("tcp", "tls", "ws", "wss") and not 0 < parse_host_port(location)[1] < 65536:
            raise ValueError(f"port out of range in {location!r}")
    except ValueError as exc:
        raise XpnetError(f"{address!r} is not a Dask scheduler address ({one_line(exc)}); "
                         "give one like tcp://host:8786") from None

    async def identity():
        comm = await connect(address, timeout=max(timeout / 2, timeout - 0.5),
                             **distributed.Security().get_connection_args("client"))
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    outcome = {}

    def probe():
        try:  # connect's own timeout comes first when the connection fails: it says why
            outcome["identity"] = asyncio.run(asyncio.wait_for(identity(), timeout))
        except BaseException as exc:  # noqa: BLE001 -- reported below, in the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=probe, name="xpnet-dask-probe", daemon=True)
    thread.start()
    thread.join(timeout + 1)
    exc, answer = outcome.get("error"), outcome.get("identity")
    if exc is None and answer is None:
        exc = TimeoutError()
    if isinstance(exc, (OSError, TimeoutError, asyncio.TimeoutError)):
        while exc.__cause__ is not None:  # connect's OSError names the last attempt's error
            exc = exc.__cause__
        why = (exc.strerror if isinstance(exc, OSError) and exc.strerror
               else one_line(exc) if str(exc) else "no answer")
        raise XpnetError(f"cannot reach the Dask scheduler at {address} within {timeout:g} s "
                         f"({why})") from None
    if exc is not None or not isinstance(answer, dict) or answer.get("type") != "Scheduler":
        said = (f"it answered as a Dask {answer['type']}" if isinstance(answer, dict)
                and isinstance(answer.get("type"), str) else "it does not speak Dask's protocol")
        raise XpnetError(f"{address} is not a Dask scheduler ({said}); give the address of "
                         "a running scheduler, e.g. tcp://host:8786") from None


def _discard_client(client):
    """Close a distributed.Client whose start failed, so that its __del__ (at the interpreter's
    exit at the latest) has nothing left to do and prints nothing."""
    with contextlib.suppress(Exception):
        client.close(timeout=1)
    with contextlib.suppress(Exception):
        client.status = "closed"
        client._loop_runner.stop()
