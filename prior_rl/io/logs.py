"""Run logs: a CSV of metrics, TensorBoard events, and the success-vs-env-samples plot.

Every row is keyed by ``env_steps`` (environment samples so far), so runs with different algorithms, seeds or
batch sizes line up on one axis.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


class RunLogger:
    """Appends metric rows to ``<run_dir>/metrics.csv`` and TensorBoard events under ``<run_dir>/tb``.

    Every metric any row logs gets a column: a row with a new key widens the header (the file is rewritten with
    the new columns, atomically), and rows without a key leave its cell empty, so the file stays rectangular.
    """

    def __init__(self, run_dir: str | os.PathLike, tensorboard: bool = True, resume: bool = False):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.run_dir / "metrics.csv"
        self._fields: list[str] | None = None
        if resume and self.csv_path.exists():
            with open(self.csv_path, newline="") as f:
                self._fields = next(csv.reader(f), None)
        elif self.csv_path.exists():
            self.csv_path.unlink()
        self._tb = None
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir / "tb"))
            except ImportError:  # TensorBoard logging is optional
                self._tb = None

    def log(self, row: Mapping[str, Any]) -> None:
        row = {k: (float(v) if hasattr(v, "item") else v) for k, v in row.items()}
        if self._fields is None:
            self._fields = list(row)
            with open(self.csv_path, "w", newline="") as f:
                csv.writer(f).writerow(self._fields)
        new = [k for k in row if k not in self._fields]
        if new:  # widen the header: rewrite the rows so far under it
            self._rewrite(read_csv(self.csv_path), self._fields + new)
        with open(self.csv_path, "a", newline="") as f:
            csv.writer(f).writerow([row.get(k, "") for k in self._fields])
        if self._tb is not None and "env_steps" in row:
            step = int(row["env_steps"])
            for k, v in row.items():
                if k != "env_steps" and isinstance(v, (int, float)):
                    self._tb.add_scalar(k, v, step)

    def keep_rows(self, n: int) -> None:
        """Keep the first ``n`` rows and drop the rest (on resume: rows logged after the checkpoint are redone)."""
        rows = read_csv(self.csv_path) if self.csv_path.exists() else []
        if self._fields is None:
            return
        self._rewrite(rows[:n], self._fields)

    def _rewrite(self, rows: Sequence[Mapping[str, Any]], fields: list[str]) -> None:
        """Replace the CSV by ``rows`` under the header ``fields`` (temp file, then rename)."""
        fd, tmp = tempfile.mkstemp(dir=self.run_dir, suffix=".tmp")
        with os.fdopen(fd, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(fields)
            for r in rows:
                w.writerow([r.get(k, "") for k in fields])
        os.replace(tmp, self.csv_path)
        self._fields = list(fields)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_csv(path: str | os.PathLike) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot_curves(
    curves: Mapping[str, Sequence[tuple[float, float, float]]],
    path: str | os.PathLike,
    ylabel: str = "success rate",
    title: str = "",
    xlabel: str = "environment samples",
) -> Path:
    """One figure: a line per label, ``(x, mean, std)`` points, with a ±std band. Written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=100)
    for label, points in curves.items():
        if not points:
            continue
        xs, means, stds = zip(*points)
        ax.plot(xs, means, label=label)
        ax.fill_between(xs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)], alpha=0.2)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylabel.startswith("success"):
        ax.set_ylim(-0.05, 1.05)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def save_figure(fig: Any, path: str | os.PathLike) -> Path:
    """Save a matplotlib figure as PNG atomically (temp file, then rename) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".png")
    os.close(fd)
    try:
        fig.savefig(tmp)
    finally:
        plt.close(fig)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; a plot is meant to be shared
    os.replace(tmp, path)
    return path
