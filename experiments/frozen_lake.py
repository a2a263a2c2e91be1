"""Claim: the LLM prior helps on Frozen Lake too — DQN-Prior vs DQN and PPO-Prior (PPO + α·KL to the prior) vs PPO.

    python -m experiments.frozen_lake            # full: 3 seeds, 10,000 env samples, 4x4 non-slippery, 20-step cap
    python -m experiments.frozen_lake --quick    # pipeline check (seconds)

The paper's Frozen Lake code is not public (docs/method.md §7.15); the text rendering is ours (``envs.frozen_lake``).
The pure-LLM policy (greedy and sampled) is evaluated as a reference line.

Writes: ``curves.csv`` (method, seed, env_steps, eval_success, eval_return), ``threshold.csv`` (final success and
samples to 0.9 mean success), ``success.png`` (value-based and policy-based panels).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from experiments import common

if TYPE_CHECKING:
    from prior_rl.run import ModelStore

NAME = "frozen_lake"
ENV = "frozen-lake"
METHODS = (("DQN-Prior", "dqn-prior"), ("DQN", "dqn"), ("PPO-Prior", "ppo-prior"), ("PPO", "ppo"))
THRESHOLD = 0.9


def budget(quick: bool) -> dict[str, int]:
    if quick:
        return {"env_steps": 64, "eval_every": 32, "eval_episodes": 1, "max_episode_steps": 6}
    return {"env_steps": 10000, "eval_every": 1000, "eval_episodes": 10}


def run(
    quick: bool = False, out: Optional[str] = None, seeds: Optional[int] = None, store: Optional[ModelStore] = None
) -> Path:
    """Every method and seed in this process, sharing ``store`` (default: a new one); CSVs and figures."""
    from prior_rl.run import ModelStore, TrainConfig, train

    store = store if store is not None else ModelStore()

    folder = common.results_dir(NAME, out)
    b = budget(quick)
    n_seeds = seeds or (1 if quick else 3)
    clock = common.Stopwatch()
    items = []
    for seed in range(n_seeds):
        for method, algo in METHODS:
            # PPO rollouts: 4 envs × 16 steps = 64 samples per update in quick mode, 4 × 32 = 128 in full
            extra = {"rollout_steps": 16} if quick and algo.startswith("ppo") else {}
            items.append(
                (method, seed, TrainConfig(env=ENV, algo=algo, seed=seed, **b, **extra, **common.quiet_train_kwargs()))
            )
        for method, sample in (("LLM (greedy)", False), ("LLM (sampled)", True)):
            items.append(
                (
                    method,
                    seed,
                    TrainConfig(
                        env=ENV,
                        algo="llm",
                        llm_sample=sample,
                        seed=seed,
                        env_steps=4,
                        eval_every=10**9,
                        eval_episodes=1 if quick else 20,
                        **common.quiet_train_kwargs(),
                    ),
                )
            )

    def one(item):
        method, seed, config = item
        result = train(config, store=store)
        tagged = common.curve_rows(result.history, method=method, env=ENV, seed=seed)
        for r in tagged:
            r["wall_s"] = round(result.wall_s, 2)
        return tagged

    rows = [r for tagged in common.run_each(items, one, lambda it: f"{it[0]} seed {it[1]}") for r in tagged]
    common.write_csv(
        folder / "curves.csv",
        rows,
        ["method", "env", "seed", "env_steps", "eval_success", "eval_return", "eval_length", "llm_calls", "wall_s"],
    )
    summary = summarize(rows, b["env_steps"])
    common.write_csv(folder / "threshold.csv", summary)
    plot(rows, folder, b["env_steps"], n_seeds)
    common.log(f"{NAME}: {clock.elapsed():.0f}s wall, results in {folder}")
    print(common.markdown_table(summary, list(summary[0])))
    return folder


def summarize(rows: list[dict[str, Any]], steps: int) -> list[dict[str, Any]]:
    out = []
    for method in [m for m, _ in METHODS] + ["LLM (greedy)", "LLM (sampled)"]:
        mine = [r for r in rows if r["method"] == method]
        if not mine:
            continue
        seeds = sorted({r["seed"] for r in mine})
        finals = [max((r for r in mine if r["seed"] == s), key=lambda r: r["env_steps"]) for s in seeds]
        succ = [float(r["eval_success"]) for r in finals]
        if method.startswith("LLM"):
            to = "n/a (no learning)"
        else:
            curve = common.mean_std(mine, ["method"], "env_steps", "eval_success")[(method,)]
            to = common.describe_crossing(common.first_crossing(curve, THRESHOLD), steps)
        out.append(
            {
                "method": method,
                "seeds": len(seeds),
                "budget": steps,
                "final_success_mean": float(np.mean(succ)),
                "final_success_std": float(np.std(succ)),
                "samples_to_0.9_mean_curve": to,
            }
        )
    return out


def plot(rows: list[dict[str, Any]], folder: Path, steps: int, n_seeds: int) -> None:
    llm = {}
    for method in ("LLM (greedy)", "LLM (sampled)"):
        vals = [float(r["eval_success"]) for r in rows if r["method"] == method]
        if vals:
            llm[method] = [
                (0, float(np.mean(vals)), float(np.std(vals))),
                (steps, float(np.mean(vals)), float(np.std(vals))),
            ]
    panels = []
    for title, pair in (("value-based", ("DQN-Prior", "DQN")), ("policy-based", ("PPO-Prior", "PPO"))):
        learn = [r for r in rows if r["method"] in pair]
        curves = {
            m[0]: [(x, mu, sd) for x, mu, sd, _ in pts]
            for m, pts in sorted(common.mean_std(learn, ["method"], "env_steps", "eval_success").items())
        }
        panels.append(
            {"curves": {**curves, **llm}, "xlabel": "environment samples", "ylabel": "success rate", "title": title}
        )
    common.plot_panels(
        panels,
        folder / "success.png",
        title=f"Frozen Lake 4x4: with vs without the LLM prior (mean ± std, {n_seeds} seed(s))",
    )


def main(argv: Optional[list[str]] = None, store: Optional[ModelStore] = None) -> Path:
    """The command line; ``store``: models to share with other callers (default: a new one for this run)."""
    from prior_rl.run import ModelStore

    args = common.parser(__doc__, NAME).parse_args(argv)
    return run(args.quick, args.out, args.seeds, store if store is not None else ModelStore())


if __name__ == "__main__":
    main()
