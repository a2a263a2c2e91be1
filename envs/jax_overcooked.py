"""Pure-JAX Overcooked (TWOSOME's single-agent map "A", tasks 0, 3, 6), equal to :mod:`envs.overcooked` step for step.

Spec: ``docs/overcooked-frozenlake.md`` §2–§7 (bare § numbers below refer to it). The map constants (start cells,
boards, delivery counter, macro names, rewards, horizon) are read from :mod:`envs.overcooked.core`; the rules are
re-implemented here branch-free in ``jnp``/``lax``, so ``jax.jit(jax.vmap(env.step))`` works and one macro step is
one ``lax.while_loop`` over primitive steps (at most 10 for every reachable state, §12.1).

API::

    env = make_overcooked(task, max_steps=None, horizon=200)     # task in (0, 3, 6)
    state, obs = env.reset(key)                                   # obs: int32[env.obs_dim] (18 or 26), §6
    state, obs, reward, done, info = env.step(key, state, action)

* ``state`` (:class:`State`) is a NamedTuple of small int32 arrays: ``food`` [n, 3] (x, y, chops; n = 1 for task 0,
  3 for tasks 3/6), ``plate`` [2], ``agent`` [2], ``env_step`` (the primitive clock), ``steps`` (macro steps in this
  episode) and ``task`` (the task id, which selects the recipe: tasks 3 and 6 share every shape and can be mixed in
  one batch). :func:`from_world` / :func:`to_world` convert from / to the golden files' ``state`` layout (§14).
* ``obs`` is exactly the text env's ``info["obs_vector"]`` (the 5×5 partial view, §6). The text env renders its
  prompt and labels from this vector alone (``obs2text``), so :mod:`envs.jax_prompts` maps it to a prompt id.
* ``reward`` (float32) is the macro's Σ_j 0.99^j r_j over its primitive steps (§5.1, §5.5; float32, within 1e-6 of
  the float64 reference).
* ``done`` (bool) is the text env's ``terminated``: a correct delivery, or the clock at or past ``horizon`` (the
  macro that crosses it still finishes, §7). The macro cap is reported separately as ``info["truncated"]`` (not
  terminal, §7); an episode is over when ``done | info["truncated"]``.
* ``info``: ``primitive_steps`` (this macro's k), ``env_step`` (the clock after it), ``episode_steps``,
  ``success`` (a correct delivery in this macro), ``truncated``, ``twosome_reward`` (0.99^clock · reward, TWOSOME's
  per-primitive discount, §5.5), ``stepped`` (False when the state was already finished, see below).
* Stepping a finished state (served, clock at the horizon, or at the macro cap) is a no-op: the same state and
  observation, reward 0, ``primitive_steps`` 0, ``done``/``truncated`` as before, ``stepped`` False. (The text env
  raises instead; a vectorised loop resets outside ``step``.)
* The ``key`` arguments are accepted for a uniform environment signature; Overcooked is deterministic.
* An action outside ``0..num_actions-1`` is clipped into range (a compiled step cannot raise); callers pass valid
  macro ids.

Module-level :func:`reset` / :func:`step` do the same without building an env (``step`` picks the map from the
state's shapes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from envs.overcooked.core import (
    AGENT_INIT,
    CORRECT_DELIVERY,
    DELIVERY,
    DIRECTIONS,
    FOOD_INIT,
    GAMMA,
    HORIZON,
    PLATE_INIT,
    STAY,
    STEP_PENALTY,
    SUBTASK_REWARD,
    TASKLIST,
    VIEW_RADIUS,
    WRONG_DELIVERY,
    task_spec,
)

TASK_IDS = (0, 3, 6)
NUM_TASKS = len(TASKLIST)  # the one-hot's length (§6)
MAX_PRIMITIVE_STEPS = 64  # safety bound of the macro loop; reachable states need at most 10 (§12.1)
_FOOD_NAMES = ("tomato", "lettuce", "onion")

# macro kinds
FOOD, PLATE, KNIFE, DELIVER, CHOP = range(5)


class State(NamedTuple):
    """The true state (§3) plus the clocks. Every leaf is int32; batch dimensions lead."""

    food: jax.Array  # [n, 3]: x, y, chop count per food in item order (tomato[, lettuce, onion])
    plate: jax.Array  # [2]
    agent: jax.Array  # [2]
    env_step: jax.Array  # []: primitive-step clock
    steps: jax.Array  # []: macro steps taken in this episode (for the macro cap)
    task: jax.Array  # []: task id (0, 3 or 6); selects the recipe


class MapConstants(NamedTuple):
    """Numpy constants of one map version, closed over by the jitted functions."""

    version: str  # "v4" (task 0) or "v3" (tasks 3, 6)
    n_food: int
    food_init: np.ndarray  # [n, 2]
    knives: np.ndarray  # [nk, 2]
    kinds: np.ndarray  # [A]: macro kind per action id (FOOD, PLATE, KNIFE, DELIVER, CHOP)
    args: np.ndarray  # [A]: food index / knife index per action id (0 otherwise)
    macros: tuple[str, ...]


# -- map tables (numpy, built once) ------------------------------------------------------------------------------
def _inside(x: int, y: int) -> bool:
    return 1 <= x <= 5 and 1 <= y <= 5


def _build_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """ACCESS[x, y] (a cell's first floor neighbour in direction order, §2; (0, 0) if none), FIRST_STEP[ax, ay, tx,
    ty] (the first primitive of the reference's path from floor cell a to floor cell t: vertical first, §5.2),
    DIR_INDEX[dx + 1, dy + 1] (the primitive moving by (dx, dy); STAY otherwise) and DIRS[a] (with STAY = (0, 0))."""
    access = np.zeros((7, 7, 2), np.int32)
    for x in range(7):
        for y in range(7):
            for dx, dy in DIRECTIONS:
                if _inside(x + dx, y + dy):
                    access[x, y] = (x + dx, y + dy)
                    break
    dirs = np.array([*DIRECTIONS, (0, 0)], np.int32)
    assert len(dirs) == STAY + 1
    dir_index = np.full((3, 3), STAY, np.int32)
    for a, (dx, dy) in enumerate(DIRECTIONS):
        dir_index[dx + 1, dy + 1] = a
    # BFS distances on the open interior, to check that the vertical-first rule is a shortest path (§2, §5.2)
    cells = [(x, y) for x in range(1, 6) for y in range(1, 6)]
    first = np.full((7, 7, 7, 7), STAY, np.int32)
    for ax, ay in cells:
        for tx, ty in cells:
            if ax != tx:
                a = 1 if tx > ax else 3
            elif ay != ty:
                a = 0 if ty > ay else 2
            else:
                continue
            nx, ny = ax + dirs[a][0], ay + dirs[a][1]
            assert _inside(nx, ny) and abs(tx - nx) + abs(ty - ny) == abs(tx - ax) + abs(ty - ay) - 1
            first[ax, ay, tx, ty] = a
    return access, first, dir_index, dirs


ACCESS, FIRST_STEP, DIR_INDEX, DIRS = _build_tables()
# RECIPE[task, i]: food i (tomato, lettuce, onion) is in the task's dish. The reference compares dish names and tests
# names as substrings of the recipe (§4); for the recipe strings of TASKLIST both reduce to this set membership.
RECIPE = np.array([[f in recipe.replace(" salad", "").split("-") for f in _FOOD_NAMES] for recipe in TASKLIST], bool)
assert all(RECIPE[t, i] == (f in TASKLIST[t]) for t in range(NUM_TASKS) for i, f in enumerate(_FOOD_NAMES))


def _map_constants(version: str) -> MapConstants:
    spec = task_spec(0 if version == "v4" else 3)
    kinds, args = [], []
    for name in spec.macros:
        if name == "chop":
            kind, arg = CHOP, 0
        elif name == "deliver":
            kind, arg = DELIVER, 0
        elif name.startswith("go to knife "):
            kind, arg = KNIFE, int(name.rsplit(" ", 1)[1]) - 1
        elif name.startswith("get plate"):
            kind, arg = PLATE, 0
        elif name.startswith("get "):
            kind, arg = FOOD, spec.foods.index(name.split(" ", 1)[1])
        else:  # pragma: no cover - guards a change of the macro list
            raise ValueError(f"jax_overcooked: unknown macro {name!r}")
        kinds.append(kind)
        args.append(arg)
    return MapConstants(
        version=version,
        n_food=len(spec.foods),
        food_init=np.array([FOOD_INIT[f] for f in spec.foods], np.int32),
        knives=np.array(spec.knives, np.int32),
        kinds=np.array(kinds, np.int32),
        args=np.array(args, np.int32),
        macros=spec.macros,
    )


MAPS = {"v4": _map_constants("v4"), "v3": _map_constants("v3")}


def _version(task: int) -> str:
    if task not in TASK_IDS:
        raise ValueError(f"jax_overcooked: task must be one of {TASK_IDS}, got {task!r}")
    return task_spec(task).version


# -- world helpers (one unbatched state; everything branch-free) ------------------------------------------------
class _World(NamedTuple):
    food: jax.Array
    plate: jax.Array
    agent: jax.Array


def _same(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.all(a == b, axis=-1)


def _move(w: _World, src: jax.Array, dst: jax.Array) -> _World:
    """Move everything at ``src`` (the plate and every food there) to ``dst`` (core's ``move_items``)."""
    plate = jnp.where(_same(w.plate, src), dst, w.plate)
    xy = jnp.where(_same(w.food[:, :2], src)[:, None], dst, w.food[:, :2])
    return w._replace(food=w.food.at[:, :2].set(xy), plate=plate)


def _where(cond: jax.Array, a: Any, b: Any) -> Any:
    return jax.tree.map(lambda x, y: jnp.where(cond, x, y), a, b)


def _held(w: _World) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(holds the plate, holds a bare food, that food's index). A plate in hand wins over its contents (§3)."""
    h_plate = _same(w.plate, w.agent)
    at_agent = _same(w.food[:, :2], w.agent)
    return h_plate, ~h_plate & jnp.any(at_agent), jnp.argmax(at_agent)


def _content(w: _World, cell: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """What stands on ``cell``: (the plate, else a food, that food's index)."""
    c_plate = _same(w.plate, cell)
    at = _same(w.food[:, :2], cell)
    return c_plate, ~c_plate & jnp.any(at), jnp.argmax(at)


def _unchopped_on_knife(m: MapConstants, w: _World, cell: jax.Array) -> jax.Array:
    """Index of the bare unchopped food on knife ``cell``, or -1 (core's ``_knife_holds_unchopped``)."""
    is_knife = jnp.any(_same(jnp.asarray(m.knives), cell))
    _, c_food, ci = _content(w, cell)
    return jnp.where(is_knife & c_food & (w.food[ci, 2] < 3), ci, -1)


def _access(cell: jax.Array) -> jax.Array:
    return jnp.asarray(ACCESS)[cell[0], cell[1]]


def _primitive(m: MapConstants, w: _World, a: jax.Array, recipe: jax.Array) -> tuple[_World, jax.Array, jax.Array]:
    """One primitive step (§4): (world, reward, correct delivery)."""
    food_init = jnp.asarray(m.food_init)
    agent = w.agent
    t = agent + jnp.asarray(DIRS)[a]
    stay = a == STAY
    inside = jnp.all((t >= 1) & (t <= 5))
    on_knife = jnp.any(_same(jnp.asarray(m.knives), t))
    on_delivery = _same(t, jnp.asarray(DELIVERY))
    h_plate, h_food, hi = _held(w)
    held = h_plate | h_food
    c_plate, c_food, ci = _content(w, t)
    empty = ~c_plate & ~c_food
    chopped = w.food[:, 2] >= 3

    to_agent = _move(w, t, agent)  # pick up what is at the target (with its contents)
    to_target = _move(w, agent, t)  # put down what is held (with its contents)
    food_into_held_plate = w._replace(food=w.food.at[ci, :2].set(agent))
    zero = jnp.float32(0.0)

    # floor: walk, carrying whatever is held
    floor = to_target._replace(agent=t)

    # board
    chop = w._replace(food=w.food.at[ci, 2].add(1))
    chop_event = jnp.where((w.food[ci, 2] + 1 == 3) & recipe[ci], jnp.float32(SUBTASK_REWARD), zero)
    knife_empty_hands = _where(c_plate | (c_food & chopped[ci]), to_agent, _where(c_food, chop, w))
    knife_empty_event = jnp.where(~c_plate & c_food & ~chopped[ci], chop_event, zero)
    knife_full_hands = _where(
        empty,
        to_target,
        _where(
            c_food & h_plate & chopped[ci],
            food_into_held_plate,
            _where(c_plate & h_food & chopped[hi], to_agent, w),
        ),
    )
    knife = _where(held, knife_full_hands, knife_empty_hands)
    knife_event = jnp.where(held, zero, knife_empty_event)

    # delivery counter
    contents = _same(w.food[:, :2], agent)  # with the plate in hand: the plate's contents
    correct = h_plate & jnp.any(contents) & jnp.all(contents == recipe)
    reset_mask = jnp.where(h_plate, contents, jnp.arange(m.n_food) == hi)[:, None]
    reset_food = jnp.where(reset_mask, jnp.concatenate([food_init, jnp.zeros((m.n_food, 1), jnp.int32)], 1), w.food)
    wrong = w._replace(food=reset_food, plate=jnp.where(h_plate, jnp.asarray(PLATE_INIT, jnp.int32), w.plate))
    served = _move(w, agent, jnp.asarray(DELIVERY, jnp.int32))
    delivery = _where(held, _where(correct, served, wrong), w)
    delivery_event = jnp.where(held, jnp.where(correct, jnp.float32(CORRECT_DELIVERY), jnp.float32(WRONG_DELIVERY)), 0)

    # any other counter
    counter = _where(
        ~held,
        to_agent,
        _where(
            empty,
            to_target,
            _where(
                c_food & h_plate & chopped[ci],
                food_into_held_plate,
                _where(c_plate & h_food & chopped[hi], w._replace(food=w.food.at[hi, :2].set(t)), w),
            ),
        ),
    )

    case = jnp.where(stay, 0, jnp.where(inside, 1, jnp.where(on_knife, 2, jnp.where(on_delivery, 3, 4))))
    out = jax.tree.map(lambda *xs: jax.lax.select_n(case, *xs), w, floor, knife, delivery, counter)
    event = jax.lax.select_n(case, zero, zero, knife_event, delivery_event.astype(jnp.float32), zero)
    success = (case == 3) & correct
    return out, jnp.float32(STEP_PENALTY) + event, success


def _target(m: MapConstants, w: _World, kind: jax.Array, arg: jax.Array) -> jax.Array:
    food_xy = w.food[jnp.clip(arg, 0, m.n_food - 1), :2]
    knife = jnp.asarray(m.knives)[jnp.clip(arg, 0, len(m.knives) - 1)]
    delivery = jnp.asarray(DELIVERY, jnp.int32)
    fixed = jnp.where(kind == KNIFE, knife, delivery)
    return jnp.where(kind == FOOD, food_xy, jnp.where(kind == PLATE, w.plate, fixed))


def _choose(m: MapConstants, w: _World, kind: jax.Array, arg: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(primitive, macro done after it) for a targeted macro (§5.2)."""
    agent = w.agent
    target = _target(m, w, kind, arg)
    in_view = jnp.all(jnp.abs(target - agent) <= VIEW_RADIUS)
    in_bowl = (kind == FOOD) & in_view & _same(w.plate, target)
    at_agent = _same(target, agent)
    access = _access(target)
    adjacent = _same(access, agent)
    d = jnp.clip(target - agent, -1, 1) + 1
    into = jnp.asarray(DIR_INDEX)[d[0], d[1]]
    h_plate, h_food, hi = _held(w)
    chopped_held = w.food[hi, 2] >= 3
    plate_with_food = (kind == PLATE) & h_food
    stays = ((kind == KNIFE) & ~(h_plate | h_food)) | ((kind == FOOD) & (_unchopped_on_knife(m, w, target) == arg))
    adj_a = jnp.where(plate_with_food, jnp.where(chopped_held, into, STAY), jnp.where(stays, STAY, into))
    adj_done = jnp.where(plate_with_food, ~chopped_held, True)
    walk = jnp.asarray(FIRST_STEP)[agent[0], agent[1], access[0], access[1]]
    noop = in_bowl | at_agent
    a = jnp.where(noop, STAY, jnp.where(adjacent, adj_a, walk))
    done = noop | (adjacent & adj_done)
    return a, done


def _early_done(m: MapConstants, w: _World, kind: jax.Array, arg: jax.Array) -> jax.Array:
    """The checks after each primitive step (§5.3)."""
    target = _target(m, w, kind, arg)
    next_to = _same(_access(target), w.agent)
    h_plate, h_food, _ = _held(w)
    food_done = (_unchopped_on_knife(m, w, target) == arg) & next_to
    hands_done = ~(h_plate | h_food) & next_to
    return jnp.where(kind == FOOD, food_done, ((kind == KNIFE) | (kind == DELIVER)) & hands_done)


def _chop_direction(m: MapConstants, w: _World) -> jax.Array:
    """The first direction whose neighbour is a board with unchopped food on it, else STAY (§5.2)."""
    found = jnp.stack([_unchopped_on_knife(m, w, w.agent + jnp.asarray(DIRS)[a]) >= 0 for a in range(4)])
    return jnp.where(jnp.any(found), jnp.argmax(found), STAY)


class _Loop(NamedTuple):
    world: _World
    k: jax.Array
    total: jax.Array
    weight: jax.Array
    chops: jax.Array
    done: jax.Array
    success: jax.Array


def _run_macro(m: MapConstants, w: _World, action: jax.Array, recipe: jax.Array) -> tuple[_World, jax.Array, Any, Any]:
    """Execute one macro (§5.1): (world, Σ_j 0.99^j r_j, correct delivery, primitive steps)."""
    kind = jnp.asarray(m.kinds)[action]
    arg = jnp.asarray(m.args)[action]
    is_chop = kind == CHOP

    def body(c: _Loop) -> _Loop:
        chop_a = _chop_direction(m, c.world)
        chop_stay = chop_a == STAY
        chops = c.chops + jnp.where(is_chop & ~chop_stay, 1, 0)
        move_a, move_done = _choose(m, c.world, kind, arg)
        a = jnp.where(is_chop, chop_a, move_a)
        done = jnp.where(is_chop, chop_stay | (chops == 3), move_done)
        world, r, success = _primitive(m, c.world, a, recipe)
        done = done | _early_done(m, world, kind, arg)  # always False for chop and plate macros
        return _Loop(
            world, c.k + 1, c.total + c.weight * r, c.weight * jnp.float32(GAMMA), chops, done, c.success | success
        )

    start = _Loop(w, jnp.int32(0), jnp.float32(0), jnp.float32(1), jnp.int32(0), jnp.bool_(False), jnp.bool_(False))
    end = jax.lax.while_loop(lambda c: ~c.done & (c.k < MAX_PRIMITIVE_STEPS), body, start)
    return end.world, end.total, end.success, end.k


def _observation(m: MapConstants, w: _World, task: jax.Array) -> jax.Array:
    """The macro observation vector (§6): visible items' (x, y[, chops]) else zeros, the agent, the task one-hot."""

    def seen(cell: jax.Array) -> jax.Array:
        return jnp.all(jnp.abs(cell - w.agent) <= VIEW_RADIUS)

    parts = [jnp.where(seen(w.food[i, :2]), w.food[i], 0) for i in range(m.n_food)]
    fixed = [jnp.asarray(k, jnp.int32) for k in m.knives] + [jnp.asarray(DELIVERY, jnp.int32)]
    parts += [jnp.where(seen(cell), cell, 0) for cell in [w.plate, *fixed]]
    parts += [w.agent, (jnp.arange(NUM_TASKS) == task).astype(jnp.int32)]
    return jnp.concatenate(parts).astype(jnp.int32)


def _world(s: State) -> _World:
    return _World(s.food, s.plate, s.agent)


def _map_of(state: State) -> MapConstants:
    n = state.food.shape[-2]
    return MAPS["v4"] if n == 1 else MAPS["v3"]


# -- public pure functions ---------------------------------------------------------------------------------------
def observation(state: State) -> jax.Array:
    """The observation vector of an (unbatched) state."""
    return _observation(_map_of(state), _world(state), state.task)


@jax.jit
def observation_batch(state: State) -> jax.Array:
    """:func:`observation` over a batch (leading axis) of states, jitted."""
    return jax.vmap(observation)(state)


def initial_state(task: int) -> State:
    """The reset state of ``task`` (§2), as numpy constants."""
    m = MAPS[_version(task)]
    food = np.concatenate([m.food_init, np.zeros((m.n_food, 1), np.int32)], 1)
    return State(
        food=food.astype(np.int32),
        plate=np.array(PLATE_INIT, np.int32),
        agent=np.array(AGENT_INIT, np.int32),
        env_step=np.array(0, np.int32),
        steps=np.array(0, np.int32),
        task=np.array(task, np.int32),
    )


def reset(key: jax.Array, task: int) -> tuple[State, jax.Array]:
    """``(state, obs)`` at reset; deterministic (``key`` is unused), ``task`` is a Python int."""
    del key
    state = initial_state(task)
    return state, observation(state)


_NO_CAP = np.iinfo(np.int32).max


def _finished(state: State, max_steps: jax.Array, horizon: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(terminated, truncated) of a state: served or at the horizon; at the macro cap."""
    terminated = _same(state.plate, jnp.asarray(DELIVERY, jnp.int32)) | (state.env_step >= horizon)
    return terminated, ~terminated & (state.steps >= max_steps)


def _step(
    state: State, action: jax.Array, max_steps: jax.Array, horizon: jax.Array
) -> tuple[State, jax.Array, jax.Array, jax.Array, dict[str, jax.Array]]:
    """:func:`step` with the cap and horizon as (possibly traced) int32 scalars."""
    m = _map_of(state)
    action = jnp.asarray(action, jnp.int32)
    recipe = jnp.asarray(RECIPE)[state.task, : m.n_food]
    was_done, was_truncated = _finished(state, max_steps, horizon)
    stepped = ~(was_done | was_truncated)
    world, reward, success, k = _run_macro(m, _world(state), jnp.clip(action, 0, len(m.kinds) - 1), recipe)
    moved = State(world.food, world.plate, world.agent, state.env_step + k, state.steps + 1, state.task)
    new = _where(stepped, moved, state)
    done, truncated = _finished(new, max_steps, horizon)
    done = done | (stepped & success)
    reward = jnp.where(stepped, reward, jnp.float32(0))
    info = {
        "primitive_steps": jnp.where(stepped, k, 0),
        "env_step": new.env_step,
        "episode_steps": new.steps,
        "success": stepped & success,
        "truncated": truncated,
        "twosome_reward": jnp.where(stepped, jnp.float32(GAMMA) ** state.env_step.astype(jnp.float32) * reward, 0),
        "stepped": stepped,
    }
    return new, observation(new), reward, done, info


def _limits(max_steps: Any, horizon: Any) -> tuple[Any, Any]:
    """The cap (None = none) and horizon as int32 scalars (numpy for Python ints: no eager device dispatch)."""
    if max_steps is None:
        max_steps = _NO_CAP
    if isinstance(max_steps, int) and isinstance(horizon, int):
        return np.int32(max_steps), np.int32(horizon)
    return jnp.asarray(max_steps, jnp.int32), jnp.asarray(horizon, jnp.int32)


def step(
    key: jax.Array, state: State, action: jax.Array, *, max_steps: Any = None, horizon: Any = HORIZON
) -> tuple[State, jax.Array, jax.Array, jax.Array, dict[str, jax.Array]]:
    """One macro step of an unbatched state: ``(state, obs, reward, done, info)`` (see the module docstring).
    ``max_steps`` (None = no cap) and ``horizon`` may be Python ints or traced int32 scalars."""
    del key
    return _step(state, action, *_limits(max_steps, horizon))


@jax.jit
def _batch_step(state: State, action: jax.Array, max_steps: jax.Array, horizon: jax.Array):
    return jax.vmap(_step, in_axes=(0, 0, None, None))(state, action, max_steps, horizon)


def step_batch(
    state: State, action: Any, max_steps: int | None = None, horizon: int = HORIZON
) -> tuple[State, jax.Array, jax.Array, jax.Array, dict[str, jax.Array]]:
    """:func:`step` over a batch (leading axis) of states, jitted once per batch shape and map version: the cap and
    horizon are traced, and tasks 3 and 6 share a compilation. Used by :mod:`envs.jax_prompts` and the tests."""
    action = action.astype(jnp.int32) if isinstance(action, jax.Array) else np.asarray(action, np.int32)
    return _batch_step(state, action, *_limits(max_steps, horizon))


CHUNK = 1024  # the batch shape step_many compiles for


def step_many(
    state: State, action: Any, max_steps: int | None = None, horizon: int = HORIZON, chunk: int = CHUNK
) -> tuple[State, jax.Array, jax.Array, jax.Array, dict[str, jax.Array]]:
    """:func:`step_batch` over any number of states, in padded chunks of ``chunk`` (one compilation per map version
    whatever the count); outputs are numpy arrays."""
    action = np.broadcast_to(np.asarray(action, np.int32), state.env_step.shape)
    n = action.shape[0]
    outs = []
    for lo in range(0, max(n, 1), chunk):
        idx = np.minimum(np.arange(lo, lo + chunk), n - 1)  # pad by repeating the last row
        part = jax.tree.map(lambda x, idx=idx: np.asarray(x)[idx], state)
        out = jax.device_get(step_batch(part, action[idx], max_steps, horizon))
        keep = min(chunk, n - lo)
        outs.append(jax.tree.map(lambda x, keep=keep: x[:keep], out))
    return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)


def from_world(world: Sequence[int] | np.ndarray | jax.Array, task: int, env_step: Any = 0, steps: Any = 0) -> State:
    """A :class:`State` from the golden files' ``state`` layout (§14): task 0 ``[tom x,y,c, plate x,y, agent x,y]``,
    tasks 3/6 ``[tom x,y,c, let x,y,c, oni x,y,c, plate x,y, agent x,y]``. Leading batch dimensions are kept; the
    leaves are numpy arrays unless an argument is a ``jax.Array`` (or a tracer)."""
    m = MAPS[_version(task)]
    xp = jnp if any(isinstance(x, jax.Array) for x in (world, env_step, steps)) else np  # numpy: no device dispatch
    w = xp.asarray(world, xp.int32)
    n = 3 * m.n_food
    if w.shape[-1] != n + 4:
        raise ValueError(f"jax_overcooked task {task}: a world has {n + 4} ints, got shape {w.shape}")
    batch = w.shape[:-1]
    return State(
        food=w[..., :n].reshape(*batch, m.n_food, 3),
        plate=w[..., n : n + 2],
        agent=w[..., n + 2 : n + 4],
        env_step=xp.broadcast_to(xp.asarray(env_step, xp.int32), batch),
        steps=xp.broadcast_to(xp.asarray(steps, xp.int32), batch),
        task=xp.full(batch, task, xp.int32),
    )


def to_world(state: State) -> jax.Array | np.ndarray:
    """The golden ``state`` layout of a (batched) state: int32[..., 7 or 13] (numpy for a numpy state)."""
    xp = np if isinstance(state.food, np.ndarray) else jnp
    batch = state.food.shape[:-2]
    return xp.concatenate([state.food.reshape(*batch, -1), state.plate, state.agent], -1)


class OvercookedEnv(NamedTuple):
    """One task's pure functions and constants (from :func:`make_overcooked`)."""

    task: int
    num_actions: int  # 5 (task 0) or 8
    obs_dim: int  # 18 (task 0) or 26
    max_steps: int | None  # macro cap (non-terminal truncation); None = none
    horizon: int  # primitive-step horizon (terminal)
    macros: tuple[str, ...]  # reference macro names by action id
    constants: MapConstants
    reset: Callable[[jax.Array], tuple[State, jax.Array]]
    step: Callable[..., tuple[State, jax.Array, jax.Array, jax.Array, dict[str, jax.Array]]]
    observation: Callable[[State], jax.Array]
    from_world: Callable[..., State]
    to_world: Callable[[State], jax.Array]


def make_overcooked(task: int, max_steps: int | None = None, horizon: int = HORIZON) -> OvercookedEnv:
    """The pure-JAX Overcooked of ``task`` (0, 3 or 6) with a macro cap ``max_steps`` (31 / 51 in the paper's
    scripts; None = none) and the primitive ``horizon`` (200). All functions act on one unbatched state; wrap them in
    ``jax.vmap`` / ``jax.jit`` as needed."""
    version = _version(task)
    if max_steps is not None and (isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1):
        raise ValueError(f"jax_overcooked: max_steps must be a positive int or None, got {max_steps!r}")
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ValueError(f"jax_overcooked: horizon must be a positive int, got {horizon!r}")
    m = MAPS[version]
    return OvercookedEnv(
        task=task,
        num_actions=len(m.kinds),
        obs_dim=3 * m.n_food + 2 * (1 + len(m.knives) + 1 + 1) + NUM_TASKS,
        max_steps=max_steps,
        horizon=horizon,
        macros=m.macros,
        constants=m,
        reset=partial(reset, task=task),
        step=partial(step, max_steps=max_steps, horizon=horizon),
        observation=observation,
        from_world=partial(from_world, task=task),
        to_world=to_world,
    )


__all__ = [
    "MAPS",
    "RECIPE",
    "TASK_IDS",
    "OvercookedEnv",
    "State",
    "from_world",
    "initial_state",
    "make_overcooked",
    "observation",
    "observation_batch",
    "reset",
    "step",
    "step_batch",
    "step_many",
    "to_world",
]
