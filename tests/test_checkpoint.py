"""Checkpoints: round trip of an agent state, atomic/no-overwrite saves, retention, corruption reporting."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prior_rl import agents
from prior_rl.io import checkpoint


@pytest.fixture(scope="module")
def agent_and_state():
    agent = agents.make_cql_prior()
    return agent, agent.init(jax.random.key(0), 8)


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_state_rng_metadata(tmp_path, agent_and_state):
    agent, state = agent_and_state
    state = state._replace(step=jnp.asarray(17, jnp.int32))
    rng = jax.random.key(42)
    path = checkpoint.save(tmp_path, 17, state, rng=rng, metadata={"env_steps": 1234, "config": {"lr": 5e-4}})
    assert path.name == "step_0000000017" and checkpoint.latest(tmp_path) == 17
    template = agent.init(jax.random.key(9), 8)  # different values, same structure
    out = checkpoint.restore(tmp_path, template)
    assert_trees_equal(out.state, state)  # NamedTuples (optax states included) come back typed
    assert type(out.state.opt_state[1][0]) is type(state.opt_state[1][0])
    assert out.step == 17 and out.metadata == {"env_steps": 1234, "config": {"lr": 5e-4}} and out.path == path
    np.testing.assert_array_equal(jax.random.key_data(out.rng), jax.random.key_data(rng))
    np.testing.assert_array_equal(jax.random.uniform(out.rng, (3,)), jax.random.uniform(rng, (3,)))
    # raw uint32 keys and no key at all
    checkpoint.save(tmp_path, 18, state, rng=jax.random.PRNGKey(3))
    np.testing.assert_array_equal(checkpoint.restore(tmp_path, template, 18).rng, jax.random.PRNGKey(3))
    checkpoint.save(tmp_path, 19, state)
    assert checkpoint.restore(tmp_path, template).rng is None
    # an abstract template (no arrays allocated) works too
    abstract = jax.eval_shape(lambda: agent.init(jax.random.key(0), 8))
    assert_trees_equal(checkpoint.restore(tmp_path, abstract, 17).state, state)


def test_never_overwrites_and_rejects_bad_input(tmp_path, agent_and_state):
    agent, state = agent_and_state
    checkpoint.save(tmp_path, 1, state)
    with pytest.raises(FileExistsError, match="step_0000000001"):
        checkpoint.save(tmp_path, 1, state)
    with pytest.raises(TypeError, match="JSON"):
        checkpoint.save(tmp_path, 2, state, metadata={"x": object()})
    with pytest.raises(FileNotFoundError):
        checkpoint.restore(tmp_path / "empty", state)
    wrong = agents.make_cql_prior().init(jax.random.key(0), 5)  # other feature size
    with pytest.raises(ValueError, match="template"):
        checkpoint.restore(tmp_path, wrong)


def test_unfinished_temp_dirs_are_ignored(tmp_path, agent_and_state):
    _, state = agent_and_state
    checkpoint.save(tmp_path, 5, state)
    (tmp_path / "step_0000000009.orbax-checkpoint-tmp-123").mkdir()
    assert checkpoint.list_steps(tmp_path) == [5] and checkpoint.latest(tmp_path) == 5


def test_manager_every_n_keeps_last_k(tmp_path, agent_and_state):
    _, state = agent_and_state
    mgr = checkpoint.CheckpointManager(tmp_path, every=10, keep=2)
    saved = [s for s in range(0, 45) if mgr.maybe_save(s, state._replace(step=jnp.asarray(s, jnp.int32)))]
    assert saved == [0, 10, 20, 30, 40]
    assert checkpoint.list_steps(tmp_path) == [30, 40]
    assert mgr.maybe_save(40, state) is None  # already there: not rewritten
    assert int(mgr.restore(state).state.step) == 40


def test_corrupt_checkpoint_is_reported_by_path_and_kept(tmp_path, agent_and_state):
    _, state = agent_and_state
    checkpoint.save(tmp_path, 1, state._replace(step=jnp.asarray(1, jnp.int32)))
    bad = checkpoint.save(tmp_path, 2, state._replace(step=jnp.asarray(2, jnp.int32)))
    for f in (bad / "state").rglob("*"):  # garble every array file
        if f.is_file():
            f.write_bytes(b"\x00garbage")
    with pytest.raises(checkpoint.CorruptCheckpointError, match=str(bad)):
        checkpoint.restore(tmp_path, state)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = checkpoint.restore(tmp_path, state, fallback=True)
    assert out.step == 1 and int(out.state.step) == 1
    assert any(str(bad) in str(x.message) for x in w)
    assert bad.exists()  # left for inspection, and never overwritten
    with pytest.raises(FileExistsError):
        checkpoint.save(tmp_path, 2, state)
    (bad / "meta" / "metadata").write_text("{not json")
    with pytest.raises(checkpoint.CorruptCheckpointError, match="metadata"):
        checkpoint.restore(tmp_path, state, 2)
