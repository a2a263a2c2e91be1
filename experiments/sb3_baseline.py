"""Stable-Baselines3's PPO on the same environments, budget and evaluation points as the compiled PPO loop: the
established implementation our PPO is checked against (``experiments.policy_v2``).

* Frozen Lake: gymnasium's own ``FrozenLake-v1`` (4×4, not slippery, a 20-step ``TimeLimit``); the observation is
  the cell index, which SB3's ``MlpPolicy`` one-hot encodes (``Discrete`` observation space).
* Tomato Salad: the text env (``envs.make("overcooked-tomato-salad")``, 31-macro cap); the observation is the
  prompt id of :func:`prior_rl.run.jitted.prompt_table_of` (one-hot encoded by SB3 likewise), the action one of
  the 5 macros.

Settings are :class:`prior_rl.run.jitted_ppo.PPOJitConfig`'s: ``num_envs`` copies × ``rollout_steps``,
``num_epochs`` epochs of ``num_minibatches`` minibatches, the same learning rate, clip, entropy, value and
gradient-norm coefficients, GAE λ and γ, two 64-unit tanh layers (SB3's default: separate policy and value
networks). Evaluation at every ``eval_every`` samples: ``eval_episodes`` episodes each greedy (deterministic),
ε-greedy and sampled (Boltzmann = SB3's stochastic policy).
"""

from __future__ import annotations

import time
from typing import Any

import gymnasium as gym
import numpy as np

from prior_rl.run import jitted, sweep
from prior_rl.run.config import DEFAULT_EPISODE_STEPS
from prior_rl.run.jitted_ppo import PPOJitConfig


class PromptIdEnv(gym.Env):
    """A text env seen through the compiled loop's prompt table: observation = prompt id, action = macro id."""

    def __init__(self, env: str):
        import envs

        self.text_env = envs.make(env, max_steps=DEFAULT_EPISODE_STEPS[env])
        table = jitted.prompt_table_of(env)
        self.ids = {(p, a): i for i, (p, a) in enumerate(zip(table.prompts, table.actions))}
        self.observation_space = gym.spaces.Discrete(len(self.ids))
        self.action_space = gym.spaces.Discrete(jitted.num_actions_of(env))

    def _id(self, obs) -> int:
        return self.ids[(obs.prompt, tuple(obs.actions))]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        obs, info = self.text_env.reset(seed=seed)
        return self._id(obs), info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.text_env.step(int(action))
        return self._id(obs), float(reward), terminated, truncated, info


def make_env(env: str) -> gym.Env:
    if env == jitted.FROZEN_LAKE:
        return gym.make("FrozenLake-v1", map_name="4x4", is_slippery=False, max_episode_steps=20)
    return PromptIdEnv(env)


def evaluate(model: Any, env: gym.Env, episodes: int, mode: str, epsilon: float, rng: np.random.Generator):
    """(success rate, mean return) of ``episodes`` episodes of ``model`` in evaluation ``mode``."""
    wins, total = 0, 0.0
    for _ in range(episodes):
        obs, _ = env.reset(seed=int(rng.integers(2**31)))
        done, ret, success = False, 0.0, False
        while not done:
            action, _ = model.predict(obs, deterministic=mode != "boltzmann")
            if mode == "epsilon" and rng.random() < epsilon:
                action = env.action_space.sample()
            obs, reward, terminated, truncated, info = env.step(int(action))
            ret += reward
            success = success or bool(info.get("success", reward > 0))
            done = terminated or truncated
        wins += success
        total += ret
    return wins / episodes, total / episodes


def run_seed(config: PPOJitConfig, seed: int) -> dict[str, np.ndarray]:
    """One SB3 run: ``eval_success_<mode>`` / ``eval_return_<mode>`` [E] at samples 0, eval_every, ..., env_steps."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    eval_env = make_env(config.env)
    metrics: dict[str, list[float]] = {}

    def record(model):
        for mode in jitted.EVAL_MODES:
            s, r = evaluate(model, eval_env, config.eval_episodes, mode, config.eval_epsilon, rng)
            metrics.setdefault(f"eval_success_{mode}", []).append(s)
            metrics.setdefault(f"eval_return_{mode}", []).append(r)

    class Every(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % config.eval_every == 0 and self.num_timesteps < config.env_steps:
                record(self.model)
            return True

    vec = make_vec_env(lambda: make_env(config.env), n_envs=config.num_envs, seed=seed)
    batch = config.num_envs * config.rollout_steps
    model = PPO(
        "MlpPolicy",
        vec,
        learning_rate=config.learning_rate,
        n_steps=config.rollout_steps,
        batch_size=batch // config.num_minibatches,
        n_epochs=config.num_epochs,
        gamma=config.gamma,
        gae_lambda=config.gae_lambda,
        clip_range=config.clip_eps,
        ent_coef=config.ent_coef,
        vf_coef=config.vf_coef,
        max_grad_norm=config.max_grad_norm,
        policy_kwargs={"net_arch": list(config.hidden)},
        seed=seed,
        device="cpu",
    )
    record(model)
    model.learn(total_timesteps=config.env_steps, callback=Every())
    record(model)
    return {k: np.asarray(v, np.float32) for k, v in metrics.items()}


def run_sweep(config: PPOJitConfig, seeds: int) -> sweep.SweepResult:
    """Every seed in turn, as a :class:`prior_rl.run.sweep.SweepResult` (one setting, ``sb3``)."""
    t = time.perf_counter()
    runs = [run_seed(config, s) for s in range(seeds)]
    run_s = time.perf_counter() - t
    curves = {k: np.stack([r[k] for r in runs])[None] for k in runs[0]}
    steps = np.arange(0, config.env_steps + 1, config.eval_every)
    curves["distinct_prompts"] = np.zeros((1, seeds, len(steps)))
    return sweep.SweepResult(config, list(range(seeds)), ["sb3"], [float("nan")], steps, curves, 0.0, 0.0, run_s)


__all__ = ["PromptIdEnv", "evaluate", "make_env", "run_seed", "run_sweep"]
