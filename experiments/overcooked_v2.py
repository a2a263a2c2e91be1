"""Experiments v2, online Overcooked, on the compiled loop (``prior_rl.run.jitted``): the paper's claim with many
seeds and the controls a reviewer asks for.

    python -m experiments.overcooked_v2 [--quick] [--seeds 32] [--only UNIT ...]

Units (each one compiled program over all seeds; a unit whose ``summary.json`` exists is skipped, so a stopped run
resumes where it was):

* ``<task>-<algo>-<features>[-smdp]``: DQN-Prior, DQN and the LLM policy on Tomato Salad (10,000 samples) and
  Tomato-Lettuce Salad (20,000), with the paper's MiniLM features (``text``), state and action encoded apart
  (``text-split``), the prior LLM's own hidden state after each candidate (``llm``, DQN-Prior only) and the
  oracle one-hot (prompt, action) features (``onehot``), and γ per macro step vs γ^τ
  (``smdp``);
* ``<task>-dqn-prior-text-transcript``: DQN-Prior with the transcript prior (``--prompt transcript-state``: three
  expert demonstrations of another task + the current state; the compiled loop needs a prompt that is a function
  of the observation, so this episode's earlier turns are not in it), placed on the prior-quality curve, and
  ``-floor``: the same prior mixed with 10% uniform (``prior_floor=0.1``: no admissible macro below 0.1/|A|);
* ``prior-quality``: DQN-Prior on Tomato-Lettuce with synthetic expert-mix priors P ∈ {0, 0.1, 0.2, 0.3, 0.5, 0.9} (one
  program, a vmap axis over priors; ``prior-quality-0.7`` adds P = 0.7), where the real SmolLM2 prior is placed by
  its measured p(expert).

Every evaluation runs greedy, ε-greedy (ε = 0.05) and Boltzmann (inverse temperature 10) episodes; the summary
gives, per unit and mode, the IQM of the final success and of the mean success over the curve with 95% stratified
bootstrap intervals, and the samples to reach 0.9. Writes ``summary.csv``, per-unit ``curves.csv``/``summary.json``,
``curves.png``, ``profiles.png`` and ``prior_quality.png`` into ``experiments/results/overcooked_v2``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np

from experiments.common import (
    format_ci,
    format_reach,
    log,
    read_curves,
    run_units,
    save_small,
    unit_study,
    verdict,
    write_csv,
)
from prior_rl.run import jitted, stats, sweep

TS, TL = "overcooked-tomato-salad", "overcooked-tomato-lettuce-salad"
SHORT = {TS: "tomato", TL: "lettuce"}
P_EXPERTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.9)


class Unit(NamedTuple):
    name: str
    config: jitted.JitConfig
    p_experts: Optional[tuple[float, ...]] = None


def units(quick: bool) -> list[Unit]:
    """The runs of the study; ``quick``: three tiny Tomato Salad units that exercise every code path."""
    if quick:
        base = jitted.JitConfig(env=TS, env_steps=200, eval_every=100, eval_episodes=2, learning_starts=40)
        return [
            Unit("tomato-dqn-prior-text", base),
            Unit("tomato-llm-text", dataclasses.replace(base, algo="llm")),
            Unit("prior-quality", dataclasses.replace(base, features="onehot", discount="smdp"), (0.1, 0.9)),
        ]
    out = []
    for env, steps in ((TS, 10_000), (TL, 20_000)):
        base = jitted.JitConfig(env=env, env_steps=steps, eval_every=500)
        for algo in ("dqn-prior", "dqn", "llm"):
            out.append(Unit(f"{SHORT[env]}-{algo}-text", dataclasses.replace(base, algo=algo)))
        for algo in ("dqn-prior", "dqn"):
            out.append(Unit(f"{SHORT[env]}-{algo}-onehot", dataclasses.replace(base, algo=algo, features="onehot")))
            out.append(Unit(f"{SHORT[env]}-{algo}-text-smdp", dataclasses.replace(base, algo=algo, discount="smdp")))
        split = dataclasses.replace(base, algo="dqn-prior", features="text-split")
        out.append(Unit(f"{SHORT[env]}-dqn-prior-text-split", split))
        hidden = dataclasses.replace(base, algo="dqn-prior", features="llm")
        out.append(Unit(f"{SHORT[env]}-dqn-prior-llm", hidden))
        transcript = dataclasses.replace(base, algo="dqn-prior", prompt="transcript-state", length_normalize=False)
        out.append(Unit(f"{SHORT[env]}-dqn-prior-text-transcript", transcript))
        floored = dataclasses.replace(transcript, prior_floor=0.1)
        out.append(Unit(f"{SHORT[env]}-dqn-prior-text-transcript-floor", floored))
        out.append(Unit(f"{SHORT[env]}-llm-text-transcript", dataclasses.replace(transcript, algo="llm")))
    out.append(Unit("prior-quality", jitted.JitConfig(env=TL, env_steps=20_000, eval_every=500), P_EXPERTS))
    # the grid has 0.7 too; added after the first run as its own program (same config, same seeds)
    out.append(Unit("prior-quality-0.7", jitted.JitConfig(env=TL, env_steps=20_000, eval_every=500), (0.7,)))
    return out


def run_unit(unit: Unit, seeds: int, folder: Path) -> dict[str, Any]:
    """Run (or, when its summary exists, reload) one unit; returns its summary."""
    done = folder / "summary.json"
    if done.exists():
        log(f"{unit.name}: done before, skipped")
        return json.loads(done.read_text())
    t = time.perf_counter()
    result = sweep.run_sweep(unit.config, seeds, unit.p_experts)
    summary = sweep.write_sweep(result, folder, plot=False)  # summary.json last: it marks the unit done
    log(
        f"{unit.name}: {seeds} seeds in {time.perf_counter() - t:.0f}s (tables {result.table_s:.0f}s, compile "
        f"{result.compile_s:.0f}s, run {result.run_s:.0f}s, {summary['samples_per_s']:.0f} samples/s)"
    )
    return summary


def summary_rows(summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for name, s in summaries.items():
        c = s["config"]
        wall = s["table_s"] + s["compile_s"] + s["run_s"]
        for r in s["rows"]:
            rows.append(
                {
                    "unit": name,
                    "env": c["env"],
                    "algo": c["algo"],
                    "features": c["features"],
                    "discount": c["discount"],
                    "prompt": c.get("prompt", "env"),
                    "env_steps": c["env_steps"],
                    "wall_s": round(wall, 1),
                    **r,
                }
            )

    return rows


def plot_curves(out: Path, names: list[str], mode: str = "greedy") -> None:
    """One panel per task: IQM success vs samples with 95% bootstrap bands for every text/one-hot unit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = [e for e in SHORT.values() if any(n.startswith(e + "-") for n in names)]
    fig, axes = plt.subplots(1, len(envs), figsize=(4.6 * len(envs), 3.2), squeeze=False)
    for ax, env in zip(axes[0], envs):
        for name in [n for n in names if n.startswith(env + "-")]:
            steps, grid = read_curves(out / name)
            curves = next(iter(grid.values()))[f"eval_success_{mode}"]
            mid = [stats.iqm(curves[:, e]) for e in range(len(steps))]
            band = np.array([stats.bootstrap_ci(curves[:, e], stats.iqm, 300) for e in range(len(steps))])
            ax.plot(steps, mid, label=name[len(env) + 1 :], lw=1.2)
            ax.fill_between(steps, band[:, 0], band[:, 1], alpha=0.15)
        ax.set(title=f"{env} ({mode} evaluation)", xlabel="environment samples", ylabel="success, IQM")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=6)
    save_small(fig, out / "curves.png")


def plot_profiles(out: Path, names: list[str], mode: str = "greedy") -> None:
    """Performance profiles of the final success (fraction of seeds above τ), one panel per task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    taus = np.linspace(0, 1, 21)
    envs = [e for e in SHORT.values() if any(n.startswith(e + "-") for n in names)]
    fig, axes = plt.subplots(1, len(envs), figsize=(4.6 * len(envs), 3.0), squeeze=False)
    for ax, env in zip(axes[0], envs):
        for name in [n for n in names if n.startswith(env + "-")]:
            _, grid = read_curves(out / name)
            final = next(iter(grid.values()))[f"eval_success_{mode}"][:, -1]
            frac, lo, hi = stats.performance_profile(final, taus, 300)
            ax.step(taus, frac, where="post", label=name[len(env) + 1 :], lw=1.2)
            ax.fill_between(taus, lo, hi, step="post", alpha=0.12)
        ax.set(title=f"{env}: final success ({mode})", xlabel="τ", ylabel="fraction of seeds > τ")
        ax.legend(fontsize=6)
    save_small(fig, out / "profiles.png")


def plot_prior_quality(out: Path, rows: list[dict[str, Any]], real: list[dict[str, Any]]) -> None:
    """Final-success IQM and the fraction of seeds reaching 0.9 vs p(expert), the real prior marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 3.2))
    for mode, marker in (("greedy", "o"), ("boltzmann", "s")):
        mine = sorted((r for r in rows if r["eval"] == mode), key=lambda r: r["p_expert"])
        p = [r["p_expert"] for r in mine]
        ax.errorbar(
            p,
            [r["final_iqm"] for r in mine],
            yerr=_err(mine, "final_iqm"),
            marker=marker,
            ms=3,
            capsize=2,
            lw=1,
            label=f"synthetic, {mode}",
        )
        for r in (r for r in real if r["eval"] == mode):
            ax.errorbar(
                [r["p_expert"]],
                [r["final_iqm"]],
                yerr=_err([r], "final_iqm"),
                marker=_PRIOR_MARKERS[_prior_label(r["unit"])],
                ms=7,
                capsize=2,
                color="k" if mode == "greedy" else "gray",
                label=f"SmolLM2 {_prior_label(r['unit'])}, {mode}",
            )
    ax.set(xlabel="mean p(expert) over the prompts", ylabel="final success, IQM", ylim=(-0.02, 1.02))
    ax.set_title("DQN-Prior on Tomato-Lettuce vs prior quality", fontsize=9)
    ax.legend(fontsize=6)
    save_small(fig, out / "prior_quality.png")


_PRIOR_MARKERS = {"zero-shot": "*", "transcript": "X", "transcript + 10% uniform": "P"}


def _is_quality(unit: str) -> bool:
    return unit.startswith("prior-quality")


def _prior_label(unit: str) -> str:
    if unit.endswith("-floor"):
        return "transcript + 10% uniform"
    return "transcript" if "transcript" in unit else "zero-shot"


def _err(rows: list[dict[str, Any]], key: str) -> np.ndarray:
    return np.array([[r[key] - r[f"{key}_lo"] for r in rows], [r[f"{key}_hi"] - r[key] for r in rows]])


COMPARISONS = (
    ("DQN-Prior vs DQN (text)", "{t}-dqn-prior-text", "{t}-dqn-text"),
    ("DQN-Prior vs LLM policy", "{t}-dqn-prior-text", "{t}-llm-text"),
    ("DQN-Prior vs DQN (one-hot)", "{t}-dqn-prior-onehot", "{t}-dqn-onehot"),
    ("DQN-Prior: one-hot vs text", "{t}-dqn-prior-onehot", "{t}-dqn-prior-text"),
    ("DQN-Prior: text-split vs text", "{t}-dqn-prior-text-split", "{t}-dqn-prior-text"),
    ("DQN-Prior: LLM hidden state vs text", "{t}-dqn-prior-llm", "{t}-dqn-prior-text"),
    ("DQN-Prior: one-hot vs LLM hidden state", "{t}-dqn-prior-onehot", "{t}-dqn-prior-llm"),
    ("DQN-Prior vs LLM policy (transcript prior)", "{t}-dqn-prior-text-transcript", "{t}-llm-text-transcript"),
    ("DQN-Prior: transcript vs zero-shot prior", "{t}-dqn-prior-text-transcript", "{t}-dqn-prior-text"),
    ("DQN-Prior: transcript + 10% uniform vs zero-shot", "{t}-dqn-prior-text-transcript-floor", "{t}-dqn-prior-text"),
    ("DQN-Prior: smdp vs macro", "{t}-dqn-prior-text-smdp", "{t}-dqn-prior-text"),
    ("DQN: smdp vs macro", "{t}-dqn-text-smdp", "{t}-dqn-text"),
)


def report(rows: list[dict[str, Any]]) -> str:
    """Markdown: per task, every unit × evaluation mode, then each comparison's verdict under each mode."""
    by = {(r["unit"], r["setting"], r["eval"]): r for r in rows}
    lines = []
    for env, t in SHORT.items():
        mine = [r for r in rows if r["env"] == env and not _is_quality(r["unit"])]
        if not mine:
            continue
        lines += [f"**{env}** ({mine[0]['env_steps']:,} samples, {mine[0]['seeds']} seeds)", ""]
        lines += [
            "| unit | eval | final success IQM [95% CI] | mean success over the curve, IQM | samples to 0.9 "
            "(median) | wall s |",
            "|---|---|---|---|---|---|",
        ]
        for r in mine:
            lines.append(
                f"| {r['unit']} | {r['eval']} | {format_ci(r, 'final_iqm')} | {format_ci(r, 'auc_iqm')} | "
                f"{format_reach(r)} | {float(r['wall_s']):.0f} |"
            )
        lines += ["", "| comparison (A vs B) | eval | final IQM | over the curve |", "|---|---|---|---|"]
        for label, a, b in COMPARISONS:
            for mode in jitted.EVAL_MODES:
                ra = next((r for (u, _, e), r in by.items() if u == a.format(t=t) and e == mode), None)
                rb = next((r for (u, _, e), r in by.items() if u == b.format(t=t) and e == mode), None)
                if ra and rb:
                    fin, auc = verdict(ra, rb, "final_iqm"), verdict(ra, rb, "auc_iqm")
                    lines.append(f"| {label} | {mode} | {fin} | {auc} |")
        lines.append("")
    quality = sorted((r for r in rows if _is_quality(r["unit"])), key=lambda r: (r["eval"], float(r["p_expert"])))
    if quality:
        lines += ["**Prior quality** (DQN-Prior, synthetic expert-mix priors)", ""]
        lines += ["| prior | mean p(expert) | eval | final success IQM | samples to 0.9 |", "|---|---|---|---|---|"]
        for r in quality:
            lines.append(
                f"| {r['setting']} | {float(r['p_expert']):.3f} | {r['eval']} | {format_ci(r, 'final_iqm')} | "
                f"{format_reach(r)} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None, store: Any = None) -> Path:
    del store  # the compiled loop reads its tables from the on-disk cache (built with their own models)
    args, out = unit_study(__doc__, "overcooked_v2", argv, default_seeds=32)
    summaries = run_units(units(args.quick), args.only, lambda u, folder: run_unit(u, args.seeds, folder), out)
    rows = summary_rows(summaries)
    write_csv(out / "summary.csv", rows)
    learners = [n for n in summaries if not _is_quality(n)]
    if learners:
        plot_curves(out, learners)
        plot_profiles(out, learners)
    if "prior-quality" in summaries:
        real_env = summaries["prior-quality"]["config"]["env"]
        real = [
            r
            for r in rows
            if r["env"] == real_env
            and r["algo"] == "dqn-prior"
            and r["unit"].endswith(("-text", "-text-transcript", "-transcript-floor"))
        ]
        plot_prior_quality(out, [r for r in rows if _is_quality(r["unit"])], real)
    (out / "report.md").write_text(report(rows) + "\n")
    log(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
