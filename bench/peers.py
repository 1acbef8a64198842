"""Benchmark workers: every implementation (xpnet on a backend, the PyTorch peer, or the same
training written by hand: bench/impls.py) trains in a process of its own, so one library's
threads never stall another's, and the benchmarks can interleave their rounds.

The pytest process talks to a worker with one JSON line per command on its stdin/stdout:
    {"cmd": "setup", "model": "A", ...} -> {"run": id, "compile_seconds": s, "flops": n, ...}
                                           (after an untimed warm-up epoch, or its first
                                           "warmup_batches" where the model names them)
    {"cmd": "epoch", "run": id}         -> {"seconds": s, "loss": l}   (device synced)
    {"cmd": "matmul"}                   -> {"gflops": g, "library": name}
Run as a script (`python bench/peers.py IMPL`) it is the worker.

`IMPL@baseline` (xpnet-numpy@baseline, ...) is IMPL on the xpnet of the older checkout that
$XPNET_BENCH_BASELINE names: its worker imports that xpnet (PYTHONPATH), so one run compares
before with after. The worker code (bench/runs.py) therefore calls only what both versions provide.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

from conv_runs import BookRun, conv_epoch_flops
from impls import BASELINE_VAR, MODELS
from runs import PlainRun, TorchRun, XpnetRun, check_baseline_import, load_data, matmul_gflops

ROOT = Path(__file__).resolve().parent.parent


def epoch_flops(sizes, n_batches, batch_size):
    """FLOPs an epoch cannot avoid: per Affine layer the forward matmul, the weight gradient and
    (except for the first layer, whose input needs none) the input gradient, 2·B·in·out each."""
    total = 0
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        total += (2 if i == 0 else 3) * 2 * batch_size * n_in * n_out
    return total * n_batches


class Worker:
    """A worker process for one implementation; `call(cmd, **args)` returns its JSON reply."""

    def __init__(self, impl, gpu=False):
        name, _, version = impl.partition("@")
        env = dict(os.environ, PYTHONPATH=os.environ[BASELINE_VAR] if version else str(ROOT))
        if name.endswith("-jax"):
            env["JAX_PLATFORMS"] = "cuda" if gpu else "cpu"
        if name == "xpnet-torch":
            env["XPNET_DEVICE"] = "cuda" if gpu else "cpu"
        if name == "torch-cpu" or (name == "xpnet-torch" and not gpu):
            env["CUDA_VISIBLE_DEVICES"] = ""
        self.impl = impl
        self.process = subprocess.Popen([sys.executable, __file__, impl], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)

    def call(self, cmd, **args):
        self.process.stdin.write(json.dumps({"cmd": cmd, **args}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.impl} exited (status {self.process.wait()})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"worker {self.impl}: {reply['error']}")
        return reply

    def close(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=30)


def available(impl):
    """(ok, reason) for running `impl` on this machine."""
    impl, _, version = impl.partition("@")
    if version:
        folder = os.environ.get(BASELINE_VAR)
        if not folder or not (Path(folder) / "xpnet" / "__init__.py").is_file():
            return False, f"{BASELINE_VAR}={folder!r} is not a checkout of xpnet"
    try:
        if impl.startswith(("xpnet-", "plain-", "matmuls-", "book-")):
            import xpnet

            ok, reason = xpnet.available_backends()[impl.split("-", 1)[1]]
            return ok, reason
        import torch

        if impl == "torch-cuda" and not torch.cuda.is_available():
            return False, "torch has no usable CUDA device"
        return True, f"torch {torch.__version__}"
    except ImportError as exc:
        return False, f"{exc.name} is not installed (pip install -e '.[bench]')"


def serve(impl):
    """The worker loop: read commands, answer each with one JSON line."""
    runs, data = {}, {}
    name, _, version = impl.partition("@")
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["cmd"] == "setup":
                spec = dict(MODELS[request["model"]])
                if request.get("hidden"):
                    spec["hidden"] = [request["hidden"]] * len(spec["hidden"])
                if request["dataset"] not in data:  # read once, whatever part each run takes
                    data[request["dataset"]] = load_data(request["dataset"], None)
                x, t = (a[:request["limit"]] for a in data[request["dataset"]])
                if "conv" in spec:  # images (N, C, H, W)
                    x = x.reshape(-1, *spec["input_dim"])
                sizes = [x.shape[1], *spec["hidden"], 10]
                batch_size = request["batch_size"]
                if name == "book-numpy":
                    run = BookRun(spec, batch_size, x, t)
                    device = run.device
                elif name.startswith("torch"):
                    run = TorchRun("cuda" if name == "torch-cuda" else "cpu", spec, sizes, batch_size, x, t)
                    device = run.device_name
                elif name.startswith(("plain-", "matmuls-")):
                    run = PlainRun(name.split("-", 1)[1], spec, sizes, batch_size, x, t,
                                   matmuls_only=name.startswith("matmuls-"))
                    device = run.device
                else:
                    if version:
                        check_baseline_import()
                    run = XpnetRun(name.split("-", 1)[1], spec, sizes, batch_size, x, t)
                    device = run.device
                warmup = spec.get("warmup_batches")  # first-call costs are not part of any round
                run.epoch(**({"limit": warmup} if warmup else {}))
                runs[len(runs)] = run
                n_batches = len(x) // batch_size
                flops = (conv_epoch_flops(spec, n_batches, batch_size) if "conv" in spec
                         else epoch_flops(sizes, n_batches, batch_size))
                reply = {"run": len(runs) - 1, "compile_seconds": run.compile_seconds, "device": device,
                         "batches": n_batches, "flops": flops}
            elif request["cmd"] == "epoch":
                seconds, loss = runs[request["run"]].epoch()
                reply = {"seconds": seconds, "loss": loss}
            elif request["cmd"] == "matmul":
                reply = matmul_gflops(impl)
            else:
                reply = {"error": f"unknown command {request['cmd']!r}"}
        except Exception as exc:  # report to the caller instead of dying silently
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    serve(sys.argv[1])
