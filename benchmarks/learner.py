"""Learner throughput: jitted DQN-Prior / CQL-Prior update steps vs a PyTorch re-statement of the reference loop.

    python -m benchmarks.learner --quick      # ~1 minute
    python -m benchmarks.learner              # longer timing windows, more devices

Shapes (the reference's offline/ALFWorld setting): batch 128, k = 5 candidates, 384-d MiniLM features, Q MLP
384-64-64-1 ReLU, AdamW(lr 5e-4, wd 0.01) after global-norm clipping at 1.0, Polyak target τ = 0.005, sum-reduced
MSE (+ 5·CQL for CQL-Prior). Batches are pre-generated on the device for both frameworks, so only the update is
timed (the reference samples through a HF ``datasets`` DataLoader, which would only slow the PyTorch side).

* JAX: ``agent.update`` runs ``updates_per_call`` updates in one ``lax.scan`` per dispatch; also one update per
  dispatch, and a row that samples int32 rows from an indexed replay buffer (20 000 items, 4096-row feature table)
  and gathers each minibatch's features inside its scan step, all in one jitted call (the train loop's path).
* PyTorch, two rows per thread count:
  - lean: one optimizer step per Python iteration on pre-made tensors, with the correct per-sample target. Both
    sides start from the same weights and the first losses are checked to agree. This is the strictest comparison:
    the same arithmetic with almost no Python around it.
  - reference loop: the reference's loop as written (value-based/CQL_overcook_salad.py): a 4,000-item replay list
    as a HF ``datasets.Dataset``, drawn by ``RandomSampler(replacement=True)`` through a ``DataLoader`` with
    ``default_data_collator``, a per-parameter ``copy_`` soft update and ``.item()`` on the loss every step; the
    same loss as the lean row. It is compared with JAX's "replay sample in-call" row, which also draws every
    minibatch from a replay buffer inside the timed loop. Needs ``pip install -e ".[bench]"`` (datasets).
* Memory: XLA's ``memory_analysis()`` of the compiled single-update step and of the scanned call.
* Devices: the data-parallel (shard_map) update on 1..N devices, each size in a fresh subprocess. On CPU the
  devices are fake (``--xla_force_host_platform_device_count``) and share the same cores: that row is a
  correctness/plumbing check, not a scaling measurement.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import numpy as np

B, K, D = 128, 5, 384
ROOT = Path(__file__).resolve().parents[1]


def random_batches(num_updates: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    f = np.float32
    mask = rng.random((num_updates, B, K)) < 0.9
    mask[..., 0] = True
    next_mask = rng.random((num_updates, B, K)) < 0.9
    next_mask[..., 0] = True
    return {
        "obs_feat": rng.normal(size=(num_updates, B, D)).astype(f),
        "cand_feat": rng.normal(size=(num_updates, B, K, D)).astype(f),
        "cand_mask": mask,
        "reward": rng.normal(size=(num_updates, B)).astype(f),
        "discount": (rng.random((num_updates, B)) < 0.9).astype(f),
        "next_cand_feat": rng.normal(size=(num_updates, B, K, D)).astype(f),
        "next_mask": next_mask,
    }


def timed(fn: Callable[[], Any], seconds: float, min_calls: int = 3) -> tuple[float, int]:
    """Seconds per call of ``fn`` (which must block), over at least ``min_calls`` calls and ``seconds``."""
    calls, t0 = 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - t0 < seconds:
        fn()
        calls += 1
    return (time.perf_counter() - t0) / calls, calls


# ---------------------------------------------------------------------------------------------------------------
# JAX
# ---------------------------------------------------------------------------------------------------------------
Bench = dict  # name -> (blocking callable, updates per call, extra row fields)


def jax_benches(algo: str, batches_np: dict, updates_per_call: int) -> tuple[Bench, dict, Any]:
    """Callables for the three JAX modes, the XLA cost/memory figures, and (initial params, first loss)."""
    import jax
    import jax.numpy as jnp

    from prior_rl import agents, replay
    from prior_rl.replay import Transition

    agent = agents.make_dqn_prior(batch_size=B) if algo == "dqn-prior" else agents.make_cql_prior()
    state = agent.init(jax.random.key(0), D)
    batches = Transition(**{k: jnp.asarray(v[:updates_per_call]) for k, v in batches_np.items()})
    singles = [jax.tree.map(lambda x, i=i: x[i], batches) for i in range(updates_per_call)]

    # compile time of the scanned call; FLOPs and memory of one compiled update step
    t0 = time.perf_counter()
    compiled = jax.jit(agent.update).lower(state, batches).compile()
    compile_s = time.perf_counter() - t0
    mem_scan = compiled.memory_analysis()
    compiled_step = jax.jit(agent.update_step).lower(state, singles[0]).compile()
    mem_step = compiled_step.memory_analysis()
    cost = compiled_step.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    memory = {
        "step_flops": float(cost.get("flops", float("nan"))) if cost else float("nan"),
        "step_temp_bytes": int(mem_step.temp_size_in_bytes),
        "step_argument_bytes": int(mem_step.argument_size_in_bytes),
        "step_output_bytes": int(mem_step.output_size_in_bytes),
        "scan_temp_bytes": int(mem_scan.temp_size_in_bytes),
        "scan_argument_bytes": int(mem_scan.argument_size_in_bytes),
        "params_bytes": int(sum(x.nbytes for x in jax.tree.leaves(state.params))),
        "updates_per_call": updates_per_call,
        "compile_s": compile_s,
    }

    holder = [state]

    def scan_call():
        holder[0], m = compiled(holder[0], batches)
        jax.block_until_ready(m["loss"])

    # one update per dispatch, cycling through the same batches as the scan (a fixed batch would sit in cache)
    holder1, it = [state], [0]

    def step_call():
        holder1[0], m = compiled_step(holder1[0], singles[it[0] % updates_per_call])
        it[0] += 1
        jax.block_until_ready(m["loss"])

    # the train loop's path: sample [U, B] rows of an indexed replay + feature table inside the same call
    n_rows, capacity = 4096, 20000
    rng = np.random.default_rng(1)
    table = jnp.asarray(rng.normal(size=(n_rows, D)).astype(np.float32))
    buffer = replay.from_items(
        replay.IndexedTransition(
            jnp.asarray(rng.integers(0, n_rows, capacity), jnp.int32),
            jnp.asarray(rng.integers(0, n_rows, (capacity, K)), jnp.int32),
            jnp.asarray(rng.random((capacity, K)) < 0.9).at[:, 0].set(True),
            jnp.asarray(rng.normal(size=capacity).astype(np.float32)),
            jnp.asarray((rng.random(capacity) < 0.9).astype(np.float32)),
            jnp.asarray(rng.integers(0, n_rows, (capacity, K)), jnp.int32),
            jnp.ones((capacity, K), bool),
        )
    )

    @jax.jit
    def sample_and_update(state, buffer, table, key):  # buffer/table as arguments, not baked-in constants
        rows = replay.sample(buffer, key, updates_per_call, B)  # int32 rows [U, B, ...]
        return agent.update(state, rows, table)  # features gathered per step inside the scan

    holder2, key = [state], [jax.random.key(2)]

    def replay_call():
        key[0], sub = jax.random.split(key[0])
        holder2[0], m = sample_and_update(holder2[0], buffer, table, sub)
        jax.block_until_ready(m["loss"])

    benches = {
        f"scan x{updates_per_call}, pre-made batches": (scan_call, updates_per_call, {"compile s": compile_s}),
        "1 update per dispatch": (step_call, 1, {}),
        f"scan x{updates_per_call}, replay sample in-call": (replay_call, updates_per_call, {}),
    }
    for fn, _, _ in benches.values():  # compile and warm up
        fn()
    first_loss = float(agent.loss(state.params, state, singles[0])[0])
    return {("jax", k): v for k, v in benches.items()}, memory, (state.params, first_loss)


# ---------------------------------------------------------------------------------------------------------------
# PyTorch re-statement of the reference update loop
# ---------------------------------------------------------------------------------------------------------------
def torch_bench(algo: str, batches_np: dict, init_params: Any, threads: int) -> tuple[Bench, float]:
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(D, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    with torch.no_grad():  # start from the JAX agent's weights (flax kernels are [in, out], torch's [out, in])
        p = init_params["params"]["mlp"]
        for i, layer in enumerate((net[0], net[2], net[4])):
            layer.weight.copy_(torch.from_numpy(np.asarray(p[f"dense_{i}"]["kernel"]).T.copy()))
            layer.bias.copy_(torch.from_numpy(np.asarray(p[f"dense_{i}"]["bias"]).copy()))
    target = nn.Sequential(nn.Linear(D, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
    target.load_state_dict(net.state_dict())
    opt = torch.optim.AdamW(net.parameters(), lr=5e-4)  # β (0.9, 0.999), eps 1e-8, wd 0.01: the reference's
    gamma, tau, beta = 0.99, 0.005, 5.0
    cql = algo == "cql-prior"
    n = batches_np["reward"].shape[0]
    data = [{k: torch.from_numpy(v[i]) for k, v in batches_np.items()} for i in range(n)]

    def loss_fn(b):
        q = net(b["obs_feat"]).squeeze(-1)  # [B]
        with torch.no_grad():
            q_next = target(b["next_cand_feat"]).squeeze(-1).masked_fill(~b["next_mask"], float("-inf"))
            y = b["reward"] + gamma * b["discount"] * q_next.max(dim=-1).values  # per-sample target [B]
        mse = nn.functional.mse_loss(q, y, reduction="sum")
        if not cql:
            return mse
        q_all = net(b["cand_feat"]).squeeze(-1).masked_fill(~b["cand_mask"], float("-inf"))
        return 0.5 * mse + beta * (torch.logsumexp(q_all, dim=-1) - q).mean()

    with torch.no_grad():
        first_loss = float(loss_fn(data[0]))
    it = [0]

    def step():
        # intra-op threads matter a lot on a small shared machine (OpenMP spin-waits when oversubscribed), so
        # every thread count is timed and JAX is compared with the fastest
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        b = data[it[0] % n]
        it[0] += 1
        loss = loss_fn(b)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        with torch.no_grad():  # Polyak update after every gradient step, as in the reference
            for t, o in zip(target.parameters(), net.parameters()):
                t.lerp_(o, tau)

    for _ in range(5):
        step()
    name = f"torch {torch.__version__} ({threads} thread{'s' if threads > 1 else ''})"
    benches = {(name, "1 optimizer step per python iteration"): (step, 1, {})}
    reference = reference_loop_step(net, target, opt, loss_fn, threads)
    if reference is not None:
        benches[(name, REFERENCE_MODE)] = (reference, 1, {})
    return benches, first_loss


REFERENCE_MODE = "reference loop: HF datasets + DataLoader sampling"
REPLAY_ITEMS = 4000  # the reference's replay capacity (train_overcooked / CQL --capacity 4000)


@functools.lru_cache(maxsize=1)
def _reference_dataset() -> Any:
    """The reference's replay as a ``datasets.Dataset`` (built once; every thread setting samples the same one)."""
    import datasets

    rng = np.random.default_rng(3)
    n = REPLAY_ITEMS
    # transitions as the reference stores them: feat [1, D], feat_all [k, D], next_feat [k, D], 0-d reward/done;
    # our masks ride along so the loss is the same function as the lean row's
    data = {
        "obs_feat": [rng.normal(size=(1, D)).astype(np.float32) for _ in range(n)],
        "cand_feat": [rng.normal(size=(K, D)).astype(np.float32) for _ in range(n)],
        "cand_mask": [np.ones(K, bool) for _ in range(n)],
        "reward": [np.array(rng.normal(), np.float32) for _ in range(n)],
        "discount": [np.array(1.0, np.float32) for _ in range(n)],
        "next_cand_feat": [rng.normal(size=(K, D)).astype(np.float32) for _ in range(n)],
        "next_mask": [np.ones(K, bool) for _ in range(n)],
    }
    datasets.disable_progress_bars()
    return datasets.Dataset.from_dict(data)


def reference_loop_step(net, target, opt, loss_fn, threads: int) -> Optional[Callable[[], None]]:
    """One step of the reference's training loop as it is written (value-based/CQL_overcook_salad.py): the replay
    list becomes a ``datasets.Dataset.from_dict``, drawn by ``RandomSampler(replacement=True)`` through a
    ``DataLoader`` with transformers' ``default_data_collator``; each batch is ``.float()``-converted, the update
    runs, the target is soft-updated with ``copy_(t·(1−τ) + p·τ)`` per parameter, and the losses are read with
    ``.item()``. The loss itself is the same per-sample one as the lean row. None if ``datasets`` is missing
    (``pip install datasets``: the reference's dependency, not ours)."""
    if importlib.util.find_spec("datasets") is None:
        return None
    import torch
    from torch.utils.data import DataLoader, RandomSampler
    from transformers import default_data_collator

    train_data = _reference_dataset()
    sampler = RandomSampler(train_data, replacement=True, num_samples=10**9)
    loader = iter(DataLoader(train_data, batch_size=B, sampler=sampler, collate_fn=default_data_collator))
    tau = 0.005

    def step():
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        raw = next(loader)
        b = {k: (v.float() if v.is_floating_point() else v) for k, v in raw.items()}
        # [B, 1, D] -> [B, D] and reward/discount to [B] (datasets hands 0-d values back as [B] or [B, 1] by
        # version): the per-sample target of the lean row, not the reference's B×B broadcast
        b["obs_feat"] = b["obs_feat"][:, 0]
        b["reward"], b["discount"] = b["reward"].reshape(-1), b["discount"].reshape(-1)
        loss = loss_fn(b)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for t, o in zip(target.parameters(), net.parameters()):
                t.data.copy_(t.data * (1.0 - tau) + o.data * tau)
        loss.item()

    step()
    return step


def measure(benches: Bench, seconds: float, rounds: int) -> dict:
    """Interleave the benches in ``rounds`` short windows (the machine is shared: load drifts between windows)
    and return the per-round updates/s of each."""
    rates: dict = {k: [] for k in benches}
    for _ in range(rounds):
        for k, (fn, upc, _) in benches.items():
            per_call, _ = timed(fn, seconds / rounds, min_calls=1)
            rates[k].append(upc / per_call)
    return rates


# ---------------------------------------------------------------------------------------------------------------
# devices
# ---------------------------------------------------------------------------------------------------------------
def device_worker(ndev: int, seconds: float, updates_per_call: int) -> dict:
    """Run in a subprocess: sharded DQN-Prior update on ``ndev`` devices (blocking every call)."""
    import jax
    import jax.numpy as jnp

    from prior_rl import agents, parallel
    from prior_rl.replay import Transition

    agent = agents.make_dqn_prior(batch_size=B)
    state = agent.init(jax.random.key(0), D)
    mesh = parallel.make_mesh(ndev)
    update = parallel.make_sharded_update(agent, mesh)
    # one scanned call per dispatch, blocked every call (fake CPU devices deadlock otherwise, docs/llm-offline.md §8.4)
    batches = parallel.shard_batches(
        Transition(**{k: jnp.asarray(v) for k, v in random_batches(updates_per_call).items()}), mesh
    )
    holder = [parallel.replicate(state, mesh)]
    ref, _ = agent.update(state, jax.device_get(batches))

    def call():
        holder[0], m = update(holder[0], batches)
        jax.block_until_ready(m["loss"])

    t0 = time.perf_counter()
    call()
    first_s = time.perf_counter() - t0
    # equality with the single-device update on the same batches, from the same start
    check, _ = jax.block_until_ready(update(parallel.replicate(state, mesh), batches))
    max_diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(check)))
    per_call, calls = timed(call, seconds)
    ups = updates_per_call / per_call
    return {
        "devices": ndev,
        "backend": jax.default_backend(),
        "device_kind": jax.devices()[0].device_kind,
        "updates/s": ups,
        "updates/s per device": ups / ndev,
        "ms/update": 1e3 / ups,
        "compile+first s": first_s,
        "max |sharded - single|": max_diff,
        "calls": calls,
    }


def device_rows(devices: list[int], seconds: float, updates_per_call: int) -> list[dict]:
    import jax

    rows = []
    forced = jax.default_backend() == "cpu"
    for ndev in devices:
        if not forced and ndev > len(jax.devices()):
            continue
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        if forced:
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={ndev}").strip()
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.learner",
            "--worker-devices",
            str(ndev),
            "--seconds",
            str(seconds),
            "--updates-per-call",
            str(updates_per_call),
        ]
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"device worker ({ndev} devices) failed:\n{proc.stderr[-3000:]}")
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        row["note"] = "fake CPU devices on shared cores: plumbing check only" if forced else ""
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short timing windows")
    parser.add_argument("--seconds", type=float, default=None, help="timing window per measurement")
    parser.add_argument("--updates-per-call", type=int, default=None, help="updates per jitted call (lax.scan)")
    parser.add_argument("--devices", type=int, nargs="*", default=None, help="device counts for the sharded rows")
    parser.add_argument("--out", default=None, help="directory for the JSON (default benchmarks/results)")
    parser.add_argument("--worker-devices", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (2.0 if args.quick else 10.0)
    upc = args.updates_per_call or (50 if args.quick else 200)

    if args.worker_devices is not None:
        print(json.dumps(device_worker(args.worker_devices, seconds, upc)))
        return {}

    from benchmarks.common import machine, print_table, write_json

    devices = args.devices if args.devices is not None else ([1, 2] if args.quick else [1, 2, 4])
    rounds = 3 if args.quick else 5
    batches_np = random_batches(upc)
    torch_threads = list(range(1, (os.cpu_count() or 1) + 1))[:4]
    rows, memory, speedup, parity, reference_speedup = [], {}, {}, {}, {}
    for algo in ("dqn-prior", "cql-prior"):
        benches, memory[algo], (params, jax_loss) = jax_benches(algo, batches_np, upc)
        torch_loss = None
        for t in torch_threads:
            tb, torch_loss = torch_bench(algo, batches_np, params, t)
            benches.update(tb)
        parity[algo] = {
            "jax first loss": jax_loss,
            "torch first loss": torch_loss,
            "rel diff": abs(jax_loss - torch_loss) / max(abs(torch_loss), 1e-12),
        }
        if parity[algo]["rel diff"] > 1e-4:
            raise RuntimeError(f"{algo}: JAX and PyTorch losses disagree on the same weights/batch: {parity[algo]}")
        rates = measure(benches, seconds, rounds)
        algo_rows = []
        for (framework, mode), r in rates.items():
            med = float(np.median(r))
            row = {
                "framework": framework,
                "algo": algo,
                "mode": mode,
                "updates/s": med,
                "ms/update": 1e3 / med,
                "best updates/s": float(np.max(r)),
                "rounds": [round(x, 1) for x in r],
                **benches[(framework, mode)][2],
            }
            if mode.startswith("scan") and "pre-made" in mode:
                row["GFLOP/s"] = memory[algo]["step_flops"] * med / 1e9
            algo_rows.append(row)
        rows += algo_rows
        jax_by_mode = {r["mode"]: r["updates/s"] for r in algo_rows if r["framework"] == "jax"}
        torch_rows = [r for r in algo_rows if r["framework"].startswith("torch")]
        lean = max((r for r in torch_rows if r["mode"] != REFERENCE_MODE), key=lambda r: r["updates/s"])
        speedup[algo] = {"torch best": lean["framework"]}
        for mode, ups in jax_by_mode.items():
            speedup[algo][mode] = ups / lean["updates/s"]
        ref_rows = [r for r in torch_rows if r["mode"] == REFERENCE_MODE]
        if ref_rows:
            # like for like: both sides draw each minibatch from a replay buffer inside the timed loop
            ref = max(ref_rows, key=lambda r: r["updates/s"])
            in_call = next(m for m in jax_by_mode if "replay sample in-call" in m)
            reference_speedup[algo] = {
                "torch reference loop": ref["framework"],
                "torch updates/s": ref["updates/s"],
                "jax mode": in_call,
                "jax updates/s": jax_by_mode[in_call],
                "speed-up": jax_by_mode[in_call] / ref["updates/s"],
            }

    print(
        f"\nUpdate steps (batch {B}, k {K}, D {D}, MLP 64-64-1, AdamW, clip 1.0); median of {rounds} interleaved rounds"
    )
    print_table(rows, ["framework", "algo", "mode", "updates/s", "ms/update", "best updates/s", "GFLOP/s", "compile s"])
    print("\nSpeed-up of JAX (median updates/s) over the fastest PyTorch thread setting")
    modes = [m for m in speedup["dqn-prior"] if m != "torch best"]
    print_table([{"algo": a, **s} for a, s in speedup.items()], ["algo", "torch best"] + modes)
    if reference_speedup:
        print(
            "\nSpeed-up over the reference's loop as written (HF datasets + DataLoader sampling each step), both "
            "sides sampling from a replay buffer"
        )
        print_table(
            [{"algo": a, **s} for a, s in reference_speedup.items()],
            ["algo", "torch reference loop", "torch updates/s", "jax mode", "jax updates/s", "speed-up"],
        )
    else:
        print("\n(no reference-loop row: `pip install datasets` to time the reference's HF datasets sampling)")
    print("\nXLA cost and memory analysis of the compiled step (FLOPs, bytes)")
    mem_cols = [
        "step_flops",
        "step_temp_bytes",
        "step_argument_bytes",
        "scan_temp_bytes",
        "scan_argument_bytes",
        "params_bytes",
    ]
    print_table([{"algo": a, **m} for a, m in memory.items()], ["algo"] + mem_cols)
    drows = device_rows(devices, max(seconds / 2, 1.0), upc) if devices else []
    if drows:
        print("\nData-parallel DQN-Prior update (shard_map + pmean(loss))")
        print_table(
            drows, ["devices", "backend", "updates/s", "updates/s per device", "max |sharded - single|", "note"]
        )
    payload = {
        "benchmark": "learner",
        "quick": args.quick,
        "machine": machine(),
        "shapes": {"batch": B, "k": K, "feat_dim": D, "mlp": [64, 64, 1]},
        "updates_per_call": upc,
        "seconds_per_bench": seconds,
        "rounds": rounds,
        "command": "python -m benchmarks.learner" + (" --quick" if args.quick else ""),
        "rows": rows,
        "speedup": speedup,
        "speedup_vs_reference_loop": reference_speedup,
        "loss_parity": parity,
        "memory": memory,
        "devices": drows,
    }
    path = write_json("learner", payload, args.out)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
