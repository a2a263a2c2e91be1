"""Generate ALFWorld Pick & Place games (json_2.1.1 layout) from what the alfworld wheel ships.

The ALFWorld game files cannot be downloaded offline, but a Pick & Place game is one PDDL problem plus the domain
and grammar that ship in the wheel. Each game here uses a real AI2-THOR room: every receptacle of one of the 120
shipped floor plans, with its real ALFRED id and its agent pose as location, plus one synthetic instance of each
static receptacle type the room lists without a pose (StoveBurner, GarbageCan, ...). The room's portable object
types get 1-3 instances each, placed at random in receptacles whose type may hold them
(``constants.VAL_RECEPTACLE_OBJECTS``), never an instance of the goal object in a goal receptacle (the goal would
hold at reset). The goal and its text come from ``goal_library.gdict['pick_and_place_simple']``. Every game is
played by the planner before it is kept: an empty plan, or a plan that does not win when replayed, rejects it.
Everything is drawn from ``numpy.random.default_rng([seed, split, index, attempt])`` over sorted inputs, so the
files are byte-identical for a given seed (Python's global ``random`` is not used).

The fixed split (``SPLITS``):

- ``train`` (28 tasks): the 26 Pick & Place tasks of the paper's released code (its 31-task list minus the 5 it
  marks hard) plus the other wording of two of them, to reach the paper's 28. One game per task, in floor plans
  1-25, 201-225, 301-325, 401-425.
- ``valid_unseen`` (26 tasks): object/receptacle pairs that occur nowhere in that 31-task list, in floor plans
  26-30, 226-230, 326-330, 426-430 (rooms never used for training), 7/7/6/6 kitchen/living/bed/bathroom tasks.

    python -m envs.alfworld.generate --out DIR          # writes DIR/json_2.1.1/{train,valid_unseen}/...
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from envs.alfworld import engine, parse_cache

GENERATOR_VERSION = 1
DEFAULT_SEED = 0
TASK_TYPE = "pick_and_place_simple"
MAX_RECEPTACLES = 40  # bigger rooms (up to 51) give > 64 admissible commands and very long prompts
MAX_ATTEMPTS = 20

KINDS = {
    "kitchen": range(1, 31),
    "livingroom": range(201, 231),
    "bedroom": range(301, 331),
    "bathroom": range(401, 431),
}
UNSEEN_FLOOR_PLANS = frozenset(n for r in KINDS.values() for n in r if n % 100 > 25)
SEEN_FLOOR_PLANS = frozenset(n for r in KINDS.values() for n in r if n % 100 <= 25)

# The released code's task list (train_alfworld.py `test_envs`, 31 tasks) and the 5 it drops as hard.
REFERENCE_TASKS = (
    "put some cellphone on armchair.",
    "put some candle on sidetable.",
    "put some candle on toilet.",
    "put a cellphone in armchair.",
    "put some soapbottle on toilet.",
    "put some cellphone on bed.",
    "put some cellphone on sidetable.",
    "put a cloth in toilet.",
    "put some cellphone on desk.",
    "put a cellphone in drawer.",
    "put some spraybottle on countertop.",
    "put some pillow on sofa.",
    "put some soapbottle on cart.",
    "put some spraybottle on toilet.",
    "put some laptop on armchair.",
    "put a candle in sidetable.",
    "put a cellphone in bed.",
    "put a handtowel in garbagecan.",
    "put some cd on dresser.",
    "put some box on armchair.",
    "put a cd in dresser.",
    "put a spraybottle in countertop.",
    "put a candle in toilet.",
    "put a soapbottle in toilet.",
    "put a laptop in armchair.",
    "put a cellphone in sidetable.",
    "put some mug on sidetable.",
    "put a fork in drawer.",
    "put a pillow in sofa.",
    "put some fork on drawer.",
    "put a cellphone in desk.",
)
REFERENCE_HARD_TASKS = (
    "put some cellphone on sidetable.",
    "put a cellphone in bed.",
    "put some fork on drawer.",
    "put a cellphone in sidetable.",
    "put some cd on dresser.",
)
TRAIN_TASKS = tuple(t for t in REFERENCE_TASKS if t not in REFERENCE_HARD_TASKS) + (
    "put some cloth on toilet.",
    "put some handtowel on garbagecan.",
)
NUM_UNSEEN = 26
SPLITS = ("train", "valid_unseen")

_ESCAPES = (("|", "_bar_"), ("-", "_minus_"), ("+", "_plus_"), (".", "_dot_"), (",", "_comma_"))
_PROPERTY_FACTS = (
    ("Cleanable", "cleanable"),
    ("Heatable", "heatable"),
    ("Coolable", "coolable"),
    ("Sliceable", "sliceable"),
)


class GenerationError(RuntimeError):
    """A task could not be turned into a solvable game."""


def escape(alfred_id: str) -> str:
    """ALFWorld's PDDL escaping of an ALFRED id (``Demangler`` reverses exactly these substitutions)."""
    for raw, escaped in _ESCAPES:
        alfred_id = alfred_id.replace(raw, escaped)
    return alfred_id


def _templates() -> list[str]:
    return list(engine.alfworld_goals.gdict[TASK_TYPE]["templates"])


def task_text(obj: str, recep: str, template: int) -> str:
    """The goal text the grammar shows ("put a cellphone in armchair."), from the goal library's templates."""
    return _templates()[template].format(obj=obj.lower(), recep=recep.lower()) + "."


def _type_names() -> dict[str, str]:
    table = engine.alfworld_constants.VAL_RECEPTACLE_OBJECTS
    names = set(table) | {o for objs in table.values() for o in objs}
    return {n.lower(): n for n in sorted(names)}


def parse_task(text: str) -> tuple[str, str, int]:
    """``"put a cd in dresser."`` -> ``("CD", "Dresser", 0)`` (object type, receptacle type, template index)."""
    names = _type_names()
    for index, template in enumerate(_templates()):
        head, _, rest = template.partition("{obj}")
        middle = rest.partition("{recep}")[0]
        body = text.rstrip(".")
        if body.startswith(head) and middle in body[len(head) :]:
            obj, _, recep = body[len(head) :].partition(middle)
            if obj in names and recep in names:
                return names[obj], names[recep], index
    raise ValueError(f"not a Pick & Place task text: {text!r}")


# -- rooms --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Receptacle:
    id: str  # ALFRED id, e.g. "Drawer|+01.63|+00.18|-01.21" or "Sink|+00.05|+00.90|-00.65|SinkBasin"
    type: str
    location: str  # "loc|X|Z|R|H"


@dataclass
class Room:
    floor_plan: int
    kind: str
    receptacles: list[Receptacle]
    portable_types: list[str]
    reachable: np.ndarray  # [N, 2] reachable (x, z) points

    @property
    def receptacle_types(self) -> list[str]:
        return sorted({r.type for r in self.receptacles})

    def can_contain(self, recep_type: str, obj_type: str) -> bool:
        return obj_type in engine.alfworld_constants.VAL_RECEPTACLE_OBJECTS.get(recep_type, ())

    def goal_pairs(self) -> list[tuple[str, str]]:
        """(object, receptacle) type pairs that make a Pick & Place goal here: some receptacle type may hold the
        object and another one may hold it at the start."""
        pairs = []
        for obj in self.portable_types:
            hosts = [t for t in self.receptacle_types if self.can_contain(t, obj)]
            if len(hosts) >= 2:
                pairs += [(obj, recep) for recep in hosts]
        return pairs


def _kind(floor_plan: int) -> str:
    return next(k for k, r in KINDS.items() if floor_plan in r)


def _location(x: float, z: float, rotation: float, horizon: float) -> str:
    return f"loc|{int(round(x / 0.25))}|{int(round(z / 0.25))}|{int(round(rotation / 90)) % 4}|{int(round(horizon))}"


def _fmt(value: float) -> str:
    return f"{value:+06.2f}"


def load_room(floor_plan: int, rng: np.random.Generator | None = None) -> Room:
    """The receptacles of one shipped floor plan (real ids and poses), plus synthetic instances of the static
    receptacle types it lists without a pose (these need ``rng`` for their id and place)."""
    constants = engine.alfworld_constants
    base = os.path.join(engine.LAYOUTS_DIR, f"FloorPlan{floor_plan}")
    with open(f"{base}-openable.json") as f:
        poses = json.load(f)
    with open(f"{base}-objects.json") as f:
        present = sorted(set(json.load(f)))
    reachable = np.asarray(np.load(f"{base}-layout.npy"), dtype=np.float64).reshape(-1, 2)
    receptacles = []
    for rid in sorted(poses):
        fields = rid.split("|")
        rtype = fields[-1] if len(fields) == 5 else fields[0]  # basins: Sink|x|y|z|SinkBasin
        if rtype not in constants.VAL_RECEPTACLE_OBJECTS:
            continue
        receptacles.append(Receptacle(rid, rtype, _location(*poses[rid])))
    portable_all = {o for objs in constants.VAL_RECEPTACLE_OBJECTS.values() for o in objs}
    portable = [t for t in present if t in portable_all and "Sliced" not in t]
    static_missing = [
        t
        for t in present
        if t in constants.VAL_RECEPTACLE_OBJECTS
        and t not in constants.MOVABLE_RECEPTACLES_SET
        and t not in {r.type for r in receptacles}
    ]
    if static_missing and rng is None:
        raise ValueError(
            f"load_room needs an rng to place the synthetic receptacles of floor plan {floor_plan}: {static_missing}"
        )
    used = {r.id for r in receptacles}
    for rtype in static_missing:
        x, z = reachable[int(rng.integers(len(reachable)))]
        while True:
            rid = (
                f"{rtype}|{_fmt(x + rng.uniform(-0.5, 0.5))}|{_fmt(rng.uniform(0.0, 1.0))}|"
                f"{_fmt(z + rng.uniform(-0.5, 0.5))}"
            )
            if rid not in used:
                break
        used.add(rid)
        receptacles.append(Receptacle(rid, rtype, _location(x, z, 90 * int(rng.integers(4)), 30)))
    return Room(floor_plan, _kind(floor_plan), receptacles, portable, reachable)


@functools.cache
def _listing_room(floor_plan: int) -> Room:
    # Receptacle types and counts do not depend on the rng (it only places the synthetic ones).
    return load_room(floor_plan, np.random.default_rng(floor_plan))


def room_size(floor_plan: int) -> int:
    """Number of receptacles of a floor plan once loaded (posed ones + one per pose-less static type)."""
    return len(_listing_room(floor_plan).receptacles)


# -- one game -----------------------------------------------------------------------------------------------------
@dataclass
class GameSpec:
    split: str
    index: int
    task: str  # "put a cellphone in armchair."
    obj: str
    recep: str
    template: int
    floor_plans: tuple[int, ...]  # rooms it may be placed in

    @property
    def trial(self) -> str:
        return f"trial_T{self.index:06d}_gen"


@dataclass
class Game:
    spec: GameSpec
    floor_plan: int
    traj_data: dict[str, Any]
    problem: str
    game: dict[str, Any]  # the game.tw-pddl content
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def directory(self) -> str:
        return f"{TASK_TYPE}-{self.spec.obj}-None-{self.spec.recep}-{self.floor_plan}/{self.spec.trial}"


def build_problem(room: Room, spec: GameSpec, rng: np.random.Generator) -> tuple[str, dict[str, Any]]:
    """Place the objects and write the PDDL problem (``initial_state.pddl``) of one game."""
    constants = engine.alfworld_constants
    obj_type, recep_type = spec.obj, spec.recep
    receptacles = room.receptacles
    used_ids = {r.id for r in receptacles}
    objects: list[tuple[str, str, Receptacle]] = []
    for otype in room.portable_types:
        hosts = [
            r
            for r in receptacles
            if room.can_contain(r.type, otype) and not (otype == obj_type and r.type == recep_type)
        ]
        copies = int(rng.integers(1, constants.MAX_NUM_OF_OBJ_INSTANCES + 1))
        if not hosts:
            continue
        for _ in range(copies):
            host = hosts[int(rng.integers(len(hosts)))]
            hx, hy, hz = (float(v) for v in host.id.split("|")[1:4])
            while True:
                oid = (
                    f"{otype}|{_fmt(hx + rng.uniform(-0.3, 0.3))}|{_fmt(hy + rng.uniform(0.0, 0.3))}|"
                    f"{_fmt(hz + rng.uniform(-0.3, 0.3))}"
                )
                if oid not in used_ids:
                    break
            used_ids.add(oid)
            objects.append((oid, otype, host))
    if not any(t == obj_type for _, t, _ in objects):
        raise GenerationError(f"{spec.task}: no {obj_type} could be placed in FloorPlan{room.floor_plan}")
    recep_locs = {r.location for r in receptacles}
    for _ in range(1000):
        x, z = room.reachable[int(rng.integers(len(room.reachable)))]
        start = _location(x, z, 90 * int(rng.integers(4)), 30)
        if start not in recep_locs:
            break
    else:
        raise GenerationError(f"FloorPlan{room.floor_plan}: no start location away from the receptacles")

    otypes = sorted({t for _, t, _ in objects} | {obj_type})
    rtypes = sorted({r.type for r in receptacles} | {recep_type})
    if set(otypes) & set(rtypes):
        raise GenerationError(f"type used both as object and receptacle: {sorted(set(otypes) & set(rtypes))}")
    locations = sorted(recep_locs | {start})
    lines_obj = ["        agent1 - agent"]
    lines_obj += [f"        {t}Type - otype" for t in otypes]
    lines_obj += [f"        {t}Type - rtype" for t in rtypes]
    lines_obj += [f"        {escape(oid)} - object" for oid, _, _ in objects]
    lines_obj += [f"        {escape(r.id)} - receptacle" for r in receptacles]
    lines_obj += [f"        {escape(loc)} - location" for loc in locations]

    init = [f"        (atLocation agent1 {escape(start)})"]
    init += [f"        (canContain {r}Type {o}Type)" for r in rtypes for o in otypes if room.can_contain(r, o)]
    for r in receptacles:
        rid = escape(r.id)
        init.append(f"        (receptacleType {rid} {r.type}Type)")
        init.append(f"        (receptacleAtLocation {rid} {escape(r.location)})")
        if r.type in constants.OPENABLE_CLASS_SET:
            init.append(f"        (openable {rid})")
    for oid, otype, host in objects:
        eid = escape(oid)
        init.append(f"        (objectType {eid} {otype}Type)")
        init.append(f"        (pickupable {eid})")
        init.append(f"        (inReceptacle {eid} {escape(host.id)})")
        init.append(f"        (objectAtLocation {eid} {escape(host.location)})")
        for table_key, predicate in _PROPERTY_FACTS:
            if otype in constants.VAL_ACTION_OBJECTS[table_key]:
                init.append(f"        ({predicate} {eid})")
    # The goal-library snippet writes typed variables with '#' and carries the closing ')' of the define.
    goal = engine.alfworld_goals.gdict[TASK_TYPE]["pddl"].format(obj=obj_type, recep=recep_type).replace("#", "-")
    problem = (
        "\n".join(
            [
                f"(define (problem plan_{spec.trial})",
                "    (:domain alfred)",
                "    (:objects",
                *lines_obj,
                "    )",
                "    (:init",
                *init,
                "    )",
            ]
        )
        + "\n"
        + goal.strip("\n")
        + "\n"
    )
    info = {
        "start": start,
        "num_receptacles": len(receptacles),
        "num_objects": len(objects),
        "goal_objects": sum(t == obj_type for _, t, _ in objects),
        "goal_receptacles": sum(r.type == recep_type for r in receptacles),
    }
    return problem, info


def _grammar(task: str) -> str:
    """The shipped grammar with the goal text in place of ``UNKNOWN GOAL`` (what ``add_task_to_grammar`` does,
    with the template fixed by the split instead of drawn from Python's global ``random``)."""
    with open(engine.ALFRED_TWL2_PATH) as f:
        grammar = f.read()
    if grammar.count("UNKNOWN GOAL") != 1:
        raise GenerationError(f"{engine.ALFRED_TWL2_PATH}: expected one 'UNKNOWN GOAL' placeholder")
    return grammar.replace("UNKNOWN GOAL", task.rstrip("."))


def _domain() -> str:
    with open(engine.ALFRED_PDDL_PATH) as f:
        return f.read()


def traj_data(spec: GameSpec, floor_plan: int, seed: int) -> dict[str, Any]:
    """The keys of ALFWorld's ``traj_data.json`` that the text engine reads, plus provenance."""
    return {
        "task_id": spec.trial,
        "task_type": TASK_TYPE,
        "pddl_params": {
            "object_target": spec.obj,
            "parent_target": spec.recep,
            "toggle_target": "",
            "mrecep_target": "",
            "object_sliced": False,
        },
        "scene": {"floor_plan": f"FloorPlan{floor_plan}", "scene_num": floor_plan},
        # One synthetic annotation so that code expecting these keys works; it is not a human annotation.
        "turk_annotations": {
            "anns": [{"task_desc": spec.task[0].upper() + spec.task[1:], "high_descs": [], "votes": [1, 1, 1]}]
        },
        "generator": {
            "name": "prior_rl envs.alfworld.generate",
            "version": GENERATOR_VERSION,
            "seed": seed,
            "split": spec.split,
            "index": spec.index,
            "note": "generated offline from alfworld's floor plans; not an ALFRED trajectory",
        },
    }


class PlannerCheck:
    """Plays a game with the planner (textworld PddlEnv + alfworld's demangler) and returns its winning plan."""

    def __init__(self) -> None:
        infos = engine.textworld.EnvInfos(admissible_commands=True, won=True, policy_commands=True)
        self._pddl = engine.PddlEnv(infos)
        self.env = engine.AlfredDemangler(shuffle=False)(self._pddl)

    def plan(self, game: dict[str, Any]) -> list[str] | None:
        """The planner's walkthrough, or None if the game is unsolvable or already won at reset."""
        self.env.load(game)
        state = self.env.reset()
        plan = list(state["policy_commands"] or [])
        if state["won"] or not plan:
            return None
        for i, command in enumerate(plan):
            if command not in state["admissible_commands"]:
                return None
            state, score, done = self.env.step(command)
            if done != (i == len(plan) - 1):
                return None
        return plan if (done and score == 1) else None

    def close(self) -> None:
        self.env.close()


def generate_game(spec: GameSpec, seed: int, checker: PlannerCheck) -> Game:
    """Try rooms and placements (deterministically) until the planner solves the game."""
    domain = _domain()
    grammar = _grammar(spec.task)
    errors = []
    for attempt in range(MAX_ATTEMPTS):
        rng = np.random.default_rng([seed, SPLITS.index(spec.split), spec.index, attempt])
        floor_plan = spec.floor_plans[int(rng.integers(len(spec.floor_plans)))]
        room = load_room(floor_plan, rng)
        if (spec.obj, spec.recep) not in room.goal_pairs():  # the synthetic receptacles are in, now: recheck
            errors.append(f"FloorPlan{floor_plan}: cannot host the goal")
            continue
        try:
            problem, info = build_problem(room, spec, rng)
        except GenerationError as exc:
            errors.append(str(exc))
            continue
        game = {
            "pddl_domain": domain,
            "grammar": grammar,
            "pddl_problem": problem,
            "solvable": False,
            "walkthrough": None,
        }
        plan = checker.plan(game)
        if plan is None:
            errors.append(f"FloorPlan{floor_plan}: the planner found no winning plan")
            continue
        game["solvable"], game["walkthrough"] = True, plan
        info.update(floor_plan=floor_plan, kind=room.kind, expert_steps=len(plan), attempt=attempt)
        return Game(spec, floor_plan, traj_data(spec, floor_plan, seed), problem, game, info)
    raise GenerationError(
        f"{spec.split} #{spec.index} {spec.task!r}: no solvable game in {MAX_ATTEMPTS} attempts: "
        + "; ".join(errors[-3:])
    )


# -- the split ----------------------------------------------------------------------------------------------------
def _hosting_rooms(obj: str, recep: str, pool: frozenset[int]) -> tuple[int, ...]:
    rooms = []
    for n in sorted(pool):
        room = _listing_room(n)
        if len(room.receptacles) <= MAX_RECEPTACLES and (obj, recep) in room.goal_pairs():
            rooms.append(n)
    return tuple(rooms)


def split_specs(seed: int = DEFAULT_SEED) -> dict[str, list[GameSpec]]:
    """The 28 training and 26 unseen task specs (task text, goal types, candidate rooms), fixed by ``seed``."""
    specs: dict[str, list[GameSpec]] = {"train": [], "valid_unseen": []}
    for index, task in enumerate(TRAIN_TASKS):
        obj, recep, template = parse_task(task)
        rooms = _hosting_rooms(obj, recep, SEEN_FLOOR_PLANS)
        if not rooms:
            raise GenerationError(f"no seen floor plan can host {task!r}")
        specs["train"].append(GameSpec("train", index, task, obj, recep, template, rooms))

    reference_pairs = {parse_task(t)[:2] for t in REFERENCE_TASKS}
    rng = np.random.default_rng([seed, SPLITS.index("valid_unseen")])
    kinds = list(KINDS)
    used: set[tuple[str, str]] = set()
    rooms_by_kind = {
        k: sorted(n for n in UNSEEN_FLOOR_PLANS if _kind(n) == k and room_size(n) <= MAX_RECEPTACLES) for k in kinds
    }
    for index in range(NUM_UNSEEN):
        kind = kinds[index % len(kinds)]
        candidates = sorted(
            {pair for n in rooms_by_kind[kind] for pair in _listing_room(n).goal_pairs()} - reference_pairs - used
        )
        obj, recep = candidates[int(rng.integers(len(candidates)))]
        used.add((obj, recep))
        template = int(rng.integers(len(_templates())))
        rooms = tuple(n for n in rooms_by_kind[kind] if (obj, recep) in _listing_room(n).goal_pairs())
        specs["valid_unseen"].append(
            GameSpec("valid_unseen", index, task_text(obj, recep, template), obj, recep, template, rooms)
        )
    return specs


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_game(root: Path, split: str, game: Game) -> Path:
    """Write the three files of one game under ``root/json_2.1.1/<split>/``; returns the game.tw-pddl path."""
    folder = root / "json_2.1.1" / split / game.directory
    _write_text(folder / "traj_data.json", json.dumps(game.traj_data, indent=2) + "\n")
    _write_text(folder / "initial_state.pddl", game.problem)
    _write_text(folder / "game.tw-pddl", json.dumps(game.game) + "\n")
    return folder / "game.tw-pddl"


def generate_dataset(out: str | os.PathLike, seed: int = DEFAULT_SEED, verbose: bool = False) -> dict[str, Any]:
    """Generate all 54 games into ``out`` (an ALFWORLD_DATA-style root) and write ``out/manifest.json``.

    ``out`` must not exist yet: the games are written into a temporary sibling folder which is renamed at the
    end, so an interrupted run never leaves a partial dataset behind."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; the generator writes a fresh folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        manifest = _generate_into(tmp, seed, verbose)
        try:
            os.rename(tmp, out)
        except OSError:
            if not (out / "manifest.json").exists():  # not a concurrent generator that finished first
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _generate_into(root: Path, seed: int, verbose: bool) -> dict[str, Any]:
    parse_cache.install()
    checker = PlannerCheck()
    manifest: dict[str, Any] = {
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "task_type": TASK_TYPE,
        "engine": engine.installed_versions(),
        "splits": {},
    }
    try:
        for split, specs in split_specs(seed).items():
            entries = []
            for spec in specs:
                t0 = time.perf_counter()
                game = generate_game(spec, seed, checker)
                write_game(root, split, game)
                entries.append(
                    {
                        "task": spec.task,
                        "object": spec.obj,
                        "receptacle": spec.recep,
                        "game": f"{game.directory}/game.tw-pddl",
                        **game.info,
                    }
                )
                if verbose:
                    print(
                        f"{split:12s} {spec.index:2d} {spec.task:40s} FloorPlan{game.floor_plan:<4d} "
                        f"receptacles={game.info['num_receptacles']:2d} objects={game.info['num_objects']:2d} "
                        f"expert={game.info['expert_steps']:2d} ({time.perf_counter() - t0:.1f}s)",
                        flush=True,
                    )
            manifest["splits"][split] = entries
    finally:
        checker.close()
    _write_text(root / "manifest.json", json.dumps(manifest, indent=2) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="new folder to create (ALFWORLD_DATA-style root)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    generate_dataset(args.out, seed=args.seed, verbose=True)
    print(f"wrote {args.out} in {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
