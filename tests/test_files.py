"""Files written whole or not at all (xpnet/files.py): atomic_write and what is written through
it. (Locks, stale parts and full disks: test_faults_checkpoint.py.)"""
import os

import numpy as np
import pytest

from xpnet.files import atomic_write
from xpnet.nn.checkpoint import save_checkpoint


def usual_mode():
    """The mode a newly created file gets here: 0o666 less the umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def test_saved_files_get_the_usual_permissions(tmp_path):
    """Checkpoints are written through a temporary file; the result is not left private (0600)."""
    path = tmp_path / "run.npz"
    save_checkpoint(path, {"w": np.zeros(2)}, {})
    assert path.stat().st_mode & 0o777 == usual_mode()


@pytest.mark.parametrize("mode, content", [("w", "text ✓\n"), ("wb", b"\x00bytes")])
def test_atomic_write_replaces_the_file_whole(tmp_path, mode, content):
    path = tmp_path / "out"
    path.write_bytes(b"old")
    with atomic_write(path, mode) as f:
        f.write(content)
        assert path.read_bytes() == b"old"  # nothing shows before the write is complete
    assert path.read_bytes() == (content.encode() if mode == "w" else content)
    assert path.stat().st_mode & 0o777 == usual_mode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary file left


def test_a_failed_atomic_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "out"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="midway"):
        with atomic_write(path) as f:
            f.write(b"half of the new")
            raise RuntimeError("midway")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
