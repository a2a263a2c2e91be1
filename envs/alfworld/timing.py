"""Reset and step times of ``alfworld-pick``, with and without the parsing cache.

    python -m envs.alfworld.timing            # ~3 min on 2 cores
    python -m envs.alfworld.timing --quick    # ~2 min

Reset times are split by what the engine has to redo: the first visit of a game in a process (Fast Downward's
PDDL->SAS translation, twice), a later visit of another game (the cache has the translation) and a reset of the
game already loaded. Steps are uniform-random admissible commands (the expert's action is still computed for
``info``), the same ones with the cache on and off, or the expert's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import numpy as np

import envs
from envs.alfworld import parse_cache


def _ms(values: list[float]) -> dict[str, float]:
    a = 1e3 * np.asarray(values)
    return {"mean": float(a.mean()), "p95": float(np.percentile(a, 95)), "n": int(a.size)}


def _random_steps(env: Any, steps_per_game: int) -> tuple[list[float], list[float]]:
    """(reset times, step times) of ``steps_per_game`` uniform-random steps in every game (fixed rng per game, so
    that the cached and the stock engine replay exactly the same commands)."""
    resets, steps = [], []
    for seed in range(env.num_games):
        rng = np.random.default_rng(seed)
        t0 = time.perf_counter()
        obs, _ = env.reset(seed=seed)
        resets.append(time.perf_counter() - t0)
        for _ in range(steps_per_game):
            action = int(rng.integers(len(obs.actions)))
            t0 = time.perf_counter()
            obs, _, terminated, truncated, _ = env.step(action)
            steps.append(time.perf_counter() - t0)
            if terminated or truncated:
                break
    return resets, steps


def _expert_steps(env: Any) -> list[float]:
    steps = []
    for seed in range(env.num_games):
        env.reset(seed=seed)
        while True:
            t0 = time.perf_counter()
            _, _, terminated, truncated, _ = env.step(env.expert_action())
            steps.append(time.perf_counter() - t0)
            if terminated or truncated:
                break
    return steps


def measure(split: str, steps_per_game: int) -> dict[str, Any]:
    env = envs.make("alfworld-pick", split=split, data="generated")
    parse_cache.clear()
    first, revisit, same = [], [], []
    for seed in range(env.num_games):  # first visit of every game in this process
        t0 = time.perf_counter()
        env.reset(seed=seed)
        first.append(time.perf_counter() - t0)
    for seed in range(env.num_games):
        t0 = time.perf_counter()
        env.reset(seed=seed)
        revisit.append(time.perf_counter() - t0)
    for _ in range(10):
        t0 = time.perf_counter()
        env.reset(seed=env.num_games - 1)
        same.append(time.perf_counter() - t0)
    row: dict[str, Any] = {
        "split": split,
        "games": env.num_games,
        "reset first visit ms": _ms(first),
        "reset revisit ms": _ms(revisit),
        "reset same game ms": _ms(same),
    }
    _, cached_steps = _random_steps(env, steps_per_game)
    row["random step ms"] = _ms(cached_steps)
    row["expert step ms"] = _ms(_expert_steps(env))
    with parse_cache.disabled():  # the stock engine on the same episodes
        stock_resets, stock_steps = _random_steps(env, steps_per_game)
    row["stock reset ms"] = _ms(stock_resets)
    row["stock random step ms"] = _ms(stock_steps)
    row["step speed-up"] = float(np.mean(stock_steps) / np.mean(cached_steps))
    env.close()
    return row


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    rows = [measure(split, 5 if args.quick else 20) for split in ("train", "unseen")]
    payload = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "load_avg": os.getloadavg()},
        "rows": rows,
    }
    for row in rows:
        print(
            row["split"],
            {
                k: (f"{v['mean']:.1f} (p95 {v['p95']:.1f})" if isinstance(v, dict) else round(v, 2))
                for k, v in row.items()
                if k != "split"
            },
        )
    print("load average", payload["machine"]["load_avg"])
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=2)
        os.replace(tmp, args.json)
    return payload


if __name__ == "__main__":
    main()
