"""Data-parallel (shard_map) updates equal the single-device update.

Forced multi-device runs need XLA_FLAGS before jax is imported, so they run in a subprocess with 4 fake CPU
devices (meshes of 2 and 4 are built from them); every call is blocked on (docs/llm-offline.md §8.4).
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prior_rl import agents, parallel
from prior_rl.replay import Transition

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    from prior_rl import agents, losses, parallel
    from prior_rl.replay import IndexedTransition, Transition

    assert len(jax.devices()) == 4, jax.devices()
    U, B, k, D, n = 3, 16, 5, 12, 4
    rng = np.random.default_rng(0)
    r = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)
    m = lambda *s: jnp.asarray(rng.random(s) < 0.8).at[..., 0].set(True)
    q_batches = Transition(r(U, B, D), r(U, B, k, D), m(U, B, k), r(U, B),
                           jnp.asarray(rng.random((U, B)) < 0.7, jnp.float32), r(U, B, k, D), m(U, B, k))
    ppo_batches = agents.PPOBatch(r(U, B, n, D), m(U, B, n), jnp.zeros((U, B), jnp.int32), r(U, B) - 1.0,
                                  r(U, B), r(U, B), r(U, B),
                                  jax.nn.log_softmax(r(U, B, n), axis=-1))
    table = r(40, D)
    rows = lambda *s: jnp.asarray(rng.integers(0, 40, s), jnp.int32)
    indexed = IndexedTransition(rows(U, B), rows(U, B, k), m(U, B, k), r(U, B), jnp.ones((U, B)), rows(U, B, k),
                                m(U, B, k))
    cases = {
        "dqn_prior_sum": (agents.make_dqn_prior(), (D,), q_batches),
        "dqn_mean_hard": (agents.make_dqn(td_reduction="mean", target_update="hard", target_period=2), (D,),
                          q_batches),
        "cql_prior": (agents.make_cql_prior(), (D,), q_batches),
        "ppo_prior": (agents.make_ppo_prior(vf_clip=0.2), (D, n), ppo_batches),
        "cql_prior_table": (agents.make_cql_prior(), (D,), indexed),
    }
    out = {}
    for name, (agent, init_args, batches) in cases.items():
        tbl = table if name.endswith("_table") else None
        state = agent.init(jax.random.key(0), *init_args)
        ref, ref_m = jax.block_until_ready(agent.update(state, batches, tbl))
        for ndev in (2, 4):
            mesh = parallel.make_mesh(ndev)
            update = parallel.make_sharded_update(agent, mesh)
            got, got_m = jax.block_until_ready(
                update(parallel.replicate(state, mesh), parallel.shard_batches(batches, mesh), tbl))
            # a second call from the sharded state, blocked again
            got2, _ = jax.block_until_ready(update(got, parallel.shard_batches(batches, mesh), tbl))
            ref2, _ = jax.block_until_ready(agent.update(ref, batches, tbl))
            diff = lambda a, b: max(float(jnp.max(jnp.abs(x - y))) for x, y in
                                    zip(jax.tree.leaves(a), jax.tree.leaves(b)))
            out[f"{name}/{ndev}"] = {
                "state": diff(ref, got), "state2": diff(ref2, got2),
                "loss": diff(ref_m["loss"], got_m["loss"]),
                "metrics": diff(ref_m, got_m),
                # Adam and clipping are scale-invariant, so check the gradient itself (an n-times gradient bug
                # would leave the parameters almost unchanged)
                "grad_norm_rel": float(jnp.max(jnp.abs(ref_m["grad_norm"] / got_m["grad_norm"] - 1))),
                "moved": diff(state.params, ref.params),
                "sharded": str(got.step.sharding),
            }
    print("RESULT " + json.dumps(out))
""")


@pytest.fixture(scope="module")
def sharded_results():
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        JAX_PLATFORMS="cpu",
        PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


@pytest.mark.parametrize("ndev", [2, 4])
@pytest.mark.parametrize("case", ["dqn_prior_sum", "dqn_mean_hard", "cql_prior", "ppo_prior", "cql_prior_table"])
def test_sharded_update_equals_single_device(sharded_results, case, ndev):
    r = sharded_results[f"{case}/{ndev}"]
    assert r["moved"] > 1e-4  # the update did change the parameters
    assert r["state"] < 1e-5 and r["state2"] < 1e-5
    assert r["loss"] < 1e-5 * 100  # loss values are O(10-100): relative 1e-5
    assert r["metrics"] < 1e-3
    assert r["grad_norm_rel"] < 1e-5


def test_single_device_mesh_in_process_and_guards():
    agent = agents.make_cql_prior()
    state = agent.init(jax.random.key(0), 6)
    rng = np.random.default_rng(0)
    r = lambda *s: jnp.asarray(rng.normal(size=s), jnp.float32)
    batches = Transition(
        r(2, 8, 6),
        r(2, 8, 3, 6),
        jnp.ones((2, 8, 3), bool),
        r(2, 8),
        jnp.ones((2, 8)),
        r(2, 8, 3, 6),
        jnp.ones((2, 8, 3), bool),
    )
    mesh = parallel.make_mesh(1)
    got, _ = jax.block_until_ready(parallel.make_sharded_update(agent, mesh)(state, batches))
    ref, _ = agent.update(state, batches)
    for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(got)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="broadcast"):
        parallel.make_sharded_update(agents.make_dqn_prior(reference_broadcast_bug=True), mesh)
    with pytest.raises(ValueError, match="devices"):
        parallel.make_mesh(len(jax.devices()) + 1)
