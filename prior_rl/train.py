"""Online training (kept as the documented entry point): ``train(TrainConfig(...)) -> TrainResult``.

The loops live in :mod:`prior_rl.run` (``value_loop``: DQN-Prior, DQN, pure LLM; ``ppo_loop``: PPO, PPO-Prior).
"""

from prior_rl.run import (  # noqa: F401  (re-exported names)
    ALGOS,
    DEFAULT_EPISODE_STEPS,
    PRIOR_ALGOS,
    PROMPTS,
    VALUE_ALGOS,
    ModelStore,
    NonFiniteLossError,
    RunConfig,
    TrainConfig,
    TrainResult,
    evaluate,
    make_env,
    make_q_agent,
    make_replay_update,
    train,
)

__all__ = [
    "ALGOS",
    "DEFAULT_EPISODE_STEPS",
    "PRIOR_ALGOS",
    "PROMPTS",
    "VALUE_ALGOS",
    "ModelStore",
    "NonFiniteLossError",
    "RunConfig",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "make_env",
    "make_q_agent",
    "make_replay_update",
    "train",
]
