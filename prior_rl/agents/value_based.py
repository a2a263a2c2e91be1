"""Value-based agents: DQN-Prior and DQN (online), CQL-Prior and CQL (offline) — one code path.

Q(s, a) is an MLP on the frozen feature φ(s, a) (:class:`prior_rl.networks.QNetwork`). What distinguishes the four
algorithms is only *which candidate set* the caller puts in the batch and whether the conservative term is on:

=============  =============================================  ==========  ============================
algorithm      candidates (``cand_feat``, ``next_cand_feat``)  ``cql_beta``  factory
=============  =============================================  ==========  ============================
DQN-Prior      k LLM prior samples (duplicates kept)            0           :func:`make_dqn_prior`
DQN            all admissible actions (padded + masked)         0           :func:`make_dqn`
CQL-Prior      k LLM prior samples, frozen at conversion        5.0         :func:`make_cql_prior`
CQL            all admissible actions                           5.0         :func:`make_cql`
=============  =============================================  ==========  ============================

Loss on a batch of :class:`prior_rl.replay.Transition` (docs/method.md §2.4, §2.5, §3.8):

    L = td_coef · Σ_b (Q_θ(φ(s,a)) − [r + γ·discount·max_j Q_θ̄(φ(s', a'_j))])²       (td_reduction 'sum')
      + cql_beta · mean_b [ logsumexp_i Q_θ(φ(s, a_i)) − Q_θ(φ(s, a)) ]

Action selection over the k candidates at s: greedy argmax (first occurrence on ties, like the reference),
ε-greedy (uniform over the *valid candidate slots*, so duplicates are proportionally likelier), Boltzmann
i ~ softmax(inv_temperature · Q) over the slots (so the action probability is ∝ p̂_LLM(a)·exp(inv_temperature·Q),
the self-normalised posterior of docs/method.md §2.4), or ε-then-Boltzmann (the salad script).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from prior_rl import losses, replay
from prior_rl.agents.common import (
    Agent,
    check_action_set,
    first_layer_inputs,
    make_optimizer,
    make_update_step,
    periodic_hard_update,
    polyak_update,
    scan_updates,
)
from prior_rl.networks import QNetwork
from prior_rl.replay import IndexedTransition, Transition

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class QConfig:
    """Defaults follow the reference's readme commands (docs/method.md §5.A) unless noted.

    hidden:                  MLP widths (64, 64) → 1, ReLU.
    init_scheme:             'torch' (nn.Linear default, as the reference) or 'lecun'.
    learning_rate:           5e-4 (AdamW).
    weight_decay:            0.01 (PyTorch AdamW default).
    max_grad_norm:           1.0 global-norm clipping.
    gamma:                   0.99.
    batch_size:              64 online (Overcooked), 128 offline/ALFWorld — for the train loop's sampler.
    td_reduction:            'sum' (the reference's mse reduction) or 'mean'.
    td_coef:                 1.0 online (loss = MSE); 0.5 in CQL (loss = 0.5·MSE + β·CQL).
    cql_beta:                0 online; 5.0 offline (``--cql_coef 5.0``).
    soft_backup_alpha:       None = max backup (the code); a float α gives the soft backup α·log mean exp(Q/α).
    target_update:           'soft' (Polyak τ after every step, Overcooked/CQL) or 'hard' (copy every
                             ``target_period`` steps, ALFWorld uses 20).
    tau:                     0.005.
    target_period:           20.
    reference_broadcast_bug: reproduce the reference's [B, B] target (docs/method.md §3.8); off = the paper's target.
    epsilon:                 0.2, ε of ε-greedy exploration (for the train loop's ``act`` calls).
    inv_temperature:         Boltzmann inverse temperature (the code's ``--alpha`` = 10); None = greedy after ε.
    num_rows:                0 = features are vectors; N > 0 = one-hot features of N rows, passed as [..., 1] row
                             ids (:class:`prior_rl.networks.QNetwork`; the table is then ``[N, 1]``).
    """

    hidden: tuple[int, ...] = (64, 64)
    init_scheme: str = "torch"
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    max_grad_norm: Optional[float] = 1.0
    gamma: float = 0.99
    batch_size: int = 64
    td_reduction: str = "sum"
    td_coef: float = 1.0
    cql_beta: float = 0.0
    soft_backup_alpha: Optional[float] = None
    target_update: str = "soft"
    tau: float = 0.005
    target_period: int = 20
    reference_broadcast_bug: bool = False
    epsilon: float = 0.2
    inv_temperature: Optional[float] = None
    num_rows: int = 0

    def __post_init__(self):
        if self.target_update not in ("soft", "hard"):
            raise ValueError(f"target_update must be 'soft' or 'hard', got {self.target_update!r}")
        if self.td_reduction not in ("sum", "mean"):
            raise ValueError(f"td_reduction must be 'sum' or 'mean', got {self.td_reduction!r}")
        if self.target_period < 1:
            raise ValueError("target_period must be >= 1")


class QState(NamedTuple):
    """params, target_params: QNetwork parameters; opt_state: optax state; step: [] int32 gradient steps taken."""

    params: dict
    target_params: dict
    opt_state: tuple
    step: Array


def select_action(
    key: Array,
    q: Array,
    mask: Array,
    epsilon: float | Array = 0.0,
    inv_temperature: Optional[float | Array] = None,
) -> Array:
    """Index of the chosen candidate slot.  q, mask: [..., k] -> [...] int32.

    With probability ε: uniform over valid slots; otherwise argmax (``inv_temperature=None``, first max wins) or a
    sample from softmax(inv_temperature · q) over valid slots. Duplicated candidates occupy several slots, so their
    action is proportionally more likely under both random rules.
    """
    k_eps, k_uni, k_boltz = jax.random.split(key, 3)
    batch_shape = q.shape[:-1]
    if inv_temperature is None:
        exploit = jnp.argmax(jnp.where(mask, q, losses.NEG_INF), axis=-1)
    else:
        exploit = jax.random.categorical(k_boltz, jnp.where(mask, inv_temperature * q, losses.NEG_INF), axis=-1)
    uniform = jax.random.categorical(k_uni, jnp.where(mask, 0.0, losses.NEG_INF), axis=-1)
    explore = jax.random.uniform(k_eps, batch_shape) < epsilon
    return jnp.where(explore, uniform, exploit).astype(jnp.int32)


def check_transitions(
    where: str, batch: Transition | IndexedTransition, lead: str = "B", table: Optional[Array] = None
) -> None:
    """Static (trace-time, ``jit``-safe) checks of a batch: every field has the leading axes ``lead`` ("B" for one
    minibatch, "U B" for ``update``'s stack), candidates and masks agree ([..., k, D] / [..., k]), features are float
    (for an :class:`IndexedTransition`: rows are int and ``table`` [N, D] is float). Raises AssertionError."""
    if isinstance(batch, IndexedTransition) or hasattr(batch, "obs_idx"):
        losses.check_args(
            where,
            obs_idx=(batch.obs_idx, lead, int),
            cand_idx=(batch.cand_idx, f"{lead} k", int),
            cand_mask=(batch.cand_mask, f"{lead} k"),
            reward=(batch.reward, lead),
            discount=(batch.discount, lead),
            next_idx=(batch.next_idx, f"{lead} k_next", int),
            next_mask=(batch.next_mask, f"{lead} k_next"),
            table=(table, "N D", float),
        )
    else:
        losses.check_args(
            where,
            obs_feat=(batch.obs_feat, f"{lead} D", float),
            cand_feat=(batch.cand_feat, f"{lead} k D", float),
            cand_mask=(batch.cand_mask, f"{lead} k"),
            reward=(batch.reward, lead),
            discount=(batch.discount, lead),
            next_cand_feat=(batch.next_cand_feat, f"{lead} k_next D", float),
            next_mask=(batch.next_mask, f"{lead} k_next"),
        )


def make_q_agent(config: QConfig = QConfig()) -> Agent:
    """The shared value-based agent. State: :class:`QState`; batches: :class:`prior_rl.replay.Transition`.

    init(key, feat_dim: int) -> QState
    act(state, key, cand_feat [..., k, D], cand_mask [..., k], epsilon=0.0, inv_temperature=None) -> [...] int32
        (greedy by default; pass ``epsilon=config.epsilon`` / ``inv_temperature=config.inv_temperature`` to explore)
    q_values: ``agent.network.apply(state.params, feat [..., D]) -> [...]``
    update(state, batches: Transition with leaves [U, B, ...]) -> (state, metrics[U])
    update(state, batches: IndexedTransition [U, B, ...], table [N, D]) -> same, gathering rows per step
    """
    net = QNetwork(hidden=tuple(config.hidden), init_scheme=config.init_scheme, num_rows=config.num_rows)
    feat_dim_of = (lambda params: 1) if config.num_rows else (lambda params: first_layer_inputs(params, "mlp"))
    tx = make_optimizer(config.learning_rate, config.weight_decay, config.max_grad_norm)

    def init(key: Array, feat_dim: int) -> QState:
        params = net.init(key, jnp.zeros((1, feat_dim), jnp.float32))
        # the target starts as an exact copy (the reference's soft update with τ = 1)
        return QState(params, jax.tree.map(jnp.copy, params), tx.init(params), jnp.zeros((), jnp.int32))

    @jax.jit
    def _act(params, key, cand_feat, cand_mask, epsilon, inv_temperature):
        check_action_set("act", cand_feat, cand_mask, feat_dim_of(params))
        q = net.apply(params, cand_feat)
        return select_action(key, q, cand_mask, epsilon, inv_temperature)

    def act(
        state: QState,
        key: Array,
        cand_feat: Array,
        cand_mask: Array,
        epsilon: float = 0.0,
        inv_temperature: Optional[float] = None,
    ) -> Array:
        return _act(state.params, key, cand_feat, cand_mask, epsilon, inv_temperature)

    def loss(params, state: QState, batch: Transition, num_shards: int = 1):
        check_transitions("loss", batch, "B")
        q_a = net.apply(params, batch.obs_feat)  # [B]
        q_next = net.apply(state.target_params, batch.next_cand_feat)  # [B, k]
        discount_t = config.gamma * batch.discount.astype(q_a.dtype)
        td = losses.td_loss(
            q_a,
            batch.reward.astype(q_a.dtype),
            discount_t,
            q_next,
            batch.next_mask,
            reduction=config.td_reduction,
            soft_alpha=config.soft_backup_alpha,
            reference_broadcast_bug=config.reference_broadcast_bug,
            sum_scale=q_a.shape[0] * num_shards,
        )
        total = config.td_coef * td
        metrics = {"td_loss": td, "q_mean": jnp.mean(q_a)}
        if config.cql_beta:
            q_cand = net.apply(params, batch.cand_feat)  # [B, k]
            cql = losses.cql_loss(q_cand, batch.cand_mask, q_a, 1.0)
            total = total + config.cql_beta * cql
            metrics["cql"] = cql
        return total, metrics

    def apply_gradients(state: QState, grads) -> QState:
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        step = state.step + 1
        if config.target_update == "soft":
            target = polyak_update(state.target_params, params, config.tau)
        else:
            target = periodic_hard_update(state.target_params, params, step, config.target_period)
        return QState(params, target, opt_state, step)

    update_step = make_update_step(loss, apply_gradients)
    scanned = scan_updates(update_step, replay.materialize)

    def update(state: QState, batches, table=None):
        check_transitions("update", batches, "U B", table)
        return scanned(state, batches, table)

    update = jax.jit(update)
    return Agent(config, net, init, act, loss, apply_gradients, update_step, update, replay.materialize)


def make_dqn_prior(config: Optional[QConfig] = None, **overrides) -> Agent:
    """DQN-Prior: candidates = k LLM samples at s and s'; TD loss only (Overcooked defaults: batch 64, Polyak τ)."""
    return make_q_agent(dataclasses.replace(config or QConfig(), **overrides))


def make_dqn(config: Optional[QConfig] = None, **overrides) -> Agent:
    """DQN baseline: the same agent; the caller passes *all admissible actions* (padded + masked) as candidates."""
    return make_q_agent(dataclasses.replace(config or QConfig(), **overrides))


def make_cql_prior(config: Optional[QConfig] = None, **overrides) -> Agent:
    """CQL-Prior: loss 0.5·MSE_sum + 5·mean(logsumexp over the k prior candidates − Q(s, a_D)); batch 128."""
    base = config or QConfig(batch_size=128, td_coef=0.5, cql_beta=5.0)
    return make_q_agent(dataclasses.replace(base, **overrides))


def make_cql(config: Optional[QConfig] = None, **overrides) -> Agent:
    """CQL baseline: as CQL-Prior with candidates = all admissible actions (padded + masked)."""
    base = config or QConfig(batch_size=128, td_coef=0.5, cql_beta=5.0)
    return make_q_agent(dataclasses.replace(base, **overrides))


def example_transition(feat_dim: int, k: int) -> Transition:
    """A zero :class:`Transition` with the given shapes (for ``replay.init`` and for compiling ahead of time)."""
    f = np.float32
    return Transition(
        np.zeros(feat_dim, f),
        np.zeros((k, feat_dim), f),
        np.zeros(k, bool),
        np.zeros((), f),
        np.zeros((), f),
        np.zeros((k, feat_dim), f),
        np.zeros(k, bool),
    )
