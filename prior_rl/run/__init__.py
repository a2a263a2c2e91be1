"""Running things: configs, the model store, the one acting path, the online value loop, the PPO loop, the offline
loop, evaluation, the run state and the recorder. ``train(config)`` dispatches an online config to its loop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

from prior_rl.run.acting import Acted, Candidates, Explore, Policy, make_policy
from prior_rl.run.config import (
    ALGOS,
    DEFAULT_EPISODE_STEPS,
    OFFLINE_ALGOS,
    PRIOR_ALGOS,
    PROMPTS,
    VALUE_ALGOS,
    NonFiniteLossError,
    OfflineConfig,
    RunConfig,
    TrainConfig,
)
from prior_rl.run.environment import make_env
from prior_rl.run.evaluation import evaluate
from prior_rl.run.models import ModelStore
from prior_rl.run.offline_loop import train_offline
from prior_rl.run.ppo_loop import train_ppo
from prior_rl.run.session import TrainResult, make_replay_update
from prior_rl.run.value_loop import make_q_agent, train_value_based


def train(
    config: TrainConfig, on_log: Optional[Callable[[dict], None]] = None, store: Optional[ModelStore] = None
) -> TrainResult:
    """Run an online ``config`` to ``config.env_steps`` environment samples: DQN-Prior, DQN and the pure-LLM policy
    in the value loop, PPO and PPO-Prior in the PPO loop. ``store``: models to share with other runs (default: a
    new store, so this run's LLM calls and cache hits are its own)."""
    if config.algo in VALUE_ALGOS or config.algo == "llm":
        return train_value_based(config, on_log, store)
    return train_ppo(config, on_log, store)


__all__ = [
    "ALGOS",
    "DEFAULT_EPISODE_STEPS",
    "OFFLINE_ALGOS",
    "PRIOR_ALGOS",
    "PROMPTS",
    "VALUE_ALGOS",
    "Acted",
    "Candidates",
    "Explore",
    "ModelStore",
    "NonFiniteLossError",
    "OfflineConfig",
    "Policy",
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "make_env",
    "make_policy",
    "make_q_agent",
    "make_replay_update",
    "train",
    "train_offline",
    "train_ppo",
    "train_value_based",
]
