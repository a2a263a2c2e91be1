"""Evaluation: whole episodes on a fresh environment copy, success and return kept apart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from envs.episodes import play_episodes
from prior_rl.run.environment import make_env

EVAL_SEED, FINAL_SEED = 10_000, 20_000  # evaluation episodes' seeds: EVAL_SEED + 1000·seed + episode


def evaluate(config: Any, act_fn: Callable, episodes: int, seed: int) -> dict[str, float]:
    """Run ``episodes`` episodes on a fresh env copy, acting with ``act_fn(rng, [obs]) -> [action]`` (e.g.
    ``policy.bind(agent_state)``); returns ``eval_success``, ``eval_return``, ``eval_length``."""
    env = make_env(config)
    try:
        stats = play_episodes(env, lambda rng, obs: int(act_fn(rng, [obs])[0]), episodes, seed)
    finally:
        env.close()
    return {f"eval_{k}": v for k, v in stats.items()}


def periodic_eval(config: Any, act_fn: Callable) -> dict[str, float]:
    """The evaluation logged every ``eval_every`` (the same episodes each time, so points are comparable)."""
    return evaluate(config, act_fn, config.eval_episodes, seed=EVAL_SEED + config.seed * 1000)


def final_eval(config: Any, act_fn: Callable) -> dict[str, float]:
    """The evaluation at the end of a run (other episodes than the periodic ones)."""
    return evaluate(config, act_fn, max(config.eval_episodes, 1), seed=FINAL_SEED + config.seed * 1000)
