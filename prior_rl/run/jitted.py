"""The whole DQN-Prior / DQN online loop on the pure-JAX Overcooked as one compiled program (PureJaxRL style).

Per-prompt quantities are precomputed once per (env, llm, prompt, encoder) into :class:`Tables` (the exact prior's
log-probs, the admissible masks and the Q-features of every (prompt, action) pair, over all reachable prompts of
:mod:`envs.jax_prompts`), so nothing inside the loop touches text::

    tables = build_tables(config)                      # cached on disk (~/.cache/prior_rl/tables/*.npz)
    train = make_train(config, tables)                 # train(key) -> metrics, a pure function
    metrics = jax.jit(jax.vmap(train))(keys)           # {"eval_success", "eval_return", "env_steps"}: [S, num_evals]

Differences from :func:`prior_rl.run.value_loop.train_value_based`: candidates are drawn on device from the exact
prior (``jax.random.categorical`` on the log-prob rows, temperature 1 as the default prior), the evaluation episodes
run inside the program on the same env (greedy over candidates), and the replay stores int32 rows into the flattened
feature table ``feat [P·A, D]`` (row = prompt id · A + action).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from envs import jax_overcooked as jo
from envs import jax_prompts
from prior_rl import replay
from prior_rl.agents import QConfig, make_dqn, make_dqn_prior
from prior_rl.run.config import DEFAULT_EPISODE_STEPS

JAX_ENVS = {
    "overcooked-tomato-salad": 0,
    "overcooked-tomato-lettuce-salad": 3,
    "overcooked-tomato-lettuce-onion-salad": 6,
}
CACHE_DIR = Path(os.path.expanduser("~/.cache/prior_rl/tables"))


@dataclasses.dataclass(frozen=True)
class JitConfig:
    """Defaults mirror :class:`prior_rl.run.config.TrainConfig`; ``eval_every`` must divide ``env_steps`` and be a
    multiple of ``num_envs``. Metrics come at env steps 0, eval_every, ..., env_steps."""

    env: str = "overcooked-tomato-salad"
    algo: str = "dqn-prior"
    env_steps: int = 3000
    num_envs: int = 4
    k: int = 5
    max_candidates: int = 8
    batch_size: int = 64
    buffer_capacity: int = 4000
    learning_starts: int = 100
    train_every: int = 20
    updates_per_train: int = 8
    epsilon: float = 0.2
    epsilon_final: float = 0.05
    epsilon_decay_steps: int = 1000
    learning_rate: float = 5e-4
    gamma: float = 0.99
    tau: float = 0.005
    eval_every: int = 500
    eval_episodes: int = 10
    max_episode_steps: Optional[int] = None
    llm: str = "smollm2"
    encoder: str = "minilm"
    prompt: str = "env"
    length_normalize: bool = True
    feature_style: str = "paper"

    def __post_init__(self):
        task_of(self.env)
        if self.algo not in ("dqn-prior", "dqn"):
            raise ValueError(f"jitted loop: algo must be 'dqn-prior' or 'dqn', got {self.algo!r}")
        if self.env_steps % self.eval_every or self.eval_every % self.num_envs:
            raise ValueError("jitted loop: eval_every must divide env_steps and be a multiple of num_envs")

    @property
    def episode_steps(self) -> int:
        return self.max_episode_steps or DEFAULT_EPISODE_STEPS[self.env]


def task_of(env: str) -> int:
    """The Overcooked task id of ``env``; a ``ValueError`` listing the envs with a JAX implementation otherwise."""
    if env not in JAX_ENVS:
        raise ValueError(f"no pure-JAX implementation of {env!r}; the jitted loop supports: {', '.join(JAX_ENVS)}")
    return JAX_ENVS[env]


class Tables(NamedTuple):
    """logp [P, A] (−inf beyond the admissible count), mask [P, A] bool, feat [P, A, D] float32, plus the prompt-id
    lookup arrays of :class:`envs.jax_prompts.PromptTable`."""

    logp: Any
    mask: Any
    feat: Any
    sorted_hashes: Any
    hash_order: Any
    obs_vectors: Any
    prompt_of_obs: Any
    salt: Any


def _cache_path(config: JitConfig) -> Path:
    key = f"{config.env}|{config.llm}|{config.prompt}|{config.length_normalize}|{config.encoder}|{config.feature_style}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return CACHE_DIR / f"{config.env}-{config.llm}-{config.prompt}-{config.encoder}-{digest}.npz"


def _compute_tables(config: JitConfig, store: Any) -> dict[str, np.ndarray]:
    from prior_rl.bridge.features import candidate_texts
    from prior_rl.run.models import ModelStore

    store = store or ModelStore()
    table = jax_prompts.prompt_table(task_of(config.env))
    obs = [table.text_observation(pid) for pid in range(len(table.prompts))]
    num_actions = jo.make_overcooked(table.task).num_actions
    prior = store.prior(config.llm, 1.0, config.prompt, config.length_normalize)
    logp = np.full((len(obs), num_actions), -np.inf, np.float32)
    mask = np.zeros((len(obs), num_actions), bool)
    for pid, row in enumerate(prior.logprobs(obs)):
        logp[pid, : len(row)], mask[pid, : len(row)] = row, True
    encoder = store.encoder(config.encoder)
    texts = [candidate_texts(o, None, config.feature_style) for o in obs]
    flat = encoder.encode([t for ts in texts for t in ts])
    feat = np.zeros((len(obs), num_actions, flat.shape[1]), np.float32)
    feat[mask] = flat  # row-major order of the True entries = prompt by prompt, action by action
    return {"logp": logp, "mask": mask, "feat": feat}


def build_tables(config: JitConfig, store: Any = None, cache: bool = True) -> Tables:
    """The :class:`Tables` of ``config`` (env, llm, prompt, encoder, feature style), read from / written to the
    npz cache when ``cache`` (atomic write: a temporary file renamed into place)."""
    path = _cache_path(config)
    if cache and path.exists():
        with np.load(path) as z:
            arrays = {k: z[k] for k in ("logp", "mask", "feat")}
    else:
        arrays = _compute_tables(config, store)
        if cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
    t = jax_prompts.prompt_table(task_of(config.env))
    return Tables(
        arrays["logp"],
        arrays["mask"],
        arrays["feat"],
        t.sorted_hashes,
        t.hash_order,
        t.obs_vectors,
        t.prompt_of_obs,
        np.uint32(t.salt),
    )


def make_agent(config: JitConfig) -> Any:
    """The DQN-Prior or DQN agent, configured as :func:`prior_rl.run.value_loop.make_q_agent` does."""
    q = QConfig(
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        gamma=config.gamma,
        tau=config.tau,
        epsilon=config.epsilon,
    )
    return (make_dqn_prior if config.algo == "dqn-prior" else make_dqn)(q)


def prompt_ids(tables: Tables, obs: jax.Array) -> jax.Array:
    """Prompt id of each observation vector (jit/vmap-able)."""
    t = tables
    return jax_prompts._lookup(obs, t.sorted_hashes, t.hash_order, t.obs_vectors, t.prompt_of_obs, t.salt)[1]


def candidates(config: JitConfig, tables: Tables, key: jax.Array, pid: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(actions [N, K] int32, mask [N, K] bool) at prompt ids ``pid`` [N]: k prior samples (DQN-Prior) or every
    admissible action padded to ``max_candidates`` (DQN)."""
    if config.algo == "dqn-prior":
        logits = jnp.asarray(tables.logp)[pid]  # [N, A]
        acts = jax.random.categorical(key, logits[:, None, :], axis=-1, shape=(pid.shape[0], config.k))
        return acts.astype(jnp.int32), jnp.ones(acts.shape, bool)
    num_actions = tables.mask.shape[1]
    slots = jnp.arange(config.max_candidates)
    acts = jnp.broadcast_to(jnp.minimum(slots, num_actions - 1), (pid.shape[0], config.max_candidates))
    mask = jnp.pad(jnp.asarray(tables.mask), ((0, 0), (0, max(config.max_candidates - num_actions, 0))))
    return acts.astype(jnp.int32), mask[pid][:, : config.max_candidates]


def rows(tables: Tables, pid: jax.Array, acts: jax.Array) -> jax.Array:
    """Rows of (prompt, action) pairs into the flattened feature table [P·A, D]."""
    return pid[..., None] * tables.mask.shape[1] + acts


def flat_features(tables: Tables) -> jax.Array:
    return jnp.asarray(tables.feat).reshape(-1, tables.feat.shape[-1])


def replay_update(agent: Any, config: JitConfig, agent_state, buffer, table, key):
    """One train dispatch: sample [U, B] rows and run ``agent.update`` (what the Python loop's update does)."""
    batches = replay.sample(buffer, key, config.updates_per_train, config.batch_size)
    return agent.update(agent_state, batches, table)


class Carry(NamedTuple):
    agent: Any
    buffer: Any
    env_state: Any
    obs: jax.Array  # [N, obs_dim]
    cand: jax.Array  # [N, K] candidate actions to act on
    cand_mask: jax.Array
    env_steps: jax.Array
    key: jax.Array


def _epsilon(config: JitConfig, env_steps: jax.Array) -> jax.Array:
    frac = jnp.minimum(1.0, env_steps / max(config.epsilon_decay_steps, 1))
    return config.epsilon + frac * (config.epsilon_final - config.epsilon)


def _env_fns(config: JitConfig):
    env = jo.make_overcooked(task_of(config.env), max_steps=config.episode_steps)
    step = jax.vmap(lambda s, a: env.step(None, s, a))
    start, start_obs = env.reset(None)

    def reset_where(done, state, obs):
        fresh = jax.tree.map(lambda x: jnp.broadcast_to(x, (done.shape[0],) + x.shape), start)
        pick = lambda a, b: jnp.where(done.reshape(done.shape + (1,) * (a.ndim - 1)), a, b)
        return jax.tree.map(pick, fresh, state), pick(jnp.broadcast_to(start_obs, obs.shape), obs)

    return env, step, reset_where, start, start_obs


def _greedy(agent, config, tables, table, params_state, key, obs):
    pid = prompt_ids(tables, obs)
    k_cand, k_act = jax.random.split(key)
    acts, mask = candidates(config, tables, k_cand, pid)
    slot = agent.act(params_state, k_act, table[rows(tables, pid, acts)], mask)
    return jnp.take_along_axis(acts, slot[:, None], 1)[:, 0]


def _evaluate(agent, config, tables, agent_state, key) -> tuple[jax.Array, jax.Array]:
    """(success rate, mean return) of ``eval_episodes`` greedy episodes run side by side."""
    _, step, _, start, _ = _env_fns(config)
    n, table = config.eval_episodes, flat_features(tables)
    state = jax.tree.map(lambda x: jnp.broadcast_to(x, (n,) + x.shape), start)
    obs = jax.vmap(jo.observation)(state)

    def body(c, key):
        state, obs, ret, success, live = c
        action = _greedy(agent, config, tables, table, agent_state, key, obs)
        state, obs, reward, done, info = step(state, action)
        ret = ret + jnp.where(live, reward, 0.0)
        success = success | (live & info["success"])
        return (state, obs, ret, success, live & ~(done | info["truncated"])), None

    init = (state, obs, jnp.zeros(n), jnp.zeros(n, bool), jnp.ones(n, bool))
    (_, _, ret, success, _), _ = jax.lax.scan(body, init, jax.random.split(key, config.episode_steps))
    return success.mean(), ret.mean()


def _env_step(agent, config, tables, table, c: Carry, _) -> tuple[Carry, None]:
    """Act ε-greedily, step every copy, store the transitions, maybe update (one Python-loop iteration)."""
    _, step, reset_where, _, _ = _env_fns(config)
    key, k_act, k_next, k_fresh, k_upd = jax.random.split(c.key, 5)
    pid = prompt_ids(tables, c.obs)
    cand_rows = rows(tables, pid, c.cand)
    slot = agent.act(c.agent, k_act, table[cand_rows], c.cand_mask, _epsilon(config, c.env_steps))
    action = jnp.take_along_axis(c.cand, slot[:, None], 1)[:, 0]
    env_state, next_obs, reward, done, info = step(c.env_state, action)
    next_pid = prompt_ids(tables, next_obs)
    target, target_mask = candidates(config, tables, k_next, next_pid)
    item = replay.IndexedTransition(
        jnp.take_along_axis(cand_rows, slot[:, None], 1)[:, 0],
        cand_rows,
        c.cand_mask,
        reward,
        1.0 - done.astype(jnp.float32),
        rows(tables, next_pid, target),
        target_mask,
    )
    buffer = replay.add_batch(c.buffer, item)
    over = done | info["truncated"]
    env_state, obs = reset_where(over, env_state, next_obs)
    fresh, fresh_mask = candidates(config, tables, k_fresh, prompt_ids(tables, obs))
    cand = jnp.where(over[:, None], fresh, target)
    cand_mask = jnp.where(over[:, None], fresh_mask, target_mask)
    env_steps = c.env_steps + config.num_envs
    due = (env_steps >= config.learning_starts) & (env_steps % config.train_every < config.num_envs)
    agent_state = jax.lax.cond(
        due,
        lambda s: replay_update(agent, config, s, buffer, table, k_upd)[0],
        lambda s: s,
        c.agent,
    )
    return Carry(agent_state, buffer, env_state, obs, cand, cand_mask, env_steps, key), None


def _init(agent, config: JitConfig, tables: Tables, key: jax.Array) -> Carry:
    _, _, _, start, start_obs = _env_fns(config)
    k_init, k_cand, key = jax.random.split(key, 3)
    agent_state = agent.init(k_init, tables.feat.shape[-1])
    k = config.k if config.algo == "dqn-prior" else config.max_candidates
    z, m = np.zeros(k, np.int32), np.zeros(k, bool)
    example = replay.IndexedTransition(np.int32(0), z, m, np.float32(0), np.float32(0), z, m)
    buffer = replay.init(example, config.buffer_capacity)
    n = config.num_envs
    env_state = jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x), (n,) + x.shape), start)
    obs = jnp.broadcast_to(jnp.asarray(start_obs), (n,) + start_obs.shape)
    cand, cand_mask = candidates(config, tables, k_cand, prompt_ids(tables, obs))
    return Carry(agent_state, buffer, env_state, obs, cand, cand_mask, jnp.zeros((), jnp.int32), key)


def make_train(config: JitConfig, tables: Optional[Tables] = None, store: Any = None):
    """``train(key) -> {"eval_success", "eval_return", "env_steps"}`` (each [env_steps // eval_every + 1]): the
    whole online run as one pure function (``jax.jit(jax.vmap(train))(keys)`` runs many seeds)."""
    tables = tables if tables is not None else build_tables(config, store)
    tables = Tables(*(jnp.asarray(x) for x in tables))
    agent = make_agent(config)
    table = flat_features(tables)
    steps_per_eval = config.eval_every // config.num_envs
    env_step = lambda c, x: _env_step(agent, config, tables, table, c, x)

    def chunk(c: Carry, _):
        key, k_eval = jax.random.split(c.key)
        success, ret = _evaluate(agent, config, tables, c.agent, k_eval)
        c, _ = jax.lax.scan(env_step, c._replace(key=key), None, steps_per_eval)
        return c, (success, ret, c.env_steps - config.eval_every)

    def train(key: jax.Array) -> dict[str, jax.Array]:
        c = _init(agent, config, tables, key)
        c, (success, ret, steps) = jax.lax.scan(chunk, c, None, config.env_steps // config.eval_every)
        final_success, final_ret = _evaluate(agent, config, tables, c.agent, c.key)
        cat = lambda a, b: jnp.concatenate([a, b[None]])
        return {
            "eval_success": cat(success, final_success),
            "eval_return": cat(ret, final_ret),
            "env_steps": cat(steps, c.env_steps),
        }

    return train


__all__ = ["JAX_ENVS", "JitConfig", "Tables", "build_tables", "make_train", "replay_update", "task_of"]
