"""Tokenizers for the prior LLM, offline only: from a local ``tokenizer.json`` or built from GGUF metadata.

Built on the ``tokenizers`` library (no transformers, no torch, no hub). A GGUF file carries its vocabulary, merges
and special tokens as metadata; for byte-level BPE vocabularies (``tokenizer.ggml.model == "gpt2"``: SmolLM2,
Qwen2, Llama 3) we rebuild the same tokenizer transformers would (vocabulary, merges, control tokens as special
tokens, the pre-tokenizer split named by ``tokenizer.ggml.pre``). Sentencepiece vocabularies (Llama 2 style GGUFs)
are not rebuilt: pass a directory holding the model's ``tokenizer.json`` instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import AddedToken, Regex, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as _Backend


class TokenizerError(ValueError):
    """A tokenizer file is missing, unreadable or inconsistent with the model."""


# Pre-tokenizer splits by `tokenizer.ggml.pre` (the same regexes transformers' GGUF loader uses). Names not listed
# (e.g. "smollm", "gpt2", "default") use GPT-2's own byte-level regex.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
GGUF_PRE_SPLITS = {
    "llama3": _LLAMA3_SPLIT,
    "llama-v3": _LLAMA3_SPLIT,
    "llama-bpe": _LLAMA3_SPLIT,
    "smaug-bpe": _LLAMA3_SPLIT,
    "qwen2": _QWEN2_SPLIT,
    "deepseek-r1-qwen": _QWEN2_SPLIT,
}
_GPT2_DEFAULT_PRES = {None, "default", "gpt2", "smollm"}
_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp token types


@dataclass
class Tokenizer:
    """A ``tokenizers.Tokenizer`` plus the special tokens and chat template the prior needs.

    ``encode(text, add_special_tokens=True)`` is for a prompt (adds BOS when the model wants one);
    continuations (candidate actions) are encoded with ``add_special_tokens=False``.
    """

    backend: _Backend
    source: str
    bos_token: str | None = None
    eos_token: str | None = None
    pad_token: str | None = None
    add_bos: bool = False
    chat_template: str | None = None
    extra_eos_ids: tuple[int, ...] = ()
    _newline_cache: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    # -- ids -----------------------------------------------------------------------------------------------
    def token_id(self, token: str | None) -> int | None:
        return None if token is None else self.backend.token_to_id(token)

    @property
    def bos_id(self) -> int | None:
        return self.token_id(self.bos_token)

    @property
    def eos_ids(self) -> tuple[int, ...]:
        """Ids that end a generation: the EOS token plus any the model config names."""
        ids = [self.token_id(self.eos_token)] + list(self.extra_eos_ids)
        return tuple(sorted({i for i in ids if i is not None}))

    @property
    def pad_id(self) -> int:
        for tok in (self.pad_token, self.eos_token):
            i = self.token_id(tok)
            if i is not None:
                return i
        return 0  # padded positions are masked everywhere, so any valid id works

    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer can emit (added tokens included)."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def max_token_id(self) -> int:
        return max(self.backend.get_vocab(with_added_tokens=True).values())

    # -- text <-> ids --------------------------------------------------------------------------------------
    def _with_bos(self, ids: list[int], add_special_tokens: bool) -> list[int]:
        bos = self.bos_id
        if add_special_tokens and self.add_bos and bos is not None and (not ids or ids[0] != bos):
            return [bos] + ids
        return ids

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self._with_bos(self.backend.encode(text, add_special_tokens=add_special_tokens).ids, add_special_tokens)

    def encode_batch(self, texts: Sequence[str], add_special_tokens: bool = True) -> list[list[int]]:
        encs = self.backend.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        return [self._with_bos(e.ids, add_special_tokens) for e in encs]

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def newline_mask(self, size: int) -> np.ndarray:
        """``[size]`` bool: ids whose text contains a newline (generation stops there)."""
        if size not in self._newline_cache:
            n = min(size, self.vocab_size)
            texts = self.backend.decode_batch([[i] for i in range(n)], skip_special_tokens=False)
            mask = np.zeros(size, dtype=bool)
            mask[:n] = ["\n" in t for t in texts]
            self._newline_cache[size] = mask
        return self._newline_cache[size]

    # -- chat ----------------------------------------------------------------------------------------------
    def apply_chat_template(self, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool = True) -> str:
        """Render ``messages`` with the model's Jinja chat template, as transformers does."""
        if not self.chat_template:
            raise TokenizerError(
                f"the tokenizer from {self.source} has no chat template; use a raw prompt (chat=False) "
                "or load an instruct model whose files include one"
            )
        return _render_chat(
            self.chat_template,
            messages,
            add_generation_prompt,
            bos_token=self.bos_token or "",
            eos_token=self.eos_token or "",
        )


def _render_chat(
    template: str, messages: Sequence[Mapping[str, str]], add_generation_prompt: bool, **special: str
) -> str:
    # Same environment options as transformers' `_compile_jinja_template`.
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise TokenizerError(f"chat template error: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(
        messages=[dict(m) for m in messages], add_generation_prompt=add_generation_prompt, **special
    )


def _token_content(value: Any) -> str | None:
    """tokenizer_config.json writes special tokens as a string or as {"content": ...}."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


def load_tokenizer_dir(directory: str | Path, model_config: Mapping[str, Any] | None = None) -> Tokenizer:
    """Tokenizer from a Hugging Face model directory (``tokenizer.json`` + optional ``tokenizer_config.json`` /
    ``chat_template.jinja``). ``model_config`` (config.json) supplies BOS/EOS ids when the tokenizer config lacks
    them."""
    directory = Path(directory)
    path = directory / "tokenizer.json"
    if not path.is_file():
        raise TokenizerError(
            f"no tokenizer.json in {directory}; copy the model's tokenizer.json there "
            "(only fast tokenizers are supported offline)"
        )
    try:
        backend = _Backend.from_file(str(path))
    except Exception as e:  # the Rust error says what is wrong with the JSON
        raise TokenizerError(f"cannot read tokenizer file {path}: {e}") from e
    cfg: dict[str, Any] = {}
    cfg_path = directory / "tokenizer_config.json"
    if cfg_path.is_file():
        try:
            cfg = json.loads(cfg_path.read_text())
        except json.JSONDecodeError as e:
            raise TokenizerError(f"cannot parse {cfg_path}: {e}") from e
    template = cfg.get("chat_template")
    if isinstance(template, list):  # several named templates: take the default one
        template = next((t.get("template") for t in template if t.get("name") == "default"), None)
    jinja = directory / "chat_template.jinja"
    if jinja.is_file():
        template = jinja.read_text()
    model_config = dict(model_config or {})

    def by_id(key: str) -> str | None:
        i = model_config.get(key)
        if isinstance(i, list):
            i = i[0] if i else None
        return backend.id_to_token(i) if isinstance(i, int) else None

    eos_cfg = model_config.get("eos_token_id")
    extra_eos = tuple(eos_cfg) if isinstance(eos_cfg, list) else ((eos_cfg,) if isinstance(eos_cfg, int) else ())
    return Tokenizer(
        backend=backend,
        source=str(path),
        bos_token=_token_content(cfg.get("bos_token")) or by_id("bos_token_id"),
        eos_token=_token_content(cfg.get("eos_token")) or by_id("eos_token_id"),
        pad_token=_token_content(cfg.get("pad_token")),
        add_bos=bool(cfg.get("add_bos_token", False)),
        chat_template=template,
        extra_eos_ids=extra_eos,
    )


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def tokenizer_from_gguf_metadata(meta: Mapping[str, Any], source: str) -> Tokenizer:
    """Build the tokenizer described by a GGUF file's ``tokenizer.*`` metadata (already read into ``meta``)."""
    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise TokenizerError(
            f"{source}: cannot build a tokenizer from GGUF metadata of type {kind!r} (only byte-level BPE, 'gpt2', "
            "is supported); pass tokenizer=<directory with the model's tokenizer.json> to load_llm"
        )
    tokens: list[str] = list(meta["tokenizer.ggml.tokens"])
    merges_raw = meta.get("tokenizer.ggml.merges")
    if merges_raw is None:
        raise TokenizerError(f"{source}: the GGUF has a BPE vocabulary but no tokenizer.ggml.merges")
    alphabet = set(_bytes_to_unicode().values())
    spell = _bytes_to_unicode()
    # Tokens outside the byte alphabet (rare control tokens) are respelled byte-wise, as transformers does.
    vocab = {
        (t if set(t) <= alphabet else "".join(spell[b] for b in t.encode("utf-8"))): i for i, t in enumerate(tokens)
    }
    merges = [tuple(m.split(" ")) for m in merges_raw]
    backend = _Backend(
        models.BPE(
            vocab=vocab,
            merges=merges,
            dropout=None,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
        )
    )
    pre = meta.get("tokenizer.ggml.pre")
    if pre in GGUF_PRE_SPLITS:
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(GGUF_PRE_SPLITS[pre]), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    elif pre in _GPT2_DEFAULT_PRES:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        raise TokenizerError(
            f"{source}: unknown pre-tokenizer {pre!r} in tokenizer.ggml.pre; known: "
            f"{sorted(str(p) for p in _GPT2_DEFAULT_PRES if p) + sorted(GGUF_PRE_SPLITS)}. Pass "
            "tokenizer=<directory with the model's tokenizer.json> to load_llm"
        )
    backend.decoder = decoders.ByteLevel()
    types = list(meta.get("tokenizer.ggml.token_type") or ())
    control = [
        AddedToken(t, normalized=False, special=True)
        for t, ty in zip(tokens, types)
        if ty == _CONTROL and set(t) <= alphabet
    ]
    if control:
        backend.add_special_tokens(control)
    user = [
        AddedToken(t, normalized=False, special=False)
        for t, ty in zip(tokens, types)
        if ty == _USER_DEFINED and t in vocab
    ]
    if user:
        backend.add_tokens(user)

    def name(key: str) -> str | None:
        i = meta.get(key)
        return tokens[int(i)] if i is not None and 0 <= int(i) < len(tokens) else None

    return Tokenizer(
        backend=backend,
        source=source,
        bos_token=name("tokenizer.ggml.bos_token_id"),
        eos_token=name("tokenizer.ggml.eos_token_id"),
        pad_token=name("tokenizer.ggml.padding_token_id"),
        add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        chat_template=meta.get("tokenizer.chat_template"),
    )
