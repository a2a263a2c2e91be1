"""Samples per second of the compiled DQN-Prior loop (prior_rl.run.jitted) over 1..256 seeds vs the Python loop.

    python -m benchmarks.jitted [--quick]

Each row: env samples per second summed over seeds (compile excluded), XLA's FLOPs per sample (cost_analysis of the
compiled program) and the achieved FLOP rate as a fraction of a 2048² float32 matmul's rate on this machine. The
Python row is ``prior_rl.run.train`` with the same config, timed from its first evaluation row (warm) to the end.
Writes benchmarks/results/jitted.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from prior_rl.run import jitted


def matmul_rate(n: int = 2048, reps: int = 10) -> float:
    """FLOP/s of an n×n float32 matmul under XLA."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    t = time.perf_counter()
    for _ in range(reps):
        out = f(a)
    out.block_until_ready()
    return 2 * n**3 * reps / (time.perf_counter() - t)


def jitted_row(config: jitted.JitConfig, tables, seeds: int) -> dict:
    train = jax.jit(jax.vmap(jitted.make_train(config, tables)))
    keys = jax.random.split(jax.random.key(0), seeds)
    t = time.perf_counter()
    compiled = train.lower(keys).compile()
    compile_s = time.perf_counter() - t
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = float(cost.get("flops", 0.0)) if cost else 0.0
    t = time.perf_counter()
    out = compiled(keys)
    jax.block_until_ready(out)
    wall = time.perf_counter() - t
    samples = seeds * config.env_steps
    return {
        "loop": "jitted",
        "seeds": seeds,
        "samples_per_s": samples / wall,
        "flops_per_sample": flops / samples,
        "wall_s": wall,
        "compile_s": compile_s,
        "final_success": float(out["eval_success"][:, -1].mean()),
    }


def python_row(config: jitted.JitConfig) -> dict:
    from prior_rl.run import train
    from prior_rl.run.config import TrainConfig

    marks: list[tuple[float, int]] = []
    tc = TrainConfig(
        env=config.env,
        algo=config.algo,
        env_steps=config.env_steps,
        eval_every=config.eval_every,
        eval_episodes=config.eval_episodes,
        progress=False,
        tensorboard=False,
        plot=False,
    )
    res = train(tc, on_log=lambda row: marks.append((time.perf_counter(), row["env_steps"])))
    t0, s0 = marks[0]
    wall = time.perf_counter() - t0
    return {
        "loop": "python",
        "seeds": 1,
        "samples_per_s": (config.env_steps - s0) / wall,
        "flops_per_sample": None,
        "wall_s": wall,
        "compile_s": None,
        "final_success": float(res.final_eval["eval_success"]),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seeds", type=int, nargs="*")
    p.add_argument("--no-python", action="store_true")
    args = p.parse_args()
    steps = 500 if args.quick else 2000
    config = jitted.JitConfig(env_steps=steps, eval_every=500)
    seeds = args.seeds or ([1, 16] if args.quick else [1, 16, 64, 256])
    tables = jitted.build_tables(config)
    rate = matmul_rate()
    rows = [jitted_row(config, tables, s) for s in seeds]
    if not args.no_python:
        rows.append(python_row(config))
    for r in rows:
        fps = r["flops_per_sample"]
        r["fraction_of_matmul"] = fps * r["samples_per_s"] / rate if fps else None
    print(f"device {jax.devices()[0].device_kind}; 2048² f32 matmul {rate / 1e9:.1f} GFLOP/s; {steps} env steps")
    print(f"{'loop':8} {'seeds':>5} {'samples/s':>11} {'FLOP/sample':>12} {'of matmul':>10} {'compile s':>9}")
    for r in rows:
        fps = f"{r['flops_per_sample']:.3g}" if r["flops_per_sample"] else "-"
        frac = f"{r['fraction_of_matmul']:.2%}" if r["fraction_of_matmul"] else "-"
        comp = f"{r['compile_s']:.1f}" if r["compile_s"] else "-"
        print(f"{r['loop']:8} {r['seeds']:>5} {r['samples_per_s']:>11.1f} {fps:>12} {frac:>10} {comp:>9}")
    out = Path(__file__).parent / "results" / "jitted.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"device": jax.devices()[0].device_kind, "matmul_flops_per_s": rate, "env_steps": steps}
    out.write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
