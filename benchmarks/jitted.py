"""Samples per second of the compiled DQN-Prior loop (prior_rl.run.jitted) over 1..256 seeds vs the Python loop.

    python -m benchmarks.jitted [--quick] [--seeds 1 16 64 256] [--no-python] [--no-e2e] [--no-ppo]

Rows (Tomato Salad, DQN-Prior, the loops' shared defaults: 4 env copies, batch 64, 8 updates every 20 samples):

* ``jitted`` × seeds: env samples per second summed over seeds (compile excluded), the compile time, the memory
  XLA plans per seed, and the achieved FLOP rate as a fraction of a float32 matmul's rate on this machine;
* ``python``: ``prior_rl.run.train`` on the same configuration, warm (from its first evaluation after
  ``eval_every`` samples to the end: every prompt is cached by then) and end to end (loading included), three seeds
  in one process with one model store; the 64-seed end-to-end time is seed 0 plus 63 × the mean of seeds 1-2;
* ``ppo`` × seeds: the same for the compiled PPO loop (prior_rl.run.jitted_ppo) on Tomato Salad, one-hot features;
* ``e2e``: 64 seeds × 20,000 samples through ``prior_rl.run.sweep.run_sweep`` end to end (tables from the
  on-disk cache, tracing, compilation, the run), against the Python loop's 64-seed estimate.

FLOPs per sample are counted from XLA's cost analysis of the loop-free pieces (``cost_analysis`` of a scanned
program counts a loop body once): one gradient update (× updates per sample) plus one Q forward pass over the
candidates per acting step and per evaluation step; the environment's integer arithmetic is left out.
Writes benchmarks/results/jitted.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import write_json
from prior_rl import replay
from prior_rl.run import jitted, sweep


def matmul_rate(n: int = 2048, reps: int = 10, tries: int = 3) -> float:
    """FLOP/s of an n×n float32 matmul under XLA (the best of ``tries`` timings of ``reps`` products)."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = 0.0
    for _ in range(tries):
        t = time.perf_counter()
        for _ in range(reps):
            out = f(a)
        out.block_until_ready()
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t))
    return best


def _flops(fn, *args) -> float:
    cost = jax.jit(fn).lower(*args).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", 0.0)) if cost else 0.0


def flops_per_sample(config: jitted.JitConfig, tables: jitted.Tables) -> dict[str, float]:
    """XLA FLOPs of one update and of one candidate forward pass, and their total per env sample."""
    agent = jitted.make_agent(config, tables.num_rows)
    table = jitted.flat_features(jitted.Tables(*tables))
    state = agent.init(jax.random.key(0), table.shape[1])
    n, k = 256, config.k
    z = np.zeros(n, np.int32)
    items = replay.IndexedTransition(
        z,
        np.zeros((n, k), np.int32),
        np.ones((n, k), bool),
        z * 0.0,
        z * 0.0 + 1,
        np.zeros((n, k), np.int32),
        np.ones((n, k), bool),
    )
    buffer = replay.from_items(items)
    one = dataclasses.replace(config, updates_per_train=1)
    update = _flops(lambda s, key: jitted.replay_update(agent, one, s, buffer, table, key)[0], state, jax.random.key(1))
    forward = _flops(lambda p, f: agent.network.apply(p, f), state.params, table[jnp.zeros((1, k), jnp.int32)])
    evals = config.env_steps // config.eval_every + 1
    eval_steps = evals * len(jitted.EVAL_MODES) * config.eval_episodes * config.episode_steps
    per_sample = (
        jitted.updates_per_run(config) * update + (config.env_steps + eval_steps) * forward
    ) / config.env_steps
    return {"update_flops": update, "forward_flops_per_state": forward, "flops_per_sample": per_sample}


def jitted_row(config, tables, seeds: int, make=jitted.make_train, loop: str = "jitted") -> dict:
    """One compiled sweep of ``seeds`` seeds (``make``: the loop's ``make_train``; ``loop``: the row's label)."""
    train = jax.jit(jax.vmap(make(config, tables)))
    keys = sweep.seed_keys(range(seeds))
    t = time.perf_counter()
    compiled = train.lower(keys).compile()
    compile_s = time.perf_counter() - t
    mem = compiled.memory_analysis()
    per_seed = None
    if mem is not None:
        total = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
        per_seed = total / seeds
    t = time.perf_counter()
    out = jax.block_until_ready(compiled(keys))
    wall = time.perf_counter() - t
    return {
        "loop": loop,
        "seeds": seeds,
        "samples_per_s": seeds * config.env_steps / wall,
        "wall_s": wall,
        "compile_s": compile_s,
        "bytes_per_seed": per_seed,
        "final_success": float(np.asarray(out["eval_success"])[:, -1].mean()),
    }


def python_row(config: jitted.JitConfig, seeds: int = 3) -> dict:
    from prior_rl.run import ModelStore, train
    from prior_rl.run.config import TrainConfig

    store, walls, warm, finals = ModelStore(), [], [], []
    for seed in range(seeds):
        marks: list[tuple[float, int]] = []
        tc = TrainConfig(
            env=config.env,
            algo=config.algo,
            env_steps=config.env_steps,
            eval_every=config.eval_every,
            eval_episodes=config.eval_episodes,
            seed=seed,
            progress=False,
            tensorboard=False,
            plot=False,
        )
        t0 = time.perf_counter()
        res = train(tc, on_log=lambda row: marks.append((time.perf_counter(), row["env_steps"])), store=store)
        walls.append(time.perf_counter() - t0)
        (t1, s1), (t2, s2) = next(m for m in marks if m[1] >= config.eval_every), marks[-1]
        warm.append((s2 - s1) / (t2 - t1))
        finals.append(float(res.final_eval["eval_success"]))
    rate = float(np.mean(warm[1:] or warm))
    run = config.env_steps / rate
    return {
        "loop": "python",
        "seeds": seeds,
        "env_steps": config.env_steps,
        "samples_per_s": rate,
        "wall_s_per_seed": walls,
        "first_seed_overhead_s": walls[0] - run,  # loading the models, compiling, scoring the prompts
        "seed_overhead_s": float(np.mean(walls[1:] or walls)) - run,  # what each further seed adds beyond stepping
        "final_success": float(np.mean(finals)),
    }


def python_e2e_s(py: dict, seeds: int, steps: int) -> float:
    """Estimated wall time of ``seeds`` × ``steps`` through the Python loop in one process (from :func:`python_row`:
    the first seed's overhead, each further seed's, and the warm rate)."""
    return py["first_seed_overhead_s"] + (seeds - 1) * py["seed_overhead_s"] + seeds * steps / py["samples_per_s"]


def e2e_row(config: jitted.JitConfig, seeds: int = 64, steps: int = 20_000) -> dict:
    c = dataclasses.replace(config, env_steps=steps)
    t = time.perf_counter()
    result = sweep.run_sweep(c, seeds)
    wall = time.perf_counter() - t
    final = result.curves["eval_success"][0][:, -1]
    return {
        "loop": "e2e",
        "seeds": seeds,
        "env_steps": steps,
        "wall_s": wall,
        "table_s": result.table_s,
        "compile_s": result.compile_s,
        "run_s": result.run_s,
        "final_success_iqm": sweep.stats.iqm(final),
    }


def ppo_rows(seeds: list[int], steps: int) -> list[dict]:
    """``ppo`` rows: the compiled PPO loop (prior_rl.run.jitted_ppo, its defaults: 4 envs × 32-step rollouts, 4
    epochs × 4 minibatches) on Tomato Salad with one-hot features, the setting in which it learns."""
    from prior_rl.run import jitted_ppo

    config = jitted_ppo.PPOJitConfig(env="overcooked-tomato-salad", env_steps=steps, eval_every=steps // 2)
    tables = jitted.build_tables(config.online_view())
    return [jitted_row(config, tables, s, jitted_ppo.make_train, "ppo") for s in seeds]


def print_rows(rows: list[dict], rate: float, flops: dict) -> None:
    print(
        f"device {jax.devices()[0].device_kind}; 2048² f32 matmul {rate / 1e9:.1f} GFLOP/s; "
        f"{flops['flops_per_sample'] / 1e6:.2f} MFLOP per sample ({flops['update_flops'] / 1e6:.1f} per update)"
    )
    print(f"{'loop':7} {'seeds':>5} {'samples/s':>10} {'of matmul':>9} {'compile s':>9} {'MB/seed':>8} {'success':>7}")
    for r in rows:
        if r["loop"] == "e2e":
            continue
        frac = f"{r['fraction_of_matmul']:.1%}" if r.get("fraction_of_matmul") is not None else "-"
        comp = f"{r['compile_s']:.1f}" if r.get("compile_s") else "-"
        mb = f"{r['bytes_per_seed'] / 1e6:.2f}" if r.get("bytes_per_seed") else "-"
        print(
            f"{r['loop']:7} {r['seeds']:>5} {r['samples_per_s']:>10.0f} {frac:>9} {comp:>9} {mb:>8} "
            f"{r['final_success']:>7.2f}"
        )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seeds", type=int, nargs="*")
    p.add_argument("--no-python", action="store_true")
    p.add_argument("--no-e2e", action="store_true")
    p.add_argument("--no-ppo", action="store_true", help="skip the compiled PPO loop's rows")
    p.add_argument("--out", default=None, help="folder for jitted.json (default benchmarks/results)")
    args = p.parse_args()
    steps = 500 if args.quick else 2000
    config = jitted.JitConfig(env_steps=steps, eval_every=500)
    seeds = args.seeds or ([1, 16] if args.quick else [1, 16, 64, 256])
    tables = jitted.build_tables(config)
    rate = matmul_rate()
    flops = flops_per_sample(config, tables)
    rows = [jitted_row(config, tables, s) for s in seeds]
    if not args.no_python:
        rows.append(
            python_row(dataclasses.replace(config, env_steps=1000 if args.quick else 3000), 2 if args.quick else 3)
        )
    for r in rows:
        r["fraction_of_matmul"] = flops["flops_per_sample"] * r["samples_per_s"] / rate
    if not args.no_ppo:  # quick: one PPO row (the most seeds), to stay inside device_check.sh's step limit
        rows += ppo_rows([max(seeds)] if args.quick else seeds, 2048 if args.quick else 10_240)
    if not (args.quick or args.no_e2e):
        rows.append(e2e_row(config))
    print_rows(rows, rate, flops)
    py = next((r for r in rows if r["loop"] == "python"), None)
    for r in rows:
        if py and r["loop"] == "jitted":
            r["speedup_vs_python_warm"] = r["samples_per_s"] / py["samples_per_s"]
        if py and r["loop"] == "e2e":
            r["python_e2e_s_estimate"] = python_e2e_s(py, r["seeds"], r["env_steps"])
            r["speedup_vs_python_e2e"] = r["python_e2e_s_estimate"] / r["wall_s"]
            print(
                f"e2e: {r['seeds']} seeds x {r['env_steps']} samples in {r['wall_s']:.0f}s (compile "
                f"{r['compile_s']:.0f}s); the Python loop, est. {r['python_e2e_s_estimate']:.0f}s: "
                f"{r['speedup_vs_python_e2e']:.1f}x longer"
            )
    meta = {"device": jax.devices()[0].device_kind, "matmul_flops_per_s": rate, "env_steps": steps, **flops}
    command = "python -m benchmarks.jitted" + (" --quick" if args.quick else "")
    write_json("jitted", {**meta, "rows": rows, "command": command}, args.out)


if __name__ == "__main__":
    main()
