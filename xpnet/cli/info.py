"""`xpnet info`: the default backend and device, and per backend whether it is usable (or why
not), its devices and versions."""
import os
import platform

import xpnet
from xpnet.backends import DEFAULT_BACKEND, DEVICE_VAR, ENV_VAR, available_backends, get_backend
from xpnet.errors import XpnetError


def add_parser(commands):
    info = commands.add_parser("info", help="list backends, devices and versions")
    info.set_defaults(run=run)


def run(args):
    print(f"xpnet {xpnet.__version__} on Python {platform.python_version()} ({platform.machine()})")
    default = os.environ.get(ENV_VAR) or DEFAULT_BACKEND
    print(f"default backend: {default} (set {ENV_VAR} or pass --backend)")
    device = os.environ.get(DEVICE_VAR)
    how = f"{DEVICE_VAR}={device}; --device overrides it" if device else \
        f"the library's default; set {DEVICE_VAR} or pass --device"
    try:
        print(f"default device: {get_backend().device_name} ({how})")
    except XpnetError as exc:
        print(f"default device: none usable ({exc})")
    for name, (ok, reason) in available_backends().items():
        print(f"\n{name}: {'available' if ok else 'unavailable'}: {reason}")
        if not ok:
            continue
        try:
            backend = get_backend(name)
        except Exception as exc:  # noqa: BLE001 -- a diagnostic: report and go on to the next
            print(f"  not usable{f' on {DEVICE_VAR}={device}' if device else ''}: {exc}")
            continue
        print(f"  default device: {backend.device_name}")
        print(f"  devices: {', '.join(backend.devices())}")
        print("  versions: " + ", ".join(f"{k} {v}" for k, v in backend.versions().items()))
    return 0
