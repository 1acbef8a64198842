"""What every experiment shares: its result, and saving the numbers (JSON) and the plot (PNG)."""
import json
import time
from pathlib import Path
from typing import NamedTuple

from xpnet.errors import XpnetError
from xpnet.files import atomic_write


class ExperimentResult(NamedTuple):
    name: str
    summary: str      # a few lines for the terminal: what was found
    numbers: dict     # everything behind the plot, JSON-able
    png: Path
    json: Path
    seconds: float    # wall time of the whole experiment


def save_result(name, summary, numbers, figure, out_dir, started):
    """Write `<out_dir>/<name>.json` and `<out_dir>/<name>.png` (a matplotlib Figure), each
    atomically, and return the ExperimentResult; `started` is the time.perf_counter() at start."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        png, json_path = out / f"{name}.png", out / f"{name}.json"
        seconds = time.perf_counter() - started
        with atomic_write(json_path, "w") as f:
            json.dump({"experiment": name, "summary": summary, "seconds": seconds, **numbers}, f,
                      indent=1)
        FigureCanvasAgg(figure)
        with atomic_write(png, "wb") as f:
            figure.savefig(f, format="png", dpi=110)
    except OSError as exc:
        raise XpnetError(f"cannot write the results of {name} to {out}: {exc.strerror or exc}") from None
    return ExperimentResult(name, summary, numbers, png, json_path, seconds)
