"""Loss functions of the value-based (DQN-Prior, CQL-Prior, DQN, CQL) and policy-based (PPO, PPO-Prior) learners.

Per-transition functions follow rlax's naming: ``q_tm1`` are Q-values at s_{t-1} (over candidates), ``q_tm1_a``
the Q-value of the action taken, ``a_tm1`` an action index, ``r_t`` the reward, ``discount_t`` the bootstrap
discount γ·(1 − terminated) (the caller multiplies γ in, so a timeout keeps ``discount_t = γ``), ``q_t`` the
*target-network* Q-values of the k prior candidates at s_t and ``mask_t`` their validity (padding is ``False``).
Duplicated candidates are *kept*: a candidate sampled twice by the LLM counts twice in every mean and logsumexp,
which weights the backup and the CQL term by the empirical prior p̂_LLM (docs/method.md §3.4).

The batched helpers (``*_loss``) take a leading batch axis [B] and reduce it. See docs/method.md §2.4–§2.5 and §3.8.
Advantages: :func:`gae_with_truncation` for [T, N] auto-reset rollouts (terminations and truncations),
:func:`generalized_advantage_estimation` for one segment.

Every public entry point checks the ranks, the agreement of shared axes and the dtype families of its arguments
with ``chex`` (:func:`check_args`); the checks are static, so they run once while tracing under ``jit`` and add no
operation to the computation.
"""

from __future__ import annotations

from typing import Any, Optional

import chex
import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

# A large finite negative stands in for log 0 on padding: -inf would turn 0 * (-inf) into NaN in
# entropies/KLs and in gradients of fully-masked rows.
NEG_INF = -1e9


# ---------------------------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------------------------
_KIND = {float: "a floating-point", int: "an integer", bool: "a bool"}


def check_args(where: str, **args: Any) -> None:
    """Static shape/dtype checks of a public entry point (``chex``; shapes only, so they also hold under ``jit``).

    Each keyword is ``name=(x, dims)`` or ``name=(x, dims, kind)``: ``dims`` names the axes, e.g. ``"B k"`` (``""``
    for a scalar); an axis name used by several arguments must have the same size in all of them; ``kind`` is
    ``float``, ``int`` or ``bool`` (dtype family). Arguments given as ``None`` are skipped. Raises AssertionError
    naming the function, the argument, its shape and the expected one. Costs nothing at run time under ``jit``
    (the checks run while tracing); ``chex.disable_asserts()`` turns them off.
    """
    sizes: dict[str, tuple[int, str]] = {}  # axis name -> (size, the argument it was first seen in)
    for name, spec in args.items():
        x, dims = spec[0], spec[1].split()
        if x is None:
            continue
        shape = tuple(jnp.shape(x))
        want = "[" + ", ".join(dims) + "]"
        chex.assert_rank(x, len(dims), custom_message=f"{where}: {name} should be {want}, got shape {shape}")
        expected = tuple(sizes.setdefault(sym, (d, name))[0] for d, sym in zip(shape, dims))
        if expected != shape:
            seen = ", ".join(f"{sym} = {sizes[sym][0]} from {sizes[sym][1]}" for sym in dims)
            chex.assert_shape(
                x, expected, custom_message=(f"{where}: {name} has shape {shape}, expected {want} with {seen}")
            )
        if len(spec) > 2:
            chex.assert_type(
                x,
                spec[2],
                custom_message=(f"{where}: {name} should have {_KIND[spec[2]]} dtype, got {jnp.result_type(x)}"),
            )


# ---------------------------------------------------------------------------------------------------------------
# masked reductions over a candidate axis
# ---------------------------------------------------------------------------------------------------------------
def masked_max(x: Array, mask: Array) -> Array:
    """max over the last axis of ``x`` restricted to ``mask``; 0 where no entry is valid.  [..., k] -> [...]"""
    mx = jnp.max(jnp.where(mask, x, NEG_INF), axis=-1)
    return jnp.where(jnp.any(mask, axis=-1), mx, 0.0)


def masked_logsumexp(x: Array, mask: Array) -> Array:
    """log Σ_{i: mask_i} exp(x_i) over the last axis; 0 where no entry is valid.  [..., k] -> [...]"""
    any_valid = jnp.any(mask, axis=-1)
    lse = jax.nn.logsumexp(jnp.where(mask, x, NEG_INF), axis=-1)
    return jnp.where(any_valid, lse, 0.0)


def masked_log_softmax(logits: Array, mask: Array) -> Array:
    """log-softmax over the valid entries of the last axis; padding gets ``NEG_INF``.  [..., n] -> [..., n]"""
    out = jax.nn.log_softmax(jnp.where(mask, logits, NEG_INF), axis=-1)
    return jnp.where(mask, out, NEG_INF)


# ---------------------------------------------------------------------------------------------------------------
# value-based: per transition
# ---------------------------------------------------------------------------------------------------------------
def prior_td_target(r_t: Array, discount_t: Array, q_t: Array, mask_t: Array) -> Array:
    """y = r_t + discount_t · max_{j: mask_t[j]} q_t[j]  (the α→0 backup over the k prior samples at s_t).

    r_t, discount_t: []; q_t, mask_t: [k].  Returns []. With no valid candidate the bootstrap is 0.
    """
    check_args(
        "prior_td_target",
        r_t=(r_t, "", float),
        discount_t=(discount_t, "", float),
        q_t=(q_t, "k", float),
        mask_t=(mask_t, "k"),
    )
    return r_t + discount_t * masked_max(q_t, mask_t)


def soft_prior_td_target(r_t: Array, discount_t: Array, q_t: Array, mask_t: Array, alpha: float) -> Array:
    """y = r_t + discount_t · α · log( (1/k_valid) Σ_{j valid} exp(q_t[j]/α) )  (soft backup, docs/method.md §2.4).

    The mean (not the sum) makes it a Monte-Carlo estimate of V*(s) = α log E_{a∼p_LLM} exp(Q/α); as α → 0 it
    tends to the max backup. Shapes as in :func:`prior_td_target`.
    """
    check_args(
        "soft_prior_td_target",
        r_t=(r_t, "", float),
        discount_t=(discount_t, "", float),
        q_t=(q_t, "k", float),
        mask_t=(mask_t, "k"),
    )
    n = jnp.sum(mask_t.astype(q_t.dtype), axis=-1)
    v = alpha * (masked_logsumexp(q_t / alpha, mask_t) - jnp.log(jnp.maximum(n, 1.0)))
    return r_t + discount_t * jnp.where(n > 0, v, 0.0)


def prior_td_error(
    q_tm1_a: Array,
    r_t: Array,
    discount_t: Array,
    q_t: Array,
    mask_t: Array,
    soft_alpha: Optional[float] = None,
) -> Array:
    """TD error y − Q(s_{t-1}, a_{t-1}) with the target held fixed (stop_gradient).  Scalars in, scalar out."""
    check_args("prior_td_error", q_tm1_a=(q_tm1_a, "", float))
    if soft_alpha is None:
        y = prior_td_target(r_t, discount_t, q_t, mask_t)
    else:
        y = soft_prior_td_target(r_t, discount_t, q_t, mask_t, soft_alpha)
    return lax.stop_gradient(y) - q_tm1_a


def masked_q_learning(q_tm1: Array, a_tm1: Array, r_t: Array, discount_t: Array, q_t: Array, mask_t: Array) -> Array:
    """rlax-style ``q_learning`` over a padded action set: TD error for Q-values q_tm1 [n] indexed by a_tm1 [].

    Used when Q is a vector over the admissible actions (plain DQN) rather than a score of one φ(s,a).
    """
    check_args("masked_q_learning", q_tm1=(q_tm1, "n", float), a_tm1=(a_tm1, "", int))
    return prior_td_error(q_tm1[a_tm1], r_t, discount_t, q_t, mask_t)


def cql_penalty(q_tm1: Array, mask_tm1: Array, q_tm1_a: Array) -> Array:
    """logsumexp_{i valid} Q(s, a_i) − Q(s, a_D): the conservative term, unscaled.

    q_tm1, mask_tm1: [k] Q-values of the candidates at s (the k prior samples for CQL-Prior, all admissible actions
    for CQL; duplicates count). q_tm1_a: [] Q of the data action (not added to the logsumexp set, as in the
    reference). Returns [].
    """
    check_args("cql_penalty", q_tm1=(q_tm1, "k", float), mask_tm1=(mask_tm1, "k"), q_tm1_a=(q_tm1_a, "", float))
    return masked_logsumexp(q_tm1, mask_tm1) - q_tm1_a


# ---------------------------------------------------------------------------------------------------------------
# value-based: batched losses
# ---------------------------------------------------------------------------------------------------------------
def _reduce(x: Array, reduction: str, sum_scale: Optional[float]) -> Array:
    if reduction == "mean":
        return jnp.mean(x)
    if reduction == "sum":
        # sum = mean · (global batch size); written as a mean so that a data-parallel pmean of per-shard losses
        # equals the full-batch loss (prior_rl.parallel passes the global size as sum_scale).
        scale = x.size if sum_scale is None else sum_scale
        return jnp.mean(x) * scale
    raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")


def reference_broadcast_targets(r_t: Array, discount_t: Array, v_t: Array) -> Array:
    """The reference code's accidental [B, B] target: target[i, j] = r_t[j] + discount_t[j] · v_t[i]
    (docs/method.md §3.8).

    r_t, discount_t, v_t: [B].  Returns [B, B]; row i is what Q_i is regressed onto.
    """
    return r_t[None, :] + discount_t[None, :] * v_t[:, None]


def td_loss(
    q_tm1_a: Array,
    r_t: Array,
    discount_t: Array,
    q_t: Array,
    mask_t: Array,
    *,
    reduction: str = "sum",
    soft_alpha: Optional[float] = None,
    reference_broadcast_bug: bool = False,
    sum_scale: Optional[float] = None,
) -> Array:
    """Squared TD loss over a batch.

    q_tm1_a: [B] online Q at the taken action; r_t, discount_t: [B]; q_t, mask_t: [B, k] target-network Q of the
    next-state candidates. ``reduction='sum'`` is the reference's ``mse_type sum``.

    ``reference_broadcast_bug=True`` reproduces the released code: Q [B,1] is regressed onto the [B, B] target of
    :func:`reference_broadcast_targets`, summed (or averaged) over all B² entries; its minimiser uses the batch-mean
    reward instead of each sample's own. ``sum_scale`` replaces the batch size in the 'sum' reduction (used by the
    data-parallel step; not supported together with the bug flag, whose loss does not split over shards).
    """
    check_args(
        "td_loss",
        q_tm1_a=(q_tm1_a, "B", float),
        r_t=(r_t, "B", float),
        discount_t=(discount_t, "B", float),
        q_t=(q_t, "B k", float),
        mask_t=(mask_t, "B k"),
    )
    if reference_broadcast_bug:
        if soft_alpha is None:
            v_t = jax.vmap(masked_max)(q_t, mask_t)
        else:
            v_t = jax.vmap(lambda q, m: soft_prior_td_target(0.0, 1.0, q, m, soft_alpha))(q_t, mask_t)
        targets = lax.stop_gradient(reference_broadcast_targets(r_t, discount_t, v_t))
        sq = (q_tm1_a[:, None] - targets) ** 2
        return jnp.sum(sq) if reduction == "sum" else jnp.mean(sq)
    err = jax.vmap(prior_td_error, in_axes=(0, 0, 0, 0, 0, None))(q_tm1_a, r_t, discount_t, q_t, mask_t, soft_alpha)
    return _reduce(err**2, reduction, sum_scale)


def cql_loss(q_tm1: Array, mask_tm1: Array, q_tm1_a: Array, beta: float = 5.0) -> Array:
    """β · mean_batch( logsumexp_i Q(s, a_i) − Q(s, a_D) ).  q_tm1, mask_tm1: [B, k]; q_tm1_a: [B]. Paper β = 5."""
    check_args("cql_loss", q_tm1=(q_tm1, "B k", float), mask_tm1=(mask_tm1, "B k"), q_tm1_a=(q_tm1_a, "B", float))
    return beta * jnp.mean(jax.vmap(cql_penalty)(q_tm1, mask_tm1, q_tm1_a))


# ---------------------------------------------------------------------------------------------------------------
# policy-based: per state
# ---------------------------------------------------------------------------------------------------------------
def ppo_clip_loss(logp_t: Array, logp_old_t: Array, adv_t: Array, epsilon: float = 0.2) -> Array:
    """−min(ρ·A, clip(ρ, 1−ε, 1+ε)·A) with ρ = exp(logπ_θ(a|s) − logπ_old(a|s)).  Scalars in, scalar out."""
    check_args(
        "ppo_clip_loss", logp_t=(logp_t, "", float), logp_old_t=(logp_old_t, "", float), adv_t=(adv_t, "", float)
    )
    ratio = jnp.exp(logp_t - logp_old_t)
    return -jnp.minimum(ratio * adv_t, jnp.clip(ratio, 1.0 - epsilon, 1.0 + epsilon) * adv_t)


def value_loss(v_t: Array, return_t: Array, v_old_t: Optional[Array] = None, clip: Optional[float] = None) -> Array:
    """(V(s) − R)², or with ``clip`` the PPO2 pessimistic max of the clipped and unclipped errors.  Scalars."""
    check_args("value_loss", v_t=(v_t, "", float), return_t=(return_t, "", float), v_old_t=(v_old_t, "", float))
    unclipped = (v_t - return_t) ** 2
    if clip is None or v_old_t is None:
        return unclipped
    v_clipped = v_old_t + jnp.clip(v_t - v_old_t, -clip, clip)
    return jnp.maximum(unclipped, (v_clipped - return_t) ** 2)


def entropy(logits: Array, mask: Array) -> Array:
    """H(π) = −Σ_a π(a) log π(a) over the valid actions, π = masked softmax(logits).  [n], [n] -> []."""
    check_args("entropy", logits=(logits, "n", float), mask=(mask, "n"))
    logp = masked_log_softmax(logits, mask)
    return -jnp.sum(jnp.where(mask, jnp.exp(logp) * logp, 0.0), axis=-1)


def kl_to_prior(logits: Array, prior_logp: Array, mask: Array) -> Array:
    """KL(π ‖ p_LLM) = Σ_{a valid} π(a) (log π(a) − log p_LLM(a)) over the admissible set.  [n] x3 -> [].

    prior_logp must be finite on every valid action (smooth an empirical prior first, see
    ``prior_rl.agents.llm_policy.empirical_log_prior``); it need not be normalised over the mask — a missing
    normaliser only shifts the KL by a constant.
    """
    check_args("kl_to_prior", logits=(logits, "n", float), prior_logp=(prior_logp, "n", float), mask=(mask, "n"))
    logp = masked_log_softmax(logits, mask)
    return jnp.sum(jnp.where(mask, jnp.exp(logp) * (logp - prior_logp), 0.0), axis=-1)


def ppo_loss(
    logits: Array,
    mask: Array,
    a_t: Array,
    logp_old_t: Array,
    adv_t: Array,
    v_t: Array,
    return_t: Array,
    prior_logp: Optional[Array] = None,
    *,
    clip_eps: float = 0.2,
    vf_coef: float = 0.5,
    ent_coef: float = 0.01,
    kl_coef: float = 0.0,
    v_old_t: Optional[Array] = None,
    vf_clip: Optional[float] = None,
) -> tuple[Array, dict[str, Array]]:
    """Batch PPO loss  L = mean[L_clip] + c_v·mean[(V−R)²] − c_e·mean[H] + α·mean[KL(π‖p_LLM)].

    logits, mask: [B, n] over the admissible set; a_t: [B] int index into it; logp_old_t, adv_t, v_t, return_t: [B];
    prior_logp: [B, n] (needed when kl_coef > 0). Returns (loss, metrics). ``kl_coef = 0`` is plain PPO.
    """
    check_args(
        "ppo_loss",
        logits=(logits, "B n", float),
        mask=(mask, "B n"),
        a_t=(a_t, "B", int),
        logp_old_t=(logp_old_t, "B", float),
        adv_t=(adv_t, "B", float),
        v_t=(v_t, "B", float),
        return_t=(return_t, "B", float),
        prior_logp=(prior_logp, "B n", float),
        v_old_t=(v_old_t, "B", float),
    )
    logp_all = masked_log_softmax(logits, mask)
    logp_t = jnp.take_along_axis(logp_all, a_t[:, None].astype(jnp.int32), axis=-1)[:, 0]
    pg = jnp.mean(jax.vmap(ppo_clip_loss, in_axes=(0, 0, 0, None))(logp_t, logp_old_t, adv_t, clip_eps))
    if v_old_t is None:
        vl = jnp.mean(jax.vmap(value_loss)(v_t, return_t))
    else:
        vl = jnp.mean(jax.vmap(value_loss, in_axes=(0, 0, 0, None))(v_t, return_t, v_old_t, vf_clip))
    ent = jnp.mean(jax.vmap(entropy)(logits, mask))
    metrics = {
        "pg_loss": pg,
        "value_loss": vl,
        "entropy": ent,
        "approx_kl_old": jnp.mean(logp_old_t - logp_t),
        "clip_frac": jnp.mean((jnp.abs(jnp.exp(logp_t - logp_old_t) - 1.0) > clip_eps).astype(jnp.float32)),
    }
    loss = pg + vf_coef * vl - ent_coef * ent
    if prior_logp is not None:
        kl = jnp.mean(jax.vmap(kl_to_prior)(logits, prior_logp, mask))
        metrics["kl_prior"] = kl
        loss = loss + kl_coef * kl
    elif kl_coef != 0.0:
        raise ValueError("kl_coef > 0 needs prior_logp")
    metrics["loss"] = loss
    return loss, metrics


# ---------------------------------------------------------------------------------------------------------------
# advantages
# ---------------------------------------------------------------------------------------------------------------
def generalized_advantage_estimation(
    r_t: Array, discount_t: Array, values: Array, lambda_: float = 0.95
) -> tuple[Array, Array]:
    """GAE over one trajectory segment.

    r_t, discount_t: [T] (discount_t = γ·(1 − terminated_t); an episode boundary inside the segment must have
    discount 0 there — a truncation should instead bootstrap, so put V(s_T) of the truncated state in ``values``);
    values: [T + 1], V(s_0..s_T). Returns (advantages [T], returns [T] = advantages + values[:-1]).
    See :func:`gae_with_truncation` for [T, N] rollouts with auto-reset (terminations *and* truncations).
    """
    check_args(
        "generalized_advantage_estimation",
        r_t=(r_t, "T", float),
        discount_t=(discount_t, "T", float),
        values=(values, "T1", float),
    )
    chex.assert_shape(
        values,
        (jnp.shape(r_t)[0] + 1,),
        custom_message=(
            f"generalized_advantage_estimation: values should be [T + 1] = [{jnp.shape(r_t)[0] + 1}], "
            f"got shape {tuple(jnp.shape(values))}"
        ),
    )
    deltas = r_t + discount_t * values[1:] - values[:-1]

    def step(carry, x):
        delta, disc = x
        carry = delta + disc * lambda_ * carry
        return carry, carry

    _, adv = lax.scan(step, jnp.zeros((), deltas.dtype), (deltas, discount_t), reverse=True)
    return adv, adv + values[:-1]


def gae_with_truncation(
    rewards: Array,
    terminated: Array,
    truncated: Array,
    values: Array,
    next_values: Array,
    last_values: Array,
    gamma: float,
    lam: float,
) -> tuple[Array, Array]:
    """GAE over a [T, N] rollout of N auto-resetting environments, with terminations *and* truncations.

    rewards [T, N]; terminated, truncated [T, N] bool (step t ended the episode); values [T, N] = V(s_t);
    next_values [T, N] = V(final observation of step t), read only where the episode was truncated (and not
    terminated) at t; last_values [N] = V(s_T) after the last step. A termination stops bootstrapping; a truncation
    bootstraps from V(final observation); both cut the λ-chain (row t + 1 belongs to a new episode). Per step,
    in reverse::

        v_next  = next_values[t] if truncated & ~terminated else 0 if terminated else V(s_{t+1})
        delta   = rewards[t] + gamma * v_next - values[t]
        A[t]    = delta + (gamma * lam) * (0 if terminated | truncated else A[t + 1])

    Returns (advantages [T, N], returns [T, N] = advantages + values).

    Bit-identical (float32) to the same loop in numpy when ``gamma`` and ``lam`` are Python floats (``gamma * lam``
    is then a double product, rounded once to float32). Under XLA a multiply feeding an add in the same kernel is
    contracted into one fused multiply-add (rounded once instead of twice), so each product here is computed one
    ``scan`` iteration *before* the add that consumes it and handed over in the carry: the scan runs T + 1 steps
    over inputs padded by one row, and no multiply ever meets its add inside one loop body.
    """
    check_args(
        "gae_with_truncation",
        rewards=(rewards, "T N", float),
        terminated=(terminated, "T N", bool),
        truncated=(truncated, "T N", bool),
        values=(values, "T N", float),
        next_values=(next_values, "T N", float),
        last_values=(last_values, "N", float),
    )
    following = jnp.concatenate([values[1:], last_values[None]], axis=0)  # V(s_{t+1})
    v_next = jnp.where(truncated & ~terminated, next_values, jnp.where(terminated, 0.0, following))
    boundary = terminated | truncated
    coef = gamma * lam
    zero = jnp.zeros_like(values[:1])
    # iteration s (s = T, ..., 0) finishes step s with the products carried in, then forms step s - 1's products;
    # s = T is a dummy step with zero inputs, so A[T] = 0 as the numpy loop's initial carry
    xs = (
        jnp.concatenate([rewards, zero]),
        jnp.concatenate([values, zero]),
        jnp.concatenate([zero, v_next]),
        jnp.concatenate([jnp.zeros_like(boundary[:1]), boundary]),
    )

    def step(carry, x):
        gamma_v_next, coef_next_adv = carry  # gamma * v_next[s], (gamma * lam) * where(boundary[s], 0, A[s + 1])
        r_s, v_s, v_next_prev, boundary_prev = x
        adv = r_s + gamma_v_next - v_s + coef_next_adv
        return (gamma * v_next_prev, coef * jnp.where(boundary_prev, 0.0, adv)), adv

    init = (jnp.zeros_like(last_values), jnp.zeros_like(last_values))
    _, adv = lax.scan(step, init, xs, reverse=True)
    adv = adv[:-1]
    return adv, adv + values


def normalize_advantages(adv: Array, eps: float = 1e-8) -> Array:
    """(A − mean) / (std + eps) over all entries. Do this once per rollout, before splitting into minibatches
    (it is a batch statistic, so doing it inside a sharded minibatch step would differ across devices)."""
    return (adv - jnp.mean(adv)) / (jnp.std(adv) + eps)
