"""Transcript prompts: a few expert demonstrations of *other* tasks, then this episode's transcript, ReAct style.

A transcript is the episode as plain text, one turn per step::

    Your task is to: put some cellphone on armchair.
    You are in the middle of a room. Looking quickly around you, you see a armchair 1, a bed 1, ...
    > go to sidetable 2
    You arrive at sidetable 2. On the sidetable 2, you see a alarmclock 1, a book 3, a cd 2, a cellphone 2, ...
    > take cellphone 2 from sidetable 2
    ...

Turn 0 is the task line and the first observation (for ALFWorld followed by ReAct's opening thought,
``"> think: To solve the task, I need to find and take a cellphone, then move it to the armchair.\\nOK.\\n"``,
option ``think``); turn t is ``"> " + action_{t-1} + "\\n" + observation_t + "\\n"``. A prompt
(:class:`SegmentedPrompt`) is ``preamble + "".join(turns) + cue``:

* ``preamble``: an instruction header, N rendered expert demonstrations (blank-line separated) and a closing line.
  It depends only on the task being played (the demonstrations exclude it), so it is the same for every prompt of
  an episode and, with ``selection="fixed"``, for every task but the first N of the pool (N + 1 distinct
  preambles over a whole split); with ``selection="similar"`` there is one per task.
* ``turns``: the current episode from reset, rendered from ``obs.history`` (every ``(state, action)`` pair since
  reset: wrap the environment in :class:`envs.history.WithTranscript`) and ``obs.state``. A turn's text never
  changes once produced: a KV cache can extend a per-episode cache turn by turn. With a history budget
  (``max_turns``), the oldest turns after turn 0 are dropped (turn 0, with the task, always stays); from then on
  each new turn removes one old turn, so a per-episode cache must be rebuilt after turn 0 at every step.
* ``cue``: ``"> "``; the scored continuation is the action text (``action_prefix = ""``; ActionPrior moves the
  cue's trailing space into the continuation, so each action is scored as ``" " + action``, as it tokenises in
  the demonstrations).

Demonstrations are the environments' own experts, played from reset (deterministic):

* ALFWorld: ``envs/alfworld/expert.py`` on the 28 **training** games (``alfworld-pick``, ``split="train"``);
* Overcooked: the fewest-primitive-step expert on **another** task of the family (Tomato Salad, Tomato-Lettuce,
  Tomato-Lettuce-Onion);
* Frozen Lake: the BFS shortest-path expert on **another** map (:data:`FROZEN_LAKE_MAPS`, same size first).

:func:`check_demonstrations` enforces that no demonstration is the task being played (same family and goal text,
and for Frozen Lake the same map) and that every demonstration comes from the training split; it raises
:class:`DemonstrationLeakError` otherwise, and every prompt goes through it.

This module imports no environment (the layering allows ``envs.base`` only): the demonstrations are played on
environments made by the ``make_env`` callable you pass (``envs.make``), with the TextEnv protocol (``reset``,
``step``, ``expert_action``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from envs.base import TextObservation
from prior_rl.prior.segments import SegmentedPrompt

DEFAULT_NORMALIZE: dict[str, bool] = {
    "env": True,
    "paper": True,
    "chat": True,
    "transcript": False,
    "transcript-state": False,
}
"""Length normalisation (``ActionPrior(normalize=...)``: mean token log-prob instead of the sum) per prompt family,
as measured by ``python -m benchmarks.prior_alfworld --stride 4`` (benchmarks/RESULTS.md, SmolLM2-135M). With
transcripts the sum wins on every suite: mean p(expert) ALFWorld unseen 0.51 vs 0.11, train 0.47 vs 0.17,
Tomato-Lettuce 0.42 vs 0.20, Frozen Lake 0.52 vs 0.41 (the demonstrations teach the command format, and the sum
then prefers the complete command). The single-turn prompts keep the mean: ALFWorld train 0.11 vs 0.06 (unseen a
tie, 0.09), and P(expert among 5) is higher with the mean on every suite but Frozen Lake (a tie; Overcooked
Tomato Salad env 0.79 vs 0.65).
"chat" is not in that benchmark; ``benchmarks.prior --expert-table`` gives it the same verdict (P(expert among 5)
0.68 mean vs 0.51 sum)."""

SELECTIONS = ("fixed", "similar")
DEFAULT_CUE = "> "
TRANSCRIPT_FAMILIES = ("alfworld", "overcooked", "frozen-lake")

HEADERS: dict[str, tuple[str, str]] = {
    # family -> (opening, closing); "{n}" receives the number of demonstrations
    "alfworld": ("Interact with a household to solve a task. Here are {n} examples.\n\n", "Here is the task.\n"),
    "overcooked": (
        "Cook and serve a salad in a kitchen, one action per turn. Here are {n} examples.\n\n",
        "Here is the task.\n",
    ),
    "frozen-lake": (
        "Walk across a frozen lake to the goal without falling into a hole, one move per turn. "
        "Here are {n} examples.\n\n",
        "Here is the task.\n",
    ),
}

OVERCOOKED_ENVS = (
    "overcooked-tomato-salad",
    "overcooked-tomato-lettuce-salad",
    "overcooked-tomato-lettuce-onion-salad",
)

FROZEN_LAKE_MAPS: tuple[tuple[str, ...], ...] = (
    # gymnasium's generate_random_map(size, p=0.8, seed=s), written out so that the demonstrations never depend
    # on a library's random stream; none is gymnasium's default "4x4" / "8x8" map
    ("SFFF", "HHFF", "FHHF", "HFFG"),
    ("SHFH", "FFHF", "FFFF", "FFFG"),
    ("SFHF", "FFFF", "FFFF", "FFFG"),
    ("SHFF", "FHFF", "FFFH", "FFFG"),
    ("SHFF", "FFFF", "FHFF", "FHHG"),
    ("SFHF", "FFFF", "FFFH", "FFFG"),
    ("SFFFHHFF", "FHHFHFFF", "HFFFFFFF", "FFHHFFFF", "FFFFFHHF", "FFFFFHFF", "FHFFHFFF", "FFFFFFFG"),
    ("SHFHFFHF", "FFFFFFFF", "FFFFFFFH", "HFFFFHFF", "FFFHFFFF", "FHFFHFFF", "FHFFFHFF", "HHHFFFFG"),
    ("SFHFFFFF", "FFFFFFFF", "HFFFFFHF", "FHFFFFFH", "FHFFFFHF", "HFHFFFFF", "FFFFHHFH", "FFFFFFFG"),
)

_TASK_PREFIX = re.compile(r"^\s*Your task is to:?\s*", re.IGNORECASE)
_TASK_LINE = re.compile(r"\n*[ \t]*Your task is to: [^\n]*")
_ALFWORLD_GOAL = re.compile(r"put (?:a|an|some|two) (\S+) (?:in|on|in/on) (\S+?)\.?$")


class DemonstrationLeakError(ValueError):
    """A demonstration would show the task being played, or comes from outside the training split."""


@dataclass(frozen=True)
class TaskId:
    """What a task is, for the leak check: family, goal text, split, and the map (Frozen Lake; else ``()``)."""

    family: str
    task: str
    split: str = "train"
    layout: tuple[str, ...] = ()

    def same_task(self, other: TaskId) -> bool:
        return (
            self.family == other.family
            and _norm(self.task) == _norm(other.task)
            and (not self.layout or not other.layout or self.layout == other.layout)
        )


@dataclass(frozen=True)
class Demonstration:
    """One expert episode: ``steps`` = ``(observation text, action text)`` from reset, ``final`` = the observation
    after the last action, ``success`` = whether the expert reached the goal."""

    task_id: TaskId
    steps: tuple[tuple[str, str], ...]
    final: str
    success: bool
    source: str = ""  # e.g. "alfworld-pick train game 3"

    @property
    def task(self) -> str:
        return self.task_id.task


def _norm(task: str) -> str:
    return " ".join(_TASK_PREFIX.sub("", task).lower().rstrip(".").split())


# -- rendering ---------------------------------------------------------------------------------------------------
def task_line(task: str) -> str:
    """``"Your task is to: {task}"`` (kept as is if ``task`` already starts with "Your task is to")."""
    task = task.strip()
    if _TASK_PREFIX.match(task):
        return task
    if len(task) > 1 and task[0].isupper() and task[1].islower():
        task = task[0].lower() + task[1:]
    return "Your task is to: " + task


def observation_text(state: str) -> str:
    """An observation as a transcript shows it: stripped, without the engine's own "Your task is to:" line
    (ALFWorld's first observation ends with one; the transcript states the task first)."""
    return _TASK_LINE.sub("", state).strip()


def think_line(task: str) -> str:
    """ReAct's opening thought for a Pick & Place goal, answered "OK." as ALFWorld answers a ``think:`` command:
    ``"> think: To solve the task, I need to find and take a cellphone, then move it to the armchair.\nOK.\n"``
    ("" when the goal is not Pick & Place)."""
    goal = alfworld_goal(task)
    if goal is None:
        return ""
    return f"> think: To solve the task, I need to find and take a {goal[0]}, then move it to the {goal[1]}.\nOK.\n"


def first_turn(task: str, state: str, think: bool = False) -> str:
    """Turn 0: the task line and the first observation (with ``think``, then :func:`think_line`)."""
    return task_line(task) + "\n" + observation_text(state) + "\n" + (think_line(task) if think else "")


def next_turn(action: str, state: str) -> str:
    return "> " + action.strip() + "\n" + observation_text(state) + "\n"


def episode_turns(
    task: str, steps: Sequence[tuple[str, str]], current: str | None, think: bool = False
) -> tuple[str, ...]:
    """Turns of an episode: ``steps`` are ``(state, action)`` from reset, ``current`` the state after the last
    (None: the episode has no current state, e.g. ``steps`` is empty)."""
    states = [s for s, _ in steps] + ([current] if current is not None else [])
    if not states:
        return ()
    turns = [first_turn(task, states[0], think)]
    turns += [next_turn(a, s) for (_, a), s in zip(steps, states[1:])]
    return tuple(turns)


def render_demonstration(demo: Demonstration, think: bool = False) -> str:
    """A demonstration's whole transcript (its final observation included)."""
    return "".join(episode_turns(demo.task, demo.steps, demo.final, think))


# -- who is playing ------------------------------------------------------------------------------------------------
def transcript_family(obs: TextObservation) -> str:
    """The transcript family of an observation ("alfworld", "overcooked", "frozen-lake"); others raise."""
    if obs.family in TRANSCRIPT_FAMILIES:
        return obs.family
    raise ValueError(
        f"transcript prompts have demonstrations for the families {', '.join(TRANSCRIPT_FAMILIES)}; this "
        f"observation's family is {obs.family!r}"
    )


def played_task(obs: TextObservation) -> TaskId:
    """The task an observation belongs to. Its split is ``obs.extra["split"]`` (ALFWorld), else "train" (the
    strictest reading). Frozen Lake needs ``obs.extra["map"]`` (set by :class:`envs.history.WithTranscript`)."""
    family = transcript_family(obs)
    split = str(obs.extra.get("split", "train"))
    split = "unseen" if split == "valid_unseen" else split
    layout: tuple[str, ...] = ()
    if family == "frozen-lake":
        layout = tuple(obs.extra.get("map") or ())
        if not layout:
            raise ValueError(
                "a Frozen Lake transcript prompt needs the played map in obs.extra['map'] (to refuse demonstrations "
                "on it): wrap the environment in envs.history.WithTranscript"
            )
    return TaskId(family, obs.task, split, layout)


def check_demonstrations(demos: Sequence[Demonstration], played: TaskId) -> None:
    """Raise :class:`DemonstrationLeakError` if a demonstration is the task being played, or is not from the
    training split (demonstrations come from training tasks only, whatever split is played)."""
    for demo in demos:
        if demo.task_id.split != "train":
            raise DemonstrationLeakError(
                f"demonstration {demo.source or demo.task!r} comes from the {demo.task_id.split!r} split; "
                f"demonstrations must come from training tasks (playing {played.task!r}, split {played.split!r})"
            )
        if demo.task_id.same_task(played):
            raise DemonstrationLeakError(
                f"demonstration {demo.source or demo.task!r} is the task being played ({played.task!r}"
                + (f" on map {'/'.join(played.layout)}" if played.layout else "")
                + ")"
            )


# -- similarity ---------------------------------------------------------------------------------------------------
def alfworld_goal(task: str) -> tuple[str, str] | None:
    """(object, receptacle) of a Pick & Place goal text, e.g. ("cellphone", "armchair")."""
    match = _ALFWORLD_GOAL.search(_TASK_PREFIX.sub("", task).strip().lower())
    return (match.group(1), match.group(2)) if match else None


def _foods(task: str) -> set[str]:
    tail = task.lower().split("chopped", 1)[-1]
    return {w for w in re.split(r"[^a-z]+", tail) if w and w != "and"}


def similarity(candidate: TaskId, played: TaskId) -> float:
    """How alike two tasks are (higher = more): ALFWorld 2 × same goal object + 1 × same receptacle; Overcooked
    the Jaccard overlap of the goal foods; Frozen Lake same map size first, then the fraction of equal cells."""
    if candidate.family == "alfworld":
        a, b = alfworld_goal(candidate.task), alfworld_goal(played.task)
        if a is None or b is None:
            return 0.0
        return 2.0 * (a[0] == b[0]) + 1.0 * (a[1] == b[1])
    if candidate.family == "overcooked":
        a, b = _foods(candidate.task), _foods(played.task)
        return len(a & b) / max(len(a | b), 1)
    if candidate.family == "frozen-lake":
        x, y = candidate.layout, played.layout
        if not x or not y or (len(x), len(x[0])) != (len(y), len(y[0])):
            return 0.0
        cells = sum(len(r) for r in x)
        return 1.0 + sum(p == q for r, s in zip(x, y) for p, q in zip(r, s)) / cells
    return 0.0


# -- demonstration pools ------------------------------------------------------------------------------------------
def play_expert(env: Any, seed: int | None = 0, max_steps: int = 200) -> tuple[list[tuple[str, str]], str, bool]:
    """Play ``env.expert_action()`` from ``env.reset(seed)``: (``(state, action)`` steps, final state, success)."""
    obs, info = env.reset(seed=seed)
    steps: list[tuple[str, str]] = []
    for _ in range(max_steps):
        index = env.expert_action()
        steps.append((obs.state or obs.prompt, obs.actions[index]))
        obs, _, terminated, truncated, info = env.step(index)
        if terminated or truncated:
            break
    return steps, obs.state or obs.prompt, bool(info.get("success", False))


class DemonstrationPool:
    """The candidate demonstrations of one family, in a fixed order, each played on first use and kept by the pool
    (the experts are deterministic, so a pool plays each demonstration once).

    ``make_env(name, **options)`` makes environments (pass ``envs.make``); ``env_options`` go to every
    environment made (e.g. ``data=`` for ALFWorld). ``split``: the split the demonstrations come from ("train";
    anything else is refused by :func:`check_demonstrations` when a prompt is built).
    """

    def __init__(
        self,
        family: str,
        make_env: Callable[..., Any],
        split: str = "train",
        env_options: Mapping[str, Any] | None = None,
        maps: Sequence[Sequence[str]] = FROZEN_LAKE_MAPS,
    ):
        if family not in TRANSCRIPT_FAMILIES:
            raise ValueError(f"no demonstrations for family {family!r}; families: {', '.join(TRANSCRIPT_FAMILIES)}")
        self.family = family
        self.make_env = make_env
        self.split = split
        self.env_options = dict(env_options or {})
        self.maps = tuple(tuple(m) for m in maps)
        self._env: Any = None
        self._ids: list[TaskId] | None = None
        self._played: dict[int, Demonstration] = {}

    # the candidates, without playing them
    @property
    def task_ids(self) -> list[TaskId]:
        if self._ids is None:
            if self.family == "alfworld":
                env = self._alfworld_env()
                self._ids = [TaskId("alfworld", t, self._split_name(), ()) for t in env.tasks]
            elif self.family == "overcooked":
                self._ids = []
                for name in OVERCOOKED_ENVS:
                    obs, _ = self.make_env(name, **self.env_options).reset(seed=0)
                    self._ids.append(TaskId("overcooked", obs.task, self.split, ()))
            else:
                self._ids = []
                for desc in self.maps:
                    obs, _ = self.make_env("frozen-lake", desc=list(desc), **self.env_options).reset(seed=0)
                    self._ids.append(TaskId("frozen-lake", obs.task, self.split, desc))
        return self._ids

    def _split_name(self) -> str:
        return "unseen" if self.split == "valid_unseen" else self.split

    def _alfworld_env(self) -> Any:
        if self._env is None:
            self._env = self.make_env("alfworld-pick", split=self.split, **self.env_options)
        return self._env

    def get(self, index: int) -> Demonstration:
        """The expert demonstration of candidate ``index`` (played once per pool)."""
        task_id = self.task_ids[index]
        demo = self._played.get(index)
        if demo is None:
            if self.family == "alfworld":
                env, seed, source = self._alfworld_env(), index, f"alfworld-pick {self.split} game {index}"
            elif self.family == "overcooked":
                env = self.make_env(OVERCOOKED_ENVS[index], **self.env_options)
                seed, source = 0, OVERCOOKED_ENVS[index]
            else:
                env = self.make_env("frozen-lake", desc=list(task_id.layout), **self.env_options)
                seed, source = 0, "frozen-lake map " + "/".join(task_id.layout)
            steps, final, success = play_expert(env, seed)
            if not success:
                raise RuntimeError(f"the expert did not solve demonstration {source!r}")
            demo = Demonstration(task_id, tuple(steps), final, success, source)
            self._played[index] = demo
        return demo

    def select(self, played: TaskId, n: int, selection: str = "fixed") -> list[Demonstration]:
        """``n`` demonstrations for ``played`` (fewer if the pool has fewer other tasks), checked.

        "fixed": the first ``n`` candidates that are not the played task; "similar": the ``n`` most similar
        (:func:`similarity`; ties in pool order), shown least similar first so the closest one sits next to the
        episode."""
        if selection not in SELECTIONS:
            raise ValueError(f"unknown demonstration selection {selection!r}; use {' or '.join(map(repr, SELECTIONS))}")
        # same_task only: the split check below is a check, not a filter, so a wrong pool fails loudly
        others = [i for i, t in enumerate(self.task_ids) if not t.same_task(played)]
        if selection == "similar":
            others = sorted(others, key=lambda i: -similarity(self.task_ids[i], played))[:n][::-1]
        else:
            others = others[:n]
        demos = [self.get(i) for i in others]
        check_demonstrations(demos, played)
        return demos


# -- token budget ---------------------------------------------------------------------------------------------------
def count_tokens(prompt: SegmentedPrompt | str, tokenizer: Any) -> int:
    """Tokens of the full prompt text (with BOS where the model adds one)."""
    text = prompt.text if isinstance(prompt, SegmentedPrompt) else prompt
    return len(tokenizer.encode(text, add_special_tokens=True))


def check_token_budget(prompt: SegmentedPrompt | str, tokenizer: Any, max_tokens: int, reserve: int = 0) -> int:
    """The prompt's token count; ``ValueError`` if it plus ``reserve`` (the longest continuation) exceeds
    ``max_tokens``."""
    n = count_tokens(prompt, tokenizer)
    if n + reserve > max_tokens:
        raise ValueError(
            f"transcript prompt of {n} tokens (+{reserve} reserved for the action) exceeds the budget of {max_tokens}"
            " tokens; use fewer demonstrations (n_demos) or a history budget (max_turns)"
        )
    return n


# -- the prompt --------------------------------------------------------------------------------------------------
@dataclass
class TranscriptPrompt:
    """``prompt(obs) -> SegmentedPrompt``: ``n_demos`` expert demonstrations of other training tasks, then this
    episode's transcript, then ``cue``. ``prompt.text(obs)`` is the full prompt as one string.

    n_demos:            demonstrations in the preamble (default 3; fewer when the family has fewer other tasks:
                        Overcooked has 2).
    selection:          "fixed" (the first ``n_demos`` training tasks other than the played one) or "similar"
                        (the most similar: ALFWorld by goal object and receptacle, Overcooked by task, Frozen Lake
                        by map).
    max_turns:          history budget: at most this many turns of the episode (turn 0 included; >= 2); when the
                        episode is longer the oldest turns after turn 0 are dropped. None = all.
    make_env:           ``make_env(name, **options)`` for the demonstration environments (``envs.make``); needed
                        unless ``pools`` holds every family played.
    env_options:        options for every demonstration environment (e.g. ``{"data": ...}`` for ALFWorld; never
                        the split: demonstrations come from the training split).
    pools:              family -> :class:`DemonstrationPool` (built from ``make_env`` when absent).
    header:             family -> (opening, closing) of the preamble (default :data:`HEADERS`).
    cue:                what precedes the action (default ``"> "``).
    max_tokens, tokenizer, reserve: with both set, the oldest turns after turn 0 are also dropped until the full
                        prompt plus ``reserve`` tokens fits in ``max_tokens``; if even the preamble, turn 0 and
                        the latest turn do not fit, ``ValueError``.
    think:              ALFWorld: turn 0 (of the demonstrations and of the episode) ends with ReAct's opening thought
                        (:func:`think_line`: "> think: To solve the task, I need to find and take a {object}, then
                        move it to the {receptacle}.\nOK.\n"); measured: unseen mean p(expert) 0.26 -> 0.45 on
                        3 games. Other families have no thought.
    require_transcript: refuse observations without ``extra["transcript_steps"] == len(obs.history)`` (i.e. not
                        from :class:`envs.history.WithTranscript`), whose history may miss the episode's start.
    episode:            False: the prompt holds the current state as turn 0 and no episode history — a function of
                        the observation alone (``--prompt transcript-state``: the compiled loops, offline data).
    """

    n_demos: int = 3
    selection: str = "fixed"
    max_turns: int | None = None
    make_env: Callable[..., Any] | None = None
    env_options: Mapping[str, Any] = field(default_factory=dict)
    pools: dict[str, DemonstrationPool] = field(default_factory=dict)
    header: Mapping[str, tuple[str, str]] = field(default_factory=lambda: dict(HEADERS))
    cue: str = DEFAULT_CUE
    max_tokens: int | None = None
    tokenizer: Any = None
    reserve: int = 32
    require_transcript: bool = True
    episode: bool = True
    think: bool = True
    action_prefix: str = ""
    _preambles: dict[TaskId, tuple[str, tuple[Demonstration, ...]]] = field(
        default_factory=dict, init=False, repr=False
    )

    def _think(self, family: str) -> bool:
        return self.think and family == "alfworld"

    def __post_init__(self) -> None:
        if isinstance(self.n_demos, bool) or not isinstance(self.n_demos, int) or self.n_demos < 0:
            raise ValueError(f"n_demos must be a non-negative integer, got {self.n_demos!r}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"unknown demonstration selection {self.selection!r}; use 'fixed' or 'similar'")
        if self.max_turns is not None and (
            isinstance(self.max_turns, bool) or not isinstance(self.max_turns, int) or self.max_turns < 2
        ):
            raise ValueError(
                f"max_turns must be None or an integer >= 2 (turn 0 and the latest turn), got {self.max_turns!r}"
            )
        if "split" in self.env_options:
            raise ValueError("env_options must not set the split: demonstrations always come from the training split")

    # -- pieces ---------------------------------------------------------------------------------------------
    def pool(self, family: str) -> DemonstrationPool:
        if family not in self.pools:
            if self.make_env is None:
                raise ValueError(
                    "TranscriptPrompt needs make_env=envs.make (or pools=...) to play the demonstrations: "
                    "prior_rl.prior does not import the environments"
                )
            self.pools[family] = DemonstrationPool(family, self.make_env, env_options=self.env_options)
        return self.pools[family]

    def demonstrations(self, obs: TextObservation) -> tuple[Demonstration, ...]:
        return self._preamble(played_task(obs))[1]

    def preamble(self, obs: TextObservation) -> str:
        return self._preamble(played_task(obs))[0]

    def _preamble(self, played: TaskId) -> tuple[str, tuple[Demonstration, ...]]:
        hit = self._preambles.get(played)
        if hit is None:
            demos = tuple(self.pool(played.family).select(played, self.n_demos, self.selection)) if self.n_demos else ()
            check_demonstrations(demos, played)
            opening, closing = self.header.get(played.family, ("", ""))
            body = "\n".join(render_demonstration(d, self._think(played.family)) for d in demos)
            text = opening.format(n=len(demos)) + body + ("\n" if demos else "") + closing
            hit = self._preambles[played] = (text, demos)
        check_demonstrations(hit[1], played)  # cheap, and a pool swapped under us still cannot leak
        return hit

    def all_turns(self, obs: TextObservation) -> tuple[str, ...]:
        """Every turn of the episode so far, before any budget (``episode=False``: the current state alone)."""
        if not self.episode:
            return (first_turn(obs.task, obs.state or obs.prompt, self._think(obs.family)),)
        if self.require_transcript and obs.extra.get("transcript_steps") != len(obs.history):
            raise ValueError(
                "a transcript prompt needs the whole episode in obs.history: wrap the environment in "
                "envs.history.WithTranscript (this observation has "
                + (
                    "no transcript mark"
                    if "transcript_steps" not in obs.extra
                    else f"transcript_steps={obs.extra['transcript_steps']!r} but {len(obs.history)} history items"
                )
                + "); or pass require_transcript=False"
            )
        steps = []
        for item in obs.history:
            if isinstance(item, str):
                raise ValueError("transcript prompts need (state, action) history pairs, not rendered lines")
            steps.append((item[0], item[1]))
        return episode_turns(obs.task, steps, obs.state or obs.prompt, self._think(obs.family))

    def turns(self, obs: TextObservation, preamble: str | None = None) -> tuple[str, ...]:
        turns = self.all_turns(obs)
        if self.max_turns is not None and len(turns) > self.max_turns:
            turns = turns[:1] + turns[len(turns) - (self.max_turns - 1) :]
        if self.max_tokens is not None and self.tokenizer is not None:
            pre = self.preamble(obs) if preamble is None else preamble
            while count_tokens(SegmentedPrompt(pre, turns, self.cue), self.tokenizer) + self.reserve > self.max_tokens:
                if len(turns) <= 2:
                    check_token_budget(
                        SegmentedPrompt(pre, turns, self.cue), self.tokenizer, self.max_tokens, self.reserve
                    )
                turns = turns[:1] + turns[2:]
        return turns

    # -- the prompt -------------------------------------------------------------------------------------------
    def __call__(self, obs: TextObservation) -> SegmentedPrompt:
        preamble = self.preamble(obs)
        return SegmentedPrompt(preamble, self.turns(obs, preamble), self.cue)

    def text(self, obs: TextObservation) -> str:
        """The full prompt text (``self(obs).text``)."""
        return self(obs).text
