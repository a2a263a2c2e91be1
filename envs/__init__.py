"""Text environments for RL with LLM priors, behind one protocol (see :mod:`envs.base`)."""

from envs.base import EpisodeFinishedError, TextEnv, TextObservation
from envs.registry import make, names, register

register("overcooked-tomato-salad", "envs.overcooked:TomatoSalad")
register("overcooked-tomato-lettuce-salad", "envs.overcooked:TomatoLettuceSalad")
register("overcooked-tomato-lettuce-onion-salad", "envs.overcooked:TomatoLettuceOnionSalad")
register("frozen-lake", "envs.frozen_lake:FrozenLake")
register("alfworld-pick", "envs.alfworld:AlfworldPick")

__all__ = ["EpisodeFinishedError", "TextEnv", "TextObservation", "make", "names", "register"]
