"""The last H (state, action) pairs of an episode, carried in each observation for history-conditioned prompts.

The reference's Overcooked prior prompt has a ``History:`` block with the last ``hislen`` steps (H = 5 in its
scripts; docs/method.md §3.3), rendered by :func:`prior_rl.prior.prompts.overcooked_prompt` from ``obs.history``.
Environments stay memoryless; :class:`WithHistory` wraps any :class:`envs.base.TextEnv` and fills that field:

    env = WithHistory(envs.make("overcooked-tomato-lettuce-salad"), length=5)
    obs, _ = env.reset(seed=0)            # obs.history == ()
    obs, *_ = env.step(0)                 # obs.history == ((state_0, action_text_0),)

A history makes revisits of the same prompt rarer, so the prior's cache hits less often: the LLM-call counts of
runs with and without history are not comparable.

:class:`WithTranscript` keeps the whole episode instead (no length cap), for the transcript prompts of
:mod:`prior_rl.prior.transcripts`, which render the episode from reset turn by turn:

    env = WithTranscript(envs.make("alfworld-pick"))
    obs, _ = env.reset(seed=0)            # obs.history == (), obs.extra["transcript_steps"] == 0
    obs, *_ = env.step(0)                 # obs.history == ((state_0, action_text_0),), transcript_steps == 1

The state recorded is the environment's observation text (``obs.state``; ``obs.prompt`` only where a state is
empty), never the whole prompt: for ALFWorld the engine's text, not the LLF-Bench prompt.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Any

from envs.base import TextEnv, TextObservation


class WithHistory:
    """``env`` with ``obs.history`` = the last ``length`` ``(state, action text)`` pairs of the episode,
    oldest first. Everything else (``expert_action``, ``close``, engine-specific attributes) is ``env``'s."""

    def __init__(self, env: TextEnv, length: int | None):
        if length is not None and (isinstance(length, bool) or not isinstance(length, int) or length < 1):
            raise ValueError(f"history length must be a positive integer, got {length!r}")
        self.env = env
        self.length = length
        self._history: deque[tuple[str, str]] = deque(maxlen=length)
        self._obs: TextObservation | None = None

    def __getattr__(self, name: str) -> Any:
        # only called for attributes this wrapper does not define
        return getattr(self.env, name)

    @property
    def observation(self) -> TextObservation:
        if self._obs is None:
            raise RuntimeError(f"{self.env.name}: call reset() before reading the observation")
        return self._obs

    def _with_history(self, obs: TextObservation) -> TextObservation:
        return dataclasses.replace(obs, history=tuple(self._history))

    def reset(self, seed: int | None = None) -> tuple[TextObservation, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed)
        self._history.clear()
        self._obs = self._with_history(obs)
        return self._obs, info

    def step(self, action: int | str) -> tuple[TextObservation, float, bool, bool, dict[str, Any]]:
        before = self.env.observation
        index = self.env.action_index(action)  # validates before anything is recorded
        obs, reward, terminated, truncated, info = self.env.step(index)
        self._history.append((before.state or before.prompt, before.actions[index]))
        self._obs = self._with_history(obs)
        return self._obs, reward, terminated, truncated, info


class WithTranscript(WithHistory):
    """``env`` with ``obs.history`` = every ``(state, action text)`` pair since reset, oldest first (no cap), and
    ``obs.extra`` marked for :class:`prior_rl.prior.transcripts.TranscriptPrompt`:

    * ``extra["transcript_steps"]``: the number of steps recorded (``len(obs.history)``), which says the history
      is the whole episode (a :class:`WithHistory` of length H would silently drop its start);
    * ``extra["map"]``: the layout as row strings, for environments that have one (Frozen Lake's ``desc``), so
      a demonstration on the same map can be recognised and refused.

    ``extra`` is copied, never mutated (Overcooked shares its observation objects)."""

    def __init__(self, env: TextEnv):
        super().__init__(env, None)

    def _with_history(self, obs: TextObservation) -> TextObservation:
        extra = {**obs.extra, "transcript_steps": len(self._history)}
        desc = getattr(self.env, "desc", None)
        if isinstance(desc, (list, tuple)) and desc and all(isinstance(r, str) for r in desc):
            extra["map"] = tuple(desc)
        return dataclasses.replace(obs, history=tuple(self._history), extra=extra)
