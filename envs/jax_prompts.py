"""Prompt ids for the pure-JAX Overcooked: every reachable observation vector, its text, and an in-jit lookup.

The text env renders its prompt and action labels from the observation vector alone (``obs2text``, spec
``docs/overcooked-frozenlake.md`` §10), so a table over the reachable vectors is all a compiled loop needs to index
per-prompt quantities (LLM log-probs [P, A], cached features)::

    table = prompt_table(task)                 # built once per task (cached): BFS over envs.jax_overcooked
    pid = table.prompt_id(obs)                 # jnp, jit/vmap-able, obs int32[..., D] -> int32[...]; -1 = unknown
    table.prompts[pid], table.actions[pid]     # the prompt string and the admissible labels of that id
    table.text_observation(pid)                # the text env's TextObservation for it
    table.checked_prompt_id(obs)               # host-side: raises ValueError on an unknown vector

Ids, all deterministic:

* **observation ids** ``0..N-1`` index :attr:`PromptTable.obs_vectors`: the distinct vectors reachable from reset
  (BFS over all macro sequences), sorted lexicographically, then those seen only after a correct delivery (the
  terminal next observation, :attr:`PromptTable.terminal`), sorted likewise. Task 0: 21 + 1 terminal; task 3:
  801 + 5; task 6: 801 + 1.
* **prompt ids** ``0..P-1`` index distinct (prompt, labels) pairs, numbered in observation-id order, so the
  non-terminal ones come first (:attr:`PromptTable.num_prompts`: 21 for task 0, 787 for task 3): several vectors
  can render to one prompt (§10.3: the text aliases the view). Terminal observations get an id too (their prompt
  may coincide with a non-terminal one), so the next observation of a final transition indexes a real row.

The lookup hashes a vector to a uint32 (FNV-1a over its int32 entries, with a salt chosen at build time so that the
table's hashes are distinct), finds it with ``jnp.searchsorted`` and then compares the whole vector with the stored
one: a vector outside the table returns -1, never a neighbour's id.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import jax
import jax.numpy as jnp
import numpy as np

from envs import jax_overcooked as jo
from envs.base import TextObservation
from envs.overcooked import extract_obs, obs2text
from envs.overcooked.env import text_observation

_FNV_OFFSET = np.uint32(2166136261)
_FNV_PRIME = np.uint32(16777619)


def hash_vectors(obs: jax.Array, salt: int = 0) -> jax.Array:
    """FNV-1a over the int32 entries of ``obs`` [..., D] -> uint32 [...] (jnp; wraps modulo 2^32)."""
    obs = obs.astype(jnp.int32) if isinstance(obs, jax.Array) else np.asarray(obs, np.int32)
    return _hash(obs, np.uint32(salt))


@jax.jit
def _hash(obs: jax.Array, salt: jax.Array) -> jax.Array:
    obs = obs.astype(jnp.uint32)
    h = jnp.full(obs.shape[:-1], _FNV_OFFSET, jnp.uint32) ^ salt
    for i in range(obs.shape[-1]):
        h = (h ^ obs[..., i]) * _FNV_PRIME
    return h


@dataclass(frozen=True, eq=False)
class PromptTable:
    """The reachable observations of one Overcooked task and their prompts (see the module docstring)."""

    task: int
    obs_vectors: np.ndarray  # [N, D] int32, by observation id
    terminal: np.ndarray  # [N] bool: seen only as the observation after a correct delivery
    prompt_of_obs: np.ndarray  # [N] int32: observation id -> prompt id
    prompts: tuple[str, ...]  # [P]: the prompt string (obs.prompt)
    actions: tuple[tuple[str, ...], ...]  # [P]: the admissible action labels (obs.actions), by macro id
    states: tuple[str, ...]  # [P]: the state text (obs.state: the prompt without its goal sentence)
    prompt_vectors: np.ndarray  # [P, D]: the first observation vector of each prompt id
    num_prompts: int  # prompts of non-terminal observations: ids 0..num_prompts-1
    salt: int
    sorted_hashes: np.ndarray  # [N] uint32, ascending
    hash_order: np.ndarray  # [N] int32: the observation id at each sorted position

    @property
    def num_obs(self) -> int:
        return len(self.obs_vectors)

    def ids(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(observation id, prompt id) of each vector in ``obs`` [..., D] (int32 [...] each); -1 for a vector not
        in the table."""
        obs = obs.astype(jnp.int32) if isinstance(obs, jax.Array) else np.asarray(obs, np.int32)
        if obs.shape[-1] != self.obs_vectors.shape[1]:
            raise ValueError(
                f"jax_prompts task {self.task}: observation vectors have {self.obs_vectors.shape[1]} entries, "
                f"got shape {obs.shape}"
            )
        salt = np.uint32(self.salt)
        return lookup(obs, self.sorted_hashes, self.hash_order, self.obs_vectors, self.prompt_of_obs, salt)

    def obs_id(self, obs: jax.Array) -> jax.Array:
        """Observation id of each vector in ``obs`` [..., D] (int32 [...]); -1 for a vector not in the table."""
        return self.ids(obs)[0]

    def prompt_id(self, obs: jax.Array) -> jax.Array:
        """Prompt id of each vector in ``obs`` [..., D] (int32 [...]); -1 for a vector not in the table."""
        return self.ids(obs)[1]

    def checked_prompt_id(self, obs: jax.Array) -> np.ndarray:
        """:meth:`prompt_id` on the host, raising ``ValueError`` (naming the first offending vector) if any is
        unknown."""
        ids = np.asarray(self.prompt_id(obs))
        if (ids < 0).any():
            flat = np.asarray(obs).reshape(-1, self.obs_vectors.shape[1])
            bad = flat[np.flatnonzero(ids.reshape(-1) < 0)[0]]
            raise ValueError(
                f"jax_prompts task {self.task}: observation vector {bad.tolist()} is not among the "
                f"{self.num_obs} reachable observations; {int((ids < 0).sum())} of {ids.size} unknown"
            )
        return ids

    def text_observation(self, prompt_id: int) -> TextObservation:
        """The text env's :class:`envs.base.TextObservation` of prompt id ``prompt_id``."""
        if not 0 <= int(prompt_id) < len(self.prompts):
            raise ValueError(f"jax_prompts task {self.task}: prompt id must be in 0..{len(self.prompts) - 1}")
        return text_observation(self.task, tuple(int(x) for x in self.prompt_vectors[int(prompt_id)]))


@jax.jit
def lookup(obs, sorted_hashes, hash_order, obs_vectors, prompt_of_obs, salt) -> tuple[jax.Array, jax.Array]:
    """(observation id, prompt id) of each vector in ``obs`` [..., D]; -1 where the vector is not in the table. The
    tables are arguments, so tables of equal sizes share one compilation (inside a caller's jit it is inlined)."""
    h = _hash(obs, salt)
    pos = jnp.clip(jnp.searchsorted(sorted_hashes, h), 0, sorted_hashes.shape[0] - 1)
    oid = hash_order[pos]
    same = (sorted_hashes[pos] == h) & jnp.all(obs_vectors[oid] == obs, axis=-1)
    return jnp.where(same, oid, -1), jnp.where(same, prompt_of_obs[oid], -1)


def reachable(task: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BFS over :mod:`envs.jax_overcooked` from reset over every macro: ``(worlds, observations, terminal)`` — the
    reachable true states (golden ``state`` layout, BFS order) and the distinct observation vectors, with
    ``terminal`` marking those seen only after a correct delivery (vectors in first-seen order)."""
    env = jo.make_overcooked(task)
    start_state = jo.initial_state(task)
    start = tuple(int(x) for x in env.to_world(start_state))
    seen = {start: None}
    reset_obs = jo.observation_batch(jax.tree.map(lambda x: x[None], start_state))[0]
    obs_seen: dict[tuple[int, ...], bool] = {tuple(int(x) for x in np.asarray(reset_obs)): False}
    frontier = [start]
    while frontier:
        worlds = np.repeat(np.array(frontier, np.int32), env.num_actions, axis=0)
        actions = np.tile(np.arange(env.num_actions, dtype=np.int32), len(frontier))
        nxt, obs, _, _, info = jo.step_many(env.from_world(worlds), actions)
        next_worlds = env.to_world(nxt)
        frontier = []
        for world, vec, success in zip(next_worlds, obs, info["success"]):
            vec = tuple(int(x) for x in vec)
            if success:
                obs_seen.setdefault(vec, True)
                continue
            obs_seen[vec] = False
            world = tuple(int(x) for x in world)
            if world not in seen:
                seen[world] = None
                frontier.append(world)
    vectors = list(obs_seen)
    return (
        np.array(list(seen), np.int32),
        np.array(vectors, np.int32),
        np.array([obs_seen[v] for v in vectors], bool),
    )


def build_prompt_table(task: int) -> PromptTable:
    """Enumerate ``task``'s reachable observations and render them (uncached; see :func:`prompt_table`)."""
    _, vectors, terminal = reachable(task)
    keyed = sorted(zip(terminal.tolist(), map(tuple, vectors.tolist())))  # non-terminal first, then lexicographic
    obs_vectors = np.array([v for _, v in keyed], np.int32)
    terminal = np.array([t for t, _ in keyed], bool)
    pair_ids: dict[tuple[str, tuple[str, ...]], int] = {}
    prompt_of_obs, prompt_vectors = [], []
    for vec in obs_vectors:
        pair = obs2text(tuple(int(x) for x in vec), task)
        if pair not in pair_ids:
            pair_ids[pair] = len(pair_ids)
            prompt_vectors.append(vec)
        prompt_of_obs.append(pair_ids[pair])
    prompt_of_obs = np.array(prompt_of_obs, np.int32)
    pairs = list(pair_ids)
    for salt in range(1000):
        hashes = np.asarray(hash_vectors(obs_vectors, salt))
        if len(np.unique(hashes)) == len(hashes):
            break
    else:  # pragma: no cover - 1000 salts with a collision among < 2k vectors in 2^32 does not happen
        raise RuntimeError(f"jax_prompts task {task}: no collision-free hash salt")
    order = np.argsort(hashes, kind="stable").astype(np.int32)
    return PromptTable(
        task=task,
        obs_vectors=obs_vectors,
        terminal=terminal,
        prompt_of_obs=prompt_of_obs,
        prompts=tuple(p for p, _ in pairs),
        actions=tuple(tuple(a) for _, a in pairs),
        states=tuple(extract_obs(p, task) for p, _ in pairs),
        prompt_vectors=np.array(prompt_vectors, np.int32),
        num_prompts=int(prompt_of_obs[~terminal].max()) + 1,
        salt=salt,
        sorted_hashes=hashes[order],
        hash_order=order,
    )


def expert_actions(task: int) -> tuple[np.ndarray, np.ndarray]:
    """(expert [P] int32, agreement [P] float32) per prompt id of ``task``'s :func:`prompt_table`: the first macro of
    the fewest-primitive-step plan (:mod:`envs.overcooked.expert`), by majority over the reachable true states that
    render to the prompt (several do: the 5×5 view aliases), and the fraction of those states whose own expert it
    is. Prompts seen only after a delivery (ids ≥ ``num_prompts``) have no expert: -1, agreement 1."""
    from envs.overcooked.core import initial_state, macro_transition, observation_vector, task_spec
    from envs.overcooked.expert import plan

    table = prompt_table(task)
    start = initial_state(task).world
    seen, frontier = {start}, [start]
    while frontier:  # the core env's reachable non-terminal worlds (the same set as reachable(), another layout)
        nxt = []
        for world in frontier:
            for a in range(task_spec(task).num_actions):
                result = macro_transition(task, world, a)
                if not result.success and result.next_world not in seen:
                    seen.add(result.next_world)
                    nxt.append(result.next_world)
        frontier = nxt
    votes: list[list[int]] = [[] for _ in table.prompts]
    worlds = sorted(seen)
    pids = table.checked_prompt_id(np.array([observation_vector(task, w) for w in worlds], np.int32))
    for world, pid in zip(worlds, pids):
        votes[pid].append(plan(task, world).actions[0])
    expert = np.full(len(table.prompts), -1, np.int32)
    agreement = np.ones(len(table.prompts), np.float32)
    for pid, v in enumerate(votes):
        if v:
            counts = np.bincount(v)
            expert[pid], agreement[pid] = int(counts.argmax()), counts.max() / len(v)
    return expert, agreement


@cache
def prompt_table(task: int) -> PromptTable:
    """The (cached) :class:`PromptTable` of Overcooked ``task`` (0, 3 or 6)."""
    return build_prompt_table(task)


__all__ = ["PromptTable", "build_prompt_table", "expert_actions", "hash_vectors", "lookup", "prompt_table", "reachable"]
