"""Pure-JAX Frozen Lake, equal to :class:`envs.frozen_lake.FrozenLake` (gymnasium's ``FrozenLake-v1`` rules).

Spec: ``docs/overcooked-frozenlake.md`` §15. The map ("4x4", "8x8" from gymnasium's ``MAPS``, or any ``desc``) is
turned into numpy tables at construction and closed over, so ``jax.jit(jax.vmap(env.step))`` works::

    env = make_frozen_lake(map_name="4x4", is_slippery=False, max_steps=20)
    state, obs = env.reset(key)                          # obs: int32 scalar, the cell index row * ncol + col
    state, obs, reward, done, info = env.step(key, state, action)

* Actions keep gymnasium's order: 0 left, 1 down, 2 right, 3 up; moving into the border stays in place.
* Slippery: the move goes in the intended direction with probability ``success_rate`` (1/3) and in each
  perpendicular one with (1 - success_rate) / 2, drawn from ``key`` (gymnasium draws from its ``np_random``, so
  slippery runs agree in distribution, not sample by sample).
* ``reward`` (float32) is 1 on entering the goal, else 0; ``done`` (bool) = the text env's ``terminated`` (a hole or
  the goal). The step cap ``max_steps`` (20, like the text env; None = none) is ``info["truncated"]``, not terminal.
* ``info``: ``success`` (at the goal), ``hole``, ``truncated``, ``episode_steps``, ``stepped``. Stepping a finished
  state (hole, goal, or cap reached) is a no-op with reward 0 and ``stepped`` False (the text env raises instead).
* The text observation is a function of ``obs`` alone (:meth:`envs.frozen_lake.FrozenLake.describe`), so the prompt
  id of an observation is ``obs`` itself.
* Reset draws the start uniformly among the ``S`` cells (gymnasium's ``initial_state_distrib``; one cell in the
  standard maps, so reset is deterministic there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from gymnasium.envs.toy_text.frozen_lake import MAPS

from envs.base import TextObservation
from envs.jax_prompts import PromptTable, hash_vectors

LEFT, DOWN, RIGHT, UP = range(4)
_DELTAS = ((0, -1), (1, 0), (0, 1), (-1, 0))  # (drow, dcol) in gymnasium's action order
_NO_CAP = np.iinfo(np.int32).max


class FrozenLakeState(NamedTuple):
    position: jax.Array  # int32 []: row * ncol + col
    steps: jax.Array  # int32 []: agent steps in this episode


class FrozenLakeEnv(NamedTuple):
    """One map's pure functions and numpy constants (from :func:`make_frozen_lake`)."""

    desc: tuple[str, ...]
    nrow: int
    ncol: int
    num_states: int
    num_actions: int
    is_slippery: bool
    success_rate: float
    max_steps: int | None
    next_cell: np.ndarray  # [S, 4]: the cell a move in each direction leads to
    probs: np.ndarray  # [S, A, S]: transition probabilities (gymnasium's P as a dense table; terminal cells stay)
    start: np.ndarray  # [S] bool: the S cells
    hole: np.ndarray  # [S] bool
    goal: np.ndarray  # [S] bool
    reset: Callable[[jax.Array], tuple[FrozenLakeState, jax.Array]]
    step: Callable[..., tuple[FrozenLakeState, jax.Array, jax.Array, jax.Array, dict[str, jax.Array]]]


def _tables(desc: Sequence[str], is_slippery: bool, success_rate: float):
    nrow, ncol = len(desc), len(desc[0])
    if any(len(row) != ncol for row in desc):
        raise ValueError(f"jax_frozen_lake: all rows of desc must have the same length, got {list(desc)}")
    flat = "".join(desc)
    if set(flat) - set("SFHG") or "S" not in flat:
        raise ValueError(f"jax_frozen_lake: desc uses the letters S, F, H, G and has a start S, got {list(desc)}")
    n = nrow * ncol
    next_cell = np.zeros((n, 4), np.int32)
    for s in range(n):
        row, col = divmod(s, ncol)
        for a, (dr, dc) in enumerate(_DELTAS):
            r, c = min(max(row + dr, 0), nrow - 1), min(max(col + dc, 0), ncol - 1)
            next_cell[s, a] = r * ncol + c
    hole = np.array([ch == "H" for ch in flat])
    goal = np.array([ch == "G" for ch in flat])
    probs = np.zeros((n, 4, n))
    fail = (1.0 - success_rate) / 2.0
    for s in range(n):
        for a in range(4):
            if hole[s] or goal[s]:
                probs[s, a, s] = 1.0
            elif is_slippery:
                for b in ((a - 1) % 4, a, (a + 1) % 4):
                    probs[s, a, next_cell[s, b]] += success_rate if b == a else fail
            else:
                probs[s, a, next_cell[s, a]] = 1.0
    start = np.array([ch == "S" for ch in flat])
    return nrow, ncol, next_cell, probs, start, hole, goal


def make_frozen_lake(
    map_name: str = "4x4",
    desc: Sequence[str] | None = None,
    is_slippery: bool = False,
    max_steps: int | None = 20,
    success_rate: float = 1.0 / 3.0,
) -> FrozenLakeEnv:
    """The pure-JAX Frozen Lake with the text env's options (``map_name`` "4x4"/"8x8" or ``desc``, ``is_slippery``,
    ``max_steps``) and gymnasium's ``success_rate`` for slippery moves."""
    if desc is None:
        if map_name not in ("4x4", "8x8"):
            raise ValueError(f"jax_frozen_lake: map_name must be '4x4' or '8x8' (or pass desc=[...]), got {map_name!r}")
        desc = MAPS[map_name]
    desc = tuple(str(row) for row in desc)
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"jax_frozen_lake: max_steps must be a positive int or None, got {max_steps!r}")
    nrow, ncol, next_cell, probs, start, hole, goal = _tables(desc, is_slippery, success_rate)
    cap = _NO_CAP if max_steps is None else max_steps
    start_cells = np.flatnonzero(start).astype(np.int32)
    # slippery: offset -1, 0, +1 to the intended direction with these probabilities (gymnasium's order)
    fail = (1.0 - success_rate) / 2.0
    logits = np.log(np.array([fail, success_rate, fail]) + 1e-30).astype(np.float32)

    def reset(key: jax.Array) -> tuple[FrozenLakeState, jax.Array]:
        if len(start_cells) == 1:
            position = jnp.int32(start_cells[0])
        else:
            position = jnp.asarray(start_cells)[jax.random.randint(key, (), 0, len(start_cells))]
        return FrozenLakeState(position, jnp.int32(0)), position

    def step(key: jax.Array, state: FrozenLakeState, action: jax.Array):
        action = jnp.clip(jnp.asarray(action, jnp.int32), 0, 3)
        terminal = jnp.asarray(hole | goal)
        stepped = ~terminal[state.position] & (state.steps < cap)
        if is_slippery:
            offset = jax.random.categorical(key, jnp.asarray(logits)) - 1
            direction = (action + offset) % 4
        else:
            direction = action
        moved = jnp.asarray(next_cell)[state.position, direction]
        position = jnp.where(stepped, moved, state.position)
        steps = state.steps + jnp.where(stepped, 1, 0)
        at_goal = jnp.asarray(goal)[position]
        done = terminal[position]
        reward = jnp.where(stepped & at_goal, jnp.float32(1), jnp.float32(0))
        info = {
            "success": at_goal,
            "hole": jnp.asarray(hole)[position],
            "truncated": ~done & (steps >= cap),
            "episode_steps": steps,
            "stepped": stepped,
        }
        return FrozenLakeState(position, steps), position, reward, done, info

    return FrozenLakeEnv(
        desc=desc,
        nrow=nrow,
        ncol=ncol,
        num_states=nrow * ncol,
        num_actions=4,
        is_slippery=is_slippery,
        success_rate=success_rate,
        max_steps=max_steps,
        next_cell=next_cell,
        probs=probs,
        start=start,
        hole=hole,
        goal=goal,
        reset=reset,
        step=step,
    )


@dataclass(frozen=True, eq=False)
class FrozenLakePromptTable(PromptTable):
    """:class:`envs.jax_prompts.PromptTable` of a Frozen Lake map: one prompt per cell, the observation vector is the
    cell index as a 1-vector (``obs[..., None]`` of :func:`make_frozen_lake`'s observations), the non-terminal
    cells first, then the holes and the goal."""

    map_name: str = "4x4"

    def text_observation(self, prompt_id: int) -> TextObservation:
        if not 0 <= int(prompt_id) < len(self.prompts):
            raise ValueError(f"jax_frozen_lake: prompt id must be in 0..{len(self.prompts) - 1}")
        return _text_env(self.map_name).observation_at(int(self.prompt_vectors[int(prompt_id), 0]))


@cache
def _text_env(map_name: str):
    from envs.frozen_lake import FrozenLake  # the text env renders the prompts (gymnasium's map)

    return FrozenLake(map_name=map_name)


@cache
def prompt_table(map_name: str = "4x4") -> FrozenLakePromptTable:
    """The prompt table of the non-slippery ``map_name`` lake (see :class:`FrozenLakePromptTable`)."""
    env = _text_env(map_name)
    flat = "".join(env.desc)
    cells = sorted(range(len(flat)), key=lambda c: (flat[c] in "HG", c))  # non-terminal cells first
    vectors = np.array(cells, np.int32)[:, None]
    obs = [env.observation_at(c) for c in cells]
    hashes = np.asarray(hash_vectors(vectors))  # distinct for 1-vectors of distinct ints: FNV-1a is a bijection
    order = np.argsort(hashes, kind="stable").astype(np.int32)
    return FrozenLakePromptTable(
        task=-1,
        obs_vectors=vectors,
        terminal=np.array([flat[c] in "HG" for c in cells]),
        prompt_of_obs=np.arange(len(cells), dtype=np.int32),
        prompts=tuple(o.prompt for o in obs),
        actions=tuple(tuple(o.actions) for o in obs),
        states=tuple(o.state for o in obs),
        prompt_vectors=vectors,
        num_prompts=sum(flat[c] not in "HG" for c in cells),
        salt=0,
        sorted_hashes=hashes[order],
        hash_order=order,
        map_name=map_name,
    )


def expert_actions(map_name: str = "4x4") -> tuple[np.ndarray, np.ndarray]:
    """(expert [P] int32, agreement [P] = 1) per prompt id of :func:`prompt_table`: the BFS expert's move at each
    non-terminal cell, -1 at the holes and the goal."""
    table = prompt_table(map_name)
    env = _text_env(map_name)
    expert = np.full(len(table.prompts), -1, np.int32)
    for pid in range(table.num_prompts):
        expert[pid] = env.expert_at(int(table.prompt_vectors[pid, 0]))
    return expert, np.ones(len(table.prompts), np.float32)


__all__ = [
    "FrozenLakeEnv",
    "FrozenLakePromptTable",
    "FrozenLakeState",
    "expert_actions",
    "make_frozen_lake",
    "prompt_table",
]
