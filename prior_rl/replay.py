"""Replay buffer as pure functions over a NamedTuple state (flashbax style), plus the transition formats.

The buffer stores any pytree of fixed-shape items in device arrays with a leading ``capacity`` axis. Writes go
round-robin (FIFO: at capacity the oldest item is overwritten); sampling draws uniform indices *with replacement*
into a [num_updates, batch] array, so one dispatch yields the minibatches of a whole ``agent.update`` call.

Two item formats are provided:

* :class:`Transition` — features stored directly (the reference's format, docs/method.md §3.7). One item costs
  (1 + 2k)·D·4 bytes: 33.8 KB for k = 5, D = 768, i.e. 676 MB for the 20 000-item ALFWorld buffer.
* :class:`IndexedTransition` — int32 rows into a feature table (:class:`FeatureTable`), turned into a
  :class:`Transition` batch by :func:`materialize` (inside the jitted step or just before it). Text environments
  revisit few distinct (state, action) strings (166 states in the shipped offline set), so this is ~100× smaller.

``add``/``add_batch`` donate the old state (in-place update, no copy of the buffer): never reuse a state after
passing it to them.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable
from typing import Any, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
PyTree = Any


class Transition(NamedTuple):
    """One transition (shapes without batch axes; batches add leading [B] or [U, B]).

    obs_feat:       [D]     φ(s, a) of the action taken (for offline data: the data action a_D)
    cand_feat:      [k, D]  φ(s, a_i) of the k candidates at s (prior samples, or all admissible actions); CQL's set
    cand_mask:      [k]     bool, False on padding
    reward:         []      float32
    discount:       []      float32, 1 − terminated (a timeout keeps 1); the agent multiplies γ in
    next_cand_feat: [k, D]  φ(s', a'_j) of the candidates at s' (the TD max runs over these)
    next_mask:      [k]     bool
    """

    obs_feat: Array
    cand_feat: Array
    cand_mask: Array
    reward: Array
    discount: Array
    next_cand_feat: Array
    next_mask: Array


class IndexedTransition(NamedTuple):
    """:class:`Transition` with feature rows instead of features: obs_idx [], cand_idx [k], next_idx [k] (int32);
    the other fields as in :class:`Transition`. Padding slots may hold any valid row (e.g. 0)."""

    obs_idx: Array
    cand_idx: Array
    cand_mask: Array
    reward: Array
    discount: Array
    next_idx: Array
    next_mask: Array


def materialize(batch: IndexedTransition, table: Array) -> Transition:
    """Gather features from ``table`` [N, D]; works for any leading batch shape."""
    take = lambda idx: jnp.take(table, idx, axis=0)
    return Transition(
        take(batch.obs_idx),
        take(batch.cand_idx),
        batch.cand_mask,
        batch.reward,
        batch.discount,
        take(batch.next_idx),
        batch.next_mask,
    )


class ReplayState(NamedTuple):
    """data: the item pytree with leaves [capacity, ...]; pos: [] int32 next write slot; size: [] int32 filled."""

    data: PyTree
    pos: Array
    size: Array


def capacity(state: ReplayState) -> int:
    return int(jax.tree.leaves(state.data)[0].shape[0])


def init(example: PyTree, capacity: int) -> ReplayState:
    """An empty buffer for items shaped like ``example`` (one item, no batch axis)."""
    if capacity < 1:
        raise ValueError(f"capacity must be >= 1, got {capacity}")
    data = jax.tree.map(lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), example)
    return ReplayState(data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


@functools.partial(jax.jit, donate_argnums=0)
def add(state: ReplayState, item: PyTree) -> ReplayState:
    """Write one item (no batch axis) at ``pos``; FIFO at capacity."""
    cap = jax.tree.leaves(state.data)[0].shape[0]
    data = jax.tree.map(lambda buf, x: buf.at[state.pos].set(jnp.asarray(x, buf.dtype)), state.data, item)
    return ReplayState(data, (state.pos + 1) % cap, jnp.minimum(state.size + 1, cap))


@functools.partial(jax.jit, donate_argnums=0)
def add_batch(state: ReplayState, items: PyTree) -> ReplayState:
    """Write n items (leading axis [n], e.g. one episode) in order; FIFO at capacity."""
    cap = jax.tree.leaves(state.data)[0].shape[0]
    n = jax.tree.leaves(items)[0].shape[0]
    if n > cap:  # only the newest `cap` items survive; dropping the rest statically avoids duplicate scatter slots
        items = jax.tree.map(lambda x: x[n - cap :], items)
        start, n = (state.pos + (n - cap)) % cap, cap
    else:
        start = state.pos
    slots = (start + jnp.arange(n)) % cap
    data = jax.tree.map(lambda buf, x: buf.at[slots].set(jnp.asarray(x, buf.dtype)), state.data, items)
    return ReplayState(data, (start + n) % cap, jnp.minimum(state.size + n, cap))


def from_items(items: PyTree) -> ReplayState:
    """A full buffer holding exactly ``items`` (leading axis [n]); e.g. an offline dataset for CQL."""
    items = jax.tree.map(jnp.asarray, items)
    n = jax.tree.leaves(items)[0].shape[0]
    return ReplayState(items, jnp.zeros((), jnp.int32), jnp.asarray(n, jnp.int32))


def sample_indices(
    key: Union[Array, np.random.Generator], size: Union[int, Array], num_updates: int, batch_size: int
) -> Array:
    """Uniform indices in [0, size) with replacement, shape [num_updates, batch_size] (int32).

    ``key`` is a jax PRNG key (the draw happens on device) or a ``np.random.Generator`` (host draw).
    """
    if isinstance(key, np.random.Generator):
        if int(size) < 1:
            raise ValueError("cannot sample from an empty buffer")
        return jnp.asarray(key.integers(0, int(size), (num_updates, batch_size)), jnp.int32)
    return jax.random.randint(key, (num_updates, batch_size), 0, jnp.maximum(size, 1), jnp.int32)


def gather(state: ReplayState, idx: Array) -> PyTree:
    """Items at buffer slots ``idx`` (any shape S): leaves [*S, ...]."""
    return jax.tree.map(lambda buf: jnp.take(buf, idx, axis=0), state.data)


@functools.partial(jax.jit, static_argnums=(2, 3))
def sample(state: ReplayState, key: Array, num_updates: int, batch_size: int) -> PyTree:
    """[num_updates, batch_size, ...] uniformly sampled items, ready for ``agent.update(state, batches)``.

    Sampling from an empty buffer returns copies of slot 0 (zeros); check ``state.size`` first.
    """
    return gather(state, sample_indices(key, state.size, num_updates, batch_size))


def ordered(state: ReplayState) -> PyTree:
    """The stored items oldest → newest (leading axis [size]); host-side helper for inspection and tests."""
    cap, size, pos = capacity(state), int(state.size), int(state.pos)
    start = (pos - size) % cap
    idx = (start + np.arange(size)) % cap
    return gather(state, jnp.asarray(idx, jnp.int32))


class FeatureTable:
    """Host-side, append-only table of feature rows addressed by a hashable key (e.g. the encoder's input text).

    ``add`` returns the row of an existing key without storing it again. ``array`` is the filled part
    [len, D] (a numpy view; copy it to the device when it has grown).
    """

    def __init__(self, dim: int, dtype: Any = np.float32, initial_rows: int = 1024):
        self.dim = int(dim)
        self._rows = np.zeros((max(int(initial_rows), 1), self.dim), dtype)
        self._index: dict[Hashable, int] = {}

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._index

    def index(self, key: Hashable) -> Optional[int]:
        return self._index.get(key)

    def add(self, key: Hashable, feat: np.ndarray) -> int:
        row = self._index.get(key)
        if row is not None:
            return row
        feat = np.asarray(feat, self._rows.dtype)
        if feat.shape != (self.dim,):
            raise ValueError(f"feature for {key!r} has shape {feat.shape}, expected ({self.dim},)")
        row = len(self._index)
        if row == self._rows.shape[0]:  # amortised doubling
            self._rows = np.concatenate([self._rows, np.zeros_like(self._rows)], axis=0)
        self._rows[row] = feat
        self._index[key] = row
        return row

    def keys(self) -> list[Hashable]:
        """The keys in row order (row i holds the feature of ``keys()[i]``)."""
        return list(self._index)

    @property
    def array(self) -> np.ndarray:
        return self._rows[: len(self._index)]
