"""The one protocol every text environment follows.

An environment shows the agent a :class:`TextObservation` (the prompt an LLM reads, the admissible action
texts and the goal) and takes an action either as an index into ``obs.actions`` or as one of those texts.
Subclasses implement ``_reset`` and ``_step`` on action *indices*; this base class validates actions, tracks
whether the episode is finished, and applies the optional cap on steps per episode (a non-terminal
truncation, as in the paper's scripts).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TextObservation:
    """What a text agent sees at one step.

    prompt:  the full text an LLM reads (task framing included).
    actions: the admissible action texts; an action index refers to this tuple.
    task:    the goal, in words.
    state:   the observation text alone (no task framing, no trailing instruction); used for Q features.
    """

    prompt: str
    actions: tuple[str, ...]
    task: str
    state: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


class EpisodeFinishedError(RuntimeError):
    """Raised when ``step`` is called after the episode terminated or was truncated."""


class TextEnv(abc.ABC):
    """Base class: ``reset(seed) -> (obs, info)``; ``step(action) -> (obs, reward, terminated, truncated, info)``.

    ``info`` always carries ``success`` (bool). Success is reported separately from the return everywhere:
    in Overcooked the return can be farmed without ever serving the dish.
    """

    name: str = "text-env"

    def __init__(self, max_episode_steps: int | None = None):
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be a positive integer or None, got {max_episode_steps!r}")
        self.max_episode_steps = max_episode_steps
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
        if (
            not terminated
            and self.max_episode_steps is not None
            and self._episode_steps >= self.max_episode_steps
        ):
            truncated = True
        info.setdefault("success", False)
        info["episode_steps"] = self._episode_steps
        self._obs, self._finished = obs, bool(terminated or truncated)
        return obs, float(reward), bool(terminated), bool(truncated), info

    def expert_action(self) -> int:
        """Index of the expert's (shortest-plan) next action in the current state."""
        raise NotImplementedError(f"{self.name} has no expert")

    def close(self) -> None:
        """Release engine resources (a no-op for pure-Python environments)."""
