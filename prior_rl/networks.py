"""Flax linen networks on frozen text-encoder features φ(s, a).

* :class:`QNetwork` — the paper's ``LinearProb``: an MLP D → 64 → 64 → 1 (ReLU) scoring one (state, action)
  feature; applied to candidate features [..., k, D] it returns Q-values [..., k].
* :class:`PolicyValueNetwork` — the PPO actor-critic over an admissible (or candidate) set:

      π(a | s) = softmax_{a ∈ admissible(s)} ( f(φ(s, a)) [+ log p_LLM(a | s)] )
      V(s)     = g( mean_{a ∈ admissible(s)} φ(s, a) )      or  g(ψ(s)) when a state feature ψ(s) is given

  f and g are MLPs like the Q network's. With ``add_prior_logits=True`` ("prior-initialised") the prior log-prob
  is added to the score and f's last layer starts at zero, so the initial policy *is* the LLM prior restricted to
  the admissible set; learning then moves it away, and PPO-Prior's KL term pulls it back.

Initialisation defaults to PyTorch's ``nn.Linear`` default (weights and biases ~ U(±1/√fan_in)), which is what the
reference's network starts from (docs/method.md §3.6); ``init_scheme="lecun"`` gives flax's default instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from prior_rl.losses import NEG_INF

Array = jax.Array


def _uniform_fan_in(fan_in: int):
    bound = 1.0 / math.sqrt(max(fan_in, 1))

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class MLP(nn.Module):
    """Dense layers with ReLU between them; the last layer has ``out`` units and no activation."""

    hidden: Sequence[int] = (64, 64)
    out: int = 1
    init_scheme: str = "torch"
    zero_last: bool = False
    last_bias: bool = True

    @nn.compact
    def __call__(self, x: Array) -> Array:
        sizes = list(self.hidden) + [self.out]
        for i, size in enumerate(sizes):
            last = i == len(sizes) - 1
            fan_in = x.shape[-1]
            if last and self.zero_last:
                k_init, b_init = nn.initializers.zeros, nn.initializers.zeros
            elif self.init_scheme == "torch":
                # PyTorch nn.Linear: kaiming_uniform(a=√5) == U(±1/√fan_in) for weights, same bound for biases
                k_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
                b_init = _uniform_fan_in(fan_in)
            elif self.init_scheme == "lecun":
                k_init, b_init = nn.initializers.lecun_normal(), nn.initializers.zeros
            else:
                raise ValueError(f"init_scheme must be 'torch' or 'lecun', got {self.init_scheme!r}")
            use_bias = self.last_bias or not last
            x = nn.Dense(size, use_bias=use_bias, kernel_init=k_init, bias_init=b_init, name=f"dense_{i}")(x)
            if not last:
                x = nn.relu(x)
        return x


class QNetwork(nn.Module):
    """Q(s, a) = MLP(φ(s, a)).  feat: [..., D] -> q: [...]  (e.g. [B, k, D] -> [B, k]).

    ``num_rows`` > 0 makes φ(s, a) the one-hot of a row id (the tabular control of the feature study): ``feat`` is
    then [..., 1] holding the id as a float (exact below 2^24) and the first layer looks up row ``id`` of a
    [num_rows, hidden[0]] kernel and adds a bias — the same function, initialisation and gradients as a Dense layer
    on the one-hot vector, without materialising it.
    """

    hidden: Sequence[int] = (64, 64)
    init_scheme: str = "torch"
    num_rows: int = 0

    @nn.compact
    def __call__(self, feat: Array) -> Array:
        if not self.num_rows:
            return MLP(self.hidden, 1, self.init_scheme, name="mlp")(feat)[..., 0]
        if self.init_scheme == "torch":
            k_init = b_init = _uniform_fan_in(self.num_rows)  # nn.Linear on a num_rows-wide one-hot
        else:
            k_init, b_init = nn.initializers.lecun_normal(), nn.initializers.zeros
        kernel = self.param("one_hot_kernel", k_init, (self.num_rows, self.hidden[0]))
        bias = self.param("one_hot_bias", b_init, (self.hidden[0],))
        x = nn.relu(kernel[feat[..., 0].astype(jnp.int32)] + bias)
        return MLP(self.hidden[1:], 1, self.init_scheme, name="mlp")(x)[..., 0]


class PolicyValueNetwork(nn.Module):
    """Actor-critic over a padded action set.

    __call__(act_feat [..., n, D], act_mask [..., n] bool, prior_logp [..., n] or None, state_feat [..., Ds] or None)
        -> (logits [..., n] with padding = NEG_INF, value [...]).
    """

    hidden: Sequence[int] = (64, 64)
    add_prior_logits: bool = False
    init_scheme: str = "torch"

    @nn.compact
    def __call__(
        self,
        act_feat: Array,
        act_mask: Array,
        prior_logp: Optional[Array] = None,
        state_feat: Optional[Array] = None,
    ) -> tuple[Array, Array]:
        # no bias on the score's output: a shift common to all actions cancels in the softmax, so its gradient is
        # 0 up to rounding, which Adam would blow up into lr-sized noise steps
        score_mlp = MLP(
            self.hidden, 1, self.init_scheme, zero_last=self.add_prior_logits, last_bias=False, name="score"
        )
        score = score_mlp(act_feat)[..., 0]
        if self.add_prior_logits:
            if prior_logp is None:
                raise ValueError("add_prior_logits=True needs prior_logp")
            score = score + jnp.where(act_mask, prior_logp, 0.0)
        logits = jnp.where(act_mask, score, NEG_INF)
        if state_feat is None:
            w = act_mask.astype(act_feat.dtype)[..., None]
            state_feat = jnp.sum(act_feat * w, axis=-2) / jnp.maximum(jnp.sum(w, axis=-2), 1.0)
        value = MLP(self.hidden, 1, self.init_scheme, name="value")(state_feat)[..., 0]
        return logits, value
