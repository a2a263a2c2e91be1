"""The compiled DQN-Prior / DQN loop (prior_rl.run.jitted): update equivalence, seed vmap, learning, env errors."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from prior_rl import replay
from prior_rl.run import jitted


@pytest.fixture(scope="module")
def tables():
    return jitted.build_tables(jitted.JitConfig())  # cached on disk after the first build (smollm2 + minilm)


def test_update_inside_jit_equals_agent_update(tables):
    config = jitted.JitConfig()
    agent = jitted.make_agent(config)
    table = jitted.flat_features(jitted.Tables(*tables))
    state = agent.init(jax.random.key(0), table.shape[1])
    rng = np.random.default_rng(0)
    n, k = 256, config.k
    items = replay.IndexedTransition(
        rng.integers(0, table.shape[0], n).astype(np.int32),
        rng.integers(0, table.shape[0], (n, k)).astype(np.int32),
        np.ones((n, k), bool),
        rng.normal(size=n).astype(np.float32),
        (rng.random(n) > 0.1).astype(np.float32),
        rng.integers(0, table.shape[0], (n, k)).astype(np.int32),
        np.ones((n, k), bool),
    )
    buffer = replay.from_items(items)
    key = jax.random.key(1)
    inside = jax.jit(lambda s, b, t, kk: jitted.replay_update(agent, config, s, b, t, kk))
    got, m1 = inside(state, buffer, table, key)
    want, m2 = agent.update(state, replay.sample(buffer, key, config.updates_per_train, config.batch_size), table)
    for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(want.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    np.testing.assert_allclose(np.asarray(m1["td_loss"]), np.asarray(m2["td_loss"]), rtol=1e-6)


@pytest.mark.parametrize("algo", ["dqn-prior", "dqn"])
def test_vmap_over_seeds(tables, algo):
    config = jitted.JitConfig(algo=algo, env_steps=200, eval_every=100, learning_starts=40, eval_episodes=4)
    train = jitted.make_train(config, tables)
    metrics = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 4))
    for name in ("eval_success", "eval_return", "env_steps"):
        assert metrics[name].shape == (4, 3)
    np.testing.assert_array_equal(np.asarray(metrics["env_steps"][0]), [0, 100, 200])
    assert np.isfinite(np.asarray(metrics["eval_return"])).all()


@pytest.mark.slow
def test_learns_tomato_salad(tables):
    config = jitted.JitConfig(env_steps=2000, eval_every=500)
    train = jitted.make_train(config, tables)
    metrics = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(0), 8))
    success = np.asarray(metrics["eval_success"])
    # measured: 0.25 (2 of 8 seeds solve it); the Python loop at this config solved 1 of seeds 0..2 here
    assert success[:, 0].max() == 0.0 and success[:, -1].mean() >= 0.2


@pytest.mark.parametrize("env", ["alfworld-pick", "frozen-lake"])
def test_env_without_jax_implementation(env):
    with pytest.raises(ValueError, match="overcooked-tomato-salad, overcooked-tomato-lettuce-salad"):
        jitted.JitConfig(env=env)
