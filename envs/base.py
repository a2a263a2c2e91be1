"""The one protocol every text environment follows.

An environment shows the agent a :class:`TextObservation` (the prompt an LLM reads, the admissible action
texts and the goal) and takes an action either as an index into ``obs.actions`` or as one of those texts.
Subclasses implement ``_reset`` and ``_step`` on action *indices*; this base class validates actions, tracks
whether the episode is finished, and applies the optional cap on agent steps per episode, ``max_steps`` (a
non-terminal truncation, as in the paper's scripts; in Overcooked an agent step is one macro action). Every
registered environment takes ``max_steps`` as a constructor option: ``envs.make(name, max_steps=N)``.
"""

from __future__ import annotations

import abc
import operator
from dataclasses import dataclass, field, fields
from typing import Any, Union

HistoryItem = Union[tuple[str, str], str]
"""One entry of :attr:`TextObservation.history`: a ``(state, action text)`` pair, or an already rendered line."""

NO_EXPERT_ACTION = -1
""":attr:`TextObservation.expert_action` of an environment that has an expert but no admissible next action for it
(the goal is reached, or the planner's command is not admissible)."""


@dataclass(frozen=True)
class TextObservation:
    """What a text agent sees at one step.

    prompt:  the full text an LLM reads (task framing included).
    actions: the admissible action texts; an action index refers to this tuple.
    task:    the goal, in words.
    state:   the observation text alone (no task framing, no trailing instruction); used for Q features.

    Typed, optional fields that prompts (:mod:`prior_rl.prior.prompts`) and priors read; each environment fills
    the ones it has, and a prompt family that *needs* one raises ``ValueError`` naming it when it is missing:

    family:          the prompt family: ``"overcooked"`` and ``"alfworld"`` select the paper prompts; anything else
                     (``"frozen-lake"``, the default ``"generic"``) uses ``prompt`` as written.
    instruction:     the Overcooked prompt's first line; None = ``task``.
    action_prompt:   the Overcooked prompt's closing question, with one ``{}`` that receives Python's list repr of
                     ``actions`` (required by the ``"overcooked"`` family).
    history:         the last steps of the episode, oldest first: ``(state, action text)`` pairs or rendered lines
                     (filled by :class:`envs.history.WithHistory`; ``()`` = none). A list is stored as a tuple.
    llf_observation: ALFWorld's LLF-Bench observation text (the state followed by the admissible-action list);
                     None = ``state``.
    expert_action:   index into ``actions`` of the environment's expert's next action, for priors that read it
                     from the observation (``alfworld-pick`` fills it; the synthetic expert-mixture prior requires
                     it); :data:`NO_EXPERT_ACTION` (-1) when the expert has no admissible next action; None = this
                     environment puts no expert in its observations.
    extra:           anything else an environment reports (task id, position, game file, ...); no prompt or
                     prior reads it. The typed fields' names are refused here, so a stale ``extra["family"]``
                     cannot silently change the prompt.

    Equality and hashing cover every field except ``extra``: the typed fields change what the LLM reads (or, for
    ``expert_action``, what the synthetic prior answers), so two observations that differ in one are different.
    Caches key on the prompt text and the actions (strings), not on observations.
    """

    prompt: str
    actions: tuple[str, ...]
    task: str
    state: str = ""
    family: str = "generic"
    instruction: str | None = None
    action_prompt: str | None = None
    history: tuple[HistoryItem, ...] = ()
    llf_observation: str | None = None
    expert_action: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.history, tuple):
            object.__setattr__(self, "history", tuple(self.history))
        typed = [k for k in self.extra if k in _TYPED_FIELDS]
        if typed:
            raise ValueError(
                f"TextObservation: {', '.join(map(repr, typed))} {'is a field' if len(typed) == 1 else 'are fields'}"
                f" of TextObservation, not an extra key; pass {', '.join(f'{k}=...' for k in typed)} instead of "
                "extra={...}"
            )


_TYPED_FIELDS = frozenset(f.name for f in fields(TextObservation)) - {"extra"}


def check_max_steps(max_steps: Any) -> int | None:
    """``max_steps`` as an int, or None; anything but a positive integer or None raises ``ValueError``."""
    if max_steps is None:
        return None
    try:
        if isinstance(max_steps, bool):
            raise TypeError
        value = operator.index(max_steps)
    except TypeError:
        value = 0
    if value < 1:
        raise ValueError(f"max_steps must be a positive integer or None, got {max_steps!r}")
    return value


class EpisodeFinishedError(RuntimeError):
    """Raised when ``step`` is called after the episode terminated or was truncated."""


class TextEnv(abc.ABC):
    """Base class: ``reset(seed) -> (obs, info)``; ``step(action) -> (obs, reward, terminated, truncated, info)``.

    ``info`` always carries ``success`` (bool). Success is reported separately from the return everywhere:
    in Overcooked the return can be farmed without ever serving the dish.
    """

    name: str = "text-env"

    def __init__(self, max_steps: int | None = None):
        """``max_steps``: cap on agent steps per episode (a non-terminal truncation); None = no cap."""
        self.max_steps = check_max_steps(max_steps)
        self._obs: TextObservation | None = None
        self._finished = True
        self._episode_steps = 0

    # -- subclass hooks ---------------------------------------------------------------------------------------
    @abc.abstractmethod
    def _reset(self, seed: int | None) -> tuple[TextObservation, dict[str, Any]]: ...

    @abc.abstractmethod
    def _step(self, index: int) -> tuple[TextObservation, float, bool, bool, dict[str, Any]]: ...

    # -- public protocol --------------------------------------------------------------------------------------
    @property
    def observation(self) -> TextObservation:
        if self._obs is None:
            raise RuntimeError(f"{self.name}: call reset() before reading the observation")
        return self._obs

    @property
    def episode_steps(self) -> int:
        return self._episode_steps

    def reset(self, seed: int | None = None) -> tuple[TextObservation, dict[str, Any]]:
        obs, info = self._reset(seed)
        info.setdefault("success", False)
        self._obs, self._finished, self._episode_steps = obs, False, 0
        return obs, info

    def action_index(self, action: int | str) -> int:
        """Resolve an index or an admissible text to an index; anything else raises ``ValueError``."""
        actions = self.observation.actions
        if isinstance(action, str):
            try:
                return actions.index(action)
            except ValueError:
                raise ValueError(
                    f"{self.name}: unknown action text {action!r}; admissible actions are {list(actions)}"
                ) from None
        if isinstance(action, bool) or not hasattr(action, "__index__"):
            raise ValueError(
                f"{self.name}: an action must be an int index or one of the admissible texts {list(actions)}, "
                f"got {type(action).__name__} {action!r}"
            )
        index = int(action.__index__())
        if not 0 <= index < len(actions):
            raise ValueError(
                f"{self.name}: action index {index} is out of range 0..{len(actions) - 1}; "
                f"admissible actions are {list(actions)}"
            )
        return index

    def step(self, action: int | str) -> tuple[TextObservation, float, bool, bool, dict[str, Any]]:
        if self._obs is None or self._finished:
            raise EpisodeFinishedError(
                f"{self.name}: the episode is finished (or was never started); call reset() before step()"
            )
        index = self.action_index(action)
        obs, reward, terminated, truncated, info = self._step(index)
        self._episode_steps += 1
        if not terminated and self.max_steps is not None and self._episode_steps >= self.max_steps:
            truncated = True
        info.setdefault("success", False)
        info["episode_steps"] = self._episode_steps
        self._obs, self._finished = obs, bool(terminated or truncated)
        return obs, float(reward), bool(terminated), bool(truncated), info

    def expert_action(self) -> int:
        """Index of the expert's (shortest-plan) next action in the current state."""
        raise NotImplementedError(f"{self.name} has no expert")

    def close(self) -> None:  # noqa: B027  (a default, not an abstract hook: most envs hold no resources)
        """Release engine resources (a no-op for pure-Python environments)."""
