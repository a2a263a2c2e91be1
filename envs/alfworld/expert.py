"""An exact, fast planner for Pick & Place, on the engine's own state.

Fast Downward (textworld's ``PddlState.replan``) takes 2 ms in a small room but 0.5-0.7 s in a big kitchen, too
slow to give the expert's action at every step of an agent that wanders off the plan. For Pick & Place with
ALFWorld's domain (every action costs 1) the optimal plan has a closed form, computed here from the current PDDL
facts in about a millisecond:

- holding an object of the goal type: [go to r] [open r] move o to r, for the best goal receptacle r;
- hands empty: [go to s] [open s] take o from s, [go to r] [open r] move o to r, for the best (o in s, r);
- holding something else: first put it in the best compatible receptacle r' ([go to r'] [open r'] move), then
  the hands-empty case from there, minimised over r' jointly.

"[go to x]" is needed unless the agent already stands at x's location; "[open x]" unless x is not openable or
already open. Opening a receptacle on an earlier visit never saves a step (every open is needed once and needs
the agent at that location, which the plan visits anyway), and closing never helps, so these plans are optimal;
tests check their length against Fast Downward's on random states. Ties break by sorted entity ids. Commands are
rendered by the engine (``PddlState.plan_to_templated_actions``), so they are the admissible strings. States
outside this model (objects inside receptacle objects) return None, and the caller falls back to Fast Downward.
"""

from __future__ import annotations

import re
from typing import Any

_GOAL_OBJECT = re.compile(r"\(objectType\s+\?o\s+(\S+?)\)", re.IGNORECASE)
_GOAL_RECEPTACLE = re.compile(r"\(receptacleType\s+\?r\s+(\S+?)\)", re.IGNORECASE)
_UNMODELLED = ("inreceptacleobject", "holdsanyreceptacleobject", "isreceptacleobjectfull")


def goal_types(pddl_problem: str) -> tuple[str, str] | None:
    """(object type, receptacle type) of a Pick & Place goal, lowercased as the engine's facts are."""
    goal = pddl_problem[pddl_problem.lower().find("(:goal") :]
    obj, recep = _GOAL_OBJECT.search(goal), _GOAL_RECEPTACLE.search(goal)
    if obj is None or recep is None:
        return None
    return obj.group(1).lower(), recep.group(1).lower()


def optimal_plan(pddl_state: Any, entity_infos: dict[str, Any], goal: tuple[str, str]) -> list[str] | None:
    """An optimal command sequence from ``pddl_state`` to the goal ([] if it holds), or None if unmodelled."""
    goal_otype, goal_rtype = goal
    agent = agent_loc = holding = None
    loc: dict[str, str] = {}
    rtype: dict[str, str] = {}
    otype: dict[str, str] = {}
    inside: dict[str, str] = {}
    openable: set[str] = set()
    opened: set[str] = set()
    pickupable: set[str] = set()
    can: set[tuple[str, str]] = set()
    for fact in pddl_state.facts:
        name, args = fact.name, [v.name for v in fact.arguments]
        if name == "atlocation":
            agent, agent_loc = args
        elif name == "receptacleatlocation":
            loc[args[0]] = args[1]
        elif name == "receptacletype":
            rtype[args[0]] = args[1]
        elif name == "objecttype":
            otype[args[0]] = args[1]
        elif name == "inreceptacle":
            inside[args[0]] = args[1]
        elif name == "openable":
            openable.add(args[0])
        elif name == "opened":
            opened.add(args[0])
        elif name == "pickupable":
            pickupable.add(args[0])
        elif name == "cancontain":
            can.add((args[0], args[1]))
        elif name == "holds":
            holding = args[1]
        elif name in _UNMODELLED:
            return None
    if agent is None:
        return None
    for o, r in inside.items():
        if otype.get(o) == goal_otype and rtype.get(r) == goal_rtype:
            return []
    receptacles = sorted(loc)
    goal_receps = [r for r in receptacles if rtype.get(r) == goal_rtype and (goal_rtype, goal_otype) in can]
    if not goal_receps:
        return None

    def put(o: str, r: str, here: str, is_open: set[str]) -> list[str]:
        ops = [] if loc[r] == here else [f"gotolocation {agent} {here} {loc[r]} {r}"]
        if r in openable and r not in is_open:
            ops.append(f"openobject {agent} {loc[r]} {r}")
        return ops + [f"putobject {agent} {loc[r]} {o} {r} {otype[o]} {rtype[r]}"]

    def hands_empty(here: str, is_open: set[str]) -> list[str] | None:
        best = None
        for o in sorted(o for o, t in otype.items() if t == goal_otype and o in inside and o in pickupable):
            s = inside[o]
            take = [] if loc[s] == here else [f"gotolocation {agent} {here} {loc[s]} {s}"]
            if s in openable and s not in is_open:
                take.append(f"openobject {agent} {loc[s]} {s}")
            take.append(f"pickupobject {agent} {loc[s]} {o} {s}")
            now_open = is_open | ({s} if s in openable else set())
            for r in goal_receps:
                ops = take + put(o, r, loc[s], now_open)
                if best is None or len(ops) < len(best):
                    best = ops
        return best

    if holding is None:
        ops = hands_empty(agent_loc, opened)
    elif otype.get(holding) == goal_otype:
        ops = min((put(holding, r, agent_loc, opened) for r in goal_receps), key=len)
    else:
        ops = None
        for r in receptacles:  # where to drop what is in hand
            if (rtype.get(r), otype.get(holding)) not in can:
                continue
            drop = put(holding, r, agent_loc, opened)
            rest = hands_empty(loc[r], opened | ({r} if r in openable else set()))
            if rest is not None and (ops is None or len(drop) + len(rest) < len(ops)):
                ops = drop + rest
    if ops is None:
        return None
    return pddl_state.plan_to_templated_actions(ops, entity_infos)
