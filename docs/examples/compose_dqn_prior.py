"""Composing prior_rl's pure functions in research code: a DQN-Prior agent, a replay buffer, a custom loss, and
the same update data-parallel over two (forced CPU) devices.

    python docs/examples/compose_dqn_prior.py

Everything is a pure function over NamedTuple states, so the pieces compose without a trainer:

1. ``prior_rl.agents.make_dqn_prior`` returns an ``Agent`` of ``init`` / ``act`` / ``loss`` / ``apply_gradients``
   and a jitted ``update`` that scans many gradient steps over batches [U, B, ...].
2. ``prior_rl.replay`` stores transitions (features [k, D] of the k prior candidates) and samples [U, B, ...].
3. ``QConfig.soft_backup_alpha`` swaps the max backup for the soft posterior backup α·log mean exp(Q/α).
4. A custom loss with the agent's ``loss`` signature becomes an update via ``make_update_step`` + ``scan_updates``
   (and, put into the ``Agent`` with ``_replace``, also the data-parallel update of ``prior_rl.parallel``).
5. ``prior_rl.parallel.make_sharded_update`` splits the minibatch over a device mesh; the result equals the
   single-device update up to float reassociation.
"""

import os
import sys

if __name__ == "__main__":  # fake devices must be requested before jax is imported
    if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2"
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))  # a source checkout

import jax
import jax.numpy as jnp
import numpy as np
import optax

from prior_rl import losses, parallel, replay
from prior_rl.agents import QConfig, example_transition, make_dqn_prior
from prior_rl.agents.common import make_update_step, scan_updates
from prior_rl.replay import Transition

D, K = 16, 4  # feature size of φ(s, a); k LLM prior candidates per state
N_ITEMS, U, B = 256, 8, 32  # stored transitions; updates per call; minibatch size


def toy_transitions(rng: np.random.Generator, n: int) -> Transition:
    """n random transitions (leading axis [n]): features [n, D] and [n, K, D], masks [n, K] with padding."""
    f = lambda *s: rng.normal(size=s).astype(np.float32)
    mask = lambda: (rng.random((n, K)) < 0.8) | (np.arange(K) == 0)  # slot 0 always valid
    return Transition(
        obs_feat=f(n, D),
        cand_feat=f(n, K, D),
        cand_mask=mask(),
        reward=f(n),
        discount=(rng.random(n) < 0.9).astype(np.float32),
        next_cand_feat=f(n, K, D),
        next_mask=mask(),
    )


def make_huber_loss(agent, delta: float = 1.0):
    """A Huber TD loss with the agent's ``loss`` signature, built from ``prior_rl.losses`` pieces.

    The per-sample TD error is ``losses.prior_td_error`` (max backup over the valid next candidates, target under
    stop_gradient); the reduction is a batch *mean*, so the pmean of per-shard losses is the full-batch loss and the
    data-parallel step needs nothing else (``num_shards`` matters only for sum reductions).
    """
    net, gamma = agent.network, agent.config.gamma

    def loss(params, state, batch: Transition, num_shards: int = 1):
        del num_shards
        q_a = net.apply(params, batch.obs_feat)  # [B]
        q_next = net.apply(state.target_params, batch.next_cand_feat)  # [B, K], target network
        err = jax.vmap(losses.prior_td_error)(q_a, batch.reward, gamma * batch.discount, q_next, batch.next_mask)
        td = jnp.mean(optax.huber_loss(err, delta=delta))
        return td, {"td_loss": td, "q_mean": jnp.mean(q_a)}

    return loss


def max_abs_diff(a, b) -> float:
    return max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def main() -> dict:
    rng = np.random.default_rng(0)
    key_init, key_sample = jax.random.split(jax.random.key(0))

    # 1-2. agent + replay buffer: fill it from a toy batch, sample U minibatches of B, one jitted update call
    agent = make_dqn_prior(QConfig(learning_rate=1e-3, td_reduction="mean"))
    buffer = replay.init(example_transition(D, K), capacity=N_ITEMS)
    buffer = replay.add_batch(buffer, jax.tree.map(jnp.asarray, toy_transitions(rng, N_ITEMS)))  # donates buffer
    batches = replay.sample(buffer, key_sample, U, B)  # leaves [U, B, ...]
    state = agent.init(key_init, D)
    state_max, m_max = agent.update(state, batches)  # random data: the numbers show the mechanics, not learning
    print(f"max backup      td_loss {float(m_max['td_loss'][0]):.4f} -> {float(m_max['td_loss'][-1]):.4f}")

    # 3. the soft posterior backup: same agent, QConfig.soft_backup_alpha
    soft = make_dqn_prior(agent.config, soft_backup_alpha=0.5)
    _, m_soft = soft.update(state, batches)
    print(f"soft backup α=.5 td_loss {float(m_soft['td_loss'][0]):.4f} -> {float(m_soft['td_loss'][-1]):.4f}")

    # 4. a custom loss: one gradient step = make_update_step(loss, apply_gradients); U of them in one lax.scan
    huber_loss = make_huber_loss(agent)
    huber_step = make_update_step(huber_loss, agent.apply_gradients)
    huber_update = jax.jit(scan_updates(huber_step, agent.prepare))  # prepare: batches of rows into a table too
    state_huber, m_huber = huber_update(state, batches)
    print(f"huber TD loss   td_loss {float(m_huber['td_loss'][0]):.4f} -> {float(m_huber['td_loss'][-1]):.4f}")

    # 5. data-parallel: the same loss in an Agent, B split over the mesh; block on every call (fake CPU devices
    # deadlock with many multi-device calls in flight)
    huber_agent = agent._replace(loss=huber_loss, update_step=huber_step, update=huber_update)
    mesh = parallel.make_mesh(min(2, len(jax.devices())))
    sharded_update = parallel.make_sharded_update(huber_agent, mesh)
    sharded = parallel.replicate(state, mesh)
    single = state
    for i in range(3):  # a few calls, each resampled and each blocked on
        batches_i = replay.sample(buffer, jax.random.fold_in(key_sample, i), U, B)
        sharded, m_sharded = jax.block_until_ready(sharded_update(sharded, parallel.shard_batches(batches_i, mesh)))
        single, m_single = jax.block_until_ready(huber_update(single, batches_i))
    diff_state, diff_loss = max_abs_diff(single, sharded), max_abs_diff(m_single["loss"], m_sharded["loss"])
    print(f"data-parallel over {mesh.size} devices: max |Δparams| {diff_state:.2e}, max |Δloss| {diff_loss:.2e}")
    assert diff_state < 1e-6 and diff_loss < 1e-6, (diff_state, diff_loss)
    assert max_abs_diff(state.params, single.params) > 1e-4  # the updates did move the parameters
    return {
        "devices": mesh.size,
        "diff_state": diff_state,
        "diff_loss": diff_loss,
        "huber_loss": float(m_huber["td_loss"][-1]),
        "max_loss": float(m_max["td_loss"][-1]),
    }


if __name__ == "__main__":
    main()
    print("ok")
