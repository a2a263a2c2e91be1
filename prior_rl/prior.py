"""The LLM action prior: pure jitted scoring and sampling functions, the text-to-action rule, and a convenience
class that runs them on environment observations.

Pure functions (batched over environments; ``config`` is static, everything else traced):

* :func:`action_logprobs` — log p(action | prompt) for every candidate: ``[B, A]``. Each prompt is encoded once
  (prefill) and its KV cache is shared by all its candidates (no copy per candidate).
* :func:`packed_action_logprobs` — the same with each prompt's candidates packed end to end in one row (a
  segment mask keeps them independent), so no compute goes to per-candidate padding; what ActionPrior uses.
* :func:`sequence_logprobs` — the same quantity from a plain forward pass over each full prompt+action sequence
  (the no-cache path; used to check the cached one).
* :func:`sample_actions` — ``k`` generations per prompt with a KV cache inside ``lax.while_loop``; stops at EOS
  or a newline token.
* :func:`sample_from_exact` — ``k`` candidate indices per row from the exact (softmaxed) prior.

:func:`map_text_to_action` is the reference rule that maps a generation to an admissible action (method.md §3.4).
:class:`ActionPrior` tokenises, buckets shapes (:mod:`prior_rl.padding`), batches, caches and calls the above.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from envs.base import TextObservation
from prior_rl.llama import LlamaConfig, LlamaLM, Params, Past, Prefix
from prior_rl.padding import bucket_length, next_pow2, pack_groups, pad_sequences
from prior_rl.prompts import PromptBuilder
from prior_rl.weights import LLM

_HEAD_CHUNK = 256  # rows of hidden states per output-head matmul: bounds the [rows, vocab] logits buffer


# ---------------------------------------------------------------------------------------------------------------
# Building blocks
# ---------------------------------------------------------------------------------------------------------------
def _token_logprobs(model: LlamaLM, params: Params, hidden: jax.Array, targets: jax.Array) -> jax.Array:
    """log p(targets) under the head applied to ``hidden [M, D]``: ``[M]``, computed in chunks of rows so the
    full ``[M, vocab]`` logits never exist at once."""
    M, D = hidden.shape
    C = min(_HEAD_CHUNK, M)
    pad = (-M) % C
    h = jnp.pad(hidden, ((0, pad), (0, 0))).reshape(-1, C, D)
    t = jnp.pad(targets, (0, pad)).reshape(-1, C)

    def chunk(args):
        hc, tc = args
        logits = model.apply({"params": params}, hc, method=LlamaLM.logits)
        picked = jnp.take_along_axis(logits, tc[:, None], axis=-1)[:, 0]
        return picked - jax.nn.logsumexp(logits, axis=-1)

    return jax.lax.map(chunk, (h, t)).reshape(-1)[:M]


def _prefill(model: LlamaLM, params: Params, prompt_tokens: jax.Array, prompt_mask: jax.Array):
    """Encode right-padded prompts ``[B, Tp]`` once: (logits after the last real token ``[B, V]``,
    :class:`Prefix` cache, real lengths ``[B]``)."""
    B, Tp = prompt_tokens.shape
    mask = prompt_mask.astype(bool)
    positions = jnp.broadcast_to(jnp.arange(Tp, dtype=jnp.int32), (B, Tp))
    hidden, (k, v) = model.apply({"params": params}, prompt_tokens[:, None], positions[:, None], mask[:, None])
    lengths = mask.sum(-1).astype(jnp.int32)
    last = hidden[jnp.arange(B), 0, jnp.maximum(lengths - 1, 0)]  # [B, D]
    last_logits = model.apply({"params": params}, last, method=LlamaLM.logits)
    return last_logits, Prefix(k[:, :, 0], v[:, :, 0], mask), lengths


# ---------------------------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------------------------
@functools.partial(jax.jit, static_argnames=("config", "normalize"))
def action_logprobs(
    params: Params,
    prompt_tokens: jax.Array,
    prompt_mask: jax.Array,
    action_tokens: jax.Array,
    action_mask: jax.Array,
    *,
    config: LlamaConfig,
    normalize: bool = False,
) -> jax.Array:
    """log p(action | prompt) for every candidate.

    prompt_tokens, prompt_mask: ``[B, Tp]``, right-padded (mask True on real tokens; >= 1 real token per row).
    action_tokens, action_mask: ``[B, A, Ta]``, each candidate right-padded; an all-False row is an absent
    candidate and scores ``-inf``.
    Returns ``[B, A]`` float32: the sum of the action's token log-probs, or their mean if ``normalize``.
    """
    model = LlamaLM(config)
    B, A, Ta = action_tokens.shape
    amask = action_mask.astype(bool)
    last_logits, prefix, lengths = _prefill(model, params, prompt_tokens, prompt_mask)
    first = jnp.take_along_axis(jax.nn.log_softmax(last_logits, axis=-1), action_tokens[:, :, 0], axis=-1)
    total = jnp.where(amask[:, :, 0], first, 0.0)
    if Ta > 1:
        # The action tokens extend their own prompt: positions continue after its last real token.
        positions = lengths[:, None, None] + jnp.arange(Ta, dtype=jnp.int32)
        hidden, _ = model.apply({"params": params}, action_tokens, positions, amask, prefix=prefix)
        D = hidden.shape[-1]
        rest = _token_logprobs(model, params, hidden[:, :, :-1].reshape(-1, D), action_tokens[:, :, 1:].reshape(-1))
        total = total + jnp.where(amask[:, :, 1:], rest.reshape(B, A, Ta - 1), 0.0).sum(-1)
    n = amask.sum(-1)
    score = total / jnp.maximum(n, 1) if normalize else total
    return jnp.where(n > 0, score, -jnp.inf)


@functools.partial(jax.jit, static_argnames=("config", "num_actions", "normalize"))
def packed_action_logprobs(
    params: Params,
    prompt_tokens: jax.Array,
    prompt_mask: jax.Array,
    packed_tokens: jax.Array,
    segments: jax.Array,
    offsets: jax.Array,
    *,
    config: LlamaConfig,
    num_actions: int,
    normalize: bool = False,
) -> jax.Array:
    """:func:`action_logprobs` with each prompt's candidates packed end to end in one row (no per-candidate
    padding; see :func:`prior_rl.padding.pack_groups`). Candidates attend to their prompt's cache and causally to
    their own tokens only (segment mask), so the result equals the padded layout's, for fewer tokens when
    candidate lengths vary (ALFWorld).

    prompt_tokens, prompt_mask: ``[B, Tp]`` right-padded. packed_tokens, segments, offsets: ``[B, L]``; segment =
    candidate index (-1 on padding), offset = position within the candidate.
    Returns ``[B, num_actions]``: sum (or mean if ``normalize``) of each candidate's token log-probs; ``-inf``
    for candidate indices with no tokens.
    """
    model = LlamaLM(config)
    B, L = packed_tokens.shape
    last_logits, prefix, lengths = _prefill(model, params, prompt_tokens, prompt_mask)
    valid = segments >= 0
    positions = lengths[:, None] + offsets
    hidden, _ = model.apply({"params": params}, packed_tokens[:, None], positions[:, None], valid[:, None],
                            prefix=prefix, segments=segments[:, None])
    hidden = hidden[:, 0]
    D = hidden.shape[-1]
    # A candidate's first token is predicted by the prompt's last position, every later one by its predecessor.
    first = jnp.take_along_axis(jax.nn.log_softmax(last_logits, axis=-1), packed_tokens, axis=-1)
    rest = _token_logprobs(model, params, hidden[:, :-1].reshape(-1, D), packed_tokens[:, 1:].reshape(-1))
    rest = jnp.pad(rest.reshape(B, L - 1), ((0, 0), (1, 0)))
    lp = jnp.where(valid, jnp.where(offsets == 0, first, rest), 0.0)
    onehot = (segments[..., None] == jnp.arange(num_actions)).astype(jnp.float32)  # [B, L, A]
    total = jnp.einsum("bl,bla->ba", lp, onehot)
    n = onehot.sum(1)
    score = total / jnp.maximum(n, 1) if normalize else total
    return jnp.where(n > 0, score, -jnp.inf)


@functools.partial(jax.jit, static_argnames=("config", "normalize"))
def sequence_logprobs(
    params: Params,
    tokens: jax.Array,
    mask: jax.Array,
    target_mask: jax.Array,
    *,
    config: LlamaConfig,
    normalize: bool = False,
) -> jax.Array:
    """No-cache scoring: Σ log p(token_t | tokens_<t) over positions where ``target_mask`` is True.

    tokens, mask, target_mask: ``[N, T]`` (one full prompt+action sequence per row, right-padded; target_mask
    marks the action tokens, never position 0). Returns ``[N]`` (the mean instead if ``normalize``).
    """
    model = LlamaLM(config)
    N, T = tokens.shape
    mask = mask.astype(bool)
    positions = jnp.broadcast_to(jnp.arange(T, dtype=jnp.int32), (N, T))
    hidden, _ = model.apply({"params": params}, tokens[:, None], positions[:, None], mask[:, None])
    D = hidden.shape[-1]
    lp = _token_logprobs(model, params, hidden[:, 0, :-1].reshape(-1, D), tokens[:, 1:].reshape(-1)).reshape(N, T - 1)
    tmask = target_mask[:, 1:].astype(bool)
    total = jnp.where(tmask, lp, 0.0).sum(-1)
    n = tmask.sum(-1)
    return total / jnp.maximum(n, 1) if normalize else total


# ---------------------------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------------------------
def _filter_top_p(logits: jax.Array, top_p: jax.Array) -> jax.Array:
    """Keep the smallest set of highest logits whose probability mass reaches ``top_p`` (the top one always)."""
    sorted_logits = jnp.sort(logits, axis=-1)[..., ::-1]
    probs = jax.nn.softmax(sorted_logits, axis=-1)
    mass_before = jnp.cumsum(probs, axis=-1) - probs
    keep = mass_before < top_p
    threshold = jnp.min(jnp.where(keep, sorted_logits, jnp.inf), axis=-1, keepdims=True)
    return jnp.where(logits >= threshold, logits, -jnp.inf)


def _sample_token(key: jax.Array, logits: jax.Array, temperature: jax.Array, top_p: jax.Array) -> jax.Array:
    """One token per row of ``logits [..., V]``; temperature <= 0 means greedy."""
    scaled = logits / jnp.maximum(temperature, 1e-6)
    scaled = jax.lax.cond(top_p < 1.0, _filter_top_p, lambda x, _: x, scaled, top_p)
    sampled = jax.random.categorical(key, scaled, axis=-1)
    return jnp.where(temperature > 0, sampled, jnp.argmax(logits, axis=-1)).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("config", "k", "max_new_tokens"))
def sample_actions(
    params: Params,
    key: jax.Array,
    prompt_tokens: jax.Array,
    prompt_mask: jax.Array,
    stop_mask: jax.Array,
    *,
    config: LlamaConfig,
    k: int,
    max_new_tokens: int,
    temperature: float | jax.Array = 1.0,
    top_p: float | jax.Array = 1.0,
) -> tuple[jax.Array, jax.Array]:
    """``k`` sampled continuations of each prompt, with a KV cache.

    prompt_tokens, prompt_mask: ``[B, Tp]`` right-padded. stop_mask: ``bool [V]``, True for tokens that end a
    generation (EOS, newline tokens). temperature (<= 0: greedy) and top_p are traced, so changing them does not
    recompile. Returns tokens ``int32 [B, k, max_new_tokens]`` and lengths ``int32 [B, k]``: the number of tokens
    before the first stop token (the stop token itself is excluded; tokens past it are meaningless).
    """
    model = LlamaLM(config)
    G = max_new_tokens
    temperature = jnp.asarray(temperature, jnp.float32)
    top_p = jnp.asarray(top_p, jnp.float32)
    last_logits, prefix, lengths = _prefill(model, params, prompt_tokens, prompt_mask)
    B = prompt_tokens.shape[0]
    key, sub = jax.random.split(key)
    first = _sample_token(sub, jnp.broadcast_to(last_logits[:, None], (B, k, last_logits.shape[-1])),
                          temperature, top_p)
    L, KV, Dh = config.num_layers, config.num_kv_heads, config.head_dim
    dtype = prefix.k.dtype
    tokens = jnp.zeros((B, k, G), jnp.int32).at[:, :, 0].set(first)
    done = stop_mask[first]
    out_len = jnp.where(done, 0, G).astype(jnp.int32)
    past = Past(jnp.zeros((L, B, k, G, KV, Dh), dtype), jnp.zeros((L, B, k, G, KV, Dh), dtype),
                jnp.zeros((B, k, G), bool))

    def cond(state):
        t, _, _, done, _, _ = state
        return (t < G - 1) & ~jnp.all(done)

    def body(state):
        t, tokens, past, done, out_len, key = state
        cur = jax.lax.dynamic_slice_in_dim(tokens, t, 1, axis=2)  # [B, k, 1]
        positions = jnp.broadcast_to((lengths + t)[:, None, None], (B, k, 1))
        hidden, (nk, nv) = model.apply({"params": params}, cur, positions, jnp.ones((B, k, 1), bool),
                                       prefix=prefix, past=past)
        logits = model.apply({"params": params}, hidden[:, :, 0], method=LlamaLM.logits)  # [B, k, V]
        key, sub = jax.random.split(key)
        nxt = _sample_token(sub, logits, temperature, top_p)
        past = Past(
            jax.lax.dynamic_update_slice_in_dim(past.k, nk, t, axis=3),
            jax.lax.dynamic_update_slice_in_dim(past.v, nv, t, axis=3),
            jax.lax.dynamic_update_slice_in_dim(past.mask, jnp.ones((B, k, 1), bool), t, axis=2),
        )
        tokens = jax.lax.dynamic_update_slice_in_dim(tokens, nxt[:, :, None], t + 1, axis=2)
        stops = stop_mask[nxt] & ~done
        out_len = jnp.where(stops, t + 1, out_len)
        return t + 1, tokens, past, done | stops, out_len, key

    state = (jnp.int32(0), tokens, past, done, out_len, key)
    _, tokens, _, _, out_len, _ = jax.lax.while_loop(cond, body, state)
    return tokens, out_len


@functools.partial(jax.jit, static_argnames=("k",))
def sample_from_exact(
    key: jax.Array, logprobs: jax.Array, k: int, temperature: float | jax.Array = 1.0,
    mask: jax.Array | None = None,
) -> jax.Array:
    """``k`` candidate indices per row from softmax(logprobs / temperature) over the admissible set.

    logprobs: ``[B, A]`` (``-inf`` = not admissible); mask: optional ``bool [B, A]`` (False = not admissible).
    temperature <= 0 returns the argmax k times. Each row needs at least one admissible entry.
    Returns ``int32 [B, k]``; duplicates are kept (their frequency carries the prior, as in the reference).
    """
    logits = logprobs if mask is None else jnp.where(mask, logprobs, -jnp.inf)
    temperature = jnp.asarray(temperature, jnp.float32)
    draws = jax.random.categorical(key, logits / jnp.maximum(temperature, 1e-6), axis=-1,
                                   shape=(k, logits.shape[0])).T
    greedy = jnp.broadcast_to(jnp.argmax(logits, axis=-1)[:, None], draws.shape)
    return jnp.where(temperature > 0, draws, greedy).astype(jnp.int32)


# ---------------------------------------------------------------------------------------------------------------
# Text -> action
# ---------------------------------------------------------------------------------------------------------------
def map_text_to_action(text: str, actions: Sequence[str]) -> int:
    """The reference rule (method.md §3.4): the action whose text occurs most often in ``text`` (case-insensitive,
    non-overlapping substring count); ties go to the later action; no match gives the last action."""
    if not actions:
        raise ValueError("map_text_to_action: the admissible action list is empty")
    low = text.lower()
    best, best_count = 0, -1
    for i, action in enumerate(actions):
        count = low.count(action.lower()) if action else 0
        if count >= best_count:  # ">=": the later action wins ties, and all-zero counts give the last one
            best, best_count = i, count
    return best


# ---------------------------------------------------------------------------------------------------------------
# Convenience class
# ---------------------------------------------------------------------------------------------------------------
class ActionPrior:
    """The prior over each observation's admissible actions, for environment loops.

    ``llm``: a loaded :class:`prior_rl.weights.LLM`. ``prompt_fn``: ``obs -> prompt text`` (default
    :class:`prior_rl.prompts.PromptBuilder`, chosen by ``obs.extra["family"]``); candidates are scored as the
    continuation ``action_prefix + action`` (default: ``prompt_fn.action_prefix`` if it has one, else ``" "``).
    Trailing spaces of a prompt move into the continuation, so the prompt and the action tokenise as they would
    together. ``cache``: optional object with ``get(key)`` / ``put(key, value)`` (or a dict), keyed by
    ``(model key, prompt, actions)``; it stores the log-softmax arrays of :meth:`logprobs`. ``normalize`` (default
    True): score an action by its mean token log-prob instead of the sum. Sums favour short actions; on
    hand-written Overcooked and ALFWorld states SmolLM2-135M put the right action first in 4 of 8 states with the
    mean and 2 of 8 with the sum (TWOSOME also normalises by length).

    ``max_tokens_per_call`` bounds the tokens (prompts plus candidates, after padding) of one jitted call; larger
    batches are split.
    """

    def __init__(
        self,
        llm: LLM,
        prompt_fn: Callable[[TextObservation], str] | None = None,
        cache: Any = None,
        normalize: bool = True,
        *,
        action_prefix: str | None = None,
        max_new_tokens: int = 10,
        temperature: float = 1.0,
        top_p: float = 1.0,
        stop_at_newline: bool = True,
        length_multiple: int = 16,
        max_tokens_per_call: int = 8192,
    ):
        self.llm = llm
        if prompt_fn is None:
            prompt_fn = PromptBuilder()
        if isinstance(prompt_fn, PromptBuilder) and prompt_fn.chat and prompt_fn.tokenizer is None:
            prompt_fn = dataclasses.replace(prompt_fn, tokenizer=llm.tokenizer)
        self.prompt_fn = prompt_fn
        self.action_prefix = action_prefix if action_prefix is not None else getattr(prompt_fn, "action_prefix", " ")
        self.cache = cache
        self.normalize = bool(normalize)
        self.max_new_tokens = int(max_new_tokens)
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.length_multiple = int(length_multiple)
        self.max_tokens_per_call = int(max_tokens_per_call)
        tok = llm.tokenizer
        stop = tok.newline_mask(llm.config.vocab_size).copy() if stop_at_newline else np.zeros(
            llm.config.vocab_size, bool)
        stop[[i for i in tok.eos_ids if i < llm.config.vocab_size]] = True
        self._stop_mask = jnp.asarray(stop)
        self._action_ids: dict[str, list[int]] = {}
        self.model_key = f"{llm.name}|{'mean' if normalize else 'sum'}|{self.action_prefix!r}"

    # -- text preparation ----------------------------------------------------------------------------------
    def _prompt(self, obs: TextObservation) -> tuple[str, str]:
        """(prompt without trailing spaces, continuation prefix carrying them)."""
        text = self.prompt_fn(obs)
        stripped = text.rstrip(" ")
        return stripped, text[len(stripped):] + self.action_prefix

    def _encode_prompts(self, prompts: Sequence[str]) -> list[list[int]]:
        ids = self.llm.tokenizer.encode_batch(prompts, add_special_tokens=True)
        for p, s in zip(prompts, ids):
            if not s:
                raise ValueError(f"empty prompt: the prompt function returned {p!r}")
        return ids

    def _encode_action(self, text: str) -> list[int]:
        ids = self._action_ids.get(text)
        if ids is None:
            ids = self.llm.tokenizer.encode(text, add_special_tokens=False)
            if not ids:
                raise ValueError(f"candidate {text!r} tokenises to nothing")
            self._action_ids[text] = ids
        return ids

    def _check_context(self, n_prompt: int, n_cont: int, prompt: str) -> None:
        limit = self.llm.config.max_position_embeddings
        if n_prompt + n_cont > limit:
            raise ValueError(
                f"prompt of {n_prompt} tokens plus a continuation of {n_cont} tokens exceeds the context limit of "
                f"{limit} tokens of model '{self.llm.name}' (max_position_embeddings); shorten the prompt (e.g. a "
                f"shorter history). Prompt starts: {prompt[:80]!r}"
            )

    # -- cache ---------------------------------------------------------------------------------------------
    def _cache_get(self, key: Any) -> Any:
        if self.cache is None:
            return None
        return self.cache.get(key)

    def _cache_put(self, key: Any, value: Any) -> None:
        if self.cache is None:
            return
        if hasattr(self.cache, "put"):
            self.cache.put(key, value)
        else:
            self.cache[key] = value

    # -- scoring -------------------------------------------------------------------------------------------
    def logprobs(self, observations: Sequence[TextObservation]) -> list[np.ndarray]:
        """Per observation, ``float32 [len(obs.actions)]``: log-softmax of the LLM's action scores over the
        observation's admissible actions."""
        results: list[np.ndarray | None] = [None] * len(observations)
        todo: list[tuple[int, str, str, tuple[str, ...], Any]] = []
        for i, obs in enumerate(observations):
            if not obs.actions:
                raise ValueError(f"observation {i} has no admissible actions")
            prompt, prefix = self._prompt(obs)
            key = (self.model_key, prompt, tuple(obs.actions))
            hit = self._cache_get(key)
            if hit is not None:
                results[i] = np.asarray(hit)
            else:
                todo.append((i, prompt, prefix, tuple(obs.actions), key))
        if todo:
            unique: dict[Any, tuple[str, str, tuple[str, ...]]] = {}  # a batch often repeats a state
            for _, prompt, prefix, actions, key in todo:
                unique.setdefault(key, (prompt, prefix, actions))
            keys = list(unique)
            prompts = [unique[k][0] for k in keys]
            scores = self._score(prompts, [[unique[k][1] + a for a in unique[k][2]] for k in keys])
            computed = {}
            for key, s in zip(keys, scores):
                computed[key] = (s - np.logaddexp.reduce(s)).astype(np.float32)
                self._cache_put(key, computed[key])
            for i, _, _, _, key in todo:
                results[i] = computed[key]
        return results  # type: ignore[return-value]

    def score(self, prompts: Sequence[str], continuations: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Raw log p(continuation | prompt) (sum, or mean if ``normalize``) for arbitrary strings; no softmax,
        no cache. ``continuations[b]`` are the full continuation strings of ``prompts[b]``."""
        return self._score(list(prompts), [list(c) for c in continuations])

    def _score(self, prompts: list[str], conts: list[list[str]]) -> list[np.ndarray]:
        p_ids = self._encode_prompts(prompts)
        c_ids = [[self._encode_action(c) for c in group] for group in conts]
        for p, pi, group in zip(prompts, p_ids, c_ids):
            self._check_context(len(pi), max(len(c) for c in group), p)
        out: list[np.ndarray] = [None] * len(prompts)  # type: ignore[list-item]
        # Sort by prompt length so a chunk's rows have similar lengths (less padding).
        order = sorted(range(len(prompts)), key=lambda i: (len(p_ids[i]), len(c_ids[i])))
        start = 0
        while start < len(order):
            chunk = self._chunk(order[start:], p_ids, c_ids)
            idx = order[start:start + chunk]
            start += chunk
            out_chunk = self._score_chunk([p_ids[i] for i in idx], [c_ids[i] for i in idx])
            for j, i in enumerate(idx):
                out[i] = out_chunk[j][: len(c_ids[i])]
        return out

    def _shapes(self, p_ids, c_ids) -> tuple[int, int, int]:
        """Bucketed (prompt length, candidates per row, packed candidate tokens per row)."""
        Tp = bucket_length(max(len(p) for p in p_ids), self.length_multiple)
        A = next_pow2(max(len(g) for g in c_ids))
        L = bucket_length(max(sum(len(c) for c in g) for g in c_ids), self.length_multiple)
        return Tp, A, L

    def _chunk(self, rest: list[int], p_ids, c_ids) -> int:
        """How many of ``rest`` (sorted by length) fit in one call under ``max_tokens_per_call``."""
        n = 1
        while n < len(rest):
            cand = rest[: n * 2]
            Tp, _, L = self._shapes([p_ids[i] for i in cand], [c_ids[i] for i in cand])
            if next_pow2(len(cand)) * (Tp + L) > self.max_tokens_per_call:
                break
            n *= 2
        return min(n, len(rest))

    def _score_chunk(self, p_ids: list[list[int]], c_ids: list[list[list[int]]]) -> np.ndarray:
        Tp, A, L = self._shapes(p_ids, c_ids)
        B = next_pow2(len(p_ids))
        pad = self.llm.tokenizer.pad_id
        # Padding rows: a one-token prompt with no candidates (scores -inf, discarded).
        p_rows = list(p_ids) + [[pad]] * (B - len(p_ids))
        c_rows = list(c_ids) + [[]] * (B - len(c_ids))
        pt, pm = pad_sequences(p_rows, Tp, pad)
        ct, seg, off = pack_groups(c_rows, L, pad)
        lp = packed_action_logprobs(self.llm.params, pt, pm, ct, seg, off, config=self.llm.config, num_actions=A,
                                    normalize=self.normalize)
        return np.asarray(lp)[: len(p_ids)]

    # -- candidates ----------------------------------------------------------------------------------------
    def generate(self, rng: jax.Array | int, observations: Sequence[TextObservation], k: int) -> list[list[str]]:
        """``k`` generated texts per observation (sampled with this prior's temperature / top_p, at most
        ``max_new_tokens`` tokens, cut at EOS or a newline)."""
        key = jax.random.key(rng) if isinstance(rng, (int, np.integer)) else rng
        prompts = [self.prompt_fn(o) for o in observations]
        p_ids = self._encode_prompts(prompts)
        for p, pi in zip(prompts, p_ids):
            self._check_context(len(pi), self.max_new_tokens, p)
        Tp = bucket_length(max(len(p) for p in p_ids), self.length_multiple)
        B = next_pow2(len(p_ids))
        pad = self.llm.tokenizer.pad_id
        pt, pm = pad_sequences(list(p_ids) + [[pad]] * (B - len(p_ids)), Tp, pad)
        tokens, lengths = sample_actions(
            self.llm.params, key, pt, pm, self._stop_mask, config=self.llm.config, k=int(k),
            max_new_tokens=self.max_new_tokens, temperature=self.temperature, top_p=self.top_p,
        )
        tokens, lengths = np.asarray(tokens), np.asarray(lengths)
        tok = self.llm.tokenizer
        return [[tok.decode(tokens[b, j, : lengths[b, j]]) for j in range(int(k))] for b in range(len(prompts))]

    def candidates(self, rng: jax.Array | int, observations: Sequence[TextObservation], k: int,
                   mode: str = "exact") -> np.ndarray:
        """``int32 [B, k]`` action indices per observation (duplicates kept).

        mode "exact": k draws from the softmax of :meth:`logprobs` (at this prior's temperature).
        mode "generate": k generations mapped to actions with :func:`map_text_to_action` (the reference's way).
        """
        if mode == "exact":
            lps = self.logprobs(observations)
            A = max(len(x) for x in lps)
            table = np.full((len(lps), A), -np.inf, np.float32)
            for i, x in enumerate(lps):
                table[i, : len(x)] = x
            key = jax.random.key(rng) if isinstance(rng, (int, np.integer)) else rng
            return np.asarray(sample_from_exact(key, jnp.asarray(table), int(k), self.temperature))
        if mode == "generate":
            texts = self.generate(rng, observations, k)
            return np.array([[map_text_to_action(t, obs.actions) for t in row]
                             for row, obs in zip(texts, observations)], dtype=np.int32)
        raise ValueError(f"unknown candidate mode {mode!r}; use 'exact' or 'generate'")

