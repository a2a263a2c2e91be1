"""Gymnasium-compatible view of the text environments.

Observations are dicts ``{"prompt", "task", "state", "actions"}`` of text (``actions`` a tuple of admissible
texts); actions are indices into ``actions`` (``Discrete(max_actions)``; an index beyond the current admissible
set raises ``ValueError`` naming them). ``gymnasium.make("prior_rl/Overcooked-TomatoSalad-v0")`` works after
``import envs``.
"""

from __future__ import annotations

import string
from typing import Any

import gymnasium as gym
from gymnasium import spaces

from envs.base import TextObservation
from envs.registry import make

# gymnasium id -> (our env name, upper bound on admissible actions)
GYM_IDS: dict[str, tuple[str, int]] = {
    "prior_rl/Overcooked-TomatoSalad-v0": ("overcooked-tomato-salad", 5),
    "prior_rl/Overcooked-TomatoLettuceSalad-v0": ("overcooked-tomato-lettuce-salad", 8),
    "prior_rl/Overcooked-TomatoLettuceOnionSalad-v0": ("overcooked-tomato-lettuce-onion-salad", 8),
    "prior_rl/FrozenLake-v0": ("frozen-lake", 4),
    "prior_rl/ALFWorldPick-v0": ("alfworld-pick", 64),
}

_CHARSET = frozenset(string.printable)
_MAX_TEXT = 16384


class GymTextEnv(gym.Env):
    """Wraps ``envs.make(name, **options)`` as a ``gymnasium.Env``."""

    metadata = {"render_modes": []}

    def __init__(self, name: str, max_actions: int, **options: Any):
        self.text_env = make(name, **options)
        self.action_space = spaces.Discrete(max_actions)
        text = spaces.Text(_MAX_TEXT, min_length=0, charset=_CHARSET)
        self.observation_space = spaces.Dict(
            {"prompt": text, "task": text, "state": text, "actions": spaces.Sequence(text)}
        )

    @staticmethod
    def _as_dict(obs: TextObservation) -> dict[str, Any]:
        return {"prompt": obs.prompt, "task": obs.task, "state": obs.state, "actions": obs.actions}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        obs, info = self.text_env.reset(seed=seed)
        return self._as_dict(obs), info

    def step(self, action: Any):
        obs, reward, terminated, truncated, info = self.text_env.step(action)
        return self._as_dict(obs), reward, terminated, truncated, info

    def close(self) -> None:
        self.text_env.close()


def register_gym_ids() -> None:
    """Register every id in ``GYM_IDS`` with gymnasium (idempotent)."""
    for gym_id, (name, max_actions) in GYM_IDS.items():
        if gym_id not in gym.registry:
            gym.register(
                id=gym_id,
                entry_point="envs.gym_wrapper:GymTextEnv",
                kwargs={"name": name, "max_actions": max_actions},
                disable_env_checker=True,
            )
