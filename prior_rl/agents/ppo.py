"""PPO-Prior (PPO + α·KL(π ‖ p_LLM), the paper's "GFlan-Prior" analogue) and plain PPO, over admissible sets.

The policy is :class:`prior_rl.networks.PolicyValueNetwork`: π(a|s) = softmax over the admissible actions of
f(φ(s, a)) [+ log p_LLM(a|s) when ``add_prior_logits``], V(s) from mean-pooled action features (or a state feature).
The loss (docs/method.md §2.3) on a minibatch of :class:`PPOBatch` is

    L = mean[−min(ρA, clip(ρ, 1±ε)A)] + vf_coef·mean[(V − R)²] − ent_coef·mean[H(π)] + kl_coef·mean[KL(π ‖ p_LLM)]

Advantages are *not* normalised inside the loss (a batch statistic would differ between a full batch and its
shards); normalise them once per rollout with :func:`prior_rl.losses.normalize_advantages`. GAE over a [T, N]
rollout with terminations and truncations: :func:`prior_rl.losses.gae_with_truncation`. Minibatch epochs:
:func:`make_minibatches`.

GFlan's policy is itself an LLM, so it starts at the LLM's distribution; ``add_prior_logits=True``
reproduces that start for both PPO (no KL) and PPO-Prior. ``make_ppo`` defaults to a from-scratch policy (pure RL),
``make_ppo_prior`` to the prior-initialised one.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import optax

from prior_rl import losses
from prior_rl.agents.common import (
    Agent,
    check_action_set,
    first_layer_inputs,
    make_optimizer,
    make_update_step,
    scan_updates,
)
from prior_rl.networks import PolicyValueNetwork

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """The paper's PPO settings are TBD-from-PDF (docs/method.md §5.B); these are common PPO values.

    hidden (64, 64); init_scheme 'torch'; learning_rate 5e-4 (the project's AdamW rate); weight_decay 0.01;
    max_grad_norm 1.0; gamma 0.99 and gae_lambda 0.95 (for the rollout's GAE); clip_eps 0.2; vf_coef 0.5;
    ent_coef 0.01; kl_coef α: 0 = PPO, > 0 = PPO-Prior (0.1 by default in :func:`make_ppo_prior`, our choice);
    vf_clip None (no value clipping); add_prior_logits: logits = f(φ) + log p_LLM with f's last layer zero-initialised;
    use_state_feat: V from ``batch.state_feat`` instead of mean-pooled action features;
    num_epochs 4 and num_minibatches 4 (for :func:`make_minibatches`).
    """

    hidden: tuple[int, ...] = (64, 64)
    init_scheme: str = "torch"
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    max_grad_norm: Optional[float] = 1.0
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    vf_coef: float = 0.5
    ent_coef: float = 0.01
    kl_coef: float = 0.0
    vf_clip: Optional[float] = None
    add_prior_logits: bool = False
    use_state_feat: bool = False
    num_epochs: int = 4
    num_minibatches: int = 4


class PPOState(NamedTuple):
    """params: PolicyValueNetwork parameters; opt_state: optax state; step: [] int32 gradient steps taken."""

    params: dict
    opt_state: tuple
    step: Array


class PPOBatch(NamedTuple):
    """One minibatch (leading [B]; ``update`` takes [U, B, ...]).

    act_feat [B, n, D] φ(s, a) of the admissible actions; act_mask [B, n] bool; action [B] int32 index into them;
    logp_old [B] log π_old(action|s); value_old [B] V_old(s); advantage [B]; returns [B] (GAE targets);
    prior_logp [B, n] log p_LLM over the admissible set (finite on valid actions; needed when kl_coef > 0 or
    add_prior_logits); state_feat [B, Ds] (when use_state_feat).
    """

    act_feat: Array
    act_mask: Array
    action: Array
    logp_old: Array
    value_old: Array
    advantage: Array
    returns: Array
    prior_logp: Optional[Array] = None
    state_feat: Optional[Array] = None


def gather_features(batch: PPOBatch, table: Array) -> PPOBatch:
    """``act_feat`` given as int32 rows [..., n] into ``table`` [N, D] -> features [..., n, D]."""
    return batch._replace(act_feat=jnp.take(table, batch.act_feat, axis=0))


def check_ppo_batch(where: str, batch: PPOBatch, lead: str = "B", table: Optional[Array] = None) -> None:
    """Static (trace-time, ``jit``-safe) checks of a batch: every field has the leading axes ``lead`` ("B" for one
    minibatch, "U B" for ``update``'s stack), the action-set fields agree ([..., n, D] / [..., n]), features and
    per-sample scalars are float, ``action`` is int. With ``table`` [N, D], ``act_feat`` holds int rows [..., n]."""
    feat = (batch.act_feat, f"{lead} n", int) if table is not None else (batch.act_feat, f"{lead} n D", float)
    losses.check_args(
        where,
        act_feat=feat,
        act_mask=(batch.act_mask, f"{lead} n"),
        action=(batch.action, lead, int),
        logp_old=(batch.logp_old, lead, float),
        value_old=(batch.value_old, lead, float),
        advantage=(batch.advantage, lead, float),
        returns=(batch.returns, lead, float),
        prior_logp=(batch.prior_logp, f"{lead} n", float),
        state_feat=(batch.state_feat, f"{lead} Ds", float),
        table=(table, "N D", float),
    )


def make_ppo_agent(config: PPOConfig = PPOConfig()) -> Agent:
    """init(key, feat_dim: int, num_actions: int, state_dim: int | None = None) -> PPOState
    act(state, key, act_feat [..., n, D], act_mask [..., n], prior_logp=None, state_feat=None, greedy=False)
        -> (action [...] int32, logp [...], value [...])
    update(state, batches: PPOBatch with leaves [U, B, ...]) -> (state, metrics[U])
    update(state, batches with act_feat = int32 rows [U, B, n], table [N, D]) -> same, gathered per step
    """
    net = PolicyValueNetwork(
        hidden=tuple(config.hidden), add_prior_logits=config.add_prior_logits, init_scheme=config.init_scheme
    )
    tx = make_optimizer(config.learning_rate, config.weight_decay, config.max_grad_norm)
    needs_prior = config.add_prior_logits or config.kl_coef > 0

    def init(key: Array, feat_dim: int, num_actions: int, state_dim: Optional[int] = None) -> PPOState:
        feat = jnp.zeros((1, num_actions, feat_dim), jnp.float32)
        mask = jnp.ones((1, num_actions), bool)
        prior = jnp.zeros((1, num_actions), jnp.float32) if needs_prior else None
        sfeat = None
        if config.use_state_feat:
            if state_dim is None:
                raise ValueError("use_state_feat=True needs state_dim")
            sfeat = jnp.zeros((1, state_dim), jnp.float32)
        params = net.init(key, feat, mask, prior, sfeat)
        return PPOState(params, tx.init(params), jnp.zeros((), jnp.int32))

    @jax.jit
    def _act(params, key, act_feat, act_mask, prior_logp, state_feat, greedy):
        check_action_set("act", act_feat, act_mask, first_layer_inputs(params, "score"), ("act_feat", "act_mask"))
        if prior_logp is not None:
            chex.assert_type(
                prior_logp,
                float,
                custom_message=(
                    f"act: prior_logp should have a floating-point dtype, got {jnp.result_type(prior_logp)}"
                ),
            )
            chex.assert_shape(
                prior_logp,
                tuple(act_mask.shape),
                custom_message=(
                    f"act: prior_logp should have act_mask's shape [..., n] = {tuple(act_mask.shape)}, "
                    f"got {tuple(prior_logp.shape)}"
                ),
            )
        if state_feat is not None:
            chex.assert_type(
                state_feat,
                float,
                custom_message=(
                    f"act: state_feat should have a floating-point dtype, got {jnp.result_type(state_feat)}"
                ),
            )
            chex.assert_shape(
                state_feat,
                tuple(act_feat.shape[:-2]) + (first_layer_inputs(params, "value"),),
                custom_message=(
                    f"act: state_feat should be [..., Ds] with the action set's batch "
                    f"shape {tuple(act_feat.shape[:-2])}, got {tuple(state_feat.shape)}"
                ),
            )
        logits, value = net.apply(params, act_feat, act_mask, prior_logp, state_feat)
        logp_all = losses.masked_log_softmax(logits, act_mask)
        sampled = jax.random.categorical(key, logits, axis=-1)
        action = jnp.where(greedy, jnp.argmax(logits, axis=-1), sampled).astype(jnp.int32)
        logp = jnp.take_along_axis(logp_all, action[..., None], axis=-1)[..., 0]
        return action, logp, value

    def act(
        state: PPOState,
        key: Array,
        act_feat: Array,
        act_mask: Array,
        prior_logp: Optional[Array] = None,
        state_feat: Optional[Array] = None,
        greedy: bool = False,
    ) -> tuple[Array, Array, Array]:
        if needs_prior and prior_logp is None:
            raise ValueError("this PPO agent uses the prior (kl_coef > 0 or add_prior_logits): pass prior_logp")
        if not needs_prior:
            prior_logp = None
        return _act(state.params, key, act_feat, act_mask, prior_logp, state_feat, greedy)

    def loss(params, state: PPOState, batch: PPOBatch, num_shards: int = 1):
        del state, num_shards  # every term is a batch mean: pmean over equal shards gives the full-batch loss
        check_ppo_batch("loss", batch, "B")
        logits, value = net.apply(
            params,
            batch.act_feat,
            batch.act_mask,
            batch.prior_logp if config.add_prior_logits else None,
            batch.state_feat if config.use_state_feat else None,
        )
        return losses.ppo_loss(
            logits,
            batch.act_mask,
            batch.action,
            batch.logp_old,
            batch.advantage,
            value,
            batch.returns,
            batch.prior_logp if config.kl_coef > 0 else None,
            clip_eps=config.clip_eps,
            vf_coef=config.vf_coef,
            ent_coef=config.ent_coef,
            kl_coef=config.kl_coef,
            v_old_t=batch.value_old if config.vf_clip is not None else None,
            vf_clip=config.vf_clip,
        )

    def apply_gradients(state: PPOState, grads) -> PPOState:
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return PPOState(params, opt_state, state.step + 1)

    update_step = make_update_step(loss, apply_gradients)
    scanned = scan_updates(update_step, gather_features)

    def update(state: PPOState, batches: PPOBatch, table=None):
        check_ppo_batch("update", batches, "U B", table)
        return scanned(state, batches, table)

    update = jax.jit(update)
    return Agent(config, net, init, act, loss, apply_gradients, update_step, update, gather_features)


def make_ppo(config: Optional[PPOConfig] = None, **overrides) -> Agent:
    """Plain PPO (kl_coef = 0). With ``add_prior_logits=True`` it is the GFlan analogue (starts at the prior)."""
    return make_ppo_agent(dataclasses.replace(config or PPOConfig(), **overrides))


def make_ppo_prior(config: Optional[PPOConfig] = None, **overrides) -> Agent:
    """PPO-Prior: PPO + kl_coef·KL(π ‖ p_LLM) (default α = 0.1), prior-initialised logits."""
    base = config or PPOConfig(kl_coef=0.1, add_prior_logits=True)
    return make_ppo_agent(dataclasses.replace(base, **overrides))


def make_minibatches(key: Array, rollout: PPOBatch, num_epochs: int, num_minibatches: int) -> PPOBatch:
    """Shuffle a flat rollout (leaves [N, ...]) once per epoch and split it: leaves [E·M, N // M, ...].

    N must be divisible by ``num_minibatches``; the result feeds ``agent.update`` directly.
    """
    n = jax.tree.leaves(rollout)[0].shape[0]
    if n % num_minibatches:
        raise ValueError(f"rollout size {n} is not divisible by num_minibatches={num_minibatches}")
    perms = jax.vmap(lambda k: jax.random.permutation(k, n))(jax.random.split(key, num_epochs))  # [E, N]
    idx = perms.reshape(num_epochs * num_minibatches, n // num_minibatches)
    return jax.tree.map(lambda x: jnp.take(x, idx, axis=0), rollout)
