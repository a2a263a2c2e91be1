"""A BERT encoder in Flax linen, and a loader for local Hugging Face BERT checkpoints.

The network is the classic post-LayerNorm BERT (Devlin et al. 2019) as implemented by transformers' ``BertModel``:
word + position + token-type embeddings, then ``num_hidden_layers`` blocks of
``x = LN(x + Attn(x)); x = LN(x + FFN(x))``. Only the last hidden state is computed: the Q-function features use
either the [CLS] vector or a masked mean over it (see :mod:`prior_rl.llm.encoder`), so the pooler head is not built.

Parameter names follow Hugging Face closely so that :func:`convert_hf_state_dict` stays a readable table.
Checkpoints are read from ``model.safetensors`` (or a sharded ``model.safetensors.index.json``); no hub access,
no pickle files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "BertConfig",
    "BertModel",
    "BertLoadError",
    "convert_hf_state_dict",
    "load_bert",
    "read_safetensors",
]


class BertLoadError(ValueError):
    """A checkpoint directory exists but cannot be turned into BERT parameters (bad config, corrupt weights...)."""


# HF ``hidden_act`` names → functions. "gelu" in HF is the exact erf form; the tanh forms are approximations.
_ACTIVATIONS = {
    "gelu": lambda x: nn.gelu(x, approximate=False),
    "gelu_new": lambda x: nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: nn.gelu(x, approximate=True),
    "gelu_fast": lambda x: nn.gelu(x, approximate=True),
    "relu": nn.relu,
    "silu": nn.silu,
    "swish": nn.silu,
}


@dataclass(frozen=True)
class BertConfig:
    """The fields of a HF ``config.json`` that the forward pass needs."""

    vocab_size: int = 30522
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 0
    position_embedding_type: str = "absolute"

    def __post_init__(self) -> None:
        if self.hidden_act not in _ACTIVATIONS:
            raise BertLoadError(f"unsupported hidden_act {self.hidden_act!r}; supported: {sorted(_ACTIVATIONS)}")
        if self.position_embedding_type != "absolute":
            raise BertLoadError(
                f"only absolute position embeddings are implemented, got {self.position_embedding_type!r}"
            )
        if self.hidden_size % self.num_attention_heads:
            raise BertLoadError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BertConfig:
        """Keep the known keys of a HF config dict; unknown keys (dropout rates, architectures, ...) are ignored."""
        model_type = d.get("model_type", "bert")
        if model_type != "bert":
            raise BertLoadError(f"expected a BERT config (model_type 'bert'), got model_type {model_type!r}")
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known and v is not None}
        return cls(**kwargs)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike) -> BertConfig:
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except json.JSONDecodeError as e:
            raise BertLoadError(f"{path}: not valid JSON ({e})") from e
        if not isinstance(d, dict):
            raise BertLoadError(f"{path}: expected a JSON object, got {type(d).__name__}")
        return cls.from_dict(d)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


# Matmuls run at full float32 precision: on accelerators the default (TF32/bf16 passes) would move features by
# ~1e-3, more than the 1e-4 parity we test against PyTorch, and the encoder is frozen and cached anyway.
_PRECISION = jax.lax.Precision.HIGHEST


def _dense(features: int, name: str) -> nn.Dense:
    return nn.Dense(features, name=name, precision=_PRECISION)


class BertEmbeddings(nn.Module):
    config: BertConfig

    @nn.compact
    def __call__(self, input_ids: jax.Array, token_type_ids: jax.Array) -> jax.Array:
        """input_ids, token_type_ids: [B, L] int32 → [B, L, H]."""
        c = self.config
        seq_len = input_ids.shape[1]
        word = nn.Embed(c.vocab_size, c.hidden_size, name="word_embeddings")(input_ids)
        pos = nn.Embed(c.max_position_embeddings, c.hidden_size, name="position_embeddings")(
            jnp.arange(seq_len)[None, :]
        )
        typ = nn.Embed(c.type_vocab_size, c.hidden_size, name="token_type_embeddings")(token_type_ids)
        return nn.LayerNorm(epsilon=c.layer_norm_eps, name="LayerNorm")(word + pos + typ)


class BertSelfAttention(nn.Module):
    config: BertConfig

    @nn.compact
    def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
        """x: [B, L, H]; bias: [B, 1, 1, L] additive mask → [B, L, H] (before the output projection)."""
        c = self.config
        b, length, _ = x.shape

        def heads(t: jax.Array) -> jax.Array:  # [B, L, H] → [B, nh, L, hd]
            return t.reshape(b, length, c.num_attention_heads, c.head_dim).transpose(0, 2, 1, 3)

        q = heads(_dense(c.hidden_size, "query")(x))
        k = heads(_dense(c.hidden_size, "key")(x))
        v = heads(_dense(c.hidden_size, "value")(x))
        scores = jnp.einsum("bhqd,bhkd->bhqk", q, k, precision=_PRECISION) / np.sqrt(c.head_dim).astype(np.float32)
        probs = jax.nn.softmax(scores + bias, axis=-1)
        ctx = jnp.einsum("bhqk,bhkd->bhqd", probs, v, precision=_PRECISION)
        return ctx.transpose(0, 2, 1, 3).reshape(b, length, c.hidden_size)


class BertLayer(nn.Module):
    config: BertConfig

    @nn.compact
    def __call__(self, x: jax.Array, bias: jax.Array) -> jax.Array:
        """One post-LN transformer block: [B, L, H] → [B, L, H]."""
        c = self.config
        attn = BertSelfAttention(c, name="attention_self")(x, bias)
        x = nn.LayerNorm(epsilon=c.layer_norm_eps, name="attention_output_LayerNorm")(
            x + _dense(c.hidden_size, "attention_output_dense")(attn)
        )
        h = _ACTIVATIONS[c.hidden_act](_dense(c.intermediate_size, "intermediate_dense")(x))
        return nn.LayerNorm(epsilon=c.layer_norm_eps, name="output_LayerNorm")(
            x + _dense(c.hidden_size, "output_dense")(h)
        )


class BertModel(nn.Module):
    """BERT encoder returning the last hidden state.

    ``__call__(input_ids [B, L] int, attention_mask [B, L] {0,1}, token_type_ids [B, L] int | None) → [B, L, H]``.
    ``L`` must not exceed ``config.max_position_embeddings``. Padded positions produce (ignored) garbage vectors;
    they never influence non-padded positions.
    """

    config: BertConfig

    @nn.compact
    def __call__(
        self,
        input_ids: jax.Array,
        attention_mask: jax.Array,
        token_type_ids: jax.Array | None = None,
    ) -> jax.Array:
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        x = BertEmbeddings(self.config, name="embeddings")(input_ids, token_type_ids)
        # Additive mask over keys; the finite minimum (not -inf) keeps fully padded rows NaN-free, as HF does.
        neg = jnp.finfo(x.dtype).min
        bias = jnp.where(attention_mask[:, None, None, :] > 0, 0.0, neg).astype(x.dtype)
        for i in range(self.config.num_hidden_layers):
            x = BertLayer(self.config, name=f"layer_{i}")(x, bias)
        return x


# -- checkpoint loading -----------------------------------------------------------------------------------------

# HF prefixes of task models wrapping a BertModel (the paper loaded bert-base via AutoModelForTokenClassification).
_WRAPPER_PREFIXES = ("bert.", "model.")
# HF tensors we deliberately do not use: the pooler and task heads, and the registered position-id buffer.
_IGNORED_PREFIXES = ("pooler.", "cls.", "classifier.", "qa_outputs.")
_IGNORED_NAMES = ("embeddings.position_ids", "embeddings.token_type_ids")


def read_safetensors(model_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """All tensors of ``model.safetensors`` (or of the shards listed in ``model.safetensors.index.json``)."""
    from safetensors.numpy import load_file

    model_dir = Path(model_dir)
    single = model_dir / "model.safetensors"
    index = model_dir / "model.safetensors.index.json"
    if single.is_file():
        files = [single]
    elif index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise BertLoadError(f"{index}: not a valid safetensors index ({e!r})") from e
        files = [model_dir / name for name in sorted(set(weight_map.values()))]
    else:
        present = sorted(p.name for p in model_dir.iterdir())
        hint = (
            " Only PyTorch pickles (pytorch_model.bin) are present; convert them once with "
            "`transformers.AutoModel.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)`."
            if (model_dir / "pytorch_model.bin").is_file()
            else ""
        )
        raise FileNotFoundError(f"{model_dir}: no model.safetensors (files present: {present}).{hint}")
    tensors: dict[str, np.ndarray] = {}
    for file in files:
        try:
            tensors.update(load_file(str(file)))
        except Exception as e:  # safetensors raises its own SafetensorError or OSError on truncated/garbled files
            raise BertLoadError(f"{file}: cannot read safetensors weights ({type(e).__name__}: {e})") from e
    return tensors


def _hf_name_table(config: BertConfig) -> dict[tuple[str, ...], tuple[str, bool]]:
    """Flax param path → (HF tensor name, transpose?). Dense kernels are HF ``weight`` transposed ([in, out])."""
    table: dict[tuple[str, ...], tuple[str, bool]] = {}
    for emb in ("word_embeddings", "position_embeddings", "token_type_embeddings"):
        table[("embeddings", emb, "embedding")] = (f"embeddings.{emb}.weight", False)
    table[("embeddings", "LayerNorm", "scale")] = ("embeddings.LayerNorm.weight", False)
    table[("embeddings", "LayerNorm", "bias")] = ("embeddings.LayerNorm.bias", False)
    for i in range(config.num_hidden_layers):
        hf = f"encoder.layer.{i}"
        fx = f"layer_{i}"
        for proj in ("query", "key", "value"):
            table[(fx, "attention_self", proj, "kernel")] = (f"{hf}.attention.self.{proj}.weight", True)
            table[(fx, "attention_self", proj, "bias")] = (f"{hf}.attention.self.{proj}.bias", False)
        for fx_name, hf_name in (
            ("attention_output_dense", "attention.output.dense"),
            ("intermediate_dense", "intermediate.dense"),
            ("output_dense", "output.dense"),
        ):
            table[(fx, fx_name, "kernel")] = (f"{hf}.{hf_name}.weight", True)
            table[(fx, fx_name, "bias")] = (f"{hf}.{hf_name}.bias", False)
        for fx_name, hf_name in (
            ("attention_output_LayerNorm", "attention.output.LayerNorm"),
            ("output_LayerNorm", "output.LayerNorm"),
        ):
            table[(fx, fx_name, "scale")] = (f"{hf}.{hf_name}.weight", False)
            table[(fx, fx_name, "bias")] = (f"{hf}.{hf_name}.bias", False)
    return table


def _canonical_hf_names(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Strip wrapper prefixes, rename TF-era ``gamma``/``beta``, drop heads and buffers."""
    prefixed = [p for p in _WRAPPER_PREFIXES if any(k.startswith(p + "embeddings.") for k in state)]
    out: dict[str, np.ndarray] = {}
    for name, value in state.items():
        for p in prefixed:
            if name.startswith(p):
                name = name[len(p) :]
                break
        if name.startswith(_IGNORED_PREFIXES) or name in _IGNORED_NAMES:
            continue
        if name.endswith(".gamma"):
            name = name[: -len("gamma")] + "weight"
        elif name.endswith(".beta"):
            name = name[: -len("beta")] + "bias"
        out[name] = value
    return out


def convert_hf_state_dict(state: Mapping[str, np.ndarray], config: BertConfig) -> dict[str, Any]:
    """Map HF BERT tensors (``embeddings.word_embeddings.weight``, ...) onto :class:`BertModel`'s param tree.

    Raises :class:`BertLoadError` naming any missing tensor or shape mismatch. Returns ``{"params": ...}`` of
    float32 numpy arrays (device placement is left to the caller).
    """
    hf = _canonical_hf_names(state)
    expected = jax.eval_shape(
        lambda: BertModel(config).init(jax.random.PRNGKey(0), jnp.zeros((1, 2), jnp.int32), jnp.ones((1, 2), jnp.int32))
    )["params"]
    table = _hf_name_table(config)
    missing = sorted({hf_name for hf_name, _ in table.values()} - set(hf))
    if missing:
        shown = missing[:8] + (["..."] if len(missing) > 8 else [])
        raise BertLoadError(
            f"checkpoint lacks {len(missing)} BERT tensors, e.g. {shown}; "
            f"found {len(hf)} usable tensors such as {sorted(hf)[:4]}"
        )
    params: dict[str, Any] = {}
    for path, (hf_name, transpose) in table.items():
        value = np.asarray(hf[hf_name], dtype=np.float32)
        if transpose:
            value = value.T
        want = expected
        for p in path:
            want = want[p]
        if tuple(value.shape) != tuple(want.shape):
            raise BertLoadError(
                f"tensor {hf_name} has shape {tuple(hf[hf_name].shape)}, which does not fit the config "
                f"(expected {tuple(want.shape)}{' after transposing' if transpose else ''})"
            )
        if not np.all(np.isfinite(value)):
            raise BertLoadError(f"tensor {hf_name} contains NaN or infinite values")
        node = params
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = np.ascontiguousarray(value)
    return {"params": params}


def load_bert(model_dir: str | os.PathLike) -> tuple[BertModel, dict[str, Any], BertConfig]:
    """Load ``config.json`` + safetensors weights from a local HF BERT directory.

    Returns ``(module, variables, config)`` where ``module.apply(variables, ids, mask)`` gives ``[B, L, H]``.
    Raises ``FileNotFoundError`` for a missing directory or file, :class:`BertLoadError` for unreadable ones.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise FileNotFoundError(f"BERT model directory {str(model_dir)!r} does not exist")
    cfg_path = model_dir / "config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{model_dir}: no config.json; this is not a Hugging Face model directory")
    config = BertConfig.from_json_file(cfg_path)
    variables = convert_hf_state_dict(read_safetensors(model_dir), config)
    variables = jax.tree_util.tree_map(jnp.asarray, variables)
    return BertModel(config), variables, config
