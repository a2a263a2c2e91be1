"""Expert vs uniform-random policy on a text environment: success rate and return, reported separately.

    python -m experiments.demo --env overcooked-tomato-salad --episodes 200

A smoke run of the environment stack that needs no model. Success and return are separate columns on purpose:
in Overcooked the return can be farmed (chop, serve the bare food, chop again) without ever succeeding.
"""

from __future__ import annotations

import argparse

import envs
from envs.episodes import play_episodes


def evaluate(name: str, policy: str, episodes: int, seed: int, **options) -> dict[str, float]:
    env = envs.make(name, **options)
    if policy == "expert":
        choose = lambda rng, obs: env.expert_action()  # noqa: E731
    else:
        choose = lambda rng, obs: int(rng.integers(len(obs.actions)))  # noqa: E731
    stats = play_episodes(env, choose, episodes, seed)
    return {"policy": policy, "success": stats["success"], "return": stats["return"], "steps": stats["length"]}


def main(argv: list[str] | None = None) -> list[dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", default="overcooked-tomato-salad", choices=envs.names())
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-steps",
        type=int,
        default=31,
        help="cap on agent steps per episode (Overcooked macro steps; paper: 31 / 51)",
    )
    args = parser.parse_args(argv)
    rows = [evaluate(args.env, p, args.episodes, args.seed, max_steps=args.max_steps) for p in ("expert", "random")]
    print(f"{args.env}: {args.episodes} episodes per policy, cap {args.max_steps} steps")
    print(f"{'policy':8s} {'success':>8s} {'return':>8s} {'steps':>6s}")
    for r in rows:
        print(f"{r['policy']:8s} {r['success']:8.3f} {r['return']:8.3f} {r['steps']:6.1f}")
    return rows


if __name__ == "__main__":
    main()
