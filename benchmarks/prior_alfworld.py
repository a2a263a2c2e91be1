"""Prior quality on ALFWorld: the LLM prior's probability of the expert action along the expert trajectory of
every training task (and, with --split unseen, the unseen ones).

    python -m benchmarks.prior_alfworld                 # all 28 training tasks
    python -m benchmarks.prior_alfworld --games 4       # the first 4 (a quick look)

Per task: the number of expert steps, the mean and minimum p(expert) under the prior (``--prompt``: "paper" is
the reference's ALFWorld query, "env" the env's own prompt), how often the expert action is ranked first, and
P(expert among k exact samples) = 1 − (1 − p)^k averaged over the steps. Uniform over the admissible commands is
printed beside it. Writes ``benchmarks/results/prior_alfworld_<split>.json``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import envs
from benchmarks.common import machine, print_table, write_json


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="train", choices=("train", "unseen"))
    parser.add_argument("--games", type=int, default=None, help="only the first N games")
    parser.add_argument("--prompt", default="paper", choices=("env", "paper", "chat"))
    parser.add_argument("--sum-logprobs", action="store_true", help="unnormalised scores (default: mean)")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--llm", default="smollm2")
    args = parser.parse_args(argv)

    from prior_rl.run import ModelStore

    prior = ModelStore().prior(args.llm, 1.0, args.prompt, not args.sum_logprobs)
    env = envs.make("alfworld-pick", split=args.split)
    n = min(args.games or env.num_games, env.num_games)
    rows, all_p, all_uniform = [], [], []
    t0 = time.perf_counter()
    for game in range(n):
        obs, _ = env.reset(seed=game)
        probs, firsts, uniform = [], [], []
        while True:
            expert = env.expert_action()
            lp = prior.logprobs([obs])[0]
            probs.append(float(np.exp(lp[expert])))
            firsts.append(bool(lp[expert] >= lp.max()))
            uniform.append(1.0 / len(obs.actions))
            obs, _, terminated, truncated, info = env.step(expert)
            if terminated or truncated:
                break
        p = np.array(probs)
        rows.append(
            {
                "task": env.observation.task,
                "steps": len(p),
                "mean p(expert)": float(p.mean()),
                "min p(expert)": float(p.min()),
                "expert first": float(np.mean(firsts)),
                f"P(expert in {args.k})": float(np.mean(1 - (1 - p) ** args.k)),
                "uniform p": float(np.mean(uniform)),
                "success": bool(info["success"]),
            }
        )
        all_p += probs
        all_uniform += uniform
    p = np.array(all_p)
    summary = {
        "task": f"ALL ({n} tasks, {len(p)} states)",
        "steps": len(p),
        "mean p(expert)": float(p.mean()),
        "min p(expert)": float(p.min()),
        "expert first": float(np.mean([r["expert first"] for r in rows])),
        f"P(expert in {args.k})": float(np.mean(1 - (1 - p) ** args.k)),
        "uniform p": float(np.mean(all_uniform)),
        "success": all(r["success"] for r in rows),
    }
    columns = [
        "task",
        "steps",
        "mean p(expert)",
        "min p(expert)",
        "expert first",
        f"P(expert in {args.k})",
        "uniform p",
    ]
    print_table(rows + [summary], columns)
    wall = time.perf_counter() - t0
    print(f"{len(p)} states scored in {wall:.0f} s ({prior.cache.misses} LLM calls)")
    payload = {
        "benchmark": "prior_alfworld",
        "split": args.split,
        "prompt": args.prompt,
        "normalize": not args.sum_logprobs,
        "k": args.k,
        "rows": rows,
        "summary": summary,
        "wall_s": wall,
        "machine": machine(),
    }
    write_json(f"prior_alfworld_{args.split}", payload)
    return payload


if __name__ == "__main__":
    main()
