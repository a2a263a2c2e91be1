"""ALFWorld Pick & Place: DQN-Prior vs DQN vs the pure-LLM policy on the 28 training tasks; the trained Q on the
26 unseen tasks; and a sweep of k, the number of prior candidates, at test time.

    python -m experiments.alfworld --quick          # a smoke run for the tests (about a minute)
    python -m experiments.alfworld                  # the measured run behind experiments/RESULTS.md

The paper's claim (3): the value function learned with the prior generalises to unseen tasks. Every LLM call is a
CPU forward pass of SmolLM2 over a ~200-token prompt and ~25–45 admissible commands, so the budgets here are small;
they are printed with the results. Outputs: ``results.csv`` (one row per method × split × k) and ``alfworld.png``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import time
from pathlib import Path

import numpy as np

from prior_rl.logging import plot_curves
from prior_rl.train import TrainConfig, evaluate, train

RESULTS = Path(__file__).resolve().parent / "results" / "alfworld"


def run(quick: bool, seeds: list[int], out: Path, env_steps: int, eval_episodes: int, cap: int,
        k_sweep: list[int]) -> list[dict]:
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    curves: dict[str, list[tuple[float, float, float]]] = {}
    base = dict(env="alfworld-pick", env_steps=env_steps, num_envs=2, eval_every=max(env_steps // 2, 1),
                eval_episodes=eval_episodes, max_episode_steps=cap, max_candidates=64, learning_starts=20,
                train_every=10, updates_per_train=8, progress=False, tensorboard=False, plot=False)
    for algo in ("dqn-prior", "dqn", "llm"):
        per_seed = []
        for seed in seeds:
            t0 = time.perf_counter()
            result = train(TrainConfig(algo=algo, seed=seed, **base))
            evals = [(h["env_steps"], h["eval_success"]) for h in result.history if "eval_success" in h]
            per_seed.append(evals)
            train_eval = result.final_eval
            unseen_config = dataclasses.replace(result.config, env_options=(("split", "unseen"),))
            unseen = evaluate(unseen_config, result.act, eval_episodes, seed=30_000 + seed)
            wall = time.perf_counter() - t0
            for split, ev in (("train", train_eval), ("unseen", unseen)):
                rows.append({"method": algo, "seed": seed, "split": split, "k": 5 if algo == "dqn-prior" else "",
                             "env_steps": env_steps, "success": ev["eval_success"], "return": ev["eval_return"],
                             "length": ev["eval_length"], "wall_s": round(wall, 1)})
            if algo == "dqn-prior":
                # the same trained Q with k candidates from the prior at test time (unseen tasks)
                for k in k_sweep:
                    cfg = dataclasses.replace(result.config, k=k, env_options=(("split", "unseen"),))
                    policy = _with_k(result, k)
                    ev = evaluate(cfg, policy, eval_episodes, seed=30_000 + seed)
                    rows.append({"method": "dqn-prior", "seed": seed, "split": "unseen", "k": k,
                                 "env_steps": env_steps, "success": ev["eval_success"], "return": ev["eval_return"],
                                 "length": ev["eval_length"], "wall_s": ""})
        xs = [x for x, _ in per_seed[0]]
        curves[algo] = [(x, float(np.mean([s[i][1] for s in per_seed])), float(np.std([s[i][1] for s in per_seed])))
                        for i, x in enumerate(xs)]
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot_curves(curves, out / "alfworld.png", title="ALFWorld Pick & Place, 28 training tasks")
    return rows


def _with_k(result, k: int):
    """The trained Q acting over k prior candidates instead of the k it was trained with."""
    from prior_rl import train as train_mod

    prior = train_mod.load_prior(result.config.llm, result.config.prior_temperature, result.config.prompt,
                                 result.config.length_normalize)
    from prior_rl.candidates import Featurizer, PriorCandidates
    import jax
    import jax.numpy as jnp

    source = PriorCandidates(prior, k, result.config.prior_mode)
    featurizer = Featurizer(train_mod.load_text_encoder(result.config.encoder), result.config.style)
    agent = train_mod._make_q_agent(result.config)

    def act(rng, observations):
        idx, mask = source(rng, observations)
        rows = featurizer.rows(observations, idx)
        slot = np.asarray(agent.act(result.agent_state, jax.random.key(0), featurizer.device_table()[rows],
                                    jnp.asarray(mask)))
        return idx[np.arange(len(observations)), slot]

    return act


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="*", default=None)
    parser.add_argument("--env-steps", type=int, default=None)
    parser.add_argument("--eval-episodes", type=int, default=None)
    parser.add_argument("--cap", type=int, default=None, help="steps per episode (expert plans take 4–5)")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    if args.quick:
        seeds, steps, episodes, cap, ks = [0], 2, 1, 2, [1]
    else:
        seeds, steps, episodes, cap, ks = [0], 300, 26, 15, [1, 3, 5, 10]
    seeds = args.seeds if args.seeds is not None else seeds
    t0 = time.perf_counter()
    rows = run(args.quick, seeds, Path(args.out), args.env_steps or steps, args.eval_episodes or episodes,
               args.cap or cap, ks)
    print(f"{'method':10s} {'split':7s} {'k':>3s} {'success':>8s} {'length':>7s}")
    for r in rows:
        print(f"{r['method']:10s} {r['split']:7s} {str(r['k']):>3s} {r['success']:8.3f} {r['length']:7.1f}")
    print(f"wall time {time.perf_counter() - t0:.0f} s; outputs in {args.out}")
    return rows


if __name__ == "__main__":
    main()
