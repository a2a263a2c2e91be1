"""Claim: online, DQN-Prior is more sample-efficient than DQN and better than the pure-LLM policy (Overcooked).

    python -m experiments.overcooked_online            # full: 3 seeds × 2,000 env samples per env
    python -m experiments.overcooked_online --quick    # pipeline check (seconds)

For Tomato Salad and Tomato-Lettuce Salad, each seed trains DQN-Prior (k = 5 candidates from SmolLM2's exact
prior, env prompt, length-normalised) and DQN (Q over every admissible action) with the same Q-network, encoder,
ε schedule and update rate, and evaluates the greedy policy every ``eval_every`` samples. The pure-LLM policy
(greedy, and sampled from the prior) learns nothing; it is evaluated as a reference line.

Writes to the results folder:
  curves.csv      method, env, seed, env_steps, eval_success, eval_return, eval_length, llm_calls
  threshold.csv   samples to reach 0.9 mean success (per seed and for the seed mean), or "not reached within N"
  <env>.png       success and return (Σ macro rewards, see the reward loophole in RESULTS.md) vs env samples
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from experiments import common

if TYPE_CHECKING:
    from prior_rl.run import ModelStore

NAME = "overcooked_online"
ENVS = {"overcooked-tomato-salad": "Tomato Salad", "overcooked-tomato-lettuce-salad": "Tomato-Lettuce Salad"}
THRESHOLD = 0.9


def budgets(quick: bool) -> dict[str, dict[str, int]]:
    """Env samples and evaluation cadence per environment."""
    if quick:
        # a 6-step episode cap keeps the LLM calls (and their compilations) of a quick run few
        return {env: {"env_steps": 48, "eval_every": 24, "eval_episodes": 1, "max_episode_steps": 6} for env in ENVS}
    return {
        "overcooked-tomato-salad": {"env_steps": 2000, "eval_every": 250, "eval_episodes": 10},
        "overcooked-tomato-lettuce-salad": {"env_steps": 2000, "eval_every": 500, "eval_episodes": 10},
    }


def run(
    quick: bool = False,
    out: Optional[str] = None,
    seeds: Optional[int] = None,
    envs: Optional[list[str]] = None,
    env_steps: Optional[int] = None,
    eval_every: Optional[int] = None,
    store: Optional[ModelStore] = None,
) -> Path:
    """Train every method on every env and seed in this process; write CSVs and figures; return the folder.
    ``env_steps`` / ``eval_every`` override the budget of every selected env. ``store``: the models every run
    shares (default: a new store for this call)."""
    from prior_rl.run import ModelStore, TrainConfig, train

    store = store if store is not None else ModelStore()

    table = {
        env: {
            **b,
            **({"env_steps": env_steps} if env_steps else {}),
            **({"eval_every": eval_every} if eval_every else {}),
        }
        for env, b in budgets(quick).items()
    }
    folder = common.results_dir(NAME, out)
    n_seeds = seeds or (1 if quick else 3)
    env_list = envs or list(ENVS)
    clock = common.Stopwatch()
    rows: list[dict[str, Any]] = []
    runs: list[tuple[str, str, int, Any]] = []
    for env in env_list:
        b = table[env]
        for seed in range(n_seeds):
            for method, algo in (("DQN-Prior", "dqn-prior"), ("DQN", "dqn")):
                runs.append(
                    (env, method, seed, TrainConfig(env=env, algo=algo, seed=seed, **b, **common.quiet_train_kwargs()))
                )
            # the pure-LLM policy learns nothing: one short "run" = its evaluation at 0 and at the end
            llm_eval = {"eval_episodes": 1, "max_episode_steps": 6} if quick else {"eval_episodes": 20}
            for method, sample in (("LLM (greedy)", False), ("LLM (sampled)", True)):
                runs.append(
                    (
                        env,
                        method,
                        seed,
                        TrainConfig(
                            env=env,
                            algo="llm",
                            llm_sample=sample,
                            seed=seed,
                            env_steps=4,
                            eval_every=10**9,
                            **llm_eval,
                            **common.quiet_train_kwargs(),
                        ),
                    )
                )

    def one(item):
        env, method, seed, config = item
        result = train(config, store=store)
        tagged = common.curve_rows(result.history, method=method, env=env, seed=seed)
        for r in tagged:
            r["wall_s"] = round(result.wall_s, 2)
        return tagged

    for tagged in common.run_each(runs, one, lambda it: f"{it[0]} {it[1]} seed {it[2]}"):
        rows.extend(tagged)

    fields = ["method", "env", "seed", "env_steps", "eval_success", "eval_return", "eval_length", "llm_calls", "wall_s"]
    common.write_csv(folder / "curves.csv", rows, fields)
    summary = summarize(rows, env_list, table)
    common.write_csv(folder / "threshold.csv", summary)
    plot(rows, env_list, folder, table)
    common.log(f"{NAME}: {clock.elapsed():.0f}s wall, results in {folder}")
    print(common.markdown_table(summary, list(summary[0])))
    return folder


def _llm_level(rows: list[dict[str, Any]], env: str, method: str) -> tuple[float, float]:
    """Mean and std over seeds of the pure-LLM policy's evaluations (it is fixed, so all points pool)."""
    import numpy as np

    vals = [float(r["eval_success"]) for r in rows if r["env"] == env and r["method"] == method]
    return (float(np.mean(vals)), float(np.std(vals))) if vals else (float("nan"), 0.0)


def summarize(
    rows: list[dict[str, Any]], env_list: list[str], table: dict[str, dict[str, int]]
) -> list[dict[str, Any]]:
    """Per env and method: final success/return (mean ± std over seeds) and samples to 0.9 success."""
    import numpy as np

    out = []
    for env in env_list:
        budget = table[env]["env_steps"]
        for method in ("DQN-Prior", "DQN", "LLM (greedy)", "LLM (sampled)"):
            mine = [r for r in rows if r["env"] == env and r["method"] == method]
            if not mine:
                continue
            seeds = sorted({r["seed"] for r in mine})
            finals = [max((r for r in mine if r["seed"] == s), key=lambda r: r["env_steps"]) for s in seeds]
            succ = [float(r["eval_success"]) for r in finals]
            ret = [float(r["eval_return"]) for r in finals]
            if method.startswith("LLM"):
                mean_x = per_seed = "n/a (no learning)"
            else:
                curve = common.mean_std(mine, ["method"], "env_steps", "eval_success")[(method,)]
                mean_x = common.describe_crossing(common.first_crossing(curve, THRESHOLD), budget)
                per_seed = []
                for s in seeds:
                    pts = [(float(r["env_steps"]), float(r["eval_success"])) for r in mine if r["seed"] == s]
                    x = common.first_crossing(sorted(pts), THRESHOLD)
                    per_seed.append(str(int(x)) if x is not None else f">{budget}")
                per_seed = " / ".join(per_seed)
            out.append(
                {
                    "env": ENVS[env],
                    "method": method,
                    "seeds": len(seeds),
                    "budget": budget,
                    "final_success_mean": float(np.mean(succ)),
                    "final_success_std": float(np.std(succ)),
                    "final_return_mean": float(np.mean(ret)),
                    "final_return_std": float(np.std(ret)),
                    "samples_to_0.9_mean_curve": mean_x,
                    "samples_to_0.9_per_seed": per_seed,
                }
            )
    return out


def plot(rows: list[dict[str, Any]], env_list: list[str], folder: Path, table: dict[str, dict[str, int]]) -> None:
    for env in env_list:
        budget = table[env]["env_steps"]
        learn = [r for r in rows if r["env"] == env and not r["method"].startswith("LLM")]
        panels = []
        for metric, ylabel in (("eval_success", "success rate"), ("eval_return", "return (Σ macro rewards)")):
            curves = {
                m[0]: [(x, mu, sd) for x, mu, sd, _ in pts]
                for m, pts in sorted(common.mean_std(learn, ["method"], "env_steps", metric).items())
            }
            for method in ("LLM (greedy)", "LLM (sampled)"):
                vals = [float(r[metric]) for r in rows if r["env"] == env and r["method"] == method]
                if vals:
                    import numpy as np

                    curves[method] = [
                        (0, float(np.mean(vals)), float(np.std(vals))),
                        (budget, float(np.mean(vals)), float(np.std(vals))),
                    ]
            panels.append({"curves": curves, "xlabel": "environment samples (macro steps)", "ylabel": ylabel})
        n = len({r["seed"] for r in learn})
        common.plot_panels(
            panels,
            folder / f"{env.removeprefix('overcooked-')}.png",
            title=f"{ENVS[env]}: DQN-Prior vs DQN vs pure LLM (mean ± std, {n} seed(s))",
        )


def main(argv: Optional[list[str]] = None, store: Optional[ModelStore] = None) -> Path:
    """The command line; ``store``: models to share with other callers (default: a new one for this run)."""
    from prior_rl.run import ModelStore

    p = common.parser(__doc__, NAME)
    p.add_argument("--envs", nargs="+", default=None, choices=list(ENVS))
    p.add_argument("--env-steps", type=int, default=None, help="override the env-sample budget of every env")
    p.add_argument("--eval-every", type=int, default=None, help="override the evaluation interval")
    args = p.parse_args(argv)
    return run(
        args.quick,
        args.out,
        args.seeds,
        args.envs,
        args.env_steps,
        args.eval_every,
        store if store is not None else ModelStore(),
    )


if __name__ == "__main__":
    main()
