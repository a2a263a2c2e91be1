"""Environment throughput: reset time and steps per second for every text environment.

    python -m benchmarks.envs --quick            # a few seconds per env
    python -m benchmarks.envs                    # longer, steadier figures
    python -m benchmarks.envs --envs frozen-lake

Two policies are timed: uniform-random over the admissible actions and the env's expert. Overcooked steps are
macro steps (each runs several primitive steps). ALFWorld is included when its engine is installed.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import envs
from benchmarks.common import machine, print_table, write_json


def time_env(name: str, seconds: float, max_resets: int, **options) -> dict:
    env = envs.make(name, **options)
    rng = np.random.default_rng(0)
    # reset time, averaged over a few seeds (the first reset may build caches: reported separately)
    t0 = time.perf_counter()
    env.reset(seed=0)
    first_reset = time.perf_counter() - t0
    resets = []
    for seed in range(1, max_resets + 1):
        t0 = time.perf_counter()
        env.reset(seed=seed)
        resets.append(time.perf_counter() - t0)
    row = {"env": name, "first reset ms": first_reset * 1e3, "reset ms": 1e3 * float(np.mean(resets))}
    for policy in ("random", "expert"):
        steps = episodes = successes = 0
        env.reset(seed=0)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            obs = env.observation
            action = env.expert_action() if policy == "expert" else int(rng.integers(len(obs.actions)))
            _, _, terminated, truncated, info = env.step(action)
            steps += 1
            if terminated or truncated:
                episodes += 1
                successes += info["success"]
                env.reset(seed=episodes)
        elapsed = time.perf_counter() - t0
        row[f"{policy} steps/s"] = steps / elapsed
        row[f"{policy} success"] = successes / max(episodes, 1)
    env.close()
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short timing windows (about 1 s per policy)")
    parser.add_argument("--envs", nargs="*", default=None, help="env names (default: all registered)")
    parser.add_argument("--out", default=None, help="directory for the JSON (default benchmarks/results)")
    args = parser.parse_args(argv)
    seconds, resets = (1.0, 3) if args.quick else (10.0, 20)
    names = args.envs or envs.names()
    rows, skipped = [], {}
    for name in names:
        # Overcooked has no step cap by default: time it at the paper's 51; the others keep their default caps
        options = {"max_steps": 51} if name.startswith("overcooked") else {}
        try:
            rows.append(time_env(name, seconds, resets, **options))
        except ImportError as exc:  # an optional engine (ALFWorld) that is not installed
            skipped[name] = str(exc)
            print(f"skipped {name}: {exc}")
    columns = [
        "env",
        "first reset ms",
        "reset ms",
        "random steps/s",
        "expert steps/s",
        "random success",
        "expert success",
    ]
    print_table(rows, columns)
    payload = {"benchmark": "envs", "quick": args.quick, "machine": machine(), "rows": rows, "skipped": skipped}
    path = write_json("envs", payload, args.out)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
