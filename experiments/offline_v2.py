"""Experiments v2, offline Overcooked, on the compiled offline loop (``prior_rl.run.jitted_offline``): CQL-Prior vs
CQL by dataset size with many seeds, the paper's "> 90% fewer samples" ratio, and the controls.

    python -m experiments.offline_v2 [--quick] [--seeds 16] [--only UNIT ...] [--updates 3000]

Data (Tomato-Lettuce Salad):

* ``gen``: seed s trains on its own dataset from :func:`prior_rl.io.datasets.generate` (expert + ε-random episodes,
  75% successful, like the paper's "bala75" file; generator seed s), sub-sampled to each size with
  :func:`prior_rl.io.datasets.subsample` (nested: a smaller set is a subset of a larger one for the same seed);
* ``ref``: the paper's own 4,329-transition file (``$PRIOR_RL_REFERENCE_DIR``, else ``../shared/reference_offline``),
  seed s using the nested subset of seed s (all seeds share the whole file at 4,329); skipped when absent.

Units (each one compiled program over all seeds, ``jit(vmap(train))``; a unit whose ``summary.json`` exists is
skipped on rerun, so a stopped run resumes where it was): ``<data>-<size>-<algo>`` for the size grid, and the
controls ``...-onehot`` (oracle one-hot (prompt, action) features), ``...-mean`` (TD term averaged instead of summed)
and ``...-beta50`` (β = 50 against the paper's 5) on the paper's whole file, plus one-hot over the generated
sizes. Every evaluation runs greedy, ε-greedy (0.05) and Boltzmann episodes (the compiled loop's modes).

The ratio: for a success level L, N_m(L) is the smallest dataset size at which method m's IQM of the final success
reaches L; the paper's claim is 1 − N_CQL-Prior(L) / N_CQL(L) > 0.9. Its 95% interval resamples the seeds of every
(method, size) cell; "undefined" counts the resamples in which CQL never reaches L at any size.

Writes ``summary.csv``, ``ratio.csv``, per-unit ``curves.csv``/``summary.json``, ``report.md``,
``success_vs_size.png`` and ``controls.png`` into ``experiments/results/offline_v2``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np

from experiments import common
from experiments.common import log, parser, results_dir, write_csv
from prior_rl.io import datasets
from prior_rl.io.logs import save_figure
from prior_rl.run import jitted, jitted_offline, stats

TL = "overcooked-tomato-lettuce-salad"
GEN_SIZES = (1000, 2500, 10000, 40000)
REF_SIZES = (250, 1000, 4329)
ONEHOT_GEN_SIZES = (1000, 10000, 40000)
LEVELS = (0.3, 0.5, 0.7, 0.9)
METHODS = ("cql-prior", "cql")


class Unit(NamedTuple):
    name: str
    data: str  # 'gen' or 'ref'
    size: int
    config: jitted_offline.OfflineJitConfig
    control: str  # '' for the size grid, else the control's label


def units(quick: bool, updates: Optional[int] = None, reference: bool = True) -> list[Unit]:
    """The runs of the study; ``quick``: two tiny Tomato Salad units that exercise every code path."""
    if quick:
        base = jitted_offline.OfflineJitConfig(
            env="overcooked-tomato-salad", updates=40, eval_every=20, updates_per_dispatch=20, eval_episodes=2
        )
        return [
            Unit("gen-200-cql-prior", "gen", 200, base, ""),
            Unit("gen-200-cql-onehot", "gen", 200, dataclasses.replace(base, algo="cql", features="onehot"), "onehot"),
        ]
    u = updates or 3000
    base = jitted_offline.OfflineJitConfig(env=TL, updates=u, eval_every=u // 6, updates_per_dispatch=u // 30)
    out = []
    grids = [("gen", GEN_SIZES)] + ([("ref", REF_SIZES)] if reference else [])
    for data, sizes in grids:
        for size in sizes:
            for algo in METHODS:
                out.append(Unit(f"{data}-{size}-{algo}", data, size, dataclasses.replace(base, algo=algo), ""))
    for size in ONEHOT_GEN_SIZES:
        for algo in METHODS:
            c = dataclasses.replace(base, algo=algo, features="onehot")
            out.append(Unit(f"gen-{size}-{algo}-onehot", "gen", size, c, "onehot"))
    if reference:
        controls = {"onehot": {"features": "onehot"}, "mean": {"td_reduction": "mean"}}
        controls["beta50"] = {"cql_beta": 50.0}
        for label, change in controls.items():
            for algo in METHODS:
                c = dataclasses.replace(base, algo=algo, **change)
                out.append(Unit(f"ref-4329-{algo}-{label}", "ref", 4329, c, label))
    return out


def load_datasets(env: str, source: str, seeds: int, largest: int) -> list[jitted_offline.OfflineData]:
    """Per seed, the whole dataset as :class:`OfflineData`: its own generated one (``largest`` transitions,
    generator seed = run seed), or the paper's file (shared)."""
    if source == "ref":
        return [jitted_offline.dataset_arrays(env, datasets.load_transitions(common.REFERENCE_DATASET))] * seeds
    return [jitted_offline.dataset_arrays(env, datasets.generate(env, largest, seed=s)) for s in range(seeds)]


def stacked(per_seed: list[jitted_offline.OfflineData], size: int) -> jitted_offline.OfflineData:
    """[S, size]: seed s's nested subset (:func:`prior_rl.io.datasets.subsample`, seed s) of its dataset."""
    subsets = []
    for s, full in enumerate(per_seed):
        n = len(full.pid)
        idx = np.arange(n) if size >= n else datasets.subsample_indices(n, size, seed=s)
        subsets.append([np.asarray(x)[idx] for x in full])
    return jitted_offline.OfflineData(*(np.stack(x) for x in zip(*subsets)))


def run_unit(unit: Unit, data: jitted_offline.OfflineData, seeds: int, folder: Path) -> dict[str, Any]:
    """Run (or, when its summary exists, reload) one unit; returns its summary."""
    done = folder / "summary.json"
    if done.exists():
        log(f"{unit.name}: done before, skipped")
        return json.loads(done.read_text())
    result = jitted_offline.run_offline_sweep(unit.config, data, seeds)
    summary = jitted_offline.write_offline_sweep(result, folder, unit.size)
    log(
        f"{unit.name}: {seeds} seeds in {result.table_s + result.compile_s + result.run_s:.0f}s (tables "
        f"{result.table_s:.0f}s, compile {result.compile_s:.0f}s, run {result.run_s:.0f}s)"
    )
    return summary


def summary_rows(units_done: list[Unit], summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for u in units_done:
        s = summaries[u.name]
        c = s["config"]
        wall = s["table_s"] + s["compile_s"] + s["run_s"]
        head = {"unit": u.name, "data": u.data, "size": u.size, "algo": c["algo"], "control": u.control or "-"}
        for r in s["rows"]:
            rows.append({**head, "features": c["features"], "updates": c["updates"], "wall_s": round(wall, 1), **r})
    return rows


def _finals(folder: Path, mode: str) -> np.ndarray:
    """[S] final success of ``mode`` from a unit's curves.csv."""
    rows = common.read_csv(folder / "curves.csv")
    last = max(int(r["env_steps"]) for r in rows)
    return np.array([float(r[f"eval_success_{mode}"]) for r in rows if int(r["env_steps"]) == last])


def smallest_size(finals: dict[int, np.ndarray], level: float) -> float:
    """The smallest size whose IQM of final success is ≥ ``level`` (inf if none)."""
    hits = [n for n in sorted(finals) if stats.iqm(finals[n]) >= level - 1e-9]
    return float(hits[0]) if hits else float("inf")


def ratio_rows(out: Path, grid: dict[str, dict[int, str]], mode: str = "greedy", reps: int = 1000) -> list[dict]:
    """Per level L: N(L) of each method, the paper's ratio 1 − N_prior/N_cql and its seed-bootstrap interval."""
    finals = {m: {n: _finals(out / name, mode) for n, name in grid[m].items()} for m in METHODS}
    rng = np.random.default_rng(0)
    boot = [
        {m: {n: x[rng.integers(len(x), size=len(x))] for n, x in finals[m].items()} for m in METHODS}
        for _ in range(reps)
    ]
    rows = []
    for level in LEVELS:
        n_p, n_c = smallest_size(finals["cql-prior"], level), smallest_size(finals["cql"], level)
        ratios = np.array(
            [paper_ratio(smallest_size(b["cql-prior"], level), smallest_size(b["cql"], level)) for b in boot]
        )
        defined = ratios[np.isfinite(ratios)]
        lo, hi = np.quantile(defined, [0.025, 0.975]) if len(defined) else (np.nan, np.nan)
        rows.append(
            {
                "level": level,
                "eval": mode,
                "n_cql_prior": n_p,
                "n_cql": n_c,
                "ratio": paper_ratio(n_p, n_c),
                "ratio_lo": float(lo),
                "ratio_hi": float(hi),
                "undefined_fraction": float(np.mean(~np.isfinite(ratios))),
            }
        )
    return rows


def paper_ratio(n_prior: float, n_cql: float) -> float:
    """1 − N_prior/N_cql; nan where CQL never reaches the level (the ratio is undefined)."""
    if not np.isfinite(n_cql):
        return float("nan")
    return 1.0 - n_prior / n_cql if np.isfinite(n_prior) else float("-inf")


def plot_sizes(out: Path, rows: list[dict[str, Any]], mode: str = "greedy") -> None:
    """Final-success IQM (95% CI) vs dataset size, one panel per data source, a line per method × features."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources = [d for d in ("gen", "ref") if any(r["data"] == d for r in rows)]
    fig, axes = plt.subplots(1, len(sources), figsize=(4.6 * len(sources), 3.2), squeeze=False)
    for ax, source in zip(axes[0], sources):
        for algo in METHODS:
            for control in ("-", "onehot"):
                mine = [
                    r for r in rows if (r["data"], r["algo"], r["control"], r["eval"]) == (source, algo, control, mode)
                ]
                if not mine:
                    continue
                mine.sort(key=lambda r: r["size"])
                x, y = [r["size"] for r in mine], np.array([r["final_iqm"] for r in mine])
                lo, hi = [r["final_iqm_lo"] for r in mine], [r["final_iqm_hi"] for r in mine]
                label = algo + (" (one-hot)" if control == "onehot" else "")
                ax.plot(x, y, marker="o", ms=3, lw=1.2, ls="--" if control == "onehot" else "-", label=label)
                ax.fill_between(x, lo, hi, alpha=0.15)
        ax.set_xscale("log")
        title = "generated (bala75-like)" if source == "gen" else "paper's file and its subsets"
        ax.set(title=f"{title}, {mode}", xlabel="transitions", ylabel="final success, IQM", ylim=(-0.02, 1.02))
        ax.legend(fontsize=6)
    fig.set_dpi(90)
    fig.tight_layout()
    save_figure(fig, out / "success_vs_size.png")


def plot_controls(out: Path, rows: list[dict[str, Any]]) -> None:
    """Final-success IQM (95% CI) of every unit on the paper's whole file, under each evaluation mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mine = [r for r in rows if r["data"] == "ref" and r["size"] == max(REF_SIZES)]
    if not mine:
        return
    names = list(dict.fromkeys(r["unit"] for r in mine))
    fig, ax = plt.subplots(figsize=(6.0, 0.28 * len(names) + 1.0))
    for i, mode in enumerate(jitted.EVAL_MODES):
        by = {r["unit"]: r for r in mine if r["eval"] == mode}
        y = np.arange(len(names)) + (i - 1) * 0.25
        mid = np.array([by[n]["final_iqm"] for n in names])
        err = np.array(
            [[by[n]["final_iqm"] - by[n]["final_iqm_lo"], by[n]["final_iqm_hi"] - by[n]["final_iqm"]] for n in names]
        )
        ax.barh(y, mid, 0.25, xerr=err.T, label=mode, capsize=1.5)
    ax.set_yticks(np.arange(len(names)), [n.removeprefix("ref-4329-") for n in names], fontsize=7)
    ax.set(xlabel="final success, IQM [95% CI]", xlim=(0, 1.02), title="paper's file (4,329 transitions): controls")
    ax.legend(fontsize=6)
    fig.set_dpi(90)
    fig.tight_layout()
    save_figure(fig, out / "controls.png")


def report(rows: list[dict[str, Any]], ratios: dict[str, list[dict]]) -> str:
    """Markdown: per data source the size grid under each mode, the ratio per level, and the controls."""
    lines = []
    for source, grid in (("gen", "generated"), ("ref", "paper's file")):
        mine = [r for r in rows if r["data"] == source]
        if not mine:
            continue
        lines += [f"**{grid}** ({mine[0]['seeds']} seeds, {mine[0]['updates']:,} updates)", ""]
        lines += ["| unit | eval | final success IQM [95% CI] | mean over the curve, IQM | coverage | wall s |"]
        lines += ["|---|---|---|---|---|---|"]
        for r in mine:
            lines.append(
                f"| {r['unit']} | {r['eval']} | {common.format_ci(r, 'final_iqm')} | "
                f"{common.format_ci(r, 'auc_iqm')} | "
                f"{float(r['coverage']):.2f} | {float(r['wall_s']):.0f} |"
            )
        lines.append("")
    for label, rs in ratios.items():
        lines += [f"**Ratio, {label}** (1 − N_CQL-Prior / N_CQL at the level)", ""]
        lines += ["| level | eval | N CQL-Prior | N CQL | ratio | 95% CI | resamples where CQL never reaches it |"]
        lines += ["|---|---|---|---|---|---|---|"]
        for r in rs:
            n = lambda v: f"{v:,.0f}" if np.isfinite(v) else "never"
            ci = f"[{r['ratio_lo']:.2f}, {r['ratio_hi']:.2f}]" if np.isfinite(r["ratio_lo"]) else "-"
            lines.append(
                f"| {r['level']:g} | {r['eval']} | {n(r['n_cql_prior'])} | {n(r['n_cql'])} | {r['ratio']:.2f} | "
                f"{ci} | {r['undefined_fraction']:.2f} |"
            )
        lines.append("")
    return "\n".join(lines)


def _grids(done: list[Unit]) -> dict[str, dict[str, dict[int, str]]]:
    """{label: {method: {size: unit name}}} for every (data, features) grid with both methods at ≥ 2 sizes."""
    out: dict[str, dict[str, dict[int, str]]] = {}
    for u in done:
        if u.control not in ("", "onehot"):
            continue
        label = f"{'generated' if u.data == 'gen' else 'paper' + chr(39) + 's file'}, {u.config.features} features"
        out.setdefault(label, {m: {} for m in METHODS})[u.config.algo][u.size] = u.name
    return {k: v for k, v in out.items() if all(len(v[m]) >= 2 for m in METHODS)}


def main(argv: Optional[list[str]] = None, store: Any = None) -> Path:
    del store  # the compiled loop reads its tables from the on-disk cache (built with their own models)
    from prior_rl.cli import enable_compilation_cache

    enable_compilation_cache()
    p = parser(__doc__, "offline_v2")
    p.add_argument("--only", nargs="*", default=None, help="run only these units (names as in the docstring)")
    p.add_argument("--updates", type=int, default=None, help="updates per run (default 3000; must divide by 30)")
    args = p.parse_args(argv)
    out = results_dir("offline_v2", args.out)
    seeds = args.seeds or (2 if args.quick else 16)
    has_ref = common.REFERENCE_DATASET.exists()
    if not has_ref and not args.quick:
        log(f"reference dataset not found at {common.REFERENCE_DATASET}; its units are skipped")
    todo = [u for u in units(args.quick, args.updates, has_ref) if args.only is None or u.name in args.only]
    raw: dict[str, Any] = {}
    summaries = {}
    t = time.perf_counter()
    for u in todo:
        if not (out / u.name / "summary.json").exists() and u.data not in raw:
            largest = max(x.size for x in todo if x.data == u.data)
            raw[u.data] = load_datasets(u.config.env, u.data, seeds, largest)
        data = stacked(raw[u.data], u.size) if u.data in raw else None
        summaries[u.name] = run_unit(u, data, seeds, out / u.name)
    rows = summary_rows(todo, summaries)
    write_csv(out / "summary.csv", rows)
    ratios = {label: ratio_rows(out, grid) for label, grid in _grids(todo).items()}
    write_csv(out / "ratio.csv", [{"grid": k, **r} for k, rs in ratios.items() for r in rs])
    plot_sizes(out, rows)
    plot_controls(out, rows)
    (out / "report.md").write_text(report(rows, ratios) + "\n")
    log(f"wrote {out} ({time.perf_counter() - t:.0f}s)")
    return out


if __name__ == "__main__":
    main()
