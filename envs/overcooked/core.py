"""Single-agent map-"A" Overcooked (TWOSOME's ``gym-macro-overcooked``), re-implemented from the spec.

Spec: ``docs/overcooked-frozenlake.md`` §2–§7. Everything here is pure and cached:

* the **world** is a flat tuple of ints in the golden files' ``state`` layout (§14):
  task 0 ``(tom x, y, c, plate x, y, agent x, y)`` (length 7); tasks 3 and 6
  ``(tom x, y, c, let x, y, c, oni x, y, c, plate x, y, agent x, y)`` (length 13).
  Held items share the agent's cell, plate contents share the plate's cell (§3), so this is the full true state;
* :class:`OvercookedState` adds the task id and the primitive-step clock ``env_step``;
* :func:`step_state` runs one macro action (§5) and returns ``(next_state, reward, done, prim_steps)``;
  the world transition is computed once per (task, world, action) by simulating primitive steps (§4) and cached,
  so a step afterwards is a dict lookup;
* :func:`observation_vector` is the integer macro observation of §6 (5×5 view).

Grid coordinates are ``(x, y)`` = (row from the top, column from the left) on the 7×7 map.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

HORIZON = 200  # primitive steps; the macro that crosses it still finishes (§7)
GAMMA = 0.99  # within-macro discount of primitive rewards (§5.1) and TWOSOME's per-primitive discount
STEP_PENALTY = -0.001
SUBTASK_REWARD = 0.2
CORRECT_DELIVERY = 1.0
WRONG_DELIVERY = -0.1

TASKLIST = (
    "tomato salad",
    "lettuce salad",
    "onion salad",
    "lettuce-tomato salad",
    "onion-tomato salad",
    "lettuce-onion salad",
    "lettuce-onion-tomato salad",
)
# DIRECTION[a] = (dx, dy) for a = right, down, left, up; 4 = stay (§2)
DIRECTIONS = ((0, 1), (1, 0), (0, -1), (-1, 0))
STAY = 4
VIEW_RADIUS = 2  # obs_radius: a 5×5 box centred on the agent (§6)
_DISH_ORDER = ("lettuce", "onion", "tomato")  # dish names list foods in this order (§4, Delivery)

FOOD_INIT = {"tomato": (0, 5), "lettuce": (1, 6), "onion": (2, 6)}
PLATE_INIT = (6, 5)
DELIVERY = (3, 0)
AGENT_INIT = (1, 4)


@dataclass(frozen=True)
class TaskSpec:
    """One Overcooked task: the map (v4 or v3), the recipe and the macro actions (§1, §5)."""

    task_id: int
    version: str  # "v4" (tomato only, one board) or "v3" (tomato, lettuce, onion, two boards)
    foods: tuple[str, ...]  # in itemList order
    knives: tuple[tuple[int, int], ...]
    macros: tuple[str, ...]  # the reference's macro names; the action index is the position here
    goal_foods: str  # "tomato", "tomato and lettuce", ...: the goal sentence's food list (§10, §13)

    @property
    def recipe(self) -> str:
        return TASKLIST[self.task_id]

    @property
    def world_size(self) -> int:
        return 3 * len(self.foods) + 4

    @property
    def num_actions(self) -> int:
        return len(self.macros)

    @property
    def initial_world(self) -> tuple[int, ...]:
        world: list[int] = []
        for food in self.foods:
            world += [*FOOD_INIT[food], 0]
        return tuple(world + [*PLATE_INIT, *AGENT_INIT])


_V3_MACROS = (
    "get tomato",
    "get lettuce",
    "get onion",
    "get plate 1",
    "go to knife 1",
    "go to knife 2",
    "deliver",
    "chop",
)
TASKS: dict[int, TaskSpec] = {
    0: TaskSpec(
        0, "v4", ("tomato",), ((1, 0),), ("get tomato", "get plate 1", "go to knife 1", "deliver", "chop"), "tomato"
    ),
    3: TaskSpec(3, "v3", ("tomato", "lettuce", "onion"), ((1, 0), (2, 0)), _V3_MACROS, "tomato and lettuce"),
    # Not in either paper's scripts; the reference supports it on the v3 map (§13).
    6: TaskSpec(6, "v3", ("tomato", "lettuce", "onion"), ((1, 0), (2, 0)), _V3_MACROS, "tomato, lettuce and onion"),
}


def task_spec(task_id: int) -> TaskSpec:
    try:
        return TASKS[task_id]
    except KeyError:
        raise ValueError(f"overcooked: unknown task id {task_id!r}; supported task ids are {sorted(TASKS)}") from None


class OvercookedState(NamedTuple):
    """Immutable true state: ``world`` (golden ``state`` layout, see module doc) and the primitive-step clock."""

    task_id: int
    world: tuple[int, ...]
    env_step: int = 0


class MacroResult(NamedTuple):
    next_world: tuple[int, ...]
    reward: float  # Σ_j 0.99^j r_j over the macro's primitive steps
    success: bool  # a correct delivery happened
    prim_steps: int


def initial_state(task_id: int) -> OvercookedState:
    return OvercookedState(task_id, task_spec(task_id).initial_world, 0)


def validate_world(task_id: int, world: Sequence[int]) -> tuple[int, ...]:
    """Check a world's layout (length, integer cells on the map, chop counts) and return it as a tuple of ints."""
    spec = task_spec(task_id)
    values = tuple(world)
    if len(values) != spec.world_size:
        raise ValueError(
            f"overcooked task {task_id}: a state has {spec.world_size} ints "
            f"({', '.join(f'{f} x,y,chops' for f in spec.foods)}, plate x,y, agent x,y), got {len(values)}: {values}"
        )
    if any(isinstance(v, bool) or not hasattr(v, "__index__") for v in values):
        raise ValueError(f"overcooked task {task_id}: state entries must be ints, got {values}")
    values = tuple(int(v.__index__()) for v in values)
    if not all(0 <= v <= 6 for v in values):
        raise ValueError(f"overcooked task {task_id}: coordinates must lie in 0..6 (7×7 map), got {values}")
    for i, food in enumerate(spec.foods):
        if values[3 * i + 2] > 3:
            raise ValueError(f"overcooked task {task_id}: the {food}'s chop count must be 0..3, got {values}")
    ax, ay = values[-2:]
    if not (1 <= ax <= 5 and 1 <= ay <= 5):
        raise ValueError(
            f"overcooked task {task_id}: the agent must stand on the inner 5×5 floor (x, y in 1..5), got {values}"
        )
    return values


# -- primitive simulation (§4, §5) ------------------------------------------------------------------------------
def _inside(x: int, y: int) -> bool:
    return 1 <= x <= 5 and 1 <= y <= 5


def _access_cell(cell: tuple[int, int]) -> tuple[int, int]:
    """The floor neighbour of a border cell (unique for every item cell of map "A", §2)."""
    x, y = cell
    for dx, dy in DIRECTIONS:
        if _inside(x + dx, y + dy):
            return x + dx, y + dy
    raise RuntimeError(f"overcooked: cell {cell} has no floor neighbour")


class _Kitchen:
    """Mutable scratch copy of a world, used only while simulating one macro."""

    __slots__ = ("spec", "food", "plate", "agent", "reward", "success")

    def __init__(self, spec: TaskSpec, world: tuple[int, ...]):
        n = len(spec.foods)
        self.spec = spec
        self.food = [[world[3 * i], world[3 * i + 1], world[3 * i + 2]] for i in range(n)]
        self.plate = [world[3 * n], world[3 * n + 1]]
        self.agent = [world[3 * n + 2], world[3 * n + 3]]
        self.success = False

    def world(self) -> tuple[int, ...]:
        out: list[int] = []
        for f in self.food:
            out += f
        return tuple(out + self.plate + self.agent)

    # what is where --------------------------------------------------------------------------------------------
    def foods_at(self, x: int, y: int) -> list[int]:
        return [i for i, f in enumerate(self.food) if f[0] == x and f[1] == y]

    def held(self) -> tuple[str, int] | None:
        """("plate", -1), ("food", i) or None. A plate in hand takes precedence over its contents (§3)."""
        ax, ay = self.agent
        if self.plate[0] == ax and self.plate[1] == ay:
            return ("plate", -1)
        for i, f in enumerate(self.food):
            if f[0] == ax and f[1] == ay:
                return ("food", i)
        return None

    def content(self, x: int, y: int) -> tuple[str, int] | None:
        """The item standing on counter/knife cell (x, y): the plate (with whatever is in it) first, else a food."""
        if self.plate[0] == x and self.plate[1] == y:
            return ("plate", -1)
        for i, f in enumerate(self.food):
            if f[0] == x and f[1] == y:
                return ("food", i)
        return None

    def chopped(self, i: int) -> bool:
        return self.food[i][2] >= 3

    def move_items(self, src: tuple[int, int] | list[int], dst: tuple[int, int] | list[int]) -> None:
        """Move everything at ``src`` (an item and, for a plate, its contents) to ``dst``."""
        sx, sy = src
        dx, dy = dst
        if self.plate[0] == sx and self.plate[1] == sy:
            self.plate = [dx, dy]
        for f in self.food:
            if f[0] == sx and f[1] == sy:
                f[0], f[1] = dx, dy

    # one primitive step (§4) ------------------------------------------------------------------------------------
    def primitive(self, a: int) -> float:
        r = STEP_PENALTY
        if a == STAY:
            return r
        ax, ay = self.agent
        tx, ty = ax + DIRECTIONS[a][0], ay + DIRECTIONS[a][1]
        target = (tx, ty)
        held = self.held()
        if _inside(tx, ty):  # open floor: walk, carrying whatever is held
            if held is not None:
                self.move_items((ax, ay), target)
            self.agent = [tx, ty]
            return r
        if target in self.spec.knives:
            return r + self._knife(target, held)
        if target == DELIVERY:
            return r + self._deliver(held) if held else r
        on_counter = self.content(tx, ty)
        if held is None:
            if on_counter is not None:  # pick it up (a plate with its contents); the cell becomes a counter
                self.move_items(target, (ax, ay))
            return r
        if on_counter is None:  # put the held item down on a bare counter (unreachable through macros)
            self.move_items((ax, ay), target)
        elif on_counter[0] == "food":
            if held[0] == "plate" and self.chopped(on_counter[1]):
                self.food[on_counter[1]][:2] = [ax, ay]
        elif held[0] == "food" and self.chopped(held[1]):  # chopped food goes into the bowl on the counter
            self.food[held[1]][:2] = [tx, ty]
        return r

    def _knife(self, knife: tuple[int, int], held: tuple[str, int] | None) -> float:
        kx, ky = knife
        on_knife = self.content(kx, ky)
        ax, ay = self.agent
        if held is None:
            if on_knife is None:
                return 0.0
            if on_knife[0] == "plate" or self.chopped(on_knife[1]):
                self.move_items(knife, (ax, ay))
                return 0.0
            food = self.food[on_knife[1]]  # chop
            food[2] += 1
            # the reference tests the food name as a substring of the recipe string
            if food[2] == 3 and self.spec.foods[on_knife[1]] in self.spec.recipe:
                return SUBTASK_REWARD
            return 0.0
        if on_knife is None:  # put the held item (with its contents) on the board
            self.move_items((ax, ay), knife)
        elif on_knife[0] == "food" and held[0] == "plate":
            if self.chopped(on_knife[1]):
                self.food[on_knife[1]][:2] = [ax, ay]
        elif on_knife[0] == "plate" and held[0] == "food" and self.chopped(held[1]):
            self.move_items(knife, (ax, ay))  # lift the bowl; the held food is now in it
        return 0.0

    def _deliver(self, held: tuple[str, int]) -> float:
        spec = self.spec
        ax, ay = self.agent
        if held[0] == "food":
            i = held[1]
            self.food[i] = [*FOOD_INIT[spec.foods[i]], 0]
            return WRONG_DELIVERY
        contents = self.foods_at(ax, ay)
        if contents:
            names = {spec.foods[i] for i in contents}
            dish = "-".join(n for n in _DISH_ORDER if n in names) + " salad"
            if dish == spec.recipe:
                self.move_items((ax, ay), DELIVERY)
                self.success = True
                return CORRECT_DELIVERY
            for i in contents:
                self.food[i] = [*FOOD_INIT[spec.foods[i]], 0]
        self.plate = list(PLATE_INIT)
        return WRONG_DELIVERY

    # macro actions (§5) -----------------------------------------------------------------------------------------
    def _in_view(self, x: int, y: int) -> bool:
        return abs(x - self.agent[0]) <= VIEW_RADIUS and abs(y - self.agent[1]) <= VIEW_RADIUS

    def _knife_holds_unchopped(self, cell: tuple[int, int]) -> int:
        """Index of the bare unchopped food on knife ``cell``, or -1."""
        if cell not in self.spec.knives:
            return -1
        c = self.content(*cell)
        return c[1] if c is not None and c[0] == "food" and not self.chopped(c[1]) else -1

    def _target(self, kind: str, arg: int) -> tuple[int, int]:
        if kind == "food":
            return self.food[arg][0], self.food[arg][1]
        if kind == "plate":
            return self.plate[0], self.plate[1]
        if kind == "knife":
            return self.spec.knives[arg]
        return DELIVERY

    def _choose(self, kind: str, arg: int) -> tuple[int, bool]:
        """(primitive action, macro done after it) for a target macro (§5.2)."""
        ax, ay = self.agent
        target = self._target(kind, arg)
        if kind == "food" and self._in_view(*target) and tuple(self.plate) == target:
            return STAY, True  # the food is in a bowl: food macros never pick the bowl up
        if target == (ax, ay):
            return STAY, True  # already in hand
        access = _access_cell(target)
        if access == (ax, ay):  # adjacent: this step interacts, unless an override says stay
            into = DIRECTIONS.index((target[0] - ax, target[1] - ay))
            held = self.held()
            if kind == "plate" and held is not None and held[0] == "food":
                # unchopped food in hand: stay; chopped: drop it in (or lift a bowl off a board), not done yet
                return (into, False) if self.chopped(held[1]) else (STAY, True)
            if kind == "knife" and held is None:
                return STAY, True
            if kind == "food" and self._knife_holds_unchopped(target) == arg:
                return STAY, True  # unchopped food is never taken off a board
            return into, True
        # A* in the open 5×5 interior; the reference's tie-breaking gives: vertical first, then horizontal
        if ax != access[0]:
            return (1 if access[0] > ax else 3), False
        return (0 if access[1] > ay else 2), False

    def _early_done(self, kind: str, arg: int) -> bool:
        """Termination checks after each primitive step (§5.3)."""
        if kind == "food":
            target = self._target(kind, arg)
            return _access_cell(target) == tuple(self.agent) if self._knife_holds_unchopped(target) == arg else False
        if kind in ("knife", "deliver") and self.held() is None:
            return _access_cell(self._target(kind, arg)) == tuple(self.agent)
        return False

    def _chop_direction(self) -> int:
        ax, ay = self.agent
        for a, (dx, dy) in enumerate(DIRECTIONS):
            if self._knife_holds_unchopped((ax + dx, ay + dy)) >= 0:
                return a
        return STAY

    def run_macro(self, kind: str, arg: int) -> tuple[float, int]:
        """Execute one macro; returns (within-macro discounted reward, primitive steps)."""
        k, total, weight, chops = 0, 0.0, 1.0, 0
        while True:
            k += 1
            if kind == "chop":
                a = self._chop_direction()
                if a == STAY:
                    done = True
                else:
                    chops += 1
                    done = chops == 3
            else:
                a, done = self._choose(kind, arg)
            total += weight * self.primitive(a)
            if not done:
                done = self._early_done(kind, arg)
            weight *= GAMMA
            if done:
                return total, k


def _macro_kind(name: str) -> tuple[str, int]:
    if name == "chop":
        return "chop", -1
    if name == "deliver":
        return "deliver", -1
    if name.startswith("go to knife "):
        return "knife", int(name.rsplit(" ", 1)[1]) - 1
    if name.startswith("get plate"):
        return "plate", -1
    food = name.split(" ", 1)[1]
    return "food", ("tomato", "lettuce", "onion").index(food)


_MACRO_CACHE: dict[tuple[int, tuple[int, ...], int], MacroResult] = {}


def delivered(task_id: int, world: tuple[int, ...]) -> bool:
    """True once the plate stands on the delivery counter: the episode ended with a correct delivery."""
    n = 3 * len(task_spec(task_id).foods)
    return (world[n], world[n + 1]) == DELIVERY


def macro_transition(task_id: int, world: tuple[int, ...], action: int) -> MacroResult:
    """The world after macro ``action`` (cached). ``world`` must be a valid tuple (see :func:`validate_world`)."""
    key = (task_id, world, action)
    result = _MACRO_CACHE.get(key)
    if result is None:
        spec = task_spec(task_id)
        if not 0 <= action < spec.num_actions:
            raise ValueError(
                f"overcooked task {task_id}: macro action must be in 0..{spec.num_actions - 1}, "
                f"got {action!r} (macros: {list(spec.macros)})"
            )
        if delivered(task_id, world):
            raise ValueError(f"overcooked task {task_id}: the dish was already served in {world}; reset first")
        kitchen = _Kitchen(spec, world)
        reward, k = kitchen.run_macro(*_macro_kind(spec.macros[action]))
        result = MacroResult(kitchen.world(), reward, kitchen.success, k)
        _MACRO_CACHE[key] = result
    return result


def step_state(state: OvercookedState, action: int, horizon: int = HORIZON) -> tuple[OvercookedState, float, bool, int]:
    """One macro step: ``(next_state, reward, done, prim_steps)``.

    ``reward`` = Σ_j 0.99^j r_j over the macro's primitive steps; ``done`` = a correct delivery happened or the
    clock reached the ``horizon`` (200 primitive steps; the macro that crosses it still finishes and its rewards
    count; once past it, every step returns ``done=True``).
    """
    result = macro_transition(state.task_id, state.world, action)
    env_step = state.env_step + result.prim_steps
    return (
        OvercookedState(state.task_id, result.next_world, env_step),
        result.reward,
        result.success or env_step >= horizon,
        result.prim_steps,
    )


# -- observation vector (§6) ----------------------------------------------------------------------------------
_OBS_CACHE: dict[tuple[int, tuple[int, ...]], tuple[int, ...]] = {}


def observation_vector(task_id: int, world: tuple[int, ...]) -> tuple[int, ...]:
    """The macro observation (§6): length 18 (task 0) or 26 (tasks 3, 6).

    Per item in itemList order (foods, plate, knives, delivery, agent): ``x, y`` (+ chop count for food) if the
    item lies in the agent's 5×5 view, else zeros; then the 7-dim one-hot of the task id.
    """
    key = (task_id, world)
    vec = _OBS_CACHE.get(key)
    if vec is None:
        spec = task_spec(task_id)
        n = len(spec.foods)
        ax, ay = world[3 * n + 2], world[3 * n + 3]

        def seen(x: int, y: int) -> bool:
            return abs(x - ax) <= VIEW_RADIUS and abs(y - ay) <= VIEW_RADIUS

        out: list[int] = []
        for i in range(n):
            x, y, c = world[3 * i : 3 * i + 3]
            out += [x, y, c] if seen(x, y) else [0, 0, 0]
        for x, y in ((world[3 * n], world[3 * n + 1]), *spec.knives, DELIVERY):
            out += [x, y] if seen(x, y) else [0, 0]
        out += [ax, ay]
        out += [1 if t == task_id else 0 for t in range(len(TASKLIST))]
        vec = tuple(out)
        _OBS_CACHE[key] = vec
    return vec
