"""The online policy-based loop: PPO, and PPO-Prior (PPO + α·KL(π‖p_LLM)), over the admissible action set.

Each iteration collects ``rollout_steps`` × ``num_envs`` samples, computes truncation-aware GAE in JAX
(:func:`prior_rl.losses.gae_with_truncation`) and runs ``ppo_epochs`` × ``ppo_minibatches`` scanned updates. The run
state is checkpointed at rollout boundaries every ``checkpoint_every`` updates and resumes bit-identically.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from prior_rl import losses
from prior_rl.agents import PPOBatch, make_minibatches, make_ppo, make_ppo_prior
from prior_rl.bridge.candidates import Featurizer
from prior_rl.run import state as run_state
from prior_rl.run.acting import Explore, Policy, make_policy
from prior_rl.run.config import TrainConfig
from prior_rl.run.environment import make_vector_env
from prior_rl.run.evaluation import final_eval, periodic_eval
from prior_rl.run.models import ModelStore
from prior_rl.run.recorder import Recorder
from prior_rl.run.session import Checkpoints, TrainResult, check_finite
from prior_rl.run.state import HostState, RunState

SAMPLE = Explore(greedy=False)
ROLLOUT_FIELDS = ("rows", "mask", "action", "logp", "value", "reward", "term", "trunc", "next_value", "prior")


class _Loop(NamedTuple):
    config: TrainConfig
    policy: Policy
    agent: Any
    update: Callable  # (agent_state, minibatches [U, B, ...]) -> (agent_state, metrics [U])
    vec: Any
    recorder: Recorder
    checkpoints: Checkpoints
    rng: np.random.Generator


def make_ppo_for(config: TrainConfig) -> Any:
    """The PPO-Prior or PPO agent of an online config."""
    common = dict(
        learning_rate=config.learning_rate,
        gamma=config.gamma,
        num_epochs=config.ppo_epochs,
        num_minibatches=config.ppo_minibatches,
    )
    return make_ppo_prior(kl_coef=config.kl_coef, **common) if config.algo == "ppo-prior" else make_ppo(**common)


def make_ppo_update(agent: Any, devices: int = 1) -> Callable:
    """The agent's scanned minibatch update, or the same data-parallel over ``devices`` (each minibatch split
    across a mesh; advantages are normalised over the whole rollout before, so the shards agree)."""
    if devices <= 1:
        return agent.update
    from prior_rl.parallel import make_mesh, make_sharded_update, shard_batches

    mesh = make_mesh(devices)
    sharded = make_sharded_update(agent, mesh)
    # blocking each multi-device call keeps fake CPU devices out of the all-reduce stall (docs/llm-offline.md §8.4)
    return lambda state, minibatches: jax.block_until_ready(sharded(state, shard_batches(minibatches, mesh)))


def _setup(config: TrainConfig, store: ModelStore, on_log) -> tuple[_Loop, RunState]:
    prior = store.run_prior(config) if config.algo == "ppo-prior" else None
    featurizer = Featurizer(store.encoder(config.encoder), config.style)
    agent = make_ppo_for(config)
    policy = make_policy("ppo", config, agent, prior, featurizer)
    checkpoints = Checkpoints(config, featurizer, prior)
    recorder = Recorder(dataclasses.replace(config, resume=checkpoints.resuming), prior, on_log)
    loop = _Loop(
        config,
        policy,
        agent,
        make_ppo_update(agent, config.devices),
        make_vector_env(config),
        recorder,
        checkpoints,
        np.random.default_rng(config.seed),
    )
    key = jax.random.key(config.seed)
    key, init_key = jax.random.split(key)
    agent_state = agent.init(init_key, featurizer.table.dim, policy.k)
    loop.vec.reset(seed=config.seed)
    host = HostState(next_log=config.log_every, next_ckpt=config.checkpoint_every, ep_returns=[0.0] * config.num_envs)
    if not checkpoints.resuming:
        return loop, RunState(agent_state, None, key, host)
    state = checkpoints.restore(agent_state, None)
    loop.rng.bit_generator.state = state.host.rng
    loop.vec.restore(state.host.envs)
    recorder.restore(state.host.recorder, state.host.env_steps)
    return loop, state


def _bootstrap_values(loop: _Loop, state: RunState, key: jax.Array, step: Any) -> np.ndarray:
    """V(final observation) where an episode was truncated (not terminated) at this step, else 0."""
    next_value = np.zeros(loop.vec.num_envs, np.float32)
    cut = [i for i in range(loop.vec.num_envs) if step.truncated[i] and not step.terminated[i]]
    if cut:
        acted = loop.policy.act(state.agent, key, [step.final_observations[i] for i in cut], loop.rng, explore=SAMPLE)
        next_value[cut] = np.asarray(acted.value)
    return next_value


def _rollout_step(loop: _Loop, state: RunState, buf: dict) -> RunState:
    key, act_key = jax.random.split(state.key)
    acted = loop.policy.act(state.agent, act_key, loop.vec.observations, loop.rng, explore=SAMPLE)
    step = loop.vec.step(acted.slots)
    c, n = acted.candidates, loop.vec.num_envs
    prior = np.asarray(c.prior_logp) if c.prior_logp is not None else np.zeros((n, loop.policy.k), np.float32)
    values = (
        c.rows,
        c.mask,
        acted.slots,
        np.asarray(acted.logp),
        np.asarray(acted.value),
        step.rewards,
        step.terminated,
        step.truncated,
        _bootstrap_values(loop, state, act_key, step),
        prior,
    )
    for name, value in zip(ROLLOUT_FIELDS, values):
        buf[name].append(value)
    host, returns = state.host, np.asarray(state.host.ep_returns) + step.rewards
    for i in np.flatnonzero(step.terminated | step.truncated):
        host.episodes += 1
        loop.recorder.episode_done(step.success[i], returns[i])
        returns[i] = 0.0
    host.ep_returns = returns.tolist()
    host.env_steps += n
    loop.recorder.advance(n)
    return state._replace(key=key)


def _ppo_batch(loop: _Loop, state: RunState, arr: dict) -> PPOBatch:
    """The rollout as one flat PPOBatch with normalised truncation-aware GAE advantages."""
    last_v = loop.policy.act(state.agent, state.key, loop.vec.observations, loop.rng, explore=SAMPLE).value
    adv, returns = losses.gae_with_truncation(
        jnp.asarray(arr["reward"]),
        jnp.asarray(arr["term"]),
        jnp.asarray(arr["trunc"]),
        jnp.asarray(arr["value"]),
        jnp.asarray(arr["next_value"]),
        jnp.asarray(last_v),
        loop.config.gamma,
        loop.agent.config.gae_lambda,
    )
    T, N = arr["reward"].shape
    table = loop.policy.featurizer.device_table()
    flat = lambda x: jnp.asarray(x).reshape((T * N,) + x.shape[2:])  # noqa: E731
    return PPOBatch(
        table[flat(arr["rows"])],
        flat(arr["mask"]),
        flat(arr["action"]).astype(jnp.int32),
        flat(arr["logp"]),
        flat(arr["value"]),
        losses.normalize_advantages(flat(adv)),
        flat(returns),
        flat(arr["prior"]) if loop.policy.use_prior_logp else None,
    )


def _iteration(loop: _Loop, state: RunState) -> RunState:
    """One rollout and its PPO update."""
    config, host = loop.config, state.host
    buf: dict = {name: [] for name in ROLLOUT_FIELDS}
    for _ in range(config.rollout_steps):
        state = _rollout_step(loop, state, buf)
    batch = _ppo_batch(loop, state, {name: np.stack(v) for name, v in buf.items()})
    key, mb_key = jax.random.split(state.key)
    minibatches = make_minibatches(mb_key, batch, config.ppo_epochs, config.ppo_minibatches)
    agent_state, metrics = loop.update(state.agent, minibatches)
    host.updates += config.ppo_epochs * config.ppo_minibatches
    host.last_metrics = {
        "loss": check_finite(metrics, host.updates, f" ({host.env_steps} env steps)", loop.recorder, loop.checkpoints)
    }
    return state._replace(agent=agent_state, key=key)


def _row(host: HostState, **fields: Any) -> dict:
    return {"env_steps": host.env_steps, "updates": host.updates, "episodes": host.episodes, **fields}


def _save(loop: _Loop, state: RunState) -> None:
    host = state.host
    host.rng, host.envs, host.recorder = run_state.generator_state(loop.rng), loop.vec.snapshot(), loop.recorder.state()
    loop.checkpoints.save(host.updates, state)


def train_ppo(
    config: TrainConfig, on_log: Optional[Callable[[dict], None]] = None, store: Optional[ModelStore] = None
) -> TrainResult:
    """PPO or PPO-Prior for ``config.env_steps`` environment samples."""
    loop, state = _setup(config, store or ModelStore(), on_log)
    host = state.host
    while host.env_steps < config.env_steps:
        if host.env_steps >= host.next_eval:
            loop.recorder.log(_row(host, **periodic_eval(config, loop.policy.bind(state.agent)), **host.last_metrics))
            host.next_eval += config.eval_every
        state = _iteration(loop, state)
        if host.env_steps >= host.next_log:
            if host.env_steps < host.next_eval:
                loop.recorder.log(_row(host, **host.last_metrics))
            host.next_log += config.log_every
        if loop.checkpoints.due(host.updates, host):
            _save(loop, state)
    if loop.checkpoints.manager is not None and not loop.checkpoints.exists(host.updates):
        _save(loop, state)
    act = loop.policy.bind(state.agent)
    final = final_eval(config, act)
    loop.recorder.log(_row(host, **final, **host.last_metrics))
    loop.recorder.finish()
    loop.vec.close()
    return TrainResult(
        config, loop.recorder.history, final, state.agent, loop.recorder.run_dir, loop.recorder.wall_s, act, loop.policy
    )
