"""Faults around checkpoints: bad paths refused before a run, existing files never clobbered,
one run per checkpoint (even after kill -9), damaged checkpoints named clearly."""
import json
import os
import random
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from xpnet.backends import get_backend
from xpnet.errors import DataError, XpnetError
from xpnet.files import STALE_PART_SECONDS, atomic_write, check_writable, remove_stale_parts
from xpnet.nn.checkpoint import FORMAT, claim_checkpoint, load_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = {"w": np.zeros(3)}


def saved(path, epoch=3):
    """Write a small valid checkpoint at `path`; return its bytes."""
    save_checkpoint(path, {"w": np.arange(3.0)}, {"epoch": epoch, "config": {"seed": 0},
                                                  "history": [{"epoch": e} for e in range(1, epoch + 1)]})
    return path.read_bytes()


def refused(error, phrase, path, **claim):
    """Assert that claiming `path` raises `error` with `phrase` (a literal) and no lock is left."""
    with pytest.raises(error, match=re.escape(phrase)) as info:
        with claim_checkpoint(path, **claim):
            pytest.fail("the claim should have been refused")
    assert "allow_pickle" not in str(info.value)
    assert not Path(f"{path}.lock").exists()
    return str(info.value)


def spawn(code, *args):
    """A Python subprocess running `code` with xpnet importable, stdout piped."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)


# --- existing files are never clobbered ---------------------------------------------------------

def test_an_existing_checkpoint_needs_resume_or_overwrite(tmp_path):
    path = tmp_path / "run.npz"
    before = saved(path, epoch=3)
    refused(DataError, f"{path} already holds a checkpoint (epoch 3); pass --resume to continue it "
            "or --overwrite to start over", path)
    assert path.read_bytes() == before
    for flags in ({"resume": True}, {"overwrite": True}):
        with claim_checkpoint(path, **flags) as held:
            assert held == path and Path(f"{path}.lock").exists()
        assert path.read_bytes() == before and not Path(f"{path}.lock").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.npz"]


def test_resume_and_overwrite_together_are_refused(tmp_path):
    path = tmp_path / "run.npz"
    before = saved(path)
    refused(XpnetError, "--resume and --overwrite contradict each other", path, resume=True, overwrite=True)
    assert path.read_bytes() == before


def test_resume_needs_a_checkpoint(tmp_path):
    path = tmp_path / "run.npz"
    refused(DataError, f"no checkpoint at {path} to resume", path, resume=True)
    assert not path.exists()
    with claim_checkpoint(path):  # a new run: nothing there is fine
        pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content", [b"my notes\n", b"", os.urandom(300)], ids=["text", "empty", "random"])
def test_a_file_that_is_not_a_checkpoint_is_never_replaced(tmp_path, content):
    path = tmp_path / "notes.txt"
    path.write_bytes(content)
    for flags in ({}, {"overwrite": True}):
        refused(DataError, f"{path} is not an xpnet checkpoint; refusing to replace it", path, **flags)
    refused(DataError, f"{path} is not a readable xpnet checkpoint (not a .npz archive)", path, resume=True)
    assert path.read_bytes() == content


def test_a_npz_of_someone_else_is_never_replaced(tmp_path):
    path = tmp_path / "data.npz"
    np.savez(path, x=np.arange(5))
    before = path.read_bytes()
    refused(DataError, f"{path} is not an xpnet checkpoint; refusing to replace it", path, overwrite=True)
    refused(DataError, f"{path} is not an xpnet checkpoint (no readable metadata)", path, resume=True)
    assert path.read_bytes() == before


# --- paths that cannot be written fail before the run -------------------------------------------

def test_a_directory_is_refused(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "keep").write_text("x")
    for flags in ({}, {"overwrite": True}):
        refused(XpnetError, f"cannot write checkpoint {folder}: it is a directory, not a file", folder, **flags)
    assert [p.name for p in folder.iterdir()] == ["keep"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full here")
def test_a_device_is_refused_and_untouched():
    before = os.stat("/dev/full")
    for flags in ({}, {"overwrite": True}, {"resume": True}):
        refused(XpnetError, "cannot write checkpoint /dev/full: it is not a regular file", "/dev/full", **flags)
    with pytest.raises(XpnetError, match="cannot write --json /dev/full: it is not a regular file"):
        check_writable("/dev/full", "--json")
    after = os.stat("/dev/full")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev
    assert not os.path.exists("/dev/full.lock")


def test_a_fifo_is_refused(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    refused(XpnetError, f"cannot write checkpoint {fifo}: it is not a regular file", fifo, overwrite=True)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_an_empty_path_is_refused():
    refused(XpnetError, "checkpoint needs a file path, but the path given is empty", "")
    with pytest.raises(XpnetError, match="--json needs a file path"):
        check_writable("", "--json")


def test_a_file_as_folder_is_refused(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("keep me")
    refused(XpnetError, f"cannot write checkpoint {plain}/x.npz: {plain} is not a folder", plain / "x.npz")
    assert plain.read_text() == "keep me"
    if os.path.isfile("/etc/passwd"):
        before = Path("/etc/passwd").read_bytes()
        refused(XpnetError, "cannot write checkpoint /etc/passwd/x.npz: /etc/passwd is not a folder",
                "/etc/passwd/x.npz")
        assert Path("/etc/passwd").read_bytes() == before


def test_a_missing_folder_is_refused(tmp_path):
    path = tmp_path / "no" / "such" / "run.npz"
    refused(XpnetError, f"cannot write checkpoint {path}: its folder {path.parent} does not exist", path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("folder", ["/proc", "/sys"])
def test_a_folder_nobody_can_write_is_refused(folder):
    if not os.path.isdir(folder):
        pytest.skip(f"no {folder} here")
    path = f"{folder}/xpnet-run.npz"
    refused(XpnetError, f"cannot write checkpoint {path}: cannot create files in {folder}", path)
    assert not os.path.exists(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders anyway")
def test_a_read_only_folder_is_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        refused(XpnetError, f"cannot create files in {folder}", folder / "run.npz")
    finally:
        folder.chmod(0o700)
    assert list(folder.iterdir()) == []


def test_check_writable_leaves_nothing_behind(tmp_path):
    path = tmp_path / "out.json"
    check_writable(path, "--json")
    assert list(tmp_path.iterdir()) == []
    path.write_text("old")
    check_writable(path, "--json")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


# --- one run per checkpoint -----------------------------------------------------------------------

def test_a_second_claim_in_this_process_is_refused(tmp_path):
    path = tmp_path / "run.npz"
    with claim_checkpoint(path):
        before = Path(f"{path}.lock").read_text()
        with pytest.raises(DataError, match=re.escape(f"{path} is in use by another run (pid {os.getpid()})")):
            with claim_checkpoint(path, overwrite=True):
                pass
        assert Path(f"{path}.lock").read_text() == before  # the refused claim kept the lock
    assert not Path(f"{path}.lock").exists()


def test_the_lock_goes_when_the_run_fails(tmp_path):
    path = tmp_path / "run.npz"
    with pytest.raises(RuntimeError):
        with claim_checkpoint(path):
            raise RuntimeError("training blew up")
    assert list(tmp_path.iterdir()) == []
    with claim_checkpoint(path):
        pass


HOLDER = """
import sys
from xpnet.nn.checkpoint import claim_checkpoint
with claim_checkpoint(sys.argv[1], overwrite=True):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_a_run_in_another_process_holds_the_lock_until_killed(tmp_path):
    path = tmp_path / "run.npz"
    before = saved(path)
    holder = spawn(HOLDER, path)
    try:
        assert holder.stdout.readline() == "held\n"
        refused_msg = f"{path} is in use by another run (pid {holder.pid})"
        with pytest.raises(DataError, match=re.escape(refused_msg)):
            with claim_checkpoint(path, resume=True):
                pass
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, the lock file stays with a dead pid
        holder.wait()
    assert Path(f"{path}.lock").read_text().strip() == str(holder.pid)
    with claim_checkpoint(path, resume=True):  # the kernel dropped the flock: taken over
        assert Path(f"{path}.lock").read_text().strip() == str(os.getpid())
    assert path.read_bytes() == before and not Path(f"{path}.lock").exists()


def test_a_stale_lock_file_is_taken_over(tmp_path):
    path = tmp_path / "run.npz"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(f"{path}.lock").write_text(f"{dead}\n")
    with claim_checkpoint(path):
        pass
    assert list(tmp_path.iterdir()) == []


# --- leftovers of killed saves --------------------------------------------------------------------

def test_a_claim_removes_every_part_file_of_its_checkpoint(tmp_path):
    path = tmp_path / "run.npz"
    before = saved(path)
    mine = [tmp_path / ".run.npz.abc_1234.part", tmp_path / ".run.npz.zz9.part"]
    others = [tmp_path / ".run.npz.x.abc_1234.part", tmp_path / ".other.npz.abc_1234.part",
              tmp_path / "run.npz.part"]
    for p in mine + others:
        p.write_bytes(b"half a checkpoint")
    refused(DataError, "already holds a checkpoint", path)
    assert all(p.exists() for p in mine)  # a refused claim touches nothing
    with claim_checkpoint(path, resume=True):
        assert not any(p.exists() for p in mine)
    assert all(p.exists() for p in others) and path.read_bytes() == before


def test_atomic_write_removes_only_old_part_files(tmp_path):
    path = tmp_path / "out.bin"
    old, fresh = tmp_path / ".out.bin.old12345.part", tmp_path / ".out.bin.new12345.part"
    for p in (old, fresh):
        p.write_bytes(b"x")
    long_ago = time.time() - STALE_PART_SECONDS - 5
    os.utime(old, (long_ago, long_ago))
    with atomic_write(path) as f:
        f.write(b"done")
    assert path.read_bytes() == b"done" and not old.exists() and fresh.exists()
    assert remove_stale_parts(path) == 1 and not fresh.exists()


# --- damaged checkpoints are named -----------------------------------------------------------------

def write_npz(path, meta_text=None, **arrays):
    """An .npz with `arrays` and, unless None, `meta_text` as its __meta__."""
    if meta_text is not None:
        arrays["__meta__"] = np.array(meta_text)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path.read_bytes()


def meta_json(**fields):
    return json.dumps({"format": FORMAT, "epoch": 2, "history": [{}, {}], "config": {}, **fields})


@pytest.mark.parametrize("text, phrase", [
    ("{not json", "is not an xpnet checkpoint (no readable metadata)"),
    ("[1, 2]", "is not an xpnet checkpoint (no readable metadata)"),
    ('"a string"', "is not an xpnet checkpoint (no readable metadata)"),
    ('{"format": "other-1", "epoch": 1, "history": []}', "unknown checkpoint format 'other-1'"),
    (meta_json(epoch="2"), "damaged checkpoint metadata: epoch '2' is not a whole number >= 0"),
    (meta_json(epoch=-1), "epoch -1 is not a whole number >= 0"),
    (meta_json(epoch=1.5), "epoch 1.5 is not a whole number >= 0"),
    (meta_json(epoch=True), "epoch True is not a whole number >= 0"),
    (meta_json(epoch=None), "epoch None is not a whole number >= 0"),
    (meta_json(history={"1": {}}), "damaged checkpoint metadata: history is not a list of objects"),
    (meta_json(history=[1, 2]), "history is not a list of objects"),
    (meta_json(history=None), "history is not a list of objects"),
    (meta_json(config=[1]), "damaged checkpoint metadata: config is not an object"),
    (meta_json(config="x"), "config is not an object"),
    (json.dumps({"format": FORMAT, "history": [], "config": {}}), "damaged checkpoint metadata: no 'epoch'"),
    (json.dumps({"format": FORMAT, "epoch": 0, "config": {}}), "damaged checkpoint metadata: no 'history'"),
    (None, "is not an xpnet checkpoint (no readable metadata)"),
])
def test_malformed_metadata_is_named(tmp_path, text, phrase):
    path = tmp_path / "run.npz"
    before = write_npz(path, text, w=np.zeros(3))
    numpy = get_backend("numpy")
    for config in (None, {}):  # {}: the config saved, when that is well-formed
        with pytest.raises(DataError, match=re.escape(phrase)) as info:
            load_checkpoint(path, TEMPLATE, numpy, config)
        assert str(path) in str(info.value)
    refused(DataError, phrase, path, resume=True)
    ours = "not an xpnet checkpoint" not in phrase and "unknown" not in phrase
    if ours:  # an xpnet checkpoint, damaged: kept unless overwritten
        refused(DataError, f"{path} already holds a checkpoint", path)
        with claim_checkpoint(path, overwrite=True):
            pass
    else:
        refused(DataError, f"{path} is not an xpnet checkpoint; refusing to replace it", path, overwrite=True)
    assert path.read_bytes() == before


def test_a_meta_that_is_not_one_text_is_named(tmp_path):
    path = tmp_path / "run.npz"
    np.savez(path, w=np.zeros(3), __meta__=np.array([meta_json(), meta_json()]))
    with pytest.raises(DataError, match="no readable metadata"):
        load_checkpoint(path, TEMPLATE, get_backend("numpy"))


@pytest.mark.parametrize("kind", ["random", "empty", "npy", "objects", "truncated"])
def test_files_that_are_no_npz_are_named_without_numpy_hints(tmp_path, kind):
    path = tmp_path / "run.npz"
    if kind == "random":
        path.write_bytes(random.Random(0).randbytes(4096))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    elif kind == "objects":
        with open(path, "wb") as f:
            np.savez(f, w=np.array([object()], dtype=object), __meta__=np.array(meta_json()))
    else:
        saved(path)
        path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError) as info:
        load_checkpoint(path, TEMPLATE, get_backend("numpy"))
    message = str(info.value)
    assert message.startswith(f"{path} is not a readable xpnet checkpoint") or \
        message.startswith(f"{path} is not an xpnet checkpoint"), message
    assert "allow_pickle" not in message and "pickle" not in message
    if kind in ("random", "empty", "npy"):
        assert message == f"{path} is not a readable xpnet checkpoint (not a .npz archive)"


# --- kill -9 during saves ---------------------------------------------------------------------------

SAVER = """
import sys
import numpy as np
from xpnet.nn.checkpoint import save_checkpoint
path, epoch = sys.argv[1], int(sys.argv[2])
while True:
    epoch += 1
    save_checkpoint(path, {"w": np.full(100_000, float(epoch))}, {"epoch": epoch, "history": []})
    print(epoch, flush=True)
"""


def test_kill_9_during_saves_never_leaves_a_broken_checkpoint(tmp_path):
    path, numpy = tmp_path / "run.npz", get_backend("numpy")
    template, epoch, rng = {"w": np.zeros(100_000)}, 0, random.Random(1)
    for _ in range(10):
        saver = spawn(SAVER, path, epoch)
        try:
            first = int(saver.stdout.readline())  # one save is complete
            time.sleep(rng.uniform(0.0, 0.05))
        finally:
            saver.kill()
            saver.wait()
        tree, meta = load_checkpoint(path, template, numpy)
        assert meta["epoch"] >= first > epoch
        np.testing.assert_array_equal(tree["w"], float(meta["epoch"]))  # one whole save
        epoch = meta["epoch"]
    assert list(tmp_path.glob(".run.npz.*.part"))  # some kills did land mid-save
    with claim_checkpoint(path, resume=True):
        assert sorted(p.name for p in tmp_path.iterdir()) == ["run.npz", "run.npz.lock"]
    assert load_checkpoint(path, template, numpy)[1]["epoch"] == epoch
