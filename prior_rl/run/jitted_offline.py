"""CQL-Prior and CQL on a fixed dataset as one compiled program: many seeds (and datasets) with ``jit(vmap)``.

The offline counterpart of :mod:`prior_rl.run.jitted`, on the same per-prompt :class:`~prior_rl.run.jitted.Tables`
(prior log-probs, admissible masks, Q-features) and the same in-program evaluation on the pure-JAX Overcooked::

    data = dataset_arrays(env, transitions)          # text transitions -> OfflineData (prompt ids), host side
    train = make_offline_train(config, tables)       # train(key, data, logp=None) -> metrics, a pure function
    metrics = jax.jit(jax.vmap(train))(keys, stacked)  # one dataset per seed ([S, N] leaves) ...
    metrics = jax.jit(jax.vmap(train, (0, None)))(keys, data)  # ... or one dataset shared by every seed

As in the paper (and :func:`prior_rl.run.offline_loop.convert`), the candidates of every transition are drawn once
and frozen: k samples of the prior at s and at s' for CQL-Prior, every admissible action for CQL. The loss is
``td_coef · TD + cql_beta · (logsumexp over the candidates at s − Q(s, a_data))`` of
:func:`prior_rl.agents.make_q_agent`; the greedy, ε-greedy and Boltzmann policies over the method's own
candidates are evaluated every ``eval_every`` updates (docs/jitted.md, "Offline").
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from prior_rl import replay
from prior_rl.agents import QConfig, make_cql, make_cql_prior
from prior_rl.run import jitted, sweep

OFFLINE_ALGOS = ("cql-prior", "cql")


@dataclasses.dataclass(frozen=True)
class OfflineJitConfig(jitted.TableOptions):
    """Defaults follow :class:`prior_rl.run.config.OfflineConfig` (the paper's CQL command: batch 128, β = 5,
    τ = 0.005, TD term 0.5·sum-MSE). ``updates_per_dispatch`` must divide ``eval_every``, which must divide
    ``updates``. Metrics come at updates 0, eval_every, ..., updates.

    td_reduction: 'sum' (the reference's mse reduction) or 'mean' over the minibatch.
    features, llm, prompt, encoder, prior_floor, eval_*: as in :class:`prior_rl.run.jitted.JitConfig`
    (:class:`prior_rl.run.jitted.TableOptions`).
    """

    env: str = "overcooked-tomato-lettuce-salad"
    algo: str = "cql-prior"
    updates: int = 3000
    eval_every: int = 500
    updates_per_dispatch: int = 100
    k: int = 5
    max_candidates: int = 8
    batch_size: int = 128
    cql_beta: float = 5.0
    td_coef: float = 0.5
    td_reduction: str = "sum"
    learning_rate: float = 5e-4
    gamma: float = 0.99
    tau: float = 0.005

    def __post_init__(self):
        if self.algo not in OFFLINE_ALGOS:
            raise ValueError(f"compiled offline loop: algo must be one of {OFFLINE_ALGOS}, got {self.algo!r}")
        if self.updates % self.eval_every or self.eval_every % self.updates_per_dispatch:
            raise ValueError(
                "compiled offline loop: eval_every must divide updates and be a multiple of updates_per_dispatch"
            )
        if self.td_reduction not in ("sum", "mean"):
            raise ValueError(f"td_reduction must be 'sum' or 'mean', got {self.td_reduction!r}")
        self.online_view()  # the env, prompt, features and llm checks of JitConfig

    def online_view(self) -> jitted.JitConfig:
        """The :class:`~prior_rl.run.jitted.JitConfig` whose candidates and evaluation this run shares: DQN-Prior's
        k prior samples for CQL-Prior, DQN's admissible set for CQL."""
        return jitted.JitConfig(
            env=self.env,
            algo="dqn-prior" if self.algo == "cql-prior" else "dqn",
            env_steps=4,
            num_envs=4,
            eval_every=4,
            k=self.k,
            max_candidates=self.max_candidates,
            **self.table_options(),
        )


class OfflineData(NamedTuple):
    """A dataset as prompt ids, leaves [N] (or [S, N] stacked per seed): ``pid``/``next_pid`` int32 prompt ids of
    :mod:`envs.jax_prompts`, ``action`` int32 macro id, ``reward`` float32, ``done`` float32 (1 = a true
    termination; a transition cut by the step cap has 0 and is bootstrapped)."""

    pid: Any
    action: Any
    reward: Any
    done: Any
    next_pid: Any


def dataset_arrays(env: str, transitions: Sequence[Any]) -> OfflineData:
    """:class:`OfflineData` of text transitions (:class:`prior_rl.io.datasets.Transition`): each (state text,
    admissible labels) is matched to its prompt id. A state the JAX env cannot reach is a ``ValueError`` naming it."""
    table = jitted.prompt_table_of(env)
    index: dict[tuple[str, tuple[str, ...]], int] = {}
    for pid, key in enumerate(zip(table.states, table.actions)):
        index.setdefault(key, pid)

    def ids(states, actions) -> np.ndarray:
        out = np.array([index.get((s, tuple(a)), -1) for s, a in zip(states, actions)], np.int32)
        if (out < 0).any():
            i = int(np.flatnonzero(out < 0)[0])
            raise ValueError(
                f"{env}: dataset state {states[i]!r} (actions {list(actions[i])}) is not a state of the JAX env; "
                f"{int((out < 0).sum())} of {len(out)} unmatched — is the dataset from this task?"
            )
        return out

    t = transitions
    return OfflineData(
        ids([x.state for x in t], [x.actions for x in t]),
        np.array([x.action_index for x in t], np.int32),
        np.array([x.reward for x in t], np.float32),
        np.array([float(x.done) for x in t], np.float32),
        ids([x.next_state for x in t], [x.next_actions for x in t]),
    )


def make_agent(config: OfflineJitConfig, num_rows: int = 0) -> Any:
    """The CQL-Prior or CQL agent (``num_rows``: one-hot features, :attr:`jitted.Tables.num_rows`)."""
    q = QConfig(
        batch_size=config.batch_size,
        td_coef=config.td_coef,
        td_reduction=config.td_reduction,
        cql_beta=config.cql_beta,
        learning_rate=config.learning_rate,
        gamma=config.gamma,
        tau=config.tau,
        num_rows=num_rows,
    )
    return (make_cql_prior if config.algo == "cql-prior" else make_cql)(q)


def frozen_items(
    view: jitted.JitConfig, tables: jitted.Tables, key: jax.Array, data: OfflineData
) -> tuple[replay.IndexedTransition, jax.Array]:
    """(items [N] with the candidates at s and s' drawn once, coverage: the fraction of transitions whose data
    action is among the candidates at s)."""
    k_s, k_next = jax.random.split(key)
    acts, mask = jitted.candidates(view, tables, k_s, data.pid)
    n_acts, n_mask = jitted.candidates(view, tables, k_next, data.next_pid)
    items = replay.IndexedTransition(
        jitted.rows(tables, data.pid, data.action[:, None])[:, 0],
        jitted.rows(tables, data.pid, acts),
        mask,
        data.reward,
        1.0 - data.done,
        jitted.rows(tables, data.next_pid, n_acts),
        n_mask,
    )
    coverage = jnp.mean(jnp.any((acts == data.action[:, None]) & mask, axis=1))
    return items, coverage


def make_offline_train(config: OfflineJitConfig, tables: Optional[jitted.Tables] = None, store: Any = None):
    """``train(key, data, logp=None) -> metrics``: one offline run as a pure function of its key and dataset.

    Metrics, each [updates // eval_every + 1] (at updates 0, eval_every, ..., updates): ``eval_success_<mode>``
    and ``eval_return_<mode>`` for each of :data:`jitted.EVAL_MODES` (``eval_success`` = greedy), ``updates``,
    ``loss`` and ``q_mean`` (the last update before each evaluation; 0 at the first), ``coverage`` and
    ``distinct_prompts`` (prompts in the dataset)."""
    view = config.online_view()
    tables = tables if tables is not None else jitted.build_tables(view, store)
    tables = jitted.Tables(*(jnp.asarray(x) for x in tables))
    agent = make_agent(config, tables.num_rows)
    table = jitted.flat_features(tables)
    fns = jitted.env_fns(view)
    dispatches = config.eval_every // config.updates_per_dispatch

    def dispatch(buffer, agent_state, key):
        batches = replay.sample(buffer, key, config.updates_per_dispatch, config.batch_size)
        agent_state, m = agent.update(agent_state, batches, table)
        return agent_state, (m["loss"][-1], m["q_mean"][-1])

    def chunk(t, buffer, carry, _):
        agent_state, key, last = carry
        key, k_eval, k_upd = jax.random.split(key, 3)
        metrics = jitted.evaluate_all(agent, view, fns, t, table, agent_state, k_eval)
        step = lambda s, k: dispatch(buffer, s, k)
        agent_state, (loss, q_mean) = jax.lax.scan(step, agent_state, jax.random.split(k_upd, dispatches))
        metrics.update(loss=last[0], q_mean=last[1])
        return (agent_state, key, (loss[-1], q_mean[-1])), metrics

    def train(key: jax.Array, data: OfflineData, logp: Optional[jax.Array] = None) -> dict[str, jax.Array]:
        t = tables if logp is None else tables._replace(logp=logp)
        k_items, k_init, key = jax.random.split(key, 3)
        items, coverage = frozen_items(view, t, k_items, OfflineData(*(jnp.asarray(x) for x in data)))
        buffer = replay.from_items(items)
        zero = (jnp.zeros(()), jnp.zeros(()))
        carry = (agent.init(k_init, t.feat.shape[-1]), key, zero)
        evals = config.updates // config.eval_every
        (agent_state, key, last), metrics = jax.lax.scan(lambda c, x: chunk(t, buffer, c, x), carry, None, evals)
        final = jitted.evaluate_all(agent, view, fns, t, table, agent_state, key)
        final.update(loss=last[0], q_mean=last[1])
        out = {name: jnp.concatenate([metrics[name], final[name][None]]) for name in metrics}
        out["eval_success"], out["eval_return"] = out["eval_success_greedy"], out["eval_return_greedy"]
        out["updates"] = jnp.arange(evals + 1) * config.eval_every
        seen = jnp.zeros(t.mask.shape[0], bool).at[jnp.asarray(data.pid)].set(True)
        out["coverage"] = jnp.full(evals + 1, coverage)
        out["distinct_prompts"] = jnp.full(evals + 1, seen.sum())
        return out

    return train


def run_offline_sweep(
    config: OfflineJitConfig, data: OfflineData, seeds: int | Sequence[int], base_seed: int = 0, store: Any = None
) -> sweep.SweepResult:
    """Train ``config`` for every seed in one compiled call; ``data`` leaves are [N] (one dataset for all seeds)
    or [S, N] (seed i trains on row i). The result's ``steps`` are updates."""
    seeds = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    t = time.perf_counter()
    tables = jitted.build_tables(config.online_view(), store)
    table_s = time.perf_counter() - t
    train = make_offline_train(config, tables)
    keys = sweep.seed_keys(seeds, base_seed)
    per_seed = np.ndim(data.pid) == 2
    if per_seed and np.shape(data.pid)[0] != len(seeds):
        raise ValueError(f"stacked data has {np.shape(data.pid)[0]} datasets for {len(seeds)} seeds")
    fn = jax.jit(jax.vmap(train, (0, 0 if per_seed else None)))
    out, compile_s, run_s = sweep.compile_and_run(fn, keys, data)
    curves = {k: np.asarray(v)[None] for k, v in out.items()}
    steps = curves.pop("updates")[0, 0]
    p_expert = [jitted.mean_p_expert(config.env, np.asarray(tables.logp))]
    return sweep.SweepResult(config, seeds, [config.llm], p_expert, steps, curves, table_s, compile_s, run_s)


def write_offline_sweep(result: sweep.SweepResult, out_dir: Path, dataset_size: int) -> dict[str, Any]:
    """``curves.csv`` (the ``env_steps`` column holds updates) and ``summary.json`` (config, timings and the rows
    of :func:`prior_rl.run.sweep.summarize` with the dataset's size and coverage), each written atomically;
    ``summary.json`` last, so its presence marks a finished run. Returns the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sweep.atomic_write(out_dir / "curves.csv", sweep.curve_csv(result))
    rows = sweep.summarize(result)
    for r in rows:
        r.update(dataset_size=dataset_size, coverage=float(result.curves["coverage"][0, :, 0].mean()))
    summary = {
        "config": dataclasses.asdict(result.config),
        "seeds": result.seeds,
        "table_s": result.table_s,
        "compile_s": result.compile_s,
        "run_s": result.run_s,
        "updates_per_s": len(result.seeds) * result.config.updates / result.run_s,
        "rows": rows,
    }
    sweep.atomic_write(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


__all__ = [
    "OFFLINE_ALGOS",
    "OfflineData",
    "OfflineJitConfig",
    "dataset_arrays",
    "frozen_items",
    "make_agent",
    "make_offline_train",
    "run_offline_sweep",
    "write_offline_sweep",
]
