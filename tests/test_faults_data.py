"""Faults a careless user (or a flaky network) can cause in xpnet.data: each must be one DataError.

Real files and folders, a real HTTP server on 127.0.0.1 (some of whose pages trickle or stall),
real `xpnet` subprocesses and a real `kill -9`; nothing is mocked.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.server
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import xpnet.data as data
from xpnet.data import datasets
from xpnet.errors import DataError

N_TRAIN, N_TEST = 60, 20
CONTENT = bytes(range(256)) * 40  # what /file.bin serves
CONTENT_SHA = hashlib.sha256(CONTENT).hexdigest()
TRICKLE_SIZE = 1000  # /trickle announces this many bytes, then sends one every TRICKLE_GAP s
TRICKLE_GAP = 0.25
ROOT = os.geteuid() == 0


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """An empty data folder, no download overrides, and the default download deadline."""
    monkeypatch.setenv("XPNET_DATA", str(tmp_path / "data"))
    for name in ("XPNET_MNIST_URL", "XPNET_FASHION_MNIST_URL", "XPNET_DOWNLOAD_DEADLINE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server():
    """A real HTTP server on 127.0.0.1: /file.bin serves CONTENT, /trickle sends one byte every
    TRICKLE_GAP s (so does /trickle/NAME), /stall sends its headers and then nothing; /mnist/NAME serves files put in
    ``server.mnist`` (a dict). Yields an object with ``url`` (ending in "/") and ``mnist``."""
    stop = threading.Event()
    mnist: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            try:
                if self.path == "/file.bin" or self.path.startswith("/mnist/"):
                    body = CONTENT if self.path == "/file.bin" else mnist.get(self.path[len("/mnist/"):])
                    if body is None:
                        self.send_error(404)
                        return
                    self._headers(len(body))
                    self.wfile.write(body)
                elif self.path.startswith("/trickle"):  # also /trickle/NAME
                    self._headers(TRICKLE_SIZE)
                    for _ in range(TRICKLE_SIZE):
                        if stop.wait(TRICKLE_GAP):
                            return
                        self.wfile.write(b"x")
                        self.wfile.flush()
                elif self.path == "/stall":
                    self._headers(len(CONTENT))
                    stop.wait(120)
                else:
                    self.send_error(404)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up, as it should

        def _headers(self, length):
            self.send_response(200)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.flush()

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()

    class Server:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/"

    Server.mnist = mnist
    yield Server
    stop.set()
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def write_mnist_files(folder: Path, seed: int = 0) -> dict[str, str]:
    """Four small MNIST-format files in ``folder``; returns their SHA-256 by name."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        data.write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        data.write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n, dtype=np.uint8) % 10)
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in datasets.IDX_FILES}


def run_xpnet(*args: str, xpnet_data: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = dict(os.environ, XPNET_DATA=xpnet_data, OMP_NUM_THREADS="1")
    for name in ("XPNET_MNIST_URL", "XPNET_FASHION_MNIST_URL"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "xpnet", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=Path(__file__).resolve().parent.parent)


def assert_one_line_error(result: subprocess.CompletedProcess, *phrases: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("xpnet: error: "), result.stderr
    for phrase in phrases:
        assert phrase in lines[0]


def leftovers(folder: Path) -> list[str]:
    """Names of temporary or lock files in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".part", ".lock"))) if folder.exists() else []


# --- 1. a bad XPNET_DATA -------------------------------------------------------


@pytest.fixture
def a_file(tmp_path) -> Path:
    path = tmp_path / "not-a-folder"
    path.write_text("I am a file\n")
    return path


@pytest.mark.parametrize("under", [False, True], ids=["file", "under-a-file"])
def test_xpnet_data_not_a_directory_api(monkeypatch, a_file, under):
    value = str(a_file / "data" if under else a_file)
    monkeypatch.setenv("XPNET_DATA", value)
    expected = f"XPNET_DATA={value} is not a directory"
    calls = {
        "auto": lambda: data.resolve_dataset("auto"),
        "load auto": lambda: data.load_dataset("auto"),
        "mnist": lambda: data.load_mnist(dataset="mnist"),
        "fashion-mnist": lambda: data.load_dataset("fashion-mnist"),
    }
    monkeypatch.setattr(datasets, "SYSTEM_FASHION_MNIST_DIR", a_file.parent / "no-system-copy")
    for name, call in calls.items():
        with pytest.raises(DataError) as info:
            call()
        message = str(info.value)
        assert message.startswith(expected), (name, message)
        assert (f"{a_file} is a file" if under else "(it is a file)") in message
    assert a_file.read_text() == "I am a file\n"  # untouched


def test_data_dir_argument_not_a_directory(a_file):
    with pytest.raises(DataError, match=re.escape(f"data_dir={a_file} is not a directory")):
        data.load_mnist(data_dir=a_file)
    with pytest.raises(DataError, match=re.escape(f"data_dir={a_file} is not a directory")):
        data.resolve_dataset("auto", a_file)


def test_mnist_subfolder_is_a_file(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mnist").write_bytes(b"oops")
    for call in (lambda: data.resolve_dataset("auto"), lambda: data.load_mnist()):
        with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'data' / 'mnist'} is not a directory")):
            call()


def test_tilde_user_that_does_not_exist(monkeypatch):
    monkeypatch.setenv("XPNET_DATA", "~xpnet-no-such-user/data")
    with pytest.raises(DataError, match="XPNET_DATA=~xpnet-no-such-user/data: cannot expand '~'"):
        data.resolve_dataset("auto")
    with pytest.raises(DataError, match="data_dir=~xpnet-no-such-user: cannot expand"):
        data.load_mnist(data_dir="~xpnet-no-such-user")


def test_missing_xpnet_data_still_falls_back_to_mnist_5k(tmp_path, monkeypatch):
    monkeypatch.setenv("XPNET_DATA", str(tmp_path / "not" / "yet" / "there"))
    assert data.resolve_dataset("auto") == "mnist-5k"
    assert data.load_dataset("auto").name == "mnist-5k"
    assert not (tmp_path / "not").exists()  # looking does not create it
    (tmp_path / "empty").mkdir()
    assert data.resolve_dataset("auto", tmp_path / "empty") == "mnist-5k"


@pytest.mark.parametrize("under", [False, True], ids=["file", "under-a-file"])
@pytest.mark.parametrize("dataset", ["auto", "default", "mnist"])
def test_xpnet_data_not_a_directory_cli(a_file, under, dataset):
    value = str(a_file / "data" if under else a_file)
    args = ["train", "--epochs", "1"] + ([] if dataset == "default" else ["--dataset", dataset])
    assert_one_line_error(run_xpnet(*args, xpnet_data=value), f"XPNET_DATA={value} is not a directory")


def test_missing_xpnet_data_cli_trains_on_mnist_5k(tmp_path):
    result = run_xpnet("train", "--epochs", "1", "--dataset", "auto", xpnet_data=str(tmp_path / "absent"))
    assert result.returncode == 0, result.stderr
    assert "using mnist-5k" in result.stdout


def as_nobody(call):
    """Run ``call()`` as an unprivileged user; return the DataError message, or "ok: RESULT".

    As root (where permission bits do not stop anything) it runs in a forked child that has
    dropped to uid/gid 65534; otherwise in this process."""
    def attempt():
        try:
            return f"ok: {call()}"
        except DataError as exc:
            return str(exc)

    if not ROOT:
        return attempt()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            message = attempt()
            os.write(write_end, message.encode())
            status = 0
        except BaseException as exc:  # noqa: BLE001 - report anything else to the parent
            os.write(write_end, f"unexpected {type(exc).__name__}: {exc}".encode())
        finally:
            os._exit(status)
    os.close(write_end)
    # a child forked from a multithreaded process (JAX's) could deadlock: bound the wait
    ready, _, _ = select.select([read_end], [], [], 60)
    if not ready:
        os.kill(pid, signal.SIGKILL)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode() if ready else "the forked child hung"
    os.waitpid(pid, 0)
    return message


@pytest.fixture
def shared_dir():
    """A folder an unprivileged user can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="xpnet-faults-"))
    folder.chmod(0o755)
    yield folder
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    shutil.rmtree(folder)


@pytest.mark.parametrize("case", ["unreadable", "unsearchable", "under-unreadable"])
def test_xpnet_data_permission_denied(shared_dir, monkeypatch, case):
    if ROOT and not hasattr(os, "fork"):
        pytest.skip("running as root, and no fork to drop privileges: permission bits do not apply to root")
    folder = shared_dir / "data"
    (folder / "mnist").mkdir(parents=True)
    folder.chmod({"unreadable": 0o000, "unsearchable": 0o644, "under-unreadable": 0o000}[case])
    value = str(folder / "inner" if case == "under-unreadable" else folder)
    monkeypatch.setenv("XPNET_DATA", value)
    phrase = "cannot be reached (Permission denied)" if case == "under-unreadable" else "cannot be read"
    for call in (lambda: data.resolve_dataset("auto"), lambda: data.load_mnist()):
        message = as_nobody(call)
        assert message.startswith(f"XPNET_DATA={value} {phrase}"), message


def test_unreadable_idx_file(shared_dir, monkeypatch):
    if ROOT and not hasattr(os, "fork"):
        pytest.skip("running as root, and no fork to drop privileges: permission bits do not apply to root")
    folder = shared_dir / "mnist"
    monkeypatch.setattr(datasets, "MNIST_SHA256", write_mnist_files(folder))
    for path in shared_dir.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    (folder / "t10k-labels-idx1-ubyte.gz").chmod(0o000)
    message = as_nobody(lambda: data.load_dataset("mnist", data_dir=shared_dir).name)
    assert message == f"{folder / 't10k-labels-idx1-ubyte.gz'}: cannot read file (Permission denied)", message
    (folder / "t10k-labels-idx1-ubyte.gz").chmod(0o644)
    assert as_nobody(lambda: data.load_dataset("mnist", data_dir=shared_dir).name) == "ok: mnist"


def test_no_download_into_a_read_only_folder(shared_dir, server, monkeypatch):
    if ROOT and not hasattr(os, "fork"):
        pytest.skip("running as root, and no fork to drop privileges: permission bits do not apply to root")
    (shared_dir / "mnist").mkdir(mode=0o755)
    (shared_dir / "mnist").chmod(0o555)
    monkeypatch.setenv("XPNET_MNIST_URL", server.url + "mnist/")
    message = as_nobody(lambda: data.load_dataset("mnist", data_dir=shared_dir))
    assert "files missing from" in message and "not writable" in message, message


# --- 2. a download deadline ----------------------------------------------------


@pytest.mark.parametrize("how", ["env", "argument"])
def test_trickling_server_hits_the_deadline(server, tmp_path, monkeypatch, how):
    dest = tmp_path / "dest" / "file.bin"
    kwargs = {"deadline": 2}
    if how == "env":
        monkeypatch.setenv("XPNET_DOWNLOAD_DEADLINE", "2")
        kwargs = {}
    start = time.monotonic()
    with pytest.raises(DataError, match=r"downloading http://127\.0\.0\.1:\d+/trickle took longer than 2 s") as info:
        data.download(server.url + "trickle", dest, "0" * 64, **kwargs)
    elapsed = time.monotonic() - start
    assert 1.9 <= elapsed < 4, elapsed
    assert str(dest) in str(info.value) and "XPNET_DOWNLOAD_DEADLINE" in str(info.value)
    assert list(dest.parent.iterdir()) == []  # no .part, no lock, no destination


def test_stalled_server_hits_the_deadline_not_the_read_timeout(server, tmp_path):
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"previous")
    start = time.monotonic()
    with pytest.raises(DataError, match="took longer than 1.5 s"):
        data.download(server.url + "stall", dest, CONTENT_SHA, timeout=60, deadline=1.5)
    assert time.monotonic() - start < 3.5
    assert dest.read_bytes() == b"previous" and leftovers(tmp_path) == []


def test_deadline_through_load_mnist(server, tmp_path, monkeypatch):
    monkeypatch.setenv("XPNET_MNIST_URL", server.url + "trickle")  # every file name trickles
    monkeypatch.setenv("XPNET_DOWNLOAD_DEADLINE", "1")
    start = time.monotonic()
    with pytest.raises(DataError, match="took longer than 1 s") as info:
        data.load_mnist()
    assert time.monotonic() - start < 3
    assert 'dataset="mnist-5k"' in str(info.value)
    assert list((tmp_path / "data" / "mnist").iterdir()) == []


@pytest.mark.parametrize("value", ["soon", "0", "-5", "nan", "inf"])
def test_bad_deadline_setting(server, tmp_path, monkeypatch, value):
    monkeypatch.setenv("XPNET_DOWNLOAD_DEADLINE", value)
    with pytest.raises(DataError, match=f"XPNET_DOWNLOAD_DEADLINE={value} is not a positive number of seconds"):
        data.download(server.url + "file.bin", tmp_path / "file.bin", CONTENT_SHA)
    with pytest.raises(ValueError, match="deadline must be a positive number"):
        data.download(server.url + "file.bin", tmp_path / "file.bin", CONTENT_SHA, deadline=0)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DataError) as info:  # through the loader: said once, not once per mirror
        data.load_mnist()
    assert str(info.value) == f"XPNET_DOWNLOAD_DEADLINE={value} is not a positive number of seconds"


def test_fast_download_within_deadline(server, tmp_path, monkeypatch):
    monkeypatch.setenv("XPNET_DOWNLOAD_DEADLINE", "5")
    dest = tmp_path / "file.bin"
    assert data.download(server.url + "file.bin", dest, CONTENT_SHA) == dest
    assert dest.read_bytes() == CONTENT and list(tmp_path.iterdir()) == [dest]


# --- 3. stale .part files ------------------------------------------------------


def test_stale_parts_are_removed_before_downloading(server, tmp_path):
    dest = tmp_path / "file.bin"
    stale = [tmp_path / f".file.bin.{tag}.part" for tag in ("abc123xy", "k9_2mmq0", "zz")]
    for path in stale:
        path.write_bytes(b"half a download" * 1000)
    others = [tmp_path / ".file.bin.gz.abc123xy.part", tmp_path / ".other.bin.abc123xy.part",
              tmp_path / "file.bin.part", tmp_path / ".file.bin.lock.txt"]
    for path in others:
        path.write_bytes(b"not ours")
    (tmp_path / ".file.bin.lock").write_bytes(b"")  # a lock file left by a killed download
    assert data.download(server.url + "file.bin", dest, CONTENT_SHA) == dest
    assert dest.read_bytes() == CONTENT
    assert not any(p.exists() for p in stale)
    assert all(p.read_bytes() == b"not ours" for p in others)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([dest.name, *(p.name for p in others)])


def test_parts_of_a_live_download_are_kept(server, tmp_path):
    """While another process holds the destination's lock, its part is never deleted."""
    dest = tmp_path / "file.bin"
    live_part = tmp_path / ".file.bin.live0001.part"
    live_part.write_bytes(b"being written")
    fd = os.open(tmp_path / ".file.bin.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a separate open file: conflicts as another process would
        start = time.monotonic()
        with pytest.raises(DataError, match=r"another process \(pid \w+\) has been downloading it for over 0.5 s"):
            data.download(server.url + "file.bin", dest, CONTENT_SHA, deadline=0.5)
        assert time.monotonic() - start < 2
        assert live_part.read_bytes() == b"being written" and not dest.exists()
        # It waits for the lock instead of failing, when the other download ends in time.
        threading.Timer(0.3, lambda: fcntl.flock(fd, fcntl.LOCK_UN)).start()
        assert data.download(server.url + "file.bin", dest, CONTENT_SHA, deadline=10) == dest
    finally:
        os.close(fd)
    assert dest.read_bytes() == CONTENT and not live_part.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]


def test_kill_9_during_download_leaves_a_part_that_the_next_download_removes(server, tmp_path):
    dest = tmp_path / "dl" / "file.bin"
    code = ("import sys; from xpnet.data import download; "
            "download(sys.argv[1], sys.argv[2], '0' * 64, deadline=60)")

    def parts():
        return sorted(p for p in dest.parent.glob(".*") if p.name.endswith(".part"))

    def start_and_kill(wait_for):
        """Start a download of /trickle to ``dest``; once ``wait_for()`` holds, kill -9 it."""
        proc = subprocess.Popen([sys.executable, "-c", code, server.url + "trickle", str(dest)],
                                cwd=Path(__file__).resolve().parent.parent)
        try:
            limit = time.monotonic() + 20
            while not wait_for():
                assert proc.poll() is None, "the download ended before it could be killed"
                assert time.monotonic() < limit, "the download never got going"
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()

    start_and_kill(lambda: len(parts()) == 1)
    first = parts()
    assert len(first) == 1  # a kill -9 leaves its part behind
    # A second download of the same destination removes it before writing its own part.
    start_and_kill(lambda: len(parts()) == 1 and parts() != first)
    second = parts()
    assert len(second) == 1 and not first[0].exists()
    assert data.download(server.url + "file.bin", dest, CONTENT_SHA) == dest
    assert dest.read_bytes() == CONTENT
    assert sorted(p.name for p in dest.parent.iterdir()) == ["file.bin"]  # no part, no lock


# --- 4. other careless-user faults in the loaders -------------------------------


def test_idx_name_that_is_a_directory(tmp_path, monkeypatch):
    folder = tmp_path / "data" / "mnist"
    monkeypatch.setattr(datasets, "MNIST_SHA256", write_mnist_files(folder))
    path = folder / "train-labels-idx1-ubyte.gz"
    path.unlink()
    path.mkdir()
    with pytest.raises(DataError, match="is a directory, not an IDX file; remove it") as info:
        data.load_mnist(dataset="mnist")
    assert str(path) in str(info.value)
    assert data.resolve_dataset("auto") == "mnist-5k"  # not all four files: auto does not pick mnist
    assert path.is_dir()  # nothing removed behind the user's back


def test_idx_name_that_is_a_named_pipe(tmp_path, monkeypatch):
    folder = tmp_path / "data" / "mnist"
    monkeypatch.setattr(datasets, "MNIST_SHA256", write_mnist_files(folder))
    path = folder / "t10k-images-idx3-ubyte.gz"
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(DataError, match="is a named pipe, not an IDX file"):  # and does not hang reading it
        data.load_mnist(dataset="mnist")


def test_empty_or_mismatched_arrays_in_splits():
    empty_x, empty_t = np.zeros((0, 784)), np.zeros(0, np.int32)
    with pytest.raises(ValueError, match="of 0 samples leaves an empty part"):
        data.validation_split(empty_x, empty_t)
    with pytest.raises(ValueError, match="x has 3 samples but t has 2"):
        data.validation_split(np.zeros((3, 2)), np.zeros(2))
    xs, ts = data.shuffle_dataset(empty_x, empty_t, seed=0)
    assert xs.shape == (0, 784) and ts.shape == (0,)


def test_download_into_a_path_under_a_file(server, a_file):
    with pytest.raises(DataError, match=re.escape(f"{a_file / 'x.bin'}: download from ") + ".* failed"):
        data.download(server.url + "file.bin", a_file / "x.bin", CONTENT_SHA)
    assert a_file.read_text() == "I am a file\n"
