"""A Flax linen decoder for the Llama family (Llama, SmolLM2, Qwen2) with an explicit key/value cache.

One module covers the three ways the prior runs the model, through one attention routine whose keys come from
up to three places:

* **prefix**: a per-prompt cache ``[L, B, S, KV, Dh]`` shared by every branch of that prompt (``N`` candidate
  actions, or ``N`` generations). Computed once by a prefill and never copied ``N`` times.
* **past**: a per-branch cache ``[L, B, N, P, KV, Dh]`` (the tokens generated so far in each branch).
* **current**: the ``T`` tokens of this call, attended causally.

A plain forward pass is ``N = 1`` with no prefix and no past. Inputs are ``tokens [B, N, T]`` with their absolute
``positions [B, N, T]`` (RoPE is relative, so padding gaps do not matter as long as padded keys are masked).

The parameter tree mirrors Hugging Face names, with the layers stacked on a leading axis (``nn.scan``) and
``kernel = weight.T``::

    embed_tokens/embedding [V, D]            norm/weight [D]            lm_head/kernel [D, V] (untied only)
    layers/input_layernorm/weight [L, D]     layers/post_attention_layernorm/weight [L, D]
    layers/self_attn/{q,k,v,o}_proj/kernel [L, in, out] (+ bias [L, out] for Qwen2's q, k, v)
    layers/mlp/{gate,up,down}_proj/kernel [L, in, out]
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Params = Any
_NEG = -1e30  # added to disallowed attention scores (finite, so fully masked rows give a uniform softmax, not NaN)


@dataclasses.dataclass(frozen=True)
class LlamaConfig:
    """Hyperparameters of a Llama-family decoder. Frozen and hashable: it is a static argument of jitted code."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-5
    max_position_embeddings: int = 2048
    tie_word_embeddings: bool = False
    qkv_bias: bool = False  # Qwen2: biases on q, k, v
    o_bias: bool = False  # Llama with attention_bias=True also has one on o
    architecture: str = "llama"

    def __post_init__(self) -> None:
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads}) "
                "for grouped-query attention"
            )
        if self.head_dim % 2:
            raise ValueError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")


class Prefix(NamedTuple):
    """Per-prompt cache shared by all branches: ``k, v [L, B, S, KV, Dh]``, ``mask [B, S]`` (True = real token)."""

    k: jax.Array
    v: jax.Array
    mask: jax.Array


class Past(NamedTuple):
    """Per-branch cache: ``k, v [L, B, N, P, KV, Dh]``, ``mask [B, N, P]`` (True = slot holds a token)."""

    k: jax.Array
    v: jax.Array
    mask: jax.Array


class RMSNorm(nn.Module):
    eps: float

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        w = self.param("weight", nn.initializers.ones, (x.shape[-1],))
        x32 = x.astype(jnp.float32)  # HF normalises in float32 whatever the weight dtype
        y = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return w * y.astype(w.dtype)


def rope_tables(positions: jax.Array, head_dim: int, theta: float) -> tuple[jax.Array, jax.Array]:
    """cos, sin ``[..., head_dim]`` for integer ``positions [...]`` (HF "rotate_half" layout)."""
    inv_freq = 1.0 / (theta ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    angles = positions.astype(jnp.float32)[..., None] * inv_freq
    emb = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(emb), jnp.sin(emb)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate ``x [B, N, T, heads, Dh]`` with ``cos, sin [B, N, T, Dh]``."""
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    cos, sin = cos[..., None, :].astype(x.dtype), sin[..., None, :].astype(x.dtype)
    return x * cos + rotated * sin


def _grouped_attention(q, k, v, cur_mask, prefix_kv, prefix_mask, past_kv, past_mask):
    """The attention core with KV-head-major matmuls: ``q [B, N, T, KV, G, Dh]`` (scaled, float32), this call's
    ``k, v [B, N, T, KV, Dh]`` -> ``[B, N, T, KV, G, Dh]``. The same function as the default core; the shared
    prefix is one ``[KV, N·T·G, Dh] x [KV, S, Dh]`` matmul per row instead of an einsum whose output layout XLA's
    CPU dot handles 2x slower, and the softmax over the key sources is combined from per-source maxima and sums
    (no concatenated score tensor)."""
    B, N, T, KV, G, Dh = q.shape
    qk = q.transpose(0, 3, 1, 2, 4, 5)  # [B, KV, N, T, G, Dh]
    rows = qk.reshape(B, KV, N, T * G, Dh)
    scores, values = [], []
    if prefix_kv is not None:
        pk, pv = prefix_kv
        s = jnp.einsum("bkmd,bskd->bkms", rows.reshape(B, KV, N * T * G, Dh), pk.astype(jnp.float32))
        s = jnp.where(prefix_mask[:, None, None, :], s, _NEG).reshape(B, KV, N, T * G, -1)
        scores.append(s)
        values.append(
            lambda p, pv=pv: jnp.einsum(
                "bkms,bskd->bkmd", p.reshape(B, KV, N * T * G, -1), pv.astype(jnp.float32)
            ).reshape(B, KV, N, T * G, Dh)
        )
    if past_kv is not None:
        qk_, qv = past_kv
        s = jnp.einsum("bknmd,bnpkd->bknmp", rows, qk_.astype(jnp.float32))
        scores.append(jnp.where(past_mask[:, None, :, None, :], s, _NEG))
        values.append(lambda p, qv=qv: jnp.einsum("bknmp,bnpkd->bknmd", p, qv.astype(jnp.float32)))
    s = jnp.einsum("bkntgd,bnskd->bkntgs", qk, k.astype(jnp.float32))
    s = jnp.where(cur_mask[:, None, :, :, None, :], s, _NEG).reshape(B, KV, N, T * G, T)
    scores.append(s)
    values.append(
        lambda p: jnp.einsum("bkntgs,bnskd->bkntgd", p.reshape(B, KV, N, T, G, T), v.astype(jnp.float32)).reshape(
            B, KV, N, T * G, Dh
        )
    )
    m = functools.reduce(jnp.maximum, [x.max(-1, keepdims=True) for x in scores])
    exps = [jnp.exp(x - m) for x in scores]
    total = functools.reduce(jnp.add, [e.sum(-1, keepdims=True) for e in exps])
    out = functools.reduce(jnp.add, [f(e) for f, e in zip(values, exps)]) / total
    return out.reshape(B, KV, N, T, G, Dh).transpose(0, 2, 3, 1, 4, 5)


class Attention(nn.Module):
    config: LlamaConfig
    attention: str = "einsum"

    @nn.compact
    def __call__(self, x, rope, cur_mask, prefix_kv, prefix_mask, past_kv, past_mask):
        """x ``[B, N, T, D]`` -> (out ``[B, N, T, D]``, this call's (k, v) ``[B, N, T, KV, Dh]``)."""
        c = self.config
        B, N, T, _ = x.shape
        H, KV, Dh = c.num_heads, c.num_kv_heads, c.head_dim
        G = H // KV  # query heads per KV head; query head h reads KV head h // G (HF repeat_kv order)
        q = nn.Dense(H * Dh, use_bias=c.qkv_bias, name="q_proj", dtype=x.dtype)(x).reshape(B, N, T, H, Dh)
        k = nn.Dense(KV * Dh, use_bias=c.qkv_bias, name="k_proj", dtype=x.dtype)(x).reshape(B, N, T, KV, Dh)
        v = nn.Dense(KV * Dh, use_bias=c.qkv_bias, name="v_proj", dtype=x.dtype)(x).reshape(B, N, T, KV, Dh)
        cos, sin = rope
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        q = q.reshape(B, N, T, KV, G, Dh).astype(jnp.float32) * (Dh**-0.5)

        if self.attention == "grouped":
            out = _grouped_attention(q, k, v, cur_mask, prefix_kv, prefix_mask, past_kv, past_mask)
            out = out.reshape(B, N, T, H * Dh).astype(x.dtype)
            out = nn.Dense(c.hidden_size, use_bias=c.o_bias, name="o_proj", dtype=x.dtype)(out)
            return out, (k, v)
        # Scores against each key source, concatenated on the key axis so one softmax spans all of them.
        parts, values = [], []
        if prefix_kv is not None:
            pk, pv = prefix_kv
            s = jnp.einsum("bntkgd,bskd->bnkgts", q, pk.astype(jnp.float32))
            parts.append(jnp.where(prefix_mask[:, None, None, None, None, :], s, _NEG))
            values.append(("bnkgts,bskd->bntkgd", pv))
        if past_kv is not None:
            qk, qv = past_kv
            s = jnp.einsum("bntkgd,bnpkd->bnkgtp", q, qk.astype(jnp.float32))
            parts.append(jnp.where(past_mask[:, :, None, None, None, :], s, _NEG))
            values.append(("bnkgtp,bnpkd->bntkgd", qv))
        s = jnp.einsum("bntkgd,bnskd->bnkgts", q, k.astype(jnp.float32))
        parts.append(jnp.where(cur_mask[:, :, None, None, :, :], s, _NEG))
        values.append(("bnkgts,bnskd->bntkgd", v))

        probs = jax.nn.softmax(jnp.concatenate(parts, axis=-1), axis=-1)
        out, start = 0.0, 0
        for part, (eq, val) in zip(parts, values):
            width = part.shape[-1]
            out = out + jnp.einsum(eq, probs[..., start : start + width], val.astype(jnp.float32))
            start += width
        out = out.reshape(B, N, T, H * Dh).astype(x.dtype)
        out = nn.Dense(c.hidden_size, use_bias=c.o_bias, name="o_proj", dtype=x.dtype)(out)
        return out, (k, v)


class MLP(nn.Module):
    config: LlamaConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.config
        gate = nn.Dense(c.intermediate_size, use_bias=False, name="gate_proj", dtype=x.dtype)(x)
        up = nn.Dense(c.intermediate_size, use_bias=False, name="up_proj", dtype=x.dtype)(x)
        return nn.Dense(c.hidden_size, use_bias=False, name="down_proj", dtype=x.dtype)(nn.silu(gate) * up)


class DecoderLayer(nn.Module):
    config: LlamaConfig
    attention: str = "einsum"

    @nn.compact
    def __call__(self, x, layer_kv, shared):
        """One block; ``layer_kv`` = this layer's (prefix k, prefix v, past k, past v), any of them None."""
        c = self.config
        rope, cur_mask, prefix_mask, past_mask = shared
        pk, pv, qk, qv = layer_kv
        h = RMSNorm(c.rms_norm_eps, name="input_layernorm")(x)
        attn, kv = Attention(c, self.attention, name="self_attn")(
            h,
            rope,
            cur_mask,
            None if pk is None else (pk, pv),
            prefix_mask,
            None if qk is None else (qk, qv),
            past_mask,
        )
        x = x + attn
        x = x + MLP(c, name="mlp")(RMSNorm(c.rms_norm_eps, name="post_attention_layernorm")(x))
        return x, kv


class LlamaLM(nn.Module):
    """Decoder-only language model. ``__call__`` returns pre-norm hidden states and this call's KV;
    ``logits`` applies the final norm and the (tied or untied) output head.

    ``attention``: ``"einsum"`` (default) or ``"grouped"``, the same attention computed with KV-head-major matmuls
    and a softmax combined across key sources (:func:`_grouped_attention`): about 2x faster on CPU when a long
    shared prefix is attended by many tokens; equal up to float rounding. Parameters are the same."""

    config: LlamaConfig
    attention: str = "einsum"

    def setup(self) -> None:
        c = self.config
        self.embed_tokens = nn.Embed(c.vocab_size, c.hidden_size, name="embed_tokens")
        self.layers = nn.scan(
            DecoderLayer,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=(0, nn.broadcast),
            length=c.num_layers,
        )(c, self.attention, name="layers")
        self.norm = RMSNorm(c.rms_norm_eps, name="norm")
        if not c.tie_word_embeddings:
            self.lm_head = nn.Dense(c.vocab_size, use_bias=False, name="lm_head")

    def __call__(
        self,
        tokens: jax.Array,
        positions: jax.Array,
        token_mask: jax.Array,
        prefix: Prefix | None = None,
        past: Past | None = None,
        segments: jax.Array | None = None,
        attend: jax.Array | None = None,
    ) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        """tokens, positions, token_mask ``[B, N, T]`` -> hidden ``[B, N, T, D]``, (k, v) ``[L, B, N, T, KV, Dh]``.

        Current tokens attend causally to each other (padded keys masked by ``token_mask``), to every real
        prefix token and to every filled past slot. With ``segments [B, N, T]`` (int ids), a current token only
        sees current tokens of its own segment: several independent continuations packed into one row. With
        ``attend [B, N, T, T]`` (bool, ``[..., i, j]``: token i sees token j; include the diagonal) the causal mask
        is replaced by that one: e.g. a prefix trie of continuations, each token seeing its ancestors only.
        """
        c = self.config
        T = tokens.shape[-1]
        x = self.embed_tokens(tokens)
        rope = rope_tables(positions, c.head_dim, c.rope_theta)
        causal = jnp.tril(jnp.ones((T, T), dtype=bool))
        cur_mask = (causal[None, None] if attend is None else attend) & token_mask[:, :, None, :]
        if segments is not None:
            cur_mask = cur_mask & (segments[..., :, None] == segments[..., None, :])
        layer_kv = (
            None if prefix is None else prefix.k,
            None if prefix is None else prefix.v,
            None if past is None else past.k,
            None if past is None else past.v,
        )
        shared = (rope, cur_mask, None if prefix is None else prefix.mask, None if past is None else past.mask)
        return self.layers(x, layer_kv, shared)

    def logits(self, hidden: jax.Array) -> jax.Array:
        """hidden ``[..., D]`` -> float32 logits ``[..., V]``."""
        h = self.norm(hidden)
        if self.config.tie_word_embeddings:
            out = self.embed_tokens.attend(h)
        else:
            out = self.lm_head(h)
        return out.astype(jnp.float32)

    def token_logits(self, hidden: jax.Array, tokens: jax.Array) -> jax.Array:
        """The logits of ``tokens [...]`` only, under ``hidden [..., D]`` (float32 ``[...]``): one row of the output
        head per token instead of the whole vocabulary."""
        h = self.norm(hidden).astype(jnp.float32)
        if self.config.tie_word_embeddings:
            w = self.embed_tokens.embedding[tokens]
        else:
            w = self.lm_head.variables["params"]["kernel"].T[tokens]
        return jnp.sum(h * w.astype(jnp.float32), axis=-1)

    def init_all(self, tokens: jax.Array, positions: jax.Array, token_mask: jax.Array) -> jax.Array:
        """Touch every submodule (the head is only used by ``logits``) so ``init`` creates all parameters."""
        hidden, _ = self(tokens, positions, token_mask)
        return self.logits(hidden)


def init_params(config: LlamaConfig, seed: int = 0, dtype: Any = jnp.float32, scale: float = 0.1) -> Params:
    """Random parameters with the right tree (for tests and shape checks): N(0, scale²) matrices, unit norms,
    zero biases. Shapes come from ``eval_shape`` and values from NumPy, so nothing is compiled."""
    tokens = jnp.zeros((1, 1, 2), jnp.int32)
    shapes = jax.eval_shape(
        lambda k: LlamaLM(config).init(
            k, tokens, jnp.zeros_like(tokens), jnp.ones(tokens.shape, bool), method=LlamaLM.init_all
        )["params"],
        jax.random.key(0),
    )
    rng = np.random.default_rng(seed)

    def leaf(path, x):
        name = getattr(path[-1], "key", "")
        if name == "weight":
            value = np.ones(x.shape, np.float32)
        elif name == "bias":
            value = np.zeros(x.shape, np.float32)
        else:
            value = scale * rng.standard_normal(x.shape, dtype=np.float32)
        return jnp.asarray(value, dtype)

    return jax.tree_util.tree_map_with_path(leaf, shapes)


@functools.partial(jax.jit, static_argnums=0)
def forward_logits(config: LlamaConfig, params: Params, tokens: jax.Array, mask: jax.Array) -> jax.Array:
    """Plain full-sequence forward (no cache): right- or left-padded ``tokens, mask [B, T]`` -> logits ``[B, T, V]``.

    Positions count real tokens only (``cumsum(mask) - 1``), as HF does for a padded batch with an attention mask.
    """
    model = LlamaLM(config)
    positions = jnp.maximum(jnp.cumsum(mask.astype(jnp.int32), axis=-1) - 1, 0)
    hidden, _ = model.apply({"params": params}, tokens[:, None], positions[:, None], mask[:, None].astype(bool))
    return model.apply({"params": params}, hidden[:, 0], method=LlamaLM.logits)
