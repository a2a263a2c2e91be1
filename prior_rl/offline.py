"""Offline training: CQL-Prior and CQL on a fixed dataset of text transitions (paper §2.5, method.md §3.10).

``train_offline(OfflineConfig(...))`` loads a dataset (our generator's or the paper's own file, one format:
:mod:`prior_rl.datasets`), converts it once — candidates at s and s' (k LLM prior samples for CQL-Prior, every
admissible action for CQL) and their features — and runs jitted update dispatches of many steps each, evaluating
the greedy policy over the same kind of candidates in the real environment.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import envs
from prior_rl import datasets, replay
from prior_rl.agents import QConfig, make_cql, make_cql_prior
from prior_rl.candidates import AllActions, Featurizer, PriorCandidates, pad_width
from prior_rl.train import (
    NonFiniteLossError,
    RunConfig,
    TrainResult,
    _Run,
    evaluate,
    load_prior,
    load_text_encoder,
    make_env,
    make_replay_update,
)

OFFLINE_ALGOS = ("cql-prior", "cql")


@dataclass(frozen=True)
class OfflineConfig(RunConfig):
    """One offline run. Defaults follow the paper's CQL command (batch 128, β = 5, τ = 0.005, 10,000 updates).

    dataset:      a dataset file; None = generate ``dataset_size`` transitions with :func:`datasets.generate`.
    dataset_size: sub-sample to this many transitions (nested across sizes for one ``dataset_seed``).
    """

    env: str = "overcooked-tomato-lettuce-salad"
    algo: str = "cql-prior"
    dataset: Optional[str] = None
    dataset_size: Optional[int] = None
    dataset_seed: int = 0
    success_fraction: float = 0.75
    updates: int = 10_000
    updates_per_dispatch: int = 500
    batch_size: int = 128
    cql_beta: float = 5.0
    learning_rate: float = 5e-4
    gamma: float = 0.99
    tau: float = 0.005
    plot: bool = False

    def __post_init__(self):
        super().__post_init__()
        if self.algo not in OFFLINE_ALGOS:
            raise ValueError(f"unknown offline algo {self.algo!r}; valid: {', '.join(OFFLINE_ALGOS)}")
        if self.dataset is None and self.dataset_size is None:
            raise ValueError("give a dataset file (dataset=...) or a size to generate (dataset_size=...)")

    @property
    def env_steps(self) -> int:  # the progress bar counts updates offline
        return self.updates


def observations_from_records(env_name: str, records: Sequence[tuple[str, str, Sequence[str]]],
                              template: Optional[envs.TextObservation] = None) -> list[envs.TextObservation]:
    """Rebuild :class:`TextObservation` s from dataset texts ``(task, state, actions)``, so the prior sees the
    same prompt it sees online: the env's reset observation is the template, with the state text swapped in."""
    if template is None:
        env = envs.make(env_name)
        template, _ = env.reset(seed=0)
        env.close()
    if template.state not in template.prompt:
        raise ValueError(f"{env_name}: cannot rebuild prompts from dataset states (state text not in the prompt)")
    return [dataclasses.replace(template, task=task, state=state, actions=tuple(actions),
                                prompt=template.prompt.replace(template.state, state).replace(template.task, task))
            for task, state, actions in records]


def load_dataset(config: OfflineConfig) -> list[datasets.Transition]:
    if config.dataset is not None:
        data = datasets.load_transitions(config.dataset)
    else:
        data = datasets.generate(config.env, config.dataset_size, config.success_fraction,
                                 config.episode_cap or 51, seed=config.dataset_seed)
    if config.dataset_size is not None and config.dataset_size < len(data):
        data = datasets.subsample(data, config.dataset_size, seed=config.dataset_seed)
    return data


def convert(data: Sequence[datasets.Transition], env_name: str, source: Any, featurizer: Featurizer,
            rng: np.random.Generator) -> tuple[replay.IndexedTransition, dict[str, float]]:
    """Candidates and feature rows for every transition, computed once and frozen (as the paper does).

    Returns the items (leaves [n, ...]) and ``coverage``: how often the data action is among the candidates at s.
    """
    states = observations_from_records(env_name, [(t.task, t.state, t.actions) for t in data])
    nexts = observations_from_records(env_name, [(t.task, t.next_state, t.next_actions) for t in data])
    idx, mask = source(rng, states)
    n_idx, n_mask = source(rng, nexts)
    rows, n_rows = featurizer.rows(states, idx), featurizer.rows(nexts, n_idx)
    taken = np.array([t.action_index for t in data])
    obs_rows = featurizer.rows(states, taken[:, None])[:, 0]
    items = replay.IndexedTransition(
        obs_rows.astype(np.int32), rows, mask, np.array([t.reward for t in data], np.float32),
        np.array([0.0 if t.done else 1.0 for t in data], np.float32), n_rows, n_mask)
    coverage = float(np.mean([(idx[i][mask[i]] == taken[i]).any() for i in range(len(data))]))
    return items, {"coverage": coverage}


def train_offline(config: OfflineConfig, on_log: Optional[Callable[[dict], None]] = None) -> TrainResult:
    run = _Run(config)
    data = load_dataset(config)
    encoder = load_text_encoder(config.encoder)
    featurizer = Featurizer(encoder, config.style)
    if config.algo == "cql-prior":
        source = PriorCandidates(load_prior(config.llm, config.prior_temperature, config.prompt, config.length_normalize), config.k, config.prior_mode)
        make = make_cql_prior
    else:
        source = AllActions(pad_width(config.max_candidates))
        make = make_cql
    host_rng = np.random.default_rng(config.seed)
    items, conversion = convert(data, config.env, source, featurizer, host_rng)
    buffer = replay.from_items(jax.tree.map(jnp.asarray, items))
    agent = make(QConfig(batch_size=config.batch_size, td_coef=0.5, cql_beta=config.cql_beta,
                         learning_rate=config.learning_rate, gamma=config.gamma, tau=config.tau))
    key = jax.random.key(config.seed)
    key, init_key = jax.random.split(key)
    state = agent.init(init_key, encoder.dim)
    table = featurizer.device_table()
    per_dispatch = min(config.updates_per_dispatch, config.eval_every)

    replay_update = make_replay_update(agent, per_dispatch, config.batch_size, config.devices)

    state_ref = [state]

    def act_batch(rng, observations):
        idx, mask = source(rng, observations)
        rows = featurizer.rows(observations, idx)
        slot = np.asarray(agent.act(state_ref[0], jax.random.key(0), featurizer.device_table()[rows],
                                    jnp.asarray(mask)))
        return idx[np.arange(len(observations)), slot]

    info = {"dataset_size": len(data), **conversion}
    updates = 0
    best = -1.0
    while True:
        if updates % config.eval_every == 0 or updates >= config.updates:
            state_ref[0] = state
            ev = evaluate(config, act_batch, config.eval_episodes, seed=10_000 + config.seed * 1000)
            best = max(best, ev["eval_success"])
            run.log({"env_steps": updates, "updates": updates, **ev, "best_eval_success": best, **info}, on_log)
        if updates >= config.updates:
            break
        key, sub = jax.random.split(key)
        state, metrics = replay_update(state, buffer, table, sub)
        updates += per_dispatch
        run.advance(per_dispatch)
        loss = float(metrics["loss"][-1])
        if not math.isfinite(loss):
            run.finish()
            raise NonFiniteLossError(f"loss became {loss} after {updates} updates; stopped")
        info.update(loss=loss, q_mean=float(metrics["q_mean"][-1]), cql=float(metrics.get("cql", [0.0])[-1]))
    run.finish()
    final = {k: v for k, v in run.history[-1].items() if k.startswith("eval") or k.startswith("best")}
    return TrainResult(config, run.history, final, state, run.run_dir, time.perf_counter() - run.t0, act_batch)
