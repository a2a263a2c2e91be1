"""Play whole episodes with a policy and summarise them (success and return kept apart)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from envs.base import TextEnv, TextObservation


def play_episodes(
    env: TextEnv,
    choose: Callable[[np.random.Generator, TextObservation], int | str],
    episodes: int,
    seed: int = 0,
) -> dict[str, float]:
    """Run ``episodes`` episodes (reset seeds ``seed``, ``seed + 1``, …); ``choose(rng, obs)`` picks each action.

    Returns the mean ``success``, ``return`` (undiscounted sum of rewards) and ``length`` (steps)."""
    rng = np.random.default_rng(seed)
    successes, returns, lengths = [], [], []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, steps = 0.0, 0
        while True:
            obs, reward, terminated, truncated, info = env.step(choose(rng, obs))
            total, steps = total + reward, steps + 1
            if terminated or truncated:
                break
        successes.append(info["success"])
        returns.append(total)
        lengths.append(steps)
    return {"success": float(np.mean(successes)), "return": float(np.mean(returns)), "length": float(np.mean(lengths))}
