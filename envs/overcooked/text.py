"""``obs2text``: the macro observation vector → the prompt and the 5 or 8 action labels, word for word (§10).

Also the strings RL-LLM-Prior wraps around it (§11): the instruction, the action-prompt template, and
``extract_obs`` (the prompt without its final "To serve …" sentence). § numbers refer to
``docs/overcooked-frozenlake.md``.

Task 6 (tomato, lettuce and onion) has no rendering in either reference repository; it reuses the task-3 rendering
with the goal sentence parameterised ("…only containing chopped tomato, lettuce and onion…"). This is a deviation
recorded in the package docstring.
"""

from __future__ import annotations

from collections.abc import Sequence

from envs.overcooked.core import TASKS, task_spec

FIRST_BOARD, SECOND_BOARD = (1, 0), (2, 0)
FRONT = {"first": (1, 1), "second": (2, 1)}  # a board's access cell
_V3_NAMES = ("tomato", "lettuce", "onion", "bowl")
_ARTICLE = {"tomato": "a tomato", "lettuce": "a lettuce", "onion": "an onion", "bowl": "a bowl"}
_ORIGIN = {"tomato": (0, 5), "lettuce": (1, 6), "onion": (2, 6), "bowl": (6, 5)}
_TABLE_TEMPLATES = {
    1: "You notice {} on the table.",
    2: "You notice {} and {} on the different tables.",
    3: "You notice {}, {} and {} on the different tables.",
    4: "You notice {}, {}, {} and {} on the different tables.",
}
V4_LABELS = ("pick up the tomato", "take the bowl", "walk to the cutting board", "serve nothing", "chop nothing")
V3_LABELS = (
    "pick up the tomato",
    "pick up the lettuce",
    "pick up the onion",
    "take the empty bowl",
    "walk to the first cutting board",
    "walk to the second cutting board",
    "serve nothing",
    "chop nothing",
)


def goal_sentence(task_id: int) -> str:
    """The prompt's final sentence, e.g. "To serve the dish of a bowl only containing chopped tomato, you should
    first"."""
    return f"To serve the dish of a bowl only containing chopped {task_spec(task_id).goal_foods}, you should first"


def instruction(task_id: int) -> str:
    """RL-LLM-Prior's instruction, e.g. "Your task is to serve the dish of a bowl only containing chopped tomato."."""
    return f"Your task is to serve the dish of a bowl only containing chopped {task_spec(task_id).goal_foods}."


_ACTION_QUESTION = (
    ", what action should you take next? Based on your previous observations and actions, please "
    "select only one action for the next step from the admissible actions: {}. Action:"
)


def action_prompt(task_id: int) -> str:
    """RL-LLM-Prior's action-prompt template; ``{}`` receives the Python list repr of the labels (§11).

    Task 0's script words it "containing only chopped tomatoes"; task 3's "only containing chopped tomato and
    lettuce" (both kept verbatim); task 6 follows task 3.
    """
    if task_id == 0:
        return "To serve the dish of a bowl containing only chopped tomatoes" + _ACTION_QUESTION
    return f"To serve the dish of a bowl only containing chopped {task_spec(task_id).goal_foods}" + _ACTION_QUESTION


def extract_obs(prompt: str, task_id: int) -> str:
    """The state text: everything before the goal sentence, stripped (RL-LLM-Prior's ``extract_obs``)."""
    goal = goal_sentence(task_id)
    at = prompt.find(goal)
    if at < 0:
        raise ValueError(f"overcooked task {task_id}: prompt has no goal sentence {goal!r}: {prompt!r}")
    return prompt[:at].strip()


def _food_list(foods: Sequence[str]) -> str:
    if len(foods) == 1:
        return foods[0]
    return ", ".join(foods[:-1]) + " and " + foods[-1]


def _obs2text_v3(v: Sequence[int], task_id: int) -> tuple[str, tuple[str, ...]]:
    pos = [(v[3 * i], v[3 * i + 1]) for i in range(4)]  # the bowl reads v[9:11]
    chopped = [v[3 * i + 2] == 3 for i in range(3)]
    agent = (v[17], v[18])
    labels = list(V3_LABELS)
    sentences = ["There are two fixed cutting boards in the room."]
    on_table = [_ARTICLE[n] for i, n in enumerate(_V3_NAMES) if pos[i] == _ORIGIN[n]]
    if on_table:
        sentences.append(_TABLE_TEMPLATES[len(on_table)].format(*on_table).capitalize())
    in_agent = [i for i in range(4) if pos[i] == agent]
    boards = {
        "first": [i for i in range(4) if pos[i] == FIRST_BOARD],
        "second": [i for i in range(4) if pos[i] == SECOND_BOARD],
    }
    if max(len(in_agent), len(boards["first"]), len(boards["second"])) >= 2:
        labels[3] = "take the bowl"
    for c, items in boards.items():
        if len(items) == 1:
            i = items[0]
            if i == 3:
                sentences.append(f"A bowl is on the {c} cutting board.")
            else:
                f = _V3_NAMES[i]
                state = "A chopped" if chopped[i] else "An unchopped"
                sentences.append(f"{state} {f} is on the {c} cutting board.")
                if agent == FRONT[c]:
                    labels[7] = f"chop the {f}"
        elif len(items) >= 2:
            foods = [_V3_NAMES[i] for i in items if i != 3]
            sentences.append(f"A bowl containing chopped {_food_list(foods)} is on the {c} cutting board.")
    front = next((c for c, cell in FRONT.items() if agent == cell), None)
    prefix = (
        f"Currently you are standing in front of the {front} cutting board, carrying"
        if front
        else "Currently you are carrying"
    )
    if not in_agent:
        sentences.append(
            f"Currently you are standing in front of the {front} cutting board without anything in hand."
            if front
            else "Currently you don't have anything in hand."
        )
    else:
        labels[6] = "serve the dish"
        if 3 in in_agent:
            labels[0:3] = ["put the tomato in the bowl", "put the lettuce in the bowl", "put the onion in the bowl"]
            labels[4:6] = ["put the bowl on the first cutting board", "put the bowl on the second cutting board"]
            if len(in_agent) == 1:
                sentences.append(f"{prefix} a bowl in hand.")
            else:
                foods = _food_list([_V3_NAMES[i] for i in in_agent if i != 3])
                sentences.append(
                    f"{prefix} a bowl containing chopped {foods} in hand."
                    if front
                    else f"{prefix} a bowl containing chopped {foods}."
                )
        else:
            i = in_agent[0]
            f = _V3_NAMES[i]
            if chopped[i]:
                sentences.append(f"{prefix} a chopped {f} in hand.")
            else:
                labels[4:6] = [f"put the {f} on the first cutting board", f"put the {f} on the second cutting board"]
                sentences.append(f"{prefix} an unchopped {f} in hand.")
    sentences.append(goal_sentence(task_id))
    return " ".join(sentences), tuple(labels)


def _obs2text_v4(v: Sequence[int], task_id: int) -> tuple[str, tuple[str, ...]]:
    tomato, bowl, agent = (v[0], v[1]), (v[3], v[4]), (v[9], v[10])
    chopped = v[2] == 3
    labels = list(V4_LABELS)
    sentences = ["There is a fixed cutting board in the room."]
    on_table = [_ARTICLE[n] for n, p in (("tomato", tomato), ("bowl", bowl)) if p == _ORIGIN[n]]
    if on_table:
        sentences.append(_TABLE_TEMPLATES[len(on_table)].format(*on_table).capitalize())
    board = [n for n, p in (("tomato", tomato), ("bowl", bowl)) if p == FIRST_BOARD]
    if len(board) == 1:
        if board[0] == "bowl":
            sentences.append("A bowl is on the cutting board.")
        else:
            sentences.append(f"{'A chopped' if chopped else 'An unchopped'} tomato is on the cutting board.")
            if agent == FRONT["first"]:
                labels[4] = "chop the tomato"
    elif len(board) == 2:
        sentences.append("A bowl containing a chopped tomato is on the cutting board.")
    front = agent == FRONT["first"]
    prefix = (
        "Currently you are standing in front of the cutting board, carrying" if front else "Currently you are carrying"
    )
    in_agent = [n for n, p in (("tomato", tomato), ("bowl", bowl)) if p == agent]
    if not in_agent:
        sentences.append(
            "Currently you are standing in front of the cutting board without anything in hand."
            if front
            else "Currently you don't have anything in hand."
        )
    else:
        labels[3] = "serve the dish"
        if "bowl" in in_agent:
            labels[0], labels[2] = "put the tomato in the bowl", "put the bowl on the cutting board"
            if len(in_agent) == 1:
                sentences.append(f"{prefix} a bowl in hand.")
            else:
                sentences.append(
                    f"{prefix} a bowl containing chopped tomato in hand."
                    if front
                    else f"{prefix} a bowl containing chopped tomato."
                )
        elif chopped:
            sentences.append(f"{prefix} a chopped tomato in hand.")
        else:
            labels[2] = "put the tomato on the cutting board"
            sentences.append(f"{prefix} an unchopped tomato in hand.")
    sentences.append(goal_sentence(task_id))
    return " ".join(sentences), tuple(labels)


_TEXT_CACHE: dict[tuple[int, tuple[int, ...]], tuple[str, tuple[str, ...]]] = {}


def obs2text(obs: Sequence[int], task_id: int) -> tuple[str, tuple[str, ...]]:
    """``(prompt, labels)`` for a macro observation vector (length 18 for task 0, 26 for tasks 3 and 6).

    Entries are compared as integers, so ``5.0`` reads as ``5`` (as in the reference). Cached per vector.
    """
    key = (task_id, tuple(int(x) for x in obs))
    out = _TEXT_CACHE.get(key)
    if out is None:
        spec = task_spec(task_id)
        expected = 18 if spec.version == "v4" else 26
        if len(key[1]) != expected:
            raise ValueError(
                f"overcooked task {task_id}: an observation vector has {expected} entries, got {len(key[1])}"
            )
        out = (_obs2text_v4 if spec.version == "v4" else _obs2text_v3)(key[1], task_id)
        _TEXT_CACHE[key] = out
    return out


__all__ = ["TASKS", "action_prompt", "extract_obs", "goal_sentence", "instruction", "obs2text"]
