"""Experiments v2, the policy-based branch: does our PPO learn where PPO is known to, and does α·KL(π ‖ p_LLM) help?

    python -m experiments.policy_v2 [--quick] [--seeds 16] [--only UNIT ...]

Frozen Lake 4×4 (non-slippery, 20-step cap) and Overcooked Tomato Salad, 10,240 samples each, on the compiled PPO
loop (:mod:`prior_rl.run.jitted_ppo`; one program over all seeds). Units (a unit whose ``summary.json`` exists is
skipped, so a stopped run resumes where it was):

* ``<task>-ppo-<features>``: PPO from scratch with one-hot (prompt, action) features (Frozen Lake: one-hot state),
  the paper's MiniLM strings (``text``) and the prior LLM's hidden state (``llm``);
* ``<task>-sb3``: Stable-Baselines3's PPO with the same settings (4 envs × 32 steps, 4 epochs × 4 minibatches,
  lr 2.5e-4, clip 0.2, entropy 0.01, value 0.5, grad norm 0.5, GAE 0.95, γ 0.99, two 64-unit hidden layers) on
  gymnasium's ``FrozenLake-v1`` / the text Tomato Salad, with the observation as a one-hot state id (SB3's own
  ``Discrete`` encoding), evaluated at the same points; it needs ``stable-baselines3`` (the ``test`` extra);
* ``<task>-ppo-prior-a<α>-<prior>``: PPO-Prior (policy logits started at the prior's, + α·KL(π ‖ p_LLM)) with
  α ∈ {0.01, 0.1, 1}, one-hot features, and the SmolLM2 prior zero-shot (``--prompt env``) or with transcript
  demonstrations (``--prompt transcript-state``); ``-floor``: α = 0.1 with the transcript prior mixed with 10%
  uniform (``prior_floor=0.1``); ``-noinit``: α = 0.1 with a policy started from scratch (``prior_init=False``:
  the KL term is the prior's only influence).

Every evaluation runs greedy (argmax π), ε-greedy (ε = 0.05) and Boltzmann (a sample from π) episodes. Writes
per-unit ``curves.csv``/``summary.json``, ``summary.csv``, ``report.md`` and ``curves.png`` into
``experiments/results/policy_v2``.
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
from prior_rl.run import jitted, jitted_ppo, sweep

FL, TS = "frozen-lake", "overcooked-tomato-salad"
SHORT = {FL: "lake", TS: "tomato"}
ALPHAS = (0.01, 0.1, 1.0)
PRIORS = (("zeroshot", "env", True), ("transcript", "transcript-state", False))  # (label, prompt, mean log-prob)


class Unit(NamedTuple):
    name: str
    config: jitted_ppo.PPOJitConfig
    runner: str = "jax"  # 'jax' (the compiled loop) or 'sb3' (Stable-Baselines3, seed by seed)


def units(quick: bool) -> list[Unit]:
    """The runs of the study; ``quick``: three tiny Frozen Lake units over every runner and the prior path."""
    if quick:
        base = jitted_ppo.PPOJitConfig(env=FL, env_steps=256, eval_every=128, eval_episodes=2)
        return [
            Unit("lake-ppo-onehot", base),
            Unit("lake-ppo-prior-a0.1-zeroshot", dataclasses.replace(base, algo="ppo-prior")),
            Unit("lake-sb3", base, "sb3"),
        ]
    out = []
    for env in (FL, TS):
        base = jitted_ppo.PPOJitConfig(env=env, env_steps=10_240, eval_every=1_024)
        for features in ("onehot", "text", "llm"):
            out.append(Unit(f"{SHORT[env]}-ppo-{features}", dataclasses.replace(base, features=features)))
        out.append(Unit(f"{SHORT[env]}-sb3", base, "sb3"))
        for label, prompt, mean in PRIORS:
            for alpha in ALPHAS:
                cfg = dataclasses.replace(base, algo="ppo-prior", kl_coef=alpha, prompt=prompt, length_normalize=mean)
                out.append(Unit(f"{SHORT[env]}-ppo-prior-a{alpha:g}-{label}", cfg))
        floored = dataclasses.replace(out[-2].config, prior_floor=0.1)  # α = 0.1, transcript, + 10% uniform
        out.append(Unit(f"{SHORT[env]}-ppo-prior-a0.1-transcript-floor", floored))
        for label, prompt, mean in PRIORS:  # α·KL alone: the policy starts from scratch, not at the prior
            cfg = dataclasses.replace(base, algo="ppo-prior", kl_coef=0.1, prompt=prompt, length_normalize=mean)
            out.append(Unit(f"{SHORT[env]}-ppo-prior-a0.1-{label}-noinit", dataclasses.replace(cfg, prior_init=False)))
    return out


def sb3_available() -> bool:
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        return False
    return True


def run_unit(unit: Unit, seeds: int, folder: Path) -> Optional[dict[str, Any]]:
    """Run (or, when its summary exists, reload) one unit; returns its summary (None: SB3 is not installed)."""
    done = folder / "summary.json"
    if done.exists():
        log(f"{unit.name}: done before, skipped")
        return json.loads(done.read_text())
    if unit.runner == "sb3":
        if not sb3_available():
            log(f"{unit.name}: skipped, stable-baselines3 is not installed (pip install -e '.[test]')")
            return None
        from experiments import sb3_baseline

        result = sb3_baseline.run_sweep(unit.config, seeds)
    else:
        result = sweep.run_sweep(unit.config, seeds)
    summary = sweep.write_sweep(result, folder, plot=False)
    wall = result.table_s + result.compile_s + result.run_s
    log(f"{unit.name}: {seeds} seeds in {wall:.0f}s (compile {result.compile_s:.0f}s, run {result.run_s:.0f}s)")
    return summary


def summary_rows(summaries: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for name, s in summaries.items():
        c = s["config"]
        wall = s["table_s"] + s["compile_s"] + s["run_s"]
        runner = "sb3" if name.endswith("-sb3") else "jax"
        for r in s["rows"]:
            rows.append(
                {
                    "unit": name,
                    "env": c["env"],
                    "runner": runner,
                    "algo": c["algo"] if runner == "jax" else "ppo (sb3)",
                    "features": c["features"] if runner == "jax" else "onehot",
                    "kl_coef": c["kl_coef"] if c["algo"] == "ppo-prior" else 0.0,
                    "prompt": c["prompt"] if c["algo"] == "ppo-prior" else "",
                    "env_steps": c["env_steps"],
                    "wall_s": round(wall, 1),
                    **r,
                }
            )
    return rows


def report(rows: list[dict[str, Any]]) -> str:
    """Markdown per task: every unit × evaluation mode, then PPO-Prior vs PPO and ours vs SB3 verdicts."""
    by = {(r["unit"], r["eval"]): r for r in rows}
    lines = []
    for env, t in SHORT.items():
        mine = [r for r in rows if r["env"] == env]
        if not mine:
            continue
        lines += [f"**{env}** ({int(mine[0]['env_steps']):,} samples, {mine[0]['seeds']} seeds)", ""]
        lines += [
            "| unit | eval | final success IQM [95% CI] | mean success over the curve, IQM | samples to 0.9 | wall s |",
            "|---|---|---|---|---|---|",
        ]
        for r in mine:
            lines.append(
                f"| {r['unit']} | {r['eval']} | {format_ci(r, 'final_iqm')} | {format_ci(r, 'auc_iqm')} | "
                f"{format_reach(r)} | "
                f"{float(r['wall_s']):.0f} |"
            )
        lines += ["", "| comparison (A vs B) | eval | final IQM | over the curve |", "|---|---|---|---|"]
        pairs = [(f"{t}-ppo-onehot", f"{t}-sb3")] + [
            (u, f"{t}-ppo-onehot") for u, _ in by if u.startswith(f"{t}-ppo-prior-")
        ]
        for a, b in dict.fromkeys(pairs):
            for mode in jitted.EVAL_MODES:
                ra, rb = by.get((a, mode)), by.get((b, mode))
                if ra and rb:
                    lines.append(
                        f"| {a} vs {b} | {mode} | {verdict(ra, rb, 'final_iqm')} | {verdict(ra, rb, 'auc_iqm')} |"
                    )
        lines.append("")
    return "\n".join(lines)


def plot_curves(out: Path, folders: dict[str, Path]) -> None:
    """Greedy success IQM vs samples per unit, one panel per task (PPO features and SB3 | PPO-Prior)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(8, 5.2), sharey=True)
    for row, t in enumerate(SHORT.values()):
        for name, folder in folders.items():
            if not name.startswith(f"{t}-"):
                continue
            steps, curves = read_curves(folder)
            success = next(iter(curves.values()))["eval_success_greedy"]
            ax = axes[row, 1 if "-prior-" in name else 0]
            ax.plot(steps, [_iqm(success[:, e]) for e in range(success.shape[1])], lw=1, label=name[len(t) + 1 :])
        for col in (0, 1):
            axes[row, col].set(xlabel="env samples", ylim=(-0.02, 1.02))
            if axes[row, col].get_legend_handles_labels()[0]:
                axes[row, col].legend(fontsize=5)
        axes[row, 0].set_ylabel(f"{t}: greedy success IQM")
    save_small(fig, out / "curves.png")


def _iqm(x: np.ndarray) -> float:
    from prior_rl.run import stats

    return stats.iqm(np.asarray(x))


def main(argv: Optional[list[str]] = None, store: Any = None) -> Path:
    del store  # the compiled loop reads its tables from the on-disk cache (built with their own models)
    args, out = unit_study(__doc__, "policy_v2", argv, default_seeds=16)
    t = time.perf_counter()
    summaries = run_units(units(args.quick), args.only, lambda u, folder: run_unit(u, args.seeds, folder), out)
    rows = summary_rows(summaries)
    write_csv(out / "summary.csv", rows)
    if summaries:
        plot_curves(out, {name: out / name for name in summaries})
    (out / "report.md").write_text(report(rows) + "\n")
    log(f"wrote {out} ({time.perf_counter() - t:.0f}s)")
    return out


if __name__ == "__main__":
    main()
