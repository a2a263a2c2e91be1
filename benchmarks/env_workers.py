"""ALFWorld samples per second with the copies stepped in this process or in 1, 2, 4 worker processes
(:class:`envs.workers.WorkerVectorEnv`), uniform-random actions, automatic resets included.

    python -m benchmarks.env_workers --quick     # 4 copies, 60 vector steps per setting (~2 min on 2 cores)
    python -m benchmarks.env_workers             # 8 copies, 200 vector steps

The engine is TextWorld's (it cannot be jitted); a worker process makes its own copies once (reported apart as
"start s"). Writes ``benchmarks/results/env_workers.json``.
"""

from __future__ import annotations

import argparse
import functools
import time

import numpy as np

import envs
from benchmarks.common import machine, print_table, write_json


def measure(workers: int, num_envs: int, steps: int) -> dict:
    from envs.workers import WorkerVectorEnv

    factory = functools.partial(envs.make, "alfworld-pick", max_steps=20)
    t0 = time.perf_counter()
    vec = envs.VectorEnv(factory, num_envs) if workers == 0 else WorkerVectorEnv(factory, num_envs, workers)
    vec.reset(seed=0)
    start = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    episodes = 0
    for _ in range(steps):
        step = vec.step([int(rng.integers(len(o.actions))) for o in vec.observations])
        episodes += int((step.terminated | step.truncated).sum())
    elapsed = time.perf_counter() - t0
    vec.close()
    return {
        "workers": workers if workers else "in-process",
        "copies": num_envs,
        "samples": steps * num_envs,
        "episodes ended": episodes,
        "samples/s": steps * num_envs / elapsed,
        "ms/vector step": 1000 * elapsed / steps,
        "start s": start,
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    num_envs, steps = (4, 60) if args.quick else (8, 200)
    rows = [measure(w, num_envs, steps) for w in (0, 1, 2, 4)]
    base = rows[0]["samples/s"]
    for r in rows:
        r["vs in-process"] = r["samples/s"] / base
    print_table(rows, list(rows[0]))
    payload = {
        "command": "python -m benchmarks.env_workers" + (" --quick" if args.quick else ""),
        "machine": machine(),
        "rows": rows,
    }
    print(f"wrote {write_json('env_workers', payload)}")
    return payload


if __name__ == "__main__":
    main()
