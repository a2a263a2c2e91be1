"""Pieces shared by the learning agents: optimiser, target-network updates and the compiled multi-update step.

Every learning agent exposes a ``loss(params, state, batch, num_shards=1) -> (loss, metrics)`` over one minibatch
and an ``apply_gradients(state, grads) -> state``. :func:`make_update_step` turns the pair into one gradient step;
:func:`scan_updates` runs many of them in one compiled call over batches with a leading [num_updates] axis.
``prior_rl.parallel`` builds the data-parallel step from the same two functions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import optax
from jax import lax

PyTree = Any
LossFn = Callable[..., tuple[jax.Array, dict[str, jax.Array]]]


class Agent(NamedTuple):
    """What ``make_*`` factories return. All functions are pure; ``update`` is jitted.

    config:          the agent's frozen config
    network:         the flax module (``network.apply(params, ...)``)
    init:            (key, *example inputs) -> state
    act:             (state, key, ...) -> action(s) (see each agent)
    loss:            (params, state, batch, num_shards=1) -> (scalar loss, metrics)
    apply_gradients: (state, grads) -> state   (optimizer step, step counter, target-network update)
    update_step:     (state, batch) -> (state, metrics)   one minibatch, not jitted
    update:          (state, batches, table=None) -> (state, metrics)  jitted scan over batches[num_updates, ...];
                     metrics are stacked [num_updates]; with a feature ``table`` [N, D] the batches carry int32
                     rows into it instead of features (gathered per step inside the scan)
    prepare:         (batch, table) -> batch with features, the gather ``update`` applies per step (or None)
    """

    config: Any
    network: Any
    init: Callable[..., Any]
    act: Callable[..., Any]
    loss: LossFn
    apply_gradients: Callable[[Any, PyTree], Any]
    update_step: Callable[[Any, Any], tuple[Any, dict[str, jax.Array]]]
    update: Callable[..., tuple[Any, dict[str, jax.Array]]]
    prepare: Optional[Callable[[Any, jax.Array], Any]] = None


def first_layer_inputs(params: PyTree, module: str) -> Optional[int]:
    """Input size of the first Dense layer of MLP ``module`` in flax ``params`` (the feature size the network was
    initialised with), or None when ``params`` is not laid out like that."""
    try:
        return int(params["params"][module]["dense_0"]["kernel"].shape[0])
    except (KeyError, TypeError, IndexError, AttributeError):
        return None


def check_action_set(
    where: str,
    feat: jax.Array,
    mask: jax.Array,
    feat_dim: Optional[int] = None,
    names: tuple[str, str] = ("cand_feat", "cand_mask"),
) -> None:
    """Static (trace-time, ``jit``-safe) checks of an action set: ``feat`` [..., k, D] float, ``mask`` [..., k]
    (feat's shape without D) and, when given, D == ``feat_dim``. Raises AssertionError naming ``where``."""
    f, m = names
    shape = tuple(jnp.shape(feat))
    if len(shape) < 2:
        chex.assert_rank(feat, 2, custom_message=f"{where}: {f} should be [..., k, D], got shape {shape}")
    chex.assert_type(
        feat,
        float,
        custom_message=(f"{where}: {f} should have a floating-point dtype (features), got {jnp.result_type(feat)}"),
    )
    chex.assert_shape(
        mask,
        shape[:-1],
        custom_message=(
            f"{where}: {m} should be [..., k] = {shape[:-1]} ({f} without its feature axis), "
            f"got shape {tuple(jnp.shape(mask))}"
        ),
    )
    if feat_dim is not None:
        chex.assert_axis_dimension(
            feat,
            -1,
            feat_dim,
            custom_message=(
                f"{where}: {f} has feature size D = {shape[-1]} but the network was initialised with D = {feat_dim}"
            ),
        )


def make_optimizer(
    learning_rate: float = 5e-4, weight_decay: float = 0.01, max_grad_norm: Optional[float] = 1.0
) -> optax.GradientTransformation:
    """Global-norm gradient clipping, then AdamW with PyTorch's defaults (β = (0.9, 0.999), eps 1e-8, decoupled
    weight decay scaled by the learning rate), as in the reference (docs/method.md §3.6)."""
    adamw = optax.adamw(learning_rate, b1=0.9, b2=0.999, eps=1e-8, weight_decay=weight_decay)
    if max_grad_norm is None:
        return adamw
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), adamw)


def polyak_update(target: PyTree, online: PyTree, tau: float) -> PyTree:
    """θ̄ ← (1 − τ)·θ̄ + τ·θ  (τ = 1 copies).

    Deliberately not ``optax.incremental_update(online, target, tau)``: that computes τ·θ + (1 − τ)·θ̄, the same
    two products in the other order, and under ``jit`` XLA contracts ``a·b + c·d`` into ``fma(·, ·, ·)`` around
    whichever product comes second, so the two orders differ in the last bit on ~25% of the entries (on CPU).
    Keeping this order keeps training runs bit-identical to the recorded ones.
    """
    return jax.tree.map(lambda t, o: (1.0 - tau) * t + tau * o, target, online)


def periodic_hard_update(target: PyTree, online: PyTree, step: jax.Array, period: int) -> PyTree:
    """θ̄ ← θ when ``step`` (the number of gradient steps taken, counting this one) is a multiple of ``period``.

    ``optax.periodic_update`` copies when ``step % period == 0``; it selects whole trees (no arithmetic).
    """
    return optax.periodic_update(online, target, step, period)


def make_update_step(
    loss_fn: LossFn,
    apply_gradients: Callable[[Any, PyTree], Any],
    *,
    axis_name: Optional[str] = None,
    num_shards: int = 1,
) -> Callable[[Any, Any], tuple[Any, dict[str, jax.Array]]]:
    """One gradient step on one minibatch.

    With ``axis_name`` (inside ``jax.shard_map``) the *loss* is pmean-ed before differentiation, so the gradient
    w.r.t. the replicated parameters is the full-batch gradient (docs/llm-offline.md §8.3: pmean-ing the gradients of
    local losses instead gives n× the gradient under check_vma).
    """

    def step(state, batch):
        def objective(params):
            loss, metrics = loss_fn(params, state, batch, num_shards=num_shards)
            if axis_name is not None:
                loss = lax.pmean(loss, axis_name)
                metrics = lax.pmean(metrics, axis_name)
            return loss, metrics

        (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        metrics = dict(metrics, loss=loss, grad_norm=optax.tree.norm(grads))
        return apply_gradients(state, grads), metrics

    return step


def scan_updates(
    update_step: Callable[[Any, Any], tuple[Any, dict]],
    prepare: Optional[Callable[[Any, jax.Array], Any]] = None,
) -> Callable[..., tuple[Any, dict]]:
    """(state, batches[num_updates, ...], table=None) -> (state, metrics[num_updates]) as one ``lax.scan``.

    With a feature ``table`` [N, D], the batches hold int32 rows into it and ``prepare(batch, table)`` gathers
    each minibatch's features *inside* its scan step: on CPU that is ~15x faster than gathering all
    [num_updates, B, ...] features up front (the per-step gather stays in cache), and it never materialises them.
    """

    def update(state, batches, table=None):
        if table is None:
            return lax.scan(update_step, state, batches)
        if prepare is None:
            raise TypeError("this agent takes no feature table")
        return lax.scan(lambda s, b: update_step(s, prepare(b, table)), state, batches)

    return update
