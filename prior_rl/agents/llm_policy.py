"""The pure-LLM baseline: act from the prior alone, greedily or by sampling (docs/method.md §2.6), no learning.

The prior reaches us either as log-probabilities over the admissible set (an LLM scoring every action) or as k
sampled candidates mapped to admissible indices; :func:`empirical_log_prior` turns the latter into the former
(the smoothed p̂_LLM that PPO-Prior's KL needs to stay finite).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from prior_rl import losses
from prior_rl.agents.common import Agent

Array = jax.Array


def empirical_log_prior(cand_idx: Array, cand_mask: Array, act_mask: Array, smoothing: float = 1e-3) -> Array:
    """log p̂(a|s) = log((count(a) + ε) / Σ_valid (count + ε)) over the admissible actions.

    cand_idx [..., k] int: admissible index of each LLM sample; cand_mask [..., k]; act_mask [..., n].
    Returns [..., n] with padding = NEG_INF. ε > 0 keeps every admissible action possible (finite KL).
    """
    n = act_mask.shape[-1]
    counts = jnp.sum(jax.nn.one_hot(cand_idx, n) * cand_mask[..., None], axis=-2)  # [..., n]
    w = jnp.where(act_mask, counts + smoothing, 0.0)
    return jnp.where(act_mask, jnp.log(w) - jnp.log(jnp.sum(w, axis=-1, keepdims=True)), losses.NEG_INF)


@dataclasses.dataclass(frozen=True)
class LLMPolicyConfig:
    """greedy: act by argmax of the prior (majority vote for an empirical prior; first index on ties);
    otherwise sample from it."""

    greedy: bool = True


class LLMPolicyState(NamedTuple):
    """No parameters; ``step`` counts ``update`` calls so the train loop can treat every agent alike."""

    step: Array


def make_llm_policy(config: LLMPolicyConfig = LLMPolicyConfig()) -> Agent:
    """init(key=None) -> LLMPolicyState
    act(state, key, prior_logp [..., n], act_mask [..., n], greedy=config.greedy) -> [...] int32
    update(state, batches) -> (state with step + num_updates, {})   (the prior is fixed: nothing to learn)
    """

    def init(key: Array | None = None) -> LLMPolicyState:
        del key
        return LLMPolicyState(jnp.zeros((), jnp.int32))

    @jax.jit
    def _act(key, prior_logp, act_mask, greedy):
        logits = jnp.where(act_mask, prior_logp, losses.NEG_INF)
        return jnp.where(greedy, jnp.argmax(logits, axis=-1), jax.random.categorical(key, logits, axis=-1)).astype(
            jnp.int32
        )

    def act(state: LLMPolicyState, key: Array, prior_logp: Array, act_mask: Array, greedy: bool | None = None):
        del state
        return _act(key, prior_logp, act_mask, config.greedy if greedy is None else greedy)

    def loss(params, state, batch, num_shards: int = 1):
        raise TypeError("the pure-LLM policy has no parameters and no loss")

    def apply_gradients(state, grads):
        raise TypeError("the pure-LLM policy has no parameters")

    def update_step(state: LLMPolicyState, batch):
        return LLMPolicyState(state.step + 1), {}

    def update(state: LLMPolicyState, batches, table=None):
        u = jax.tree.leaves(batches)[0].shape[0] if jax.tree.leaves(batches) else 0
        return LLMPolicyState(state.step + u), {}

    return Agent(config, None, init, act, loss, apply_gradients, update_step, update)
