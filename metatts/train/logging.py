"""Training records: one JSON object per line in ``log.jsonl``, and a PNG plot of the losses."""

from __future__ import annotations

import json
import math
from pathlib import Path


class JsonlLog:
    """Append-only JSONL of records like {"split": "train", "step": 50, "total": 3.2, ...}.

    On resume, records past the resumed step (written after the checkpoint by a run that then
    stopped) are dropped, so the log reads as one uninterrupted run.
    """

    def __init__(self, path: str | Path, resume_step: int | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        elif self.path.exists():
            kept = [r for r in read_log(self.path) if r.get("step", 0) <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))

    def write(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")


def read_log(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_losses(records: list[dict], out: str | Path) -> Path:
    """One panel per loss term, train and validation curves against the step. Writes a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    skip = {"split", "step", "epoch", "lr", "seconds", "steps_per_second", "binarization_weight",
            "grad_norm"}
    names = sorted({k for r in records for k in r if k not in skip},
                   key=lambda k: (k != "total", k))
    cols = min(3, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig = Figure(figsize=(4.5 * cols, 3 * rows), tight_layout=True)
    FigureCanvasAgg(fig)
    for i, name in enumerate(names):
        ax = fig.add_subplot(rows, cols, i + 1)
        for split, style in (("train", "-"), ("val", "o-"), ("zero_shot", "s--")):
            points = [(r["step"], r[name]) for r in records
                      if r.get("split") == split and name in r and math.isfinite(r[name])]
            if points:
                ax.plot(*zip(*points), style, label=split, markersize=3)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.legend()
    out = Path(out)
    fig.savefig(out, dpi=80)
    return out
