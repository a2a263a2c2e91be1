"""The three text Overcooked environments behind :class:`envs.base.TextEnv`.

One ``step`` is one macro action (5 for Tomato Salad, 8 otherwise). The observation's ``prompt`` and ``actions``
are the reference ``obs2text`` output for the 5×5-view observation vector; ``state`` is the prompt without its goal
sentence; ``task`` is RL-LLM-Prior's instruction. See :mod:`envs.overcooked` for the ``info`` keys;
§ numbers refer to ``docs/overcooked-frozenlake.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from envs.base import TextEnv, TextObservation
from envs.overcooked import expert as _expert
from envs.overcooked.core import (
    GAMMA,
    HORIZON,
    OvercookedState,
    delivered,
    initial_state,
    macro_transition,
    observation_vector,
    task_spec,
    validate_world,
)
from envs.overcooked.text import action_prompt, extract_obs, instruction, obs2text

_OBS_CACHE: dict[tuple[int, tuple[int, ...]], TextObservation] = {}


def text_observation(task_id: int, obs_vector: tuple[int, ...]) -> TextObservation:
    """The (cached, shared: do not mutate ``extra``) :class:`TextObservation` of an observation vector: family
    ``"overcooked"``, the task's ``instruction`` (= ``task``) and ``action_prompt``; ``extra["task_id"]``."""
    key = (task_id, obs_vector)
    obs = _OBS_CACHE.get(key)
    if obs is None:
        prompt, labels = obs2text(obs_vector, task_id)
        obs = TextObservation(
            prompt=prompt,
            actions=labels,
            task=instruction(task_id),
            state=extract_obs(prompt, task_id),
            family="overcooked",
            instruction=instruction(task_id),
            action_prompt=action_prompt(task_id),
            extra={"task_id": task_id},
        )
        _OBS_CACHE[key] = obs
    return obs


class OvercookedEnv(TextEnv):
    """Single-agent map-"A" Overcooked with macro actions and the reference text rendering.

    max_steps: cap on macro steps (agent steps) per episode (a non-terminal truncation; the paper's scripts use 31
        for Tomato Salad and 51 for Tomato-Lettuce Salad); None = no cap.
    horizon: the environment's own limit in primitive steps (200 in both papers); reaching it terminates the
        episode once the macro that crosses it has finished.
    """

    name = "overcooked"
    task_id: int = 0  # subclasses pick the task

    def __init__(self, max_steps: int | None = None, horizon: int = HORIZON):
        super().__init__(max_steps=max_steps)
        if not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"{self.name}: horizon must be a positive number of primitive steps, got {horizon!r}")
        self.spec = task_spec(self.task_id)
        self.horizon = horizon
        self.macros = self.spec.macros
        self._state = initial_state(self.task_id)
        self._twosome_return = 0.0

    # -- state ---------------------------------------------------------------------------------------------------
    @property
    def state(self) -> OvercookedState:
        """The true state: ``world`` in the golden files' ``state`` layout, and the primitive-step clock."""
        return self._state

    def _info(self, obs_vector: tuple[int, ...]) -> dict[str, Any]:
        return {
            "success": False,
            "prim_steps": 0,
            "env_step": self._state.env_step,
            "obs_vector": list(obs_vector),
            "macro": None,
            "world": self._state.world,
            "twosome_reward": 0.0,
            "twosome_return": self._twosome_return,
        }

    def set_state(
        self, world: Sequence[int] | OvercookedState, env_step: int = 0
    ) -> tuple[TextObservation, dict[str, Any]]:
        """Start an episode from an arbitrary true state; returns ``(obs, info)`` like ``reset``.

        ``world`` is a golden-file ``state`` list (task 0: ``[tom x,y,c, plate x,y, agent x,y]``; tasks 3/6:
        ``[tom x,y,c, let x,y,c, oni x,y,c, plate x,y, agent x,y]``) or an :class:`OvercookedState` (whose
        ``env_step`` is then used). The macro-step counter and the TWOSOME return restart from 0. A state whose dish
        is already served, or whose clock is at the horizon, starts a finished episode (``step`` raises).
        """
        if isinstance(world, OvercookedState):
            if world.task_id != self.task_id:
                raise ValueError(f"{self.name}: state is for task {world.task_id}, this env is task {self.task_id}")
            world, env_step = world.world, world.env_step
        if not isinstance(env_step, int) or env_step < 0:
            raise ValueError(f"{self.name}: env_step must be a non-negative int, got {env_step!r}")
        self._state = OvercookedState(self.task_id, validate_world(self.task_id, world), env_step)
        self._twosome_return = 0.0
        vec = observation_vector(self.task_id, self._state.world)
        obs = text_observation(self.task_id, vec)
        self._obs, self._episode_steps = obs, 0
        self._finished = delivered(self.task_id, self._state.world) or env_step >= self.horizon
        return obs, self._info(vec)

    # -- protocol ------------------------------------------------------------------------------------------------
    def _reset(self, seed: int | None) -> tuple[TextObservation, dict[str, Any]]:
        # The map and start are fixed: reset is deterministic and ignores the seed.
        self._state = initial_state(self.task_id)
        self._twosome_return = 0.0
        vec = observation_vector(self.task_id, self._state.world)
        return text_observation(self.task_id, vec), self._info(vec)

    def _step(self, index: int) -> tuple[TextObservation, float, bool, bool, dict[str, Any]]:
        state = self._state
        result = macro_transition(self.task_id, state.world, index)
        env_step = state.env_step + result.prim_steps
        # same rule as core.step_state: a correct delivery, or the clock at/over the horizon, ends the episode
        done = result.success or env_step >= self.horizon
        twosome = GAMMA**state.env_step * result.reward  # Σ_t 0.99^t r_t over this macro's primitive steps
        self._twosome_return += twosome
        self._state = OvercookedState(self.task_id, result.next_world, env_step)
        vec = observation_vector(self.task_id, result.next_world)
        info = {
            "success": result.success,
            "prim_steps": result.prim_steps,
            "env_step": env_step,
            "obs_vector": list(vec),
            "macro": self.macros[index],
            "world": result.next_world,
            "twosome_reward": twosome,
            "twosome_return": self._twosome_return,
        }
        return text_observation(self.task_id, vec), result.reward, done, False, info

    # -- expert --------------------------------------------------------------------------------------------------
    def expert_action(self) -> int:
        """First macro of the fewest-primitive-step plan from the current true state (see :mod:`.expert`)."""
        if self._obs is None:
            raise RuntimeError(f"{self.name}: call reset() before asking the expert")
        if self._finished:
            raise RuntimeError(f"{self.name}: the episode is finished; call reset() before asking the expert")
        return _expert.expert_action(self._state)

    def expert_plan(self) -> _expert.Plan:
        """The whole fewest-primitive-step plan from the current true state."""
        return _expert.plan(self.task_id, self._state.world)


class TomatoSalad(OvercookedEnv):
    """Tomato Salad: task 0, v4 map (one board, no lettuce or onion), 5 macro actions."""

    name = "overcooked-tomato-salad"
    task_id = 0


class TomatoLettuceSalad(OvercookedEnv):
    """Tomato-Lettuce Salad: task 3, v3 map (two boards; onion is a distractor), 8 macro actions."""

    name = "overcooked-tomato-lettuce-salad"
    task_id = 3


class TomatoLettuceOnionSalad(OvercookedEnv):
    """Tomato-Lettuce-Onion Salad: task 6, v3 map, 8 macro actions; our goal sentence (§13, a deviation)."""

    name = "overcooked-tomato-lettuce-onion-salad"
    task_id = 6
