"""PPO and PPO-Prior (PPO + α·KL(π ‖ p_LLM)) on the pure-JAX environments as one compiled program (PureJaxRL).

The policy acts over every admissible action of a prompt; its features, the prior's log-probs and the admissible
masks come from the same :class:`prior_rl.run.jitted.Tables` as the value-based loop, so nothing in the loop
touches text::

    config = PPOJitConfig(env="frozen-lake", algo="ppo", features="onehot", env_steps=20_000)
    train = make_train(config)                         # train(key, logp=None) -> metrics, a pure function
    metrics = jax.jit(jax.vmap(train))(keys)           # same metric names as jitted.make_train

One iteration: ``rollout_steps`` steps of ``num_envs`` auto-resetting copies (actions sampled from π), GAE with
truncations (:func:`prior_rl.losses.gae_with_truncation`, bootstrapping from V(final observation) at the step
cap), advantages normalised once per rollout, then ``num_epochs`` × ``num_minibatches`` updates of
:func:`prior_rl.agents.make_ppo_agent`. Evaluation (greedy = argmax π, ε-greedy, Boltzmann = a sample from π)
runs inside the program on the same env (:func:`prior_rl.run.jitted.evaluate_policy`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp

from prior_rl import losses
from prior_rl.agents import PPOConfig, make_ppo_agent
from prior_rl.agents.ppo import PPOBatch, make_minibatches
from prior_rl.run import jitted

ALGOS = ("ppo", "ppo-prior")


@dataclasses.dataclass(frozen=True)
class PPOJitConfig(jitted.TableOptions):
    """``algo``: 'ppo' (α = 0, a policy from scratch) or 'ppo-prior' (``kl_coef`` α > 0, logits started at the
    prior's when ``prior_init``). ``env_steps`` and ``eval_every`` must be multiples of one rollout
    (``num_envs`` · ``rollout_steps`` samples). ``features``, ``llm``, ``prompt``, ``encoder``,
    ``prior_floor``: as :class:`prior_rl.run.jitted.JitConfig` (:class:`prior_rl.run.jitted.TableOptions`; the
    tables are shared). The PPO settings default to CleanRL's
    discrete-action PPO (4 envs × 128 steps, 4 epochs × 4 minibatches, lr 2.5e-4, clip 0.2, entropy 0.01, value
    0.5, grad norm 0.5) except that the rollout is shorter (32 steps) to update more often on small budgets."""

    env: str = "frozen-lake"
    algo: str = "ppo"
    env_steps: int = 10_240
    num_envs: int = 4
    rollout_steps: int = 32
    num_epochs: int = 4
    num_minibatches: int = 4
    learning_rate: float = 2.5e-4
    weight_decay: float = 0.0
    max_grad_norm: float = 0.5
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    vf_coef: float = 0.5
    ent_coef: float = 0.01
    kl_coef: float = 0.1
    prior_init: bool = True
    hidden: tuple[int, ...] = (64, 64)
    eval_every: int = 1024
    features: str = "onehot"  # (eval_inv_temperature is unused: PPO's Boltzmann evaluation samples π itself)

    def __post_init__(self):
        if self.algo not in ALGOS:
            raise ValueError(f"jitted PPO: algo must be one of {ALGOS}, got {self.algo!r}")
        batch = self.num_envs * self.rollout_steps
        if self.env_steps % batch or self.eval_every % batch:
            raise ValueError(
                f"jitted PPO: env_steps ({self.env_steps}) and eval_every ({self.eval_every}) must be multiples of "
                f"num_envs × rollout_steps = {batch}"
            )
        if batch % self.num_minibatches:
            raise ValueError(f"jitted PPO: num_minibatches ({self.num_minibatches}) must divide the rollout ({batch})")
        self.online_view()  # the env, features and prompt checks of the value-based config

    def online_view(self) -> jitted.JitConfig:
        """The value-based config with this run's env, prior and features: its tables, env functions and
        evaluation episodes are this loop's."""
        return jitted.JitConfig(
            env=self.env,
            algo="dqn",
            env_steps=self.eval_every,
            num_envs=self.num_envs,
            max_candidates=jitted.num_actions_of(self.env),
            eval_every=self.eval_every,
            **self.table_options(),
        )

    @property
    def kl(self) -> float:
        """α: ``kl_coef`` for PPO-Prior, 0 for PPO."""
        return self.kl_coef if self.algo == "ppo-prior" else 0.0


def make_agent(config: PPOJitConfig) -> Any:
    """The PPO agent of ``config`` (PPO: from scratch; PPO-Prior: α·KL and, when ``prior_init``, the prior's
    logits added to the policy's, whose last layer starts at zero)."""
    return make_ppo_agent(
        PPOConfig(
            hidden=tuple(config.hidden),
            learning_rate=config.learning_rate,
            weight_decay=config.weight_decay,
            max_grad_norm=config.max_grad_norm,
            gamma=config.gamma,
            gae_lambda=config.gae_lambda,
            clip_eps=config.clip_eps,
            vf_coef=config.vf_coef,
            ent_coef=config.ent_coef,
            kl_coef=config.kl,
            add_prior_logits=config.algo == "ppo-prior" and config.prior_init,
            num_epochs=config.num_epochs,
            num_minibatches=config.num_minibatches,
        )
    )


def feature_table(tables: jitted.Tables) -> jax.Array:
    """[P·A, D] float32: the tables' features, or for one-hot features the identity over the (prompt, action) rows
    (the policy network takes float features, not row ids)."""
    if tables.num_rows:
        return jnp.eye(tables.num_rows, dtype=jnp.float32)
    return jitted.flat_features(tables)


class Carry(NamedTuple):
    agent: Any
    env_state: Any
    obs: jax.Array  # [N, obs_dim]
    env_steps: jax.Array
    visited: jax.Array  # [P] bool: prompts seen in training
    key: jax.Array


class Step(NamedTuple):
    """One rollout step of every copy ([N] or [N, A]); stacked [T, N, ...] by the scan."""

    rows: jax.Array  # [N, A] int32 rows of the admissible (prompt, action) pairs
    mask: jax.Array  # [N, A] bool
    prior: jax.Array  # [N, A] log p_LLM (0 outside the mask)
    action: jax.Array
    logp: jax.Array
    value: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_value: jax.Array  # V(observation after the step, before the reset): the truncation bootstrap


def action_sets(tables: jitted.Tables, obs: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """(prompt ids [N], rows [N, A], mask [N, A], prior log-probs [N, A] with 0 outside the mask) at ``obs``."""
    pid = jitted.prompt_ids(tables, obs)
    num_actions = tables.mask.shape[1]
    rows = jitted.rows(tables, pid, jnp.broadcast_to(jnp.arange(num_actions), pid.shape + (num_actions,)))
    mask = tables.mask[pid]
    return pid, rows, mask, jnp.where(mask, tables.logp[pid], 0.0)


def _act(agent, table, tables, state, key, obs, greedy=False):
    """(action [N], log π(action) [N], V [N], prompt ids, rows, mask, prior) of the policy at ``obs``."""
    pid, rows, mask, prior = action_sets(tables, obs)
    action, logp, value = agent.act(state, key, table[rows], mask, prior, greedy=greedy)
    return action, logp, value, pid, rows, mask, prior


def _rollout_step(agent, config: PPOJitConfig, fns, tables, table, c: Carry, _) -> tuple[Carry, Step]:
    _, step, reset_where, _, _ = fns
    key, k_act, k_final = jax.random.split(c.key, 3)
    action, logp, value, pid, rows, mask, prior = _act(agent, table, tables, c.agent, k_act, c.obs)
    env_state, next_obs, reward, done, info = step(c.env_state, action)
    final_value = _act(agent, table, tables, c.agent, k_final, next_obs)[2]
    truncated = info["truncated"] & ~done
    env_state, obs = reset_where(done | truncated, env_state, next_obs)
    out = Step(rows, mask, prior, action, logp, value, reward, done, truncated, final_value)
    visited = c.visited.at[pid].set(True)
    return Carry(c.agent, env_state, obs, c.env_steps + config.num_envs, visited, key), out


def ppo_batch(config: PPOJitConfig, steps: Step, last_value: jax.Array) -> PPOBatch:
    """The flat [T·N] PPO batch of a [T, N] rollout: GAE with truncations, advantages normalised over it."""
    adv, ret = losses.gae_with_truncation(
        steps.reward,
        steps.terminated,
        steps.truncated,
        steps.value,
        steps.final_value,
        last_value,
        config.gamma,
        config.gae_lambda,
    )
    flat = lambda x: x.reshape((-1,) + x.shape[2:])
    return PPOBatch(
        act_feat=flat(steps.rows),
        act_mask=flat(steps.mask),
        action=flat(steps.action),
        logp_old=flat(steps.logp),
        value_old=flat(steps.value),
        advantage=losses.normalize_advantages(flat(adv)),
        returns=flat(ret),
        prior_logp=flat(steps.prior),
    )


def _iteration(agent, config: PPOJitConfig, fns, tables, table, c: Carry, _) -> tuple[Carry, None]:
    """One rollout and its ``num_epochs`` × ``num_minibatches`` updates."""
    step = lambda c, x: _rollout_step(agent, config, fns, tables, table, c, x)
    c, steps = jax.lax.scan(step, c, None, config.rollout_steps)
    key, k_last, k_mb = jax.random.split(c.key, 3)
    last_value = _act(agent, table, tables, c.agent, k_last, c.obs)[2]
    batches = make_minibatches(k_mb, ppo_batch(config, steps, last_value), config.num_epochs, config.num_minibatches)
    agent_state, _ = agent.update(c.agent, batches, table)
    return c._replace(agent=agent_state, key=key), None


def _policy(agent, config: PPOJitConfig, tables, table, mode: str):
    """``act(agent_state, key, obs) -> action [N]`` of evaluation ``mode``: argmax π (greedy), ε-greedy over the
    admissible actions, or a sample from π (boltzmann)."""
    epsilon = config.eval_epsilon if mode == "epsilon" else 0.0

    def act(agent_state, key, obs):
        k_act, k_uniform, k_eps = jax.random.split(key, 3)
        action, *_, mask, _ = _act(agent, table, tables, agent_state, k_act, obs, greedy=mode != "boltzmann")
        uniform = jax.random.categorical(k_uniform, jnp.where(mask, 0.0, -jnp.inf))
        return jnp.where(jax.random.uniform(k_eps, action.shape) < epsilon, uniform, action)

    return act


def evaluate_all(agent, config: PPOJitConfig, fns, tables, table, agent_state, key) -> dict[str, jax.Array]:
    """``eval_success_<mode>`` / ``eval_return_<mode>`` for every mode of :data:`prior_rl.run.jitted.EVAL_MODES`."""
    policy_for = lambda mode: _policy(agent, config, tables, table, mode)
    return jitted.evaluate_modes(policy_for, config.online_view(), fns, agent_state, key)


def make_train(config: PPOJitConfig, tables: Optional[jitted.Tables] = None, store: Any = None):
    """``train(key, logp=None) -> metrics``: the whole PPO run as one pure function, with the metrics of
    :func:`prior_rl.run.jitted.make_train` (each [env_steps // eval_every + 1]); ``logp`` [P, A] swaps the prior
    (a vmap axis over priors sweeps them in one program)."""
    view = config.online_view()
    tables = tables if tables is not None else jitted.build_tables(view, store)
    tables = jitted.Tables(*(jnp.asarray(x) for x in tables))
    agent = make_agent(config)
    table = feature_table(tables)
    fns = jitted.env_fns(view)
    iters = config.eval_every // (config.num_envs * config.rollout_steps)

    def chunk(t, c: Carry, _):
        key, k_eval = jax.random.split(c.key)
        metrics = evaluate_all(agent, config, fns, t, table, c.agent, k_eval)
        iteration = lambda c, x: _iteration(agent, config, fns, t, table, c, x)
        c, _ = jax.lax.scan(iteration, c._replace(key=key), None, iters)
        return c, dict(metrics, env_steps=c.env_steps - config.eval_every, distinct_prompts=c.visited.sum())

    def train(key: jax.Array, logp: Optional[jax.Array] = None) -> dict[str, jax.Array]:
        t = tables if logp is None else tables._replace(logp=logp)
        c = _init(agent, config, fns, t, table, key)
        c, metrics = jax.lax.scan(lambda c, x: chunk(t, c, x), c, None, config.env_steps // config.eval_every)
        last = dict(evaluate_all(agent, config, fns, t, table, c.agent, c.key), env_steps=c.env_steps)
        last["distinct_prompts"] = c.visited.sum()
        out = {name: jnp.concatenate([metrics[name], last[name][None]]) for name in metrics}
        out["eval_success"], out["eval_return"] = out["eval_success_greedy"], out["eval_return_greedy"]
        return out

    return train


def _init(agent, config: PPOJitConfig, fns, tables, table, key: jax.Array) -> Carry:
    k_init, key = jax.random.split(key)
    agent_state = agent.init(k_init, table.shape[-1], tables.mask.shape[1])
    env_state, obs = jitted.start_copies(fns, config.num_envs)
    visited = jnp.zeros(tables.mask.shape[0], bool)
    return Carry(agent_state, env_state, obs, jnp.zeros((), jnp.int32), visited, key)


__all__ = [
    "ALGOS",
    "PPOJitConfig",
    "action_sets",
    "evaluate_all",
    "feature_table",
    "make_agent",
    "make_train",
    "ppo_batch",
]
