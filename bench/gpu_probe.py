"""What the GPU check's libraries see: versions, devices, JAX's default backend (printed as JSON
when run as a script), and why the GPU would not be used."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROBE_SECONDS = 45


def probe():
    """What the libraries see (printed as JSON): versions, devices, JAX's default backend."""
    found = {"python": sys.version.split()[0]}

    def look(name, fn):
        try:
            found[name] = fn()
        except Exception as exc:  # a missing or broken library is a finding, not a crash
            found[name] = {"error": f"{type(exc).__name__}: {exc}"}

    def numpy_():
        import numpy
        return {"version": numpy.__version__}

    def jax_():
        import jax
        return {"version": jax.__version__, "default_backend": jax.default_backend(),
                "devices": [str(d) for d in jax.devices()]}

    def cupy_():
        import cupy
        n = cupy.cuda.runtime.getDeviceCount()
        name = cupy.cuda.runtime.getDeviceProperties(0)["name"] if n else b""
        return {"version": cupy.__version__, "devices": n,
                "name": name.decode() if isinstance(name, bytes) else str(name)}

    def torch_():
        import torch
        cuda = torch.cuda.is_available()
        return {"version": torch.__version__, "cuda": cuda,
                "name": torch.cuda.get_device_name(0) if cuda else None,
                "tf32_matmul": torch.backends.cuda.matmul.allow_tf32}

    def xpnet_():
        import xpnet
        return {name: reason for name, (ok, reason) in xpnet.available_backends().items() if ok}

    for name, fn in (("numpy", numpy_), ("jax", jax_), ("cupy", cupy_), ("torch", torch_),
                     ("xpnet", xpnet_)):
        look(name, fn)
    print(json.dumps(found))


def gpu_problems(found):
    """Why the GPU would not be used (empty when JAX, CuPy and torch all compute on it)."""
    problems = []
    if "error" in found.get("xpnet", {}):
        problems.append(f"xpnet cannot be imported ({found['xpnet']['error']}); run "
                        "`make gpu-check-prepare` on a CPU machine and carry bench/gpu-kit")
    jax = found.get("jax", {})
    if jax.get("default_backend") != "gpu":
        problems.append(f"JAX's default backend is {jax.get('default_backend') or jax.get('error')},"
                        " not gpu (is the jax CUDA plugin installed? is JAX_PLATFORMS set?)")
    cupy = found.get("cupy", {})
    if not cupy.get("devices"):
        problems.append(f"CuPy sees no GPU ({cupy.get('error', '0 devices')})")
    torch = found.get("torch", {})
    if not torch.get("cuda"):
        problems.append(f"torch has no usable CUDA device ({torch.get('error', 'a CPU build?')})")
    return problems


def run_probe(env):
    try:
        done = subprocess.run([sys.executable, __file__], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=PROBE_SECONDS)
    except subprocess.TimeoutExpired:
        return {"xpnet": {"error": f"the probe did not finish in {PROBE_SECONDS} s"}}
    try:
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"xpnet": {"error": f"the probe failed: {done.stderr.strip()[-500:]}"}}


if __name__ == "__main__":
    probe()
