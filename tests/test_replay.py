"""Replay buffer: FIFO at capacity, batch writes, sampling, feature-index storage."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prior_rl import replay
from prior_rl.agents import example_transition


def item(i, D=3, k=2):
    ex = example_transition(D, k)
    return ex._replace(obs_feat=np.full(D, i, np.float32), reward=np.float32(i), cand_mask=np.array([True, i % 2 == 0]))


def stack(items):
    return jax.tree.map(lambda *xs: np.stack(xs), *items)


def test_fifo_drops_oldest_at_capacity_plus_one():
    state = replay.init(example_transition(3, 2), capacity=4)
    for i in range(5):
        state = replay.add(state, item(i))
    assert int(state.size) == 4
    kept = replay.ordered(state)
    np.testing.assert_array_equal(np.asarray(kept.reward), [1, 2, 3, 4])
    np.testing.assert_array_equal(np.asarray(kept.obs_feat[:, 0]), [1, 2, 3, 4])
    np.testing.assert_array_equal(np.asarray(kept.cand_mask[:, 1]), [False, True, False, True])


def test_add_batch_equals_sequential_adds_with_wraparound():
    seq = replay.init(example_transition(3, 2), capacity=5)
    bat = replay.init(example_transition(3, 2), capacity=5)
    for chunk in ([0, 1, 2], [3, 4, 5, 6], [7]):
        for i in chunk:
            seq = replay.add(seq, item(i))
        bat = replay.add_batch(bat, stack([item(i) for i in chunk]))
    assert int(seq.pos) == int(bat.pos) and int(seq.size) == int(bat.size) == 5
    for a, b in zip(jax.tree.leaves(seq), jax.tree.leaves(bat)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.asarray(replay.ordered(bat).reward), [3, 4, 5, 6, 7])


def test_add_batch_longer_than_capacity_keeps_newest():
    state = replay.init(example_transition(3, 2), capacity=3)
    state = replay.add(state, item(100))
    state = replay.add_batch(state, stack([item(i) for i in range(7)]))
    assert int(state.size) == 3
    np.testing.assert_array_equal(np.asarray(replay.ordered(state).reward), [4, 5, 6])


def test_sampling_is_uniform_over_filled_slots_with_replacement():
    state = replay.init(example_transition(3, 2), capacity=10)
    state = replay.add_batch(state, stack([item(i) for i in range(4)]))
    batches = replay.sample(state, jax.random.key(0), 50, 64)
    assert batches.obs_feat.shape == (50, 64, 3) and batches.cand_feat.shape == (50, 64, 2, 3)
    r = np.asarray(batches.reward).ravel()
    assert set(r.tolist()) == {0.0, 1.0, 2.0, 3.0}  # never an unfilled slot
    np.testing.assert_allclose(np.bincount(r.astype(int)) / r.size, 0.25, atol=0.02)
    idx = replay.sample_indices(np.random.default_rng(0), 4, 3, 5)
    assert idx.shape == (3, 5) and idx.dtype == jnp.int32 and int(idx.max()) < 4
    with pytest.raises(ValueError):
        replay.sample_indices(np.random.default_rng(0), 0, 3, 5)


def test_indexed_transitions_materialize_to_the_same_batch():
    rng = np.random.default_rng(0)
    table = replay.FeatureTable(dim=4, initial_rows=2)  # forces growth
    texts = [f"s{i}|a{j}" for i in range(3) for j in range(3)]
    feats = {t: rng.normal(size=4).astype(np.float32) for t in texts}
    rows = [table.add(t, feats[t]) for t in texts]
    assert table.add(texts[4], feats[texts[4]]) == rows[4] and len(table) == 9  # no duplicate rows
    assert table.array.shape == (9, 4)
    with pytest.raises(ValueError):
        table.add("bad", np.zeros(3))
    ib = replay.IndexedTransition(
        obs_idx=np.array([1, 5], np.int32),
        cand_idx=np.array([[0, 1, 2], [3, 4, 4]], np.int32),
        cand_mask=np.array([[True, True, True], [True, True, False]]),
        reward=np.array([0.5, 1.0], np.float32),
        discount=np.array([1.0, 0.0], np.float32),
        next_idx=np.array([[3, 4, 5], [6, 7, 8]], np.int32),
        next_mask=np.ones((2, 3), bool),
    )
    batch = replay.materialize(ib, jnp.asarray(table.array))
    np.testing.assert_array_equal(batch.obs_feat[1], feats[texts[5]])
    np.testing.assert_array_equal(batch.cand_feat[1, 2], feats[texts[4]])
    np.testing.assert_array_equal(batch.next_cand_feat[0, 0], feats[texts[3]])
    # an indexed replay stores ints only, and samples through the same functions
    state = replay.add_batch(replay.init(jax.tree.map(lambda x: x[0], ib), 8), ib)
    sampled = replay.materialize(replay.sample(state, jax.random.key(1), 2, 3), jnp.asarray(table.array))
    assert sampled.cand_feat.shape == (2, 3, 3, 4)


def test_from_items_is_full():
    items = stack([item(i) for i in range(6)])
    state = replay.from_items(items)
    assert int(state.size) == 6 and replay.capacity(state) == 6
    np.testing.assert_array_equal(np.asarray(replay.ordered(state).reward), np.arange(6))
