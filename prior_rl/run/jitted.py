"""The whole DQN-Prior / DQN online loop on the pure-JAX Overcooked as one compiled program (PureJaxRL style).

Per-prompt quantities are precomputed once per (env, llm, prompt, encoder) into :class:`Tables` (the exact prior's
log-probs, the admissible masks and the Q-features of every (prompt, action) pair, over all reachable prompts of
:mod:`envs.jax_prompts`), so nothing inside the loop touches text::

    tables = build_tables(config)                      # cached on disk (~/.cache/prior_rl/tables/*.npz)
    train = make_train(config, tables)                 # train(key) -> metrics, a pure function
    metrics = jax.jit(jax.vmap(train))(keys)           # {"eval_success", "eval_return", "env_steps"}: [S, num_evals]

Differences from :func:`prior_rl.run.value_loop.train_value_based`: candidates are drawn on device from the exact
prior (``jax.random.categorical`` on the log-prob rows, temperature 1 as the default prior), the evaluation
episodes run inside the program on the same env (greedy, ε-greedy and Boltzmann over the candidates), and the
replay stores int32 rows into the flattened feature table ``feat [P·A, D]`` (row = prompt id · A + action). The
controls (one-hot features, semi-MDP
discounting, synthetic priors, evaluation modes) and the statistics are described in ``docs/jitted.md``.
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

from envs import jax_frozen_lake as jfl
from envs import jax_overcooked as jo
from envs import jax_prompts
from prior_rl import replay
from prior_rl.agents import QConfig, make_dqn, make_dqn_prior
from prior_rl.prior import synthetic
from prior_rl.run.config import DEFAULT_EPISODE_STEPS

JAX_ENVS = {
    "overcooked-tomato-salad": 0,
    "overcooked-tomato-lettuce-salad": 3,
    "overcooked-tomato-lettuce-onion-salad": 6,
    "frozen-lake": -1,  # the 4x4 non-slippery lake of envs.jax_frozen_lake (not an Overcooked task)
}
FROZEN_LAKE = "frozen-lake"
CACHE_DIR = Path(os.path.expanduser("~/.cache/prior_rl/tables"))


FEATURES = ("text", "text-split", "onehot", "llm")
DISCOUNTS = ("macro", "smdp")
EVAL_MODES = ("greedy", "epsilon", "boltzmann")


@dataclasses.dataclass(frozen=True)
class TableOptions:
    """What the per-prompt tables (:func:`build_tables`) and the in-program evaluation depend on, shared by the
    online (:class:`JitConfig`), offline (:class:`prior_rl.run.jitted_offline.OfflineJitConfig`) and PPO
    (:class:`prior_rl.run.jitted_ppo.PPOJitConfig`) configs; the fields are described in :class:`JitConfig`."""

    eval_episodes: int = 10
    max_episode_steps: Optional[int] = None
    llm: str = "smollm2"
    encoder: str = "minilm"
    prompt: str = "env"
    length_normalize: bool = True
    feature_style: str = "paper"
    features: str = "text"
    eval_epsilon: float = 0.05
    eval_inv_temperature: float = 10.0
    prior_floor: float = 0.0

    def table_options(self) -> dict[str, Any]:
        """These fields by name, to build the :class:`JitConfig` whose tables and evaluation a run shares."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(TableOptions)}


@dataclasses.dataclass(frozen=True)
class JitConfig(TableOptions):
    """Defaults mirror :class:`prior_rl.run.config.TrainConfig`; ``eval_every`` must divide ``env_steps`` and be a
    multiple of ``num_envs``. Metrics come at env steps 0, eval_every, ..., env_steps.

    algo:      'dqn-prior' (k prior samples), 'dqn' (every admissible action) or 'llm' (act from the prior, no
               learning: greedy = its argmax, boltzmann = a sample from it).
    llm:       the prior's model ('smollm2', a path, ...) or ``expert-mix:P`` — the synthetic prior of
               :mod:`prior_rl.prior.synthetic` (p(expert) = P plus a uniform share), with the expert of each
               prompt from :func:`envs.jax_prompts.expert_actions`.
    features:  'text' (the encoder on the paper's feature strings), 'text-split' (the state and the action encoded
               apart and concatenated, [D_state + D_action]: the action is not drowned by a long state in one
               mean-pooled vector) or 'onehot' (the oracle control: one row per (prompt, action),
               :class:`prior_rl.networks.QNetwork` ``num_rows``) or 'llm' (the prior LLM's own final-norm hidden
               state after each candidate appended to the prompt, z-scored per dimension: no second encoder;
               the model is ``llm``, or SmolLM2 when ``llm`` is a synthetic prior).
    discount:  'macro' (γ per macro step, the paper) or 'smdp' (γ^τ, τ the primitive steps inside the macro).
    Every evaluation runs ``eval_episodes`` episodes per mode of :data:`EVAL_MODES`: greedy over the candidates,
    ε-greedy with ``eval_epsilon`` and Boltzmann with ``eval_inv_temperature``.
    prior_floor: f > 0 mixes the prior with the uniform distribution over the admissible actions,
               p' = (1 − f)·p + f/|A(s)| (:func:`floor_logp`), so that no admissible action has a probability below
               f/|A(s)| — a control for priors that put ~0 on a needed action.
    """

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
    discount: str = "macro"

    def __post_init__(self):
        task_of(self.env)
        if not 0.0 <= self.prior_floor <= 1.0:
            raise ValueError(f"jitted loop: prior_floor must be in [0, 1], got {self.prior_floor}")
        if self.algo not in ("dqn-prior", "dqn", "llm"):
            raise ValueError(f"jitted loop: algo must be 'dqn-prior', 'dqn' or 'llm', got {self.algo!r}")
        if self.features not in FEATURES or self.discount not in DISCOUNTS:
            raise ValueError(f"jitted loop: features must be one of {FEATURES} and discount one of {DISCOUNTS}")
        if self.env_steps % self.eval_every or self.eval_every % self.num_envs:
            raise ValueError("jitted loop: eval_every must divide env_steps and be a multiple of num_envs")
        if self.prompt not in ("env", "paper", "chat", "transcript-state"):
            raise ValueError(
                f"jitted loop: --prompt {self.prompt} is not a function of the observation alone (transcript prompts "
                "need the episode); use env, paper, chat or transcript-state, or the Python loop (prior-rl train)"
            )
        if self.llm.startswith(synthetic.PREFIX):
            synthetic.parse_spec(self.llm)
        if self.env == FROZEN_LAKE and self.discount == "smdp":
            raise ValueError("jitted loop: discount='smdp' needs macro actions; Frozen Lake has primitive moves only")

    @property
    def episode_steps(self) -> int:
        return self.max_episode_steps or DEFAULT_EPISODE_STEPS[self.env]


def task_of(env: str) -> int:
    """The Overcooked task id of ``env``; a ``ValueError`` listing the envs with a JAX implementation otherwise."""
    if env not in JAX_ENVS:
        raise ValueError(f"no pure-JAX implementation of {env!r}; the jitted loop supports: {', '.join(JAX_ENVS)}")
    return JAX_ENVS[env]


class Tables(NamedTuple):
    """logp [P, A] (−inf beyond the admissible count), mask [P, A] bool, feat [P, A, D] float32 (D = 1 for one-hot
    features: the row id), plus the prompt-id lookup arrays of :class:`envs.jax_prompts.PromptTable`."""

    logp: Any
    mask: Any
    feat: Any
    sorted_hashes: Any
    hash_order: Any
    obs_vectors: Any
    prompt_of_obs: Any
    salt: Any

    @property
    def num_rows(self) -> int:
        """Rows of the one-hot feature table (P·A) when ``feat`` holds row ids, else 0."""
        return int(np.prod(self.mask.shape)) if self.feat.shape[-1] == 1 else 0


def _cached(name: str, key: str, compute, cache: bool) -> dict[str, np.ndarray]:
    """``compute()``'s arrays, read from / written to ``CACHE_DIR/name-<sha of key>.npz`` when ``cache`` (atomic
    write: a temporary file renamed into place)."""
    path = CACHE_DIR / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.npz"
    if cache and path.exists():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    arrays = compute()
    if cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    return arrays


def prompt_table_of(env: str) -> jax_prompts.PromptTable:
    """The prompt table of ``env``: an Overcooked task's (:func:`envs.jax_prompts.prompt_table`) or the 4x4 lake's
    (:func:`envs.jax_frozen_lake.prompt_table`)."""
    return jfl.prompt_table("4x4") if env == FROZEN_LAKE else jax_prompts.prompt_table(task_of(env))


def num_actions_of(env: str) -> int:
    """A: the width of the per-prompt tables (the macro count of an Overcooked task, 4 moves on Frozen Lake)."""
    return 4 if env == FROZEN_LAKE else jo.make_overcooked(task_of(env)).num_actions


def experts(env: str, cache: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(expert [P] int32, agreement [P]) of :func:`envs.jax_prompts.expert_actions` (Frozen Lake: the BFS expert of
    :func:`envs.jax_frozen_lake.expert_actions`), cached on disk."""
    fn = (
        (lambda: jfl.expert_actions("4x4"))
        if env == FROZEN_LAKE
        else (lambda: jax_prompts.expert_actions(task_of(env)))
    )
    compute = lambda: dict(zip(("expert", "agreement"), fn()))
    z = _cached(f"{env}-expert", env, compute, cache)
    return z["expert"], z["agreement"]


def _llm_prior(config: JitConfig, store: Any) -> dict[str, np.ndarray]:
    from prior_rl.run.models import ModelStore

    table = prompt_table_of(config.env)
    obs = [table.text_observation(pid) for pid in range(len(table.prompts))]
    num_actions = num_actions_of(config.env)
    prior = (store or ModelStore()).prior(config.llm, 1.0, config.prompt, config.length_normalize)
    logp = np.full((len(obs), num_actions), -np.inf, np.float32)
    mask = np.zeros((len(obs), num_actions), bool)
    for pid, row in enumerate(prior.logprobs(obs)):
        logp[pid, : len(row)], mask[pid, : len(row)] = row, True
    return {"logp": logp, "mask": mask}


def admissible_mask(env: str) -> np.ndarray:
    """[P, A] bool: the admissible macros of every prompt id."""
    table = prompt_table_of(env)
    num_actions = num_actions_of(env)
    return np.arange(num_actions) < np.array([len(a) for a in table.actions])[:, None]


def expert_mix_logp(mask: np.ndarray, expert: np.ndarray, p_expert: float) -> np.ndarray:
    """[P, A] log p(a|s) = log(p_expert·[a = expert(s)] + (1 − p_expert)/|A(s)|) over the admissible set (uniform
    where a prompt has no expert), −inf elsewhere: the synthetic prior of :mod:`prior_rl.prior.synthetic`."""
    n = mask.sum(1, keepdims=True)
    has = expert >= 0
    onehot = (np.arange(mask.shape[1]) == expert[:, None]) & has[:, None]
    p = np.where(has[:, None], p_expert * onehot + (1.0 - p_expert) / n, 1.0 / n)
    return np.where(mask, np.log(np.maximum(p, 1e-30)), -np.inf).astype(np.float32)


def floor_logp(logp: np.ndarray, mask: np.ndarray, floor: float) -> np.ndarray:
    """[P, A] log((1 − floor)·p + floor/|A(s)|) over the admissible set, −inf elsewhere."""
    p = np.where(mask, np.exp(logp), 0.0)
    mixed = (1.0 - floor) * p + floor * mask / np.maximum(mask.sum(1, keepdims=True), 1)
    return np.where(mask, np.log(np.maximum(mixed, 1e-30)), -np.inf).astype(np.float32)


def mean_p_expert(env: str, logp: np.ndarray) -> float:
    """Mean over the non-terminal prompts of the prior's probability of the expert macro."""
    expert, _ = experts(env)
    n = prompt_table_of(env).num_prompts
    rows = np.arange(n)
    return float(np.exp(np.asarray(logp)[rows, np.maximum(expert[:n], 0)]).mean())


def _prior_table(config: JitConfig, store: Any, cache: bool) -> tuple[np.ndarray, np.ndarray]:
    mask = admissible_mask(config.env)
    p_expert = synthetic.parse_spec(config.llm)
    if p_expert is not None:
        return expert_mix_logp(mask, experts(config.env, cache)[0], p_expert), mask
    key = f"{config.env}|{config.llm}|{config.prompt}|{config.length_normalize}"
    z = _cached(f"{config.env}-prior-{Path(config.llm).name}", key, lambda: _llm_prior(config, store), cache)
    return z["logp"], z["mask"]


def _text_features(config: JitConfig, store: Any, mask: np.ndarray) -> dict[str, np.ndarray]:
    from prior_rl.bridge.features import candidate_texts
    from prior_rl.run.models import ModelStore

    table = prompt_table_of(config.env)
    obs = [table.text_observation(pid) for pid in range(len(table.prompts))]
    encoder = (store or ModelStore()).encoder(config.encoder)
    if config.features == "text-split":
        states = encoder.encode([f"Observation: {o.state}" for o in obs])  # [P, D]
        actions = encoder.encode([f"Action: {a}" for o in obs for a in o.actions])
        flat = np.concatenate([np.repeat(states, mask.sum(1), axis=0), actions], axis=1)
    else:
        texts = [candidate_texts(o, None, config.feature_style) for o in obs]
        flat = encoder.encode([t for ts in texts for t in ts])
    feat = np.zeros(mask.shape + (flat.shape[1],), np.float32)
    feat[mask] = flat  # row-major order of the True entries = prompt by prompt, action by action
    return {"feat": feat}


def _feature_llm(config: JitConfig) -> str:
    """The model behind features='llm': the prior's own, or SmolLM2 when the prior is synthetic."""
    return "smollm2" if config.llm.startswith(synthetic.PREFIX) else config.llm


def _llm_features(config: JitConfig, store: Any, mask: np.ndarray) -> dict[str, np.ndarray]:
    from prior_rl.run.models import ModelStore

    table = prompt_table_of(config.env)
    obs = [table.text_observation(pid) for pid in range(len(table.prompts))]
    prior = (store or ModelStore()).prior(_feature_llm(config), 1.0, config.prompt, config.length_normalize)
    flat = np.concatenate(prior.action_features(obs))  # [Σ actions, D], prompt by prompt
    flat = (flat - flat.mean(0)) / (flat.std(0) + 1e-6)  # the raw scale is set by the final norm's weights
    feat = np.zeros(mask.shape + (flat.shape[1],), np.float32)
    feat[mask] = flat
    return {"feat": feat}


def _feature_table(config: JitConfig, store: Any, mask: np.ndarray, cache: bool) -> np.ndarray:
    if config.features == "onehot":
        return np.arange(mask.size, dtype=np.float32).reshape(mask.shape + (1,))
    if config.features == "llm":
        model = _feature_llm(config)
        key = f"{config.env}|{model}|{config.prompt}|hidden"
        name = f"{config.env}-llm-{Path(model).name}"
        return _cached(name, key, lambda: _llm_features(config, store, mask), cache)["feat"]
    key = f"{config.env}|{config.encoder}|{config.feature_style}" + (
        "|split" if config.features == "text-split" else ""
    )
    name = f"{config.env}-{config.features}-{Path(config.encoder).name}"
    return _cached(name, key, lambda: _text_features(config, store, mask), cache)["feat"]


def build_tables(config: JitConfig, store: Any = None, cache: bool = True) -> Tables:
    """The :class:`Tables` of ``config``: the prior's log-probs (env, llm, prompt, scoring) and the Q-features
    (encoder and feature style, or one-hot), each read from / written to its npz cache under :data:`CACHE_DIR`
    when ``cache``."""
    logp, mask = _prior_table(config, store, cache)
    if config.prior_floor:
        logp = floor_logp(logp, mask, config.prior_floor)
    feat = _feature_table(config, store, mask, cache)
    t = prompt_table_of(config.env)
    return Tables(logp, mask, feat, t.sorted_hashes, t.hash_order, t.obs_vectors, t.prompt_of_obs, np.uint32(t.salt))


def make_agent(config: JitConfig, num_rows: int = 0) -> Any:
    """The DQN-Prior or DQN agent, configured as :func:`prior_rl.run.value_loop.make_q_agent` does (``num_rows``:
    one-hot features over that many rows, :attr:`Tables.num_rows`)."""
    q = QConfig(
        batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        gamma=config.gamma,
        tau=config.tau,
        epsilon=config.epsilon,
        num_rows=num_rows,
    )
    return (make_dqn if config.algo == "dqn" else make_dqn_prior)(q)


def prompt_ids(tables: Tables, obs: jax.Array) -> jax.Array:
    """Prompt id of each observation vector (jit/vmap-able)."""
    t = tables
    return jax_prompts.lookup(obs, t.sorted_hashes, t.hash_order, t.obs_vectors, t.prompt_of_obs, t.salt)[1]


def candidates(config: JitConfig, tables: Tables, key: jax.Array, pid: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(actions [N, K] int32, mask [N, K] bool) at prompt ids ``pid`` [N]: k prior samples (DQN-Prior) or every
    admissible action padded to ``max_candidates`` (DQN)."""
    if config.algo != "dqn":
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
    visited: jax.Array  # [P] bool: prompts seen in training (what the cached Python loop would score)
    key: jax.Array


def _epsilon(config: JitConfig, env_steps: jax.Array) -> jax.Array:
    frac = jnp.minimum(1.0, env_steps / max(config.epsilon_decay_steps, 1))
    return config.epsilon + frac * (config.epsilon_final - config.epsilon)


def env_fns(config: JitConfig):
    """(env, step, reset_where, start, start_obs), built once per :func:`make_train`: ``step`` is jitted so that
    its (long) trace is made once per batch size and reused by every evaluation mode and the training step."""
    if config.env == FROZEN_LAKE:
        env = jfl.make_frozen_lake("4x4", max_steps=config.episode_steps)

        def one_step(s, a):  # the cell index as a 1-vector: the prompt table's observation vectors
            s, obs, reward, done, info = env.step(None, s, a)  # no key: the lake is not slippery
            return s, obs[None], reward, done, info

        step = jax.jit(jax.vmap(one_step))
        start, start_obs = env.reset(None)
        start_obs = start_obs[None]
    else:
        env = jo.make_overcooked(task_of(config.env), max_steps=config.episode_steps)
        step = jax.jit(jax.vmap(lambda s, a: env.step(None, s, a)))
        start, start_obs = env.reset(None)

    def reset_where(done, state, obs):
        fresh = jax.tree.map(lambda x: jnp.broadcast_to(x, (done.shape[0],) + x.shape), start)
        pick = lambda a, b: jnp.where(done.reshape(done.shape + (1,) * (a.ndim - 1)), a, b)
        return jax.tree.map(pick, fresh, state), pick(jnp.broadcast_to(start_obs, obs.shape), obs)

    return env, step, reset_where, start, start_obs


def _policy(agent, config: JitConfig, tables: Tables, table, mode: str):
    """``act(agent_state, key, obs [N, obs_dim]) -> action [N]`` of evaluation ``mode`` (:data:`EVAL_MODES`)."""
    epsilon = config.eval_epsilon if mode == "epsilon" else 0.0

    def act(agent_state, key, obs):
        pid = prompt_ids(tables, obs)
        k_cand, k_act, k_eps = jax.random.split(key, 3)
        if config.algo == "llm":  # the prior alone: its argmax (greedy, ε-greedy) or a sample (boltzmann)
            logits = jnp.asarray(tables.logp)[pid]
            best = jax.random.categorical(k_act, logits) if mode == "boltzmann" else jnp.argmax(logits, -1)
            uniform = jax.random.categorical(k_cand, jnp.where(jnp.asarray(tables.mask)[pid], 0.0, -jnp.inf))
            return jnp.where(jax.random.uniform(k_eps, pid.shape) < epsilon, uniform, best)
        acts, mask = candidates(config, tables, k_cand, pid)
        inv_temp = config.eval_inv_temperature if mode == "boltzmann" else None
        slot = agent.act(agent_state, k_act, table[rows(tables, pid, acts)], mask, epsilon, inv_temp)
        return jnp.take_along_axis(acts, slot[:, None], 1)[:, 0]

    return act


def start_copies(fns, n: int) -> tuple[Any, jax.Array]:
    """(env state, observation [n, obs_dim]) of ``n`` copies just reset (reset is deterministic: one start)."""
    _, _, _, start, start_obs = fns
    state = jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x), (n,) + x.shape), start)
    return state, jnp.broadcast_to(jnp.asarray(start_obs), (n,) + start_obs.shape)


def evaluate_policy(act, config: JitConfig, fns, agent_state, key) -> tuple[jax.Array, jax.Array]:
    """(success rate, mean return) of ``eval_episodes`` episodes of policy ``act`` run side by side."""
    step = fns[1]
    n = config.eval_episodes
    state, obs = start_copies(fns, n)

    def body(c, key):
        state, obs, ret, success, live = c
        state, obs, reward, done, info = step(state, act(agent_state, key, obs))
        ret = ret + jnp.where(live, reward, 0.0)
        success = success | (live & info["success"])
        return (state, obs, ret, success, live & ~(done | info["truncated"])), None

    init = (state, obs, jnp.zeros(n), jnp.zeros(n, bool), jnp.ones(n, bool))
    (_, _, ret, success, _), _ = jax.lax.scan(body, init, jax.random.split(key, config.episode_steps))
    return success.mean(), ret.mean()


def evaluate_modes(policy_for, config: JitConfig, fns, agent_state, key) -> dict[str, jax.Array]:
    """``eval_success_<mode>`` and ``eval_return_<mode>`` (scalars) for every mode of :data:`EVAL_MODES`, the policy
    of each mode being ``policy_for(mode)`` (an ``act`` for :func:`evaluate_policy`)."""
    out = {}
    for mode, k in zip(EVAL_MODES, jax.random.split(key, len(EVAL_MODES))):
        success, ret = evaluate_policy(policy_for(mode), config, fns, agent_state, k)
        out[f"eval_success_{mode}"], out[f"eval_return_{mode}"] = success, ret
    return out


def evaluate_all(agent, config: JitConfig, fns, tables: Tables, table, agent_state, key) -> dict[str, jax.Array]:
    """:func:`evaluate_modes` of the policy over ``config``'s candidates, ``eval_episodes`` episodes per mode, on the
    env of ``fns`` (:func:`env_fns`)."""
    return evaluate_modes(lambda mode: _policy(agent, config, tables, table, mode), config, fns, agent_state, key)


def _discount(config: JitConfig, done: jax.Array, info: dict) -> jax.Array:
    """The stored discount (the agent multiplies it by γ): 1 − done per macro step, or γ^(τ−1)·(1 − done)."""
    live = 1.0 - done.astype(jnp.float32)
    if config.discount == "macro":
        return live
    tau = jnp.maximum(info["primitive_steps"], 1).astype(jnp.float32)
    return live * config.gamma ** (tau - 1.0)


def _env_step(agent, config, fns, tables, table, c: Carry, _) -> tuple[Carry, None]:
    """Act ε-greedily, step every copy, store the transitions, maybe update (one Python-loop iteration)."""
    _, step, reset_where, _, _ = fns
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
        _discount(config, done, info),
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
    visited = c.visited.at[pid].set(True)
    return Carry(agent_state, buffer, env_state, obs, cand, cand_mask, env_steps, visited, key), None


def _init(agent, config: JitConfig, fns, tables: Tables, key: jax.Array) -> Carry:
    k_init, k_cand, key = jax.random.split(key, 3)
    agent_state = agent.init(k_init, tables.feat.shape[-1])
    k = config.max_candidates if config.algo == "dqn" else config.k
    z, m = np.zeros(k, np.int32), np.zeros(k, bool)
    example = replay.IndexedTransition(np.int32(0), z, m, np.float32(0), np.float32(0), z, m)
    buffer = replay.init(example, config.buffer_capacity)
    env_state, obs = start_copies(fns, config.num_envs)
    cand, cand_mask = candidates(config, tables, k_cand, prompt_ids(tables, obs))
    visited = jnp.zeros(tables.mask.shape[0], bool)
    return Carry(agent_state, buffer, env_state, obs, cand, cand_mask, jnp.zeros((), jnp.int32), visited, key)


def make_train(config: JitConfig, tables: Optional[Tables] = None, store: Any = None):
    """``train(key, logp=None) -> metrics``: the whole online run as one pure function (``jax.jit(jax.vmap(train))``
    runs many seeds; a second vmap over ``logp`` [H, P, A] sweeps priors in the same program).

    Metrics, each [env_steps // eval_every + 1] (at env steps 0, eval_every, ..., env_steps): ``eval_success_<mode>``
    and ``eval_return_<mode>`` for each of :data:`EVAL_MODES` (``eval_success``/``eval_return`` = greedy),
    ``env_steps``, ``distinct_prompts`` (prompts visited in training so far). ``algo='llm'`` learns nothing: the
    same evaluation at every point."""
    tables = tables if tables is not None else build_tables(config, store)
    tables = Tables(*(jnp.asarray(x) for x in tables))
    agent = make_agent(config, tables.num_rows)
    table = flat_features(tables)
    steps_per_eval = config.eval_every // config.num_envs
    learn = config.algo != "llm"
    fns = env_fns(config)

    def chunk(t: Tables, c: Carry, _):
        key, k_eval = jax.random.split(c.key)
        metrics = evaluate_all(agent, config, fns, t, table, c.agent, k_eval)
        if learn:
            env_step = lambda c, x: _env_step(agent, config, fns, t, table, c, x)
            c, _ = jax.lax.scan(env_step, c._replace(key=key), None, steps_per_eval)
        else:
            c = c._replace(key=key, env_steps=c.env_steps + config.eval_every)
        return c, dict(metrics, env_steps=c.env_steps - config.eval_every, distinct_prompts=c.visited.sum())

    def train(key: jax.Array, logp: Optional[jax.Array] = None) -> dict[str, jax.Array]:
        t = tables if logp is None else tables._replace(logp=logp)
        c = _init(agent, config, fns, t, key)
        c, metrics = jax.lax.scan(lambda c, x: chunk(t, c, x), c, None, config.env_steps // config.eval_every)
        last = dict(evaluate_all(agent, config, fns, t, table, c.agent, c.key), env_steps=c.env_steps)
        last["distinct_prompts"] = c.visited.sum()
        out = {name: jnp.concatenate([metrics[name], last[name][None]]) for name in metrics}
        out["eval_success"], out["eval_return"] = out["eval_success_greedy"], out["eval_return_greedy"]
        return out

    return train


def updates_per_run(config: JitConfig) -> int:
    """Gradient steps one seed takes in ``train`` (the dispatch rule of ``_env_step``)."""
    if config.algo == "llm":
        return 0
    steps = np.arange(1, config.env_steps // config.num_envs + 1) * config.num_envs
    due = (steps >= config.learning_starts) & (steps % config.train_every < config.num_envs)
    return int(due.sum()) * config.updates_per_train


__all__ = [
    "DISCOUNTS",
    "TableOptions",
    "EVAL_MODES",
    "FEATURES",
    "JAX_ENVS",
    "JitConfig",
    "Tables",
    "admissible_mask",
    "build_tables",
    "candidates",
    "env_fns",
    "evaluate_all",
    "evaluate_modes",
    "evaluate_policy",
    "start_copies",
    "expert_mix_logp",
    "experts",
    "make_train",
    "mean_p_expert",
    "prompt_ids",
    "replay_update",
    "rows",
    "flat_features",
    "floor_logp",
    "make_agent",
    "num_actions_of",
    "prompt_table_of",
    "task_of",
    "updates_per_run",
]
