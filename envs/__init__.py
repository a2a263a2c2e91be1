"""Text environments for RL with LLM priors, behind one protocol (see :mod:`envs.base`)."""

from envs.base import EpisodeFinishedError, TextEnv, TextObservation
from envs.registry import make, names, register

register("overcooked-tomato-salad", "envs.overcooked:TomatoSalad")
register("overcooked-tomato-lettuce-salad", "envs.overcooked:TomatoLettuceSalad")
register("overcooked-tomato-lettuce-onion-salad", "envs.overcooked:TomatoLettuceOnionSalad")
register("frozen-lake", "envs.frozen_lake:FrozenLake")
register("alfworld-pick", "envs.alfworld:AlfworldPick")

from envs.gym_wrapper import register_gym_ids  # noqa: E402  (needs the registry above)
from envs.vector import VectorEnv, VectorStep  # noqa: E402

register_gym_ids()

__all__ = [
    "EpisodeFinishedError",
    "TextEnv",
    "TextObservation",
    "VectorEnv",
    "VectorStep",
    "make",
    "names",
    "register",
]
