"""Shared helpers for the claim experiments: results folders, run loops that keep one process, mean ± std
aggregation, threshold crossing, CSV and compact PNG writers.

Each experiment's ``main`` creates one :class:`prior_rl.run.ModelStore` and passes it to every run it starts, so
SmolLM2 and the encoder load once per experiment (there is no process-global store).

Every experiment module writes long-format CSVs (one row per method × seed × evaluation point) and draws its
figures from those CSVs, so a figure can always be re-checked against the numbers next to it.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from prior_rl.io.logs import save_figure

RESULTS_ROOT = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parents[1]
# the paper's own offline Tomato-Lettuce dataset (not shipped): $PRIOR_RL_REFERENCE_DIR, else next to the
# repository in ../shared/reference_offline (where tests/shared_data.py looks too)
REFERENCE_ENV = "PRIOR_RL_REFERENCE_DIR"
REFERENCE_FILE = "tomato_lettuce_salad_reference.jsonl.gz"


def reference_dir() -> Path:
    """The paper's offline dataset folder: ``$PRIOR_RL_REFERENCE_DIR``, else ``<repo>/../shared/reference_offline``."""
    raw = os.environ.get(REFERENCE_ENV, "").strip()
    return Path(raw).expanduser() if raw else REPO_ROOT.parent / "shared" / "reference_offline"


REFERENCE_DATASET = reference_dir() / REFERENCE_FILE


def parser(description: str, name: str) -> argparse.ArgumentParser:
    """The options every experiment shares: ``--quick`` (tiny budget, for tests), ``--out``, ``--seeds``."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny budget (seconds): checks the pipeline, not the claim")
    p.add_argument("--out", default=None, help=f"results folder (default experiments/results/{name})")
    p.add_argument("--seeds", type=int, default=None, help="number of seeds (default: 1 quick, 3 full)")
    return p


def results_dir(name: str, out: Optional[str]) -> Path:
    path = Path(out) if out else RESULTS_ROOT / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def quiet_train_kwargs() -> dict[str, Any]:
    """No progress bar, TensorBoard or per-run plot: the experiment writes its own CSV and figures."""
    return dict(progress=False, tensorboard=False, plot=False, run_dir=None)


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], fields: Optional[Sequence[str]] = None) -> Path:
    """Rows to CSV (atomically). The header is ``fields`` or the union of keys in first-seen order."""
    if fields is None:
        fields = list(dict.fromkeys(k for r in rows for k in r))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".csv.tmp")
    with os.fdopen(fd, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(fields), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r.get(k, "")) for k in fields})
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
    os.replace(tmp, path)
    return path


def _fmt(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    return v


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def curve_rows(history: Iterable[Mapping[str, Any]], **tags: Any) -> list[dict[str, Any]]:
    """The evaluation rows of a run history (the ones with ``eval_success``), tagged (method, env, seed, ...)."""
    keep = (
        "env_steps",
        "updates",
        "eval_success",
        "eval_return",
        "eval_length",
        "llm_calls",
        "cache_hits",
        "best_eval_success",
        "coverage",
        "dataset_size",
    )
    out = []
    for row in history:
        if "eval_success" not in row:
            continue
        out.append({**tags, **{k: row[k] for k in keep if k in row}})
    return out


def mean_std(rows: Sequence[Mapping[str, Any]], group: Sequence[str], x: str, y: str) -> dict[tuple, list[tuple]]:
    """``{group values: [(x, mean y, std y, n), ...]}`` sorted by x; std over seeds (population std)."""
    acc: dict[tuple, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.get(y) in ("", None):
            continue
        acc[tuple(r[g] for g in group)][float(r[x])].append(float(r[y]))
    return {
        key: [(xv, float(np.mean(v)), float(np.std(v)), len(v)) for xv, v in sorted(pts.items())]
        for key, pts in acc.items()
    }


def first_crossing(points: Sequence[tuple], threshold: float) -> Optional[float]:
    """The first x whose mean reaches ``threshold`` in ``[(x, mean, ...), ...]``; None if never."""
    for p in points:
        if p[1] >= threshold - 1e-9:
            return p[0]
    return None


def describe_crossing(x: Optional[float], budget: float, unit: str = "env samples") -> str:
    return f"{int(x)}" if x is not None else f"not reached within {int(budget)} {unit}"


def plot_panels(
    panels: Sequence[Mapping[str, Any]], path: Path, title: str = "", width: float = 4.2, height: float = 3.3
) -> Path:
    """One figure of side-by-side panels. A panel: ``{"curves": {label: [(x, mean, std), ...]}, "xlabel",
    "ylabel", "title"?, "logx"?, "hlines"?: {label: y}, "styles"?: {label: matplotlib line kwargs}}``. Mean lines
    with ±std bands, a legend per panel; success axes fixed to [0, 1]. Small PNG (90 dpi) so committed figures
    stay well under 100 KB."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), height), dpi=90, squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for label, pts in panel["curves"].items():
            if not pts:
                continue
            xs = [p[0] for p in pts]
            ms = np.array([p[1] for p in pts])
            ss = np.array([p[2] for p in pts])
            style = {"marker": "o" if len(xs) <= 8 else None, "ms": 3, **(panel.get("styles") or {}).get(label, {})}
            (line,) = ax.plot(xs, ms, label=label, **style)
            ax.fill_between(xs, ms - ss, ms + ss, alpha=0.18, color=line.get_color())
        for label, y in (panel.get("hlines") or {}).items():
            ax.axhline(y, ls="--", lw=1, color="gray", label=label)
        ax.set_xlabel(panel["xlabel"])
        ax.set_ylabel(panel["ylabel"])
        if panel.get("logx"):
            # ticks at the measured x values, written plainly (no 3×10² minor labels)
            ax.set_xscale("log")
            ticks = sorted({p[0] for pts in panel["curves"].values() for p in pts})
            ax.set_xticks(ticks)
            ax.set_xticklabels([f"{int(t)}" for t in ticks], fontsize=7)
            ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        if panel["ylabel"].startswith("success") or panel["ylabel"].startswith("p("):
            ax.set_ylim(-0.05, 1.05)
        if panel.get("title"):
            ax.set_title(panel["title"], fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_bars(
    groups: Mapping[str, Mapping[str, tuple[float, float]]],
    path: Path,
    ylabel: str,
    title: str = "",
    width: float = 7.0,
    height: float = 3.4,
) -> Path:
    """Grouped bars with error bars: ``{group: {series: (mean, std)}}``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=90)
    names = list(groups)
    series = list(dict.fromkeys(s for g in groups.values() for s in g))
    w = 0.8 / max(len(series), 1)
    for j, s in enumerate(series):
        xs = [i + (j - (len(series) - 1) / 2) * w for i in range(len(names))]
        ms = [groups[g].get(s, (math.nan, 0))[0] for g in names]
        es = [groups[g].get(s, (math.nan, 0))[1] for g in names]
        ax.bar(xs, ms, w, yerr=es, capsize=2, label=s)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, fontsize=8)
    ax.set_ylabel(ylabel)
    if ylabel.startswith("success") or ylabel.startswith("p("):
        ax.set_ylim(0, 1.05)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def markdown_table(rows: Sequence[Mapping[str, Any]], fields: Sequence[str]) -> str:
    """A GitHub table of ``fields`` (floats to 3 decimals), printed by each module and pasted into RESULTS.md."""

    def cell(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return f"{float(v):.3f}"
        return str(v)

    lines = ["| " + " | ".join(fields) + " |", "|" + "---|" * len(fields)]
    lines += ["| " + " | ".join(cell(r.get(f, "")) for f in fields) + " |" for r in rows]
    return "\n".join(lines)


class Stopwatch:
    """Wall time of the whole experiment (models load once per process, so it is included once)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run_each(items: Sequence[Any], fn: Callable[[Any], Any], describe: Callable[[Any], str]) -> list[Any]:
    """Run ``fn`` on each item in this process, logging progress and per-item wall time."""
    out = []
    for i, item in enumerate(items, 1):
        t0 = time.perf_counter()
        out.append(fn(item))
        log(f"{i}/{len(items)} {describe(item)} done in {time.perf_counter() - t0:.1f}s")
    return out


def read_curves(folder: Path) -> tuple[np.ndarray, dict[str, dict[str, np.ndarray]]]:
    """(steps [E], {setting: {metric: [S, E]}}) from a unit's curves.csv."""
    with open(folder / "curves.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    steps = np.array(sorted({int(r["env_steps"]) for r in rows}))
    out: dict[str, dict[str, np.ndarray]] = {}
    for setting in dict.fromkeys(r["setting"] for r in rows):
        mine = [r for r in rows if r["setting"] == setting]
        seeds = sorted({int(r["seed"]) for r in mine})
        metrics = [k for k in mine[0] if k.startswith("eval_success_")]
        grid = {m: np.zeros((len(seeds), len(steps))) for m in metrics}
        for r in mine:
            for m in metrics:
                grid[m][seeds.index(int(r["seed"])), list(steps).index(int(r["env_steps"]))] = float(r[m])
        out[setting] = grid
    return steps, out


def save_small(fig, path: Path) -> None:
    """Save a figure small (90 dpi, tight): the results folders are committed."""
    fig.set_dpi(90)
    fig.tight_layout()
    save_figure(fig, path)


def format_ci(r: dict[str, Any], key: str) -> str:
    """``value [lo, hi]`` of a summary row's ``key`` and its interval."""
    return f"{float(r[key]):.2f} [{float(r[key + '_lo']):.2f}, {float(r[key + '_hi']):.2f}]"


def format_reach(r: dict[str, Any]) -> str:
    """The median samples to 0.9 success and the fraction of seeds that reach it."""
    med = r.get("to_0.9_median")
    frac = f"{float(r['to_0.9_reached']):.2f}"
    return f"{float(med):,.0f} ({frac} of seeds)" if med not in (None, "") else f"> budget ({frac} of seeds)"


def verdict(a: dict[str, Any], b: dict[str, Any], key: str) -> str:
    """'A > B' / 'A < B' when the 95% intervals of ``key`` do not overlap, else 'not resolved'."""
    if float(a[f"{key}_lo"]) > float(b[f"{key}_hi"]):
        return "A > B"
    if float(a[f"{key}_hi"]) < float(b[f"{key}_lo"]):
        return "A < B"
    return "not resolved"


def unit_study(doc: str, name: str, argv: Optional[list[str]], default_seeds: int) -> tuple[argparse.Namespace, Path]:
    """The command line of a study of resumable units (``--quick``, ``--out``, ``--seeds``, ``--only``), with JAX's
    compilation cache on: (arguments with ``seeds`` filled in, results folder)."""
    from prior_rl.cli import enable_compilation_cache

    enable_compilation_cache()
    p = parser(doc, name)
    p.add_argument("--only", nargs="*", default=None, help="run only these units (names as in the docstring)")
    args = p.parse_args(argv)
    args.seeds = args.seeds or (2 if args.quick else default_seeds)
    return args, results_dir(name, args.out)


def run_units(units: Sequence[Any], only: Optional[Sequence[str]], run: Callable[[Any, Path], Any], out: Path):
    """Run ``run(unit, out / unit.name)`` for each unit (those named in ``only``, when given), then return the
    summaries of every finished unit (a ``summary.json`` in its folder), in ``units`` order: the report covers the
    whole study, not only this call's part."""
    import json

    for u in units:
        if only is None or u.name in only:
            run(u, out / u.name)
    done = [u for u in units if (out / u.name / "summary.json").exists()]
    return {u.name: json.loads((out / u.name / "summary.json").read_text()) for u in done}
