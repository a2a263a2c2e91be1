"""The online value-based loop (DQN-Prior, DQN) and the pure-LLM policy: Python environment copies feeding jitted,
pure update steps.

Data flows one way: env text → prompt → prior (candidates, cached per prompt) → features (cached per string) → Q →
action. The replay buffer stores int32 rows into a feature table, so a transition costs a few bytes. Every
``checkpoint_every`` updates (env samples for the LLM policy) the whole :class:`~prior_rl.run.state.RunState` is
saved; ``resume`` continues from the latest checkpoint and ends exactly where an uninterrupted run ends.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from prior_rl import replay
from prior_rl.agents import QConfig, make_dqn, make_dqn_prior
from prior_rl.bridge.candidates import Featurizer
from prior_rl.distributed import ProcessGroup, process_group
from prior_rl.run import state as run_state
from prior_rl.run.acting import Candidates, Explore, Policy, make_policy
from prior_rl.run.config import PRIOR_ALGOS, TrainConfig
from prior_rl.run.environment import make_vector_env
from prior_rl.run.evaluation import final_eval, periodic_eval
from prior_rl.run.models import ModelStore
from prior_rl.run.recorder import Recorder
from prior_rl.run.session import Checkpoints, TrainResult, check_finite, make_replay_update
from prior_rl.run.state import HostState, RunState


class _Loop(NamedTuple):
    """The live parts of a value-based run; everything that changes as it runs is in RunState."""

    config: TrainConfig
    policy: Policy
    agent: Any  # None for the LLM policy
    vec: Any
    recorder: Recorder
    checkpoints: Checkpoints
    update: Optional[Callable]
    rng: np.random.Generator  # the host generator: candidate draws


def make_q_agent(config: TrainConfig) -> Any:
    """The DQN-Prior or DQN agent of an online config."""
    q_config = QConfig(
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        gamma=config.gamma,
        tau=config.tau,
        epsilon=config.epsilon,
        inv_temperature=config.inv_temperature,
    )
    return (make_dqn_prior if config.algo == "dqn-prior" else make_dqn)(q_config)


def epsilon_at(config: TrainConfig, env_steps: int) -> float:
    """ε decays linearly from ``epsilon`` to ``epsilon_final`` over ``epsilon_decay_steps`` env samples."""
    frac = min(1.0, env_steps / max(config.epsilon_decay_steps, 1))
    return config.epsilon + frac * (config.epsilon_final - config.epsilon)


def _example_item(k: int) -> replay.IndexedTransition:
    z, m = np.zeros(k, np.int32), np.zeros(k, bool)
    return replay.IndexedTransition(
        np.zeros((), np.int32), z, m, np.zeros((), np.float32), np.zeros((), np.float32), z, m
    )


def _setup(config: TrainConfig, store: ModelStore, on_log, group: ProcessGroup) -> tuple[_Loop, RunState]:
    if config.num_envs < group.size:  # checked before any model is loaded
        raise ValueError(
            f"--num-envs {config.num_envs} gives some of the {group.size} processes no environment copy; "
            f"use at least {group.size}"
        )
    prior = store.run_prior(config) if config.algo in PRIOR_ALGOS else None
    if hasattr(prior, "split_scoring"):  # a group of one changes nothing
        prior.split_scoring(group)
    agent = featurizer = update = None
    if config.algo == "llm":
        policy = make_policy("llm", config, prior=prior, sample=config.llm_sample)
    else:
        featurizer = Featurizer(store.encoder(config.encoder), config.style)
        agent = make_q_agent(config)
        policy = make_policy("q", config, agent, prior, featurizer, prior_candidates=config.algo == "dqn-prior")
        update = make_replay_update(agent, config.updates_per_train, config.batch_size, config.devices, group.size)
    writer = group.rank == 0  # one process writes the run folder (logs, checkpoints); every one keeps the history
    checkpoints = Checkpoints(config, featurizer, prior, write=writer)
    shown = dataclasses.replace(config, resume=checkpoints.resuming)
    if not writer:
        shown = dataclasses.replace(shown, run_dir=None, checkpoint_every=0, resume=False, progress=False)
    recorder = Recorder(shown, prior, on_log)
    loop = _Loop(
        config,
        policy,
        agent,
        make_vector_env(config, group),
        recorder,
        checkpoints,
        update,
        np.random.default_rng(config.seed),
    )
    return loop, _initial_state(loop, featurizer.table.dim if featurizer else 0)


def _initial_state(loop: _Loop, dim: int) -> RunState:
    config, key = loop.config, jax.random.key(loop.config.seed)
    agent_state = buffer = None
    if loop.agent is not None:
        key, init_key = jax.random.split(key)
        agent_state = loop.agent.init(init_key, dim)
        buffer = replay.init(_example_item(loop.policy.k), config.buffer_capacity)
    loop.vec.reset(seed=config.seed)
    host = HostState(next_log=config.log_every, next_ckpt=config.checkpoint_every, ep_returns=[0.0] * config.num_envs)
    if not loop.checkpoints.resuming:
        return RunState(agent_state, buffer, key, host)
    state = loop.checkpoints.restore(agent_state, buffer)
    loop.rng.bit_generator.state = state.host.rng
    loop.vec.restore(state.host.envs)
    loop.recorder.restore(state.host.recorder, state.host.env_steps)
    return state


def _clock(loop: _Loop, host: HostState) -> int:
    """What checkpoints are numbered by: updates, or env samples for the LLM policy."""
    return host.updates if loop.agent is not None else host.env_steps


def _save(loop: _Loop, state: RunState, pending: Optional[Candidates]) -> None:
    host = state.host
    host.rng, host.envs = run_state.generator_state(loop.rng), loop.vec.snapshot()
    host.pending = run_state.pending_to_json(pending[:3] if pending is not None else None)
    host.recorder = loop.recorder.state()
    loop.checkpoints.save(_clock(loop, host), state)


def _row(host: HostState, **fields: Any) -> dict:
    return {"env_steps": host.env_steps, "updates": host.updates, "episodes": host.episodes, **fields}


def _act(loop: _Loop, state: RunState, pending: Optional[Candidates]):
    """(state, actions [N], candidates acted on) for the current observations."""
    observations = loop.vec.observations
    if loop.agent is None:
        return state, loop.policy.act(None, None, observations, loop.rng).actions, None
    if pending is None:
        pending = loop.policy.candidates(loop.rng, observations)
    key, act_key = jax.random.split(state.key)
    explore = Explore(epsilon_at(loop.config, state.host.env_steps), loop.config.inv_temperature)
    acted = loop.policy.act(state.agent, act_key, observations, loop.rng, explore=explore, candidates=pending)
    return state._replace(key=key), acted.actions, acted


def _next_candidates(loop: _Loop, step: Any) -> tuple[Candidates, Candidates]:
    """Candidates at s' for the TD target (the final observation of a finished episode, else the new one), with
    the rows of finished copies then replaced by candidates at their new first observation, to act on next (as the
    reference does)."""
    policy = loop.policy
    targets = [f if f is not None else o for f, o in zip(step.final_observations, step.observations)]
    target = policy.candidates(loop.rng, targets)
    finished = [i for i, f in enumerate(step.final_observations) if f is not None]
    if not finished:
        return target, target
    fresh = policy.candidates(loop.rng, [step.observations[i] for i in finished])
    acting = [a.copy() for a in target[:3]]
    for a, b in zip(acting, fresh[:3]):
        a[finished] = b
    return target, Candidates(*acting)


def _env_step(loop: _Loop, state: RunState, pending: Optional[Candidates]):
    """Act, step every copy, store the transitions; returns (state, candidates for the next step)."""
    state, actions, acted = _act(loop, state, pending)
    step = loop.vec.step(actions)
    host, n = state.host, loop.vec.num_envs
    host.env_steps += n
    loop.recorder.advance(n)
    returns = np.asarray(host.ep_returns) + step.rewards
    buffer, pending = state.buffer, None
    if loop.agent is not None:
        target, pending = _next_candidates(loop, step)
        c = acted.candidates
        item = replay.IndexedTransition(
            c.rows[np.arange(n), acted.slots],
            c.rows,
            c.mask,
            step.rewards,
            (1.0 - step.terminated).astype(np.float32),
            target.rows,
            target.mask,
        )
        buffer = replay.add_batch(buffer, jax.tree.map(jnp.asarray, item))
    for i in np.flatnonzero(step.terminated | step.truncated):
        host.episodes += 1
        loop.recorder.episode_done(step.success[i], returns[i])
        returns[i] = 0.0
    host.ep_returns = returns.tolist()
    return state._replace(buffer=buffer), pending


def _maybe_update(loop: _Loop, state: RunState) -> RunState:
    config, host = loop.config, state.host
    if (
        loop.agent is None
        or host.env_steps < config.learning_starts
        or host.env_steps % config.train_every >= config.num_envs
    ):
        return state
    key, upd_key = jax.random.split(state.key)
    agent_state, metrics = loop.update(state.agent, state.buffer, loop.policy.featurizer.device_table(), upd_key)
    host.updates += config.updates_per_train
    loss = check_finite(metrics, host.updates, f" ({host.env_steps} env steps)", loop.recorder, loop.checkpoints)
    host.last_metrics = {"loss": loss, "q_mean": float(metrics["q_mean"][-1])}
    return state._replace(agent=agent_state, key=key)


def _maybe_eval(loop: _Loop, state: RunState) -> None:
    host = state.host
    if host.env_steps >= host.next_eval:
        ev = periodic_eval(loop.config, loop.policy.bind(state.agent))
        loop.recorder.log(_row(host, **ev, **host.last_metrics))
        host.next_eval += loop.config.eval_every


def _maybe_log(loop: _Loop, state: RunState) -> None:
    host = state.host
    if host.env_steps >= host.next_log:
        if host.env_steps < host.next_eval:  # an evaluation due now logs these metrics in its own row
            loop.recorder.log(_row(host, **host.last_metrics))
        host.next_log += loop.config.log_every


def train_value_based(
    config: TrainConfig,
    on_log: Optional[Callable[[dict], None]] = None,
    store: Optional[ModelStore] = None,
    group: Optional[ProcessGroup] = None,
) -> TrainResult:
    """DQN-Prior, DQN or the pure-LLM policy for ``config.env_steps`` environment samples.

    Across processes (``group``, default :func:`prior_rl.distributed.process_group`: every process of the JAX
    runtime, so after ``distributed.initialize`` a run spans them all): every process runs this same loop on the
    same values; the environment copies and the prior's new prompts are split between them and their results
    gathered, the update runs over every process's devices, and process 0 writes the run folder. The result is the
    one-process run's with the same ``num_envs`` and batch (up to float reassociation in the update)."""
    loop, state = _setup(config, store or ModelStore(), on_log, group or process_group())
    pending = run_state.pending_from_json(state.host.pending)
    pending = Candidates(*pending) if pending is not None else None
    while state.host.env_steps < config.env_steps:
        _maybe_eval(loop, state)
        state, pending = _env_step(loop, state, pending)
        state = _maybe_update(loop, state)
        _maybe_log(loop, state)
        if loop.checkpoints.due(_clock(loop, state.host), state.host):
            _save(loop, state, pending)
    return _finish(loop, state, pending)


def _finish(loop: _Loop, state: RunState, pending: Optional[Candidates]) -> TrainResult:
    host = state.host
    if loop.checkpoints.manager is not None and not loop.checkpoints.exists(_clock(loop, host)):
        _save(loop, state, pending)  # the final state too, so a finished run can be inspected or extended
    act = loop.policy.bind(state.agent)
    final = final_eval(loop.config, act)
    loop.recorder.log(_row(host, **final, **host.last_metrics))
    loop.recorder.finish()
    loop.vec.close()
    return TrainResult(
        loop.config,
        loop.recorder.history,
        final,
        state.agent,
        loop.recorder.run_dir,
        loop.recorder.wall_s,
        act,
        loop.policy,
    )
