"""Offline training: CQL-Prior and CQL on a fixed dataset of text transitions (docs/method.md §2.5, §3.10).

``train_offline(OfflineConfig(...))`` loads a dataset (our generator's, or the paper's own ``.pkl``:
:mod:`prior_rl.io.datasets`), converts it once — candidates at s and s' (k LLM prior samples for CQL-Prior, every
admissible action for CQL) and their features — and runs jitted update dispatches of many steps each, evaluating
the greedy policy over the same kind of candidates in the real environment. Checkpoints keep the agent, key,
counters, feature table and prior cache; a resumed run converts the dataset again (deterministic from the seed)
and continues bit-identically.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

import envs
from prior_rl import replay
from prior_rl.agents import QConfig, make_cql, make_cql_prior
from prior_rl.bridge.candidates import Featurizer
from prior_rl.io import datasets
from prior_rl.run.acting import Policy, make_policy
from prior_rl.run.config import OfflineConfig
from prior_rl.run.evaluation import periodic_eval
from prior_rl.run.models import ModelStore
from prior_rl.run.recorder import Recorder
from prior_rl.run.session import Checkpoints, TrainResult, check_finite, make_replay_update
from prior_rl.run.state import HostState, RunState


def observations_from_records(
    env_name: str, records: Sequence[tuple[str, str, Sequence[str]]], template: Optional[envs.TextObservation] = None
) -> list[envs.TextObservation]:
    """Rebuild :class:`TextObservation` s from dataset texts ``(task, state, actions)``, so the prior sees the
    same prompt it sees online: the env's reset observation is the template, with the state text swapped in."""
    if template is None:
        env = envs.make(env_name)
        template, _ = env.reset(seed=0)
        env.close()
    if template.state not in template.prompt:
        raise ValueError(f"{env_name}: cannot rebuild prompts from dataset states (state text not in the prompt)")
    return [
        dataclasses.replace(
            template,
            task=task,
            state=state,
            actions=tuple(actions),
            prompt=template.prompt.replace(template.state, state).replace(template.task, task),
        )
        for task, state, actions in records
    ]


def load_dataset(config: OfflineConfig) -> list[datasets.Transition]:
    """The config's dataset file, or ``dataset_size`` generated transitions; sub-sampled to ``dataset_size``."""
    if config.dataset is not None:
        data = datasets.load_transitions(config.dataset)
    else:
        data = datasets.generate(
            config.env, config.dataset_size, config.success_fraction, config.episode_cap or 51, seed=config.dataset_seed
        )
    if config.dataset_size is not None and config.dataset_size < len(data):
        data = datasets.subsample(data, config.dataset_size, seed=config.dataset_seed)
    return data


def convert(
    data: Sequence[datasets.Transition], env_name: str, policy: Policy, rng: np.random.Generator
) -> tuple[replay.IndexedTransition, dict[str, float]]:
    """Candidates and feature rows for every transition, computed once and frozen (as the paper does).

    Returns the items (leaves [n, ...]) and ``coverage``: how often the data action is among the candidates at s.
    """
    states = observations_from_records(env_name, [(t.task, t.state, t.actions) for t in data])
    nexts = observations_from_records(env_name, [(t.task, t.next_state, t.next_actions) for t in data])
    idx, mask = policy.source(rng, states)
    n_idx, n_mask = policy.source(rng, nexts)
    featurizer = policy.featurizer
    rows, n_rows = featurizer.rows(states, idx), featurizer.rows(nexts, n_idx)
    taken = np.array([t.action_index for t in data])
    obs_rows = featurizer.rows(states, taken[:, None])[:, 0]
    items = replay.IndexedTransition(
        obs_rows.astype(np.int32),
        rows,
        mask,
        np.array([t.reward for t in data], np.float32),
        np.array([0.0 if t.done else 1.0 for t in data], np.float32),
        n_rows,
        n_mask,
    )
    coverage = float(np.mean([(idx[i][mask[i]] == taken[i]).any() for i in range(len(data))]))
    return items, {"coverage": coverage}


def _setup(config: OfflineConfig, store: ModelStore, on_log):
    data = load_dataset(config)  # first: a bad dataset file fails before any model loads or any file is written
    prior = store.run_prior(config) if config.algo == "cql-prior" else None
    featurizer = Featurizer(store.encoder(config.encoder), config.style)
    agent = (make_cql_prior if prior is not None else make_cql)(
        QConfig(
            batch_size=config.batch_size,
            td_coef=0.5,
            cql_beta=config.cql_beta,
            learning_rate=config.learning_rate,
            gamma=config.gamma,
            tau=config.tau,
        )
    )
    policy = make_policy("q", config, agent, prior, featurizer, prior_candidates=prior is not None)
    checkpoints = Checkpoints(config, featurizer, prior)
    recorder = Recorder(dataclasses.replace(config, resume=checkpoints.resuming), prior, on_log)
    items, conversion = convert(data, config.env, policy, np.random.default_rng(config.seed))
    key = jax.random.key(config.seed)
    key, init_key = jax.random.split(key)
    agent_state = agent.init(init_key, featurizer.table.dim)
    host = HostState(last_metrics={"dataset_size": len(data), **conversion})
    state = RunState(agent_state, None, key, host)
    if checkpoints.resuming:
        state = checkpoints.restore(agent_state, None)
        recorder.restore(state.host.recorder, state.host.updates)
    buffer = replay.from_items(jax.tree.map(jnp.asarray, items))
    return policy, recorder, checkpoints, buffer, state


def train_offline(
    config: OfflineConfig, on_log: Optional[Callable[[dict], None]] = None, store: Optional[ModelStore] = None
) -> TrainResult:
    """CQL-Prior or CQL for ``config.updates`` updates, evaluated every ``eval_every``."""
    policy, recorder, checkpoints, buffer, state = _setup(config, store or ModelStore(), on_log)
    table = policy.featurizer.device_table()
    per_dispatch = min(config.updates_per_dispatch, config.eval_every)
    update = make_replay_update(policy.agent, per_dispatch, config.batch_size, config.devices)
    host = state.host
    while True:
        if host.updates % config.eval_every == 0 or host.updates >= config.updates:
            ev = periodic_eval(config, policy.bind(state.agent))
            host.best_eval_success = max(host.best_eval_success, ev["eval_success"])
            recorder.log(
                {
                    "env_steps": host.updates,
                    "updates": host.updates,
                    **ev,
                    "best_eval_success": host.best_eval_success,
                    **host.last_metrics,
                }
            )
        if host.updates >= config.updates:
            break
        key, sub = jax.random.split(state.key)
        agent_state, metrics = update(state.agent, buffer, table, sub)
        state = state._replace(agent=agent_state, key=key)
        host.updates += per_dispatch
        recorder.advance(per_dispatch)
        loss = check_finite(metrics, host.updates, "", recorder, checkpoints)
        host.last_metrics.update(
            loss=loss, q_mean=float(metrics["q_mean"][-1]), cql=float(metrics.get("cql", [0.0])[-1])
        )
        if checkpoints.due(host.updates, host):
            host.recorder = recorder.state()
            checkpoints.save(host.updates, state)
    recorder.finish()
    final = {k: v for k, v in recorder.history[-1].items() if k.startswith("eval") or k.startswith("best")}
    return TrainResult(
        config,
        recorder.history,
        final,
        state.agent,
        recorder.run_dir,
        recorder.wall_s,
        policy.bind(state.agent),
        policy,
    )
