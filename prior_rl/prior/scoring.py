"""The LLM action prior's pure jitted scoring and sampling functions and the text-to-action rule.

Pure functions (batched over environments; ``config`` is static, everything else traced):

* :func:`action_logprobs` — log p(action | prompt) for every candidate: ``[B, A]``. Each prompt is encoded once
  (prefill) and its KV cache is shared by all its candidates (no copy per candidate).
* :func:`packed_action_logprobs` — the same with each prompt's candidates packed end to end in one row (a
  segment mask keeps them independent), so no compute goes to per-candidate padding; what ActionPrior uses.
* :func:`sequence_logprobs` — the same quantity from a plain forward pass over each full prompt+action sequence
  (the no-cache path; used to check the cached one).
* :func:`trie_action_logprobs` — the same with each prompt's candidates packed as a prefix trie (a shared prefix is
  encoded once); what ActionPrior uses by default.
* :func:`prefill`, :func:`context_action_logprobs` — prompts that share a prefilled preamble (one ``Prefix`` with
  ``B = 1``, never copied per row) and extend per-row cached histories (``Past``): only the new tokens and the
  candidates are encoded (segmented prompts, :mod:`prior_rl.prior.kv_cache`).
* :func:`sample_actions` — ``k`` generations per prompt with a KV cache inside ``lax.while_loop``; stops at EOS
  or a newline token. :func:`context_sample_actions` — the same on the preamble / history caches.
* :func:`sample_from_exact` — ``k`` candidate indices per row from the exact (softmaxed) prior.

:func:`map_text_to_action` is the reference rule that maps a generation to an admissible action (docs/method.md §3.4).
:class:`prior_rl.prior.action_prior.ActionPrior` tokenises, buckets shapes, batches, caches and calls these.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from prior_rl.llm.llama import LlamaConfig, LlamaLM, Params, Past, Prefix

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


@functools.partial(jax.jit, static_argnames=("config",))
def action_hidden_states(
    params: Params,
    prompt_tokens: jax.Array,
    prompt_mask: jax.Array,
    action_tokens: jax.Array,
    action_mask: jax.Array,
    *,
    config: LlamaConfig,
) -> jax.Array:
    """The LLM's own representation of each (prompt, candidate) pair: the final-norm hidden state after the
    candidate's last token, ``[B, A, D]`` float32 (inputs as in :func:`action_logprobs`; the same prefill and
    extension the scoring runs, so these are the states the prior's next-token head reads)."""
    model = LlamaLM(config)
    B, A, Ta = action_tokens.shape
    amask = action_mask.astype(bool)
    _, prefix, lengths = _prefill(model, params, prompt_tokens, prompt_mask)
    positions = lengths[:, None, None] + jnp.arange(Ta, dtype=jnp.int32)
    hidden, _ = model.apply({"params": params}, action_tokens, positions, amask, prefix=prefix)  # [B, A, Ta, D]
    last = jnp.maximum(amask.sum(-1) - 1, 0)
    h = jnp.take_along_axis(hidden, last[:, :, None, None], axis=2)[:, :, 0]
    return model.apply({"params": params}, h, method=lambda m, x: m.norm(x)).astype(jnp.float32)


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
    hidden, _ = model.apply(
        {"params": params},
        packed_tokens[:, None],
        positions[:, None],
        valid[:, None],
        prefix=prefix,
        segments=segments[:, None],
    )
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


def _logsumexp_rows(model: LlamaLM, params: Params, hidden: jax.Array) -> jax.Array:
    """logsumexp of the head's logits under ``hidden [M, D]``: ``[M]``, in chunks of rows (as
    :func:`_token_logprobs`)."""
    M, D = hidden.shape
    C = min(_HEAD_CHUNK, M)
    pad = (-M) % C
    h = jnp.pad(hidden, ((0, pad), (0, 0))).reshape(-1, C, D)
    lse = jax.lax.map(lambda hc: jax.nn.logsumexp(model.apply({"params": params}, hc, method=LlamaLM.logits), -1), h)
    return lse.reshape(-1)[:M]


def _trie_scores(model, params, hidden, last_logits, tokens, parents, ancestors, ends, normalize):
    """Candidate scores from a trie's hidden states (see :func:`trie_action_logprobs`): node j's token is
    predicted by its parent's position (the prompt's last one for a first token); each parent's logsumexp is
    computed once, however many children it has, and each child's logit is one row of the head."""
    B, L, D = hidden.shape
    root = jnp.take_along_axis(jax.nn.log_softmax(last_logits, axis=-1), tokens, axis=-1)  # [B, L]
    lse = _logsumexp_rows(model, params, hidden.reshape(-1, D)).reshape(B, L)
    src = jnp.maximum(parents, 0)
    parent_hidden = jnp.take_along_axis(hidden, src[..., None], axis=1)  # [B, L, D]
    picked = model.apply({"params": params}, parent_hidden, tokens, method=LlamaLM.token_logits)
    inner = picked - jnp.take_along_axis(lse, src, axis=1)
    valid = jnp.diagonal(ancestors, axis1=1, axis2=2)  # a real node attends to itself
    lp = jnp.where(valid, jnp.where(parents < 0, root, inner), 0.0)  # [B, L]
    on_path = jnp.take_along_axis(ancestors, jnp.maximum(ends, 0)[..., None], axis=1)  # [B, A, L]
    on_path = on_path & (ends >= 0)[..., None]
    total = jnp.einsum("bl,bal->ba", lp, on_path.astype(jnp.float32))
    n = on_path.sum(-1)
    score = total / jnp.maximum(n, 1) if normalize else total
    return jnp.where(n > 0, score, -jnp.inf)


@functools.partial(jax.jit, static_argnames=("config", "normalize"))
def trie_action_logprobs(
    params: Params,
    prompt_tokens: jax.Array,
    prompt_mask: jax.Array,
    trie_tokens: jax.Array,
    parents: jax.Array,
    depths: jax.Array,
    ancestors: jax.Array,
    ends: jax.Array,
    *,
    config: LlamaConfig,
    normalize: bool = False,
) -> jax.Array:
    """:func:`packed_action_logprobs` with each prompt's candidates packed as a prefix trie
    (:func:`prior_rl.llm.padding.pack_trie`): a token prefix shared by several candidates is encoded once, and
    the head's logsumexp is computed once per node, so ALFWorld's 25 candidates cost 86 token positions instead of
    135. Each node attends to its prompt's cache and to its ancestors (``ancestors``), at position prompt length +
    depth, so every candidate is scored exactly as in the other layouts (up to float rounding).

    prompt_tokens, prompt_mask: ``[B, Tp]``; trie_tokens, parents, depths: ``[B, L]``; ancestors ``[B, L, L]``;
    ends ``[B, A]`` (each candidate's last node, -1 for none). Returns ``[B, A]``: sum (or mean if
    ``normalize``) of each candidate's token log-probs; ``-inf`` for candidates with no tokens.
    """
    model = LlamaLM(config)
    last_logits, prefix, lengths = _prefill(model, params, prompt_tokens, prompt_mask)
    valid = jnp.diagonal(ancestors, axis1=1, axis2=2)
    hidden, _ = model.apply(
        {"params": params},
        trie_tokens[:, None],
        (lengths[:, None] + depths)[:, None],
        valid[:, None],
        prefix=prefix,
        attend=ancestors[:, None],
    )
    return _trie_scores(model, params, hidden[:, 0], last_logits, trie_tokens, parents, ancestors, ends, normalize)


@functools.partial(jax.jit, static_argnames=("config",))
def prefill(params: Params, prompt_tokens: jax.Array, prompt_mask: jax.Array, *, config: LlamaConfig) -> Prefix:
    """The :class:`Prefix` KV cache of right-padded prompts ``[B, Tp]`` (e.g. a shared preamble, ``B = 1``)."""
    _, prefix, _ = _prefill(LlamaLM(config), params, prompt_tokens, prompt_mask)
    return prefix


def _extend(model: LlamaLM, params: Params, prefix: Prefix, past: Past | None, past_lengths, ext_tokens, ext_lengths):
    """Encode each row's extension block on top of the shared ``prefix`` and its own ``past``.

    Layout ``B = 1, N = rows``: prefix ``[L, 1, S, KV, Dh]`` (one preamble shared by every row), past
    ``[L, 1, N, P, KV, Dh]`` (row n's cached turns, left-aligned: slots ``< past_lengths[n]`` real), ext_tokens
    ``[N, Te]`` right-padded with ``ext_lengths [N] >= 1`` real tokens. Positions are absolute token counts.
    Returns (logits after each row's last real token ``[N, V]``, the extension's (k, v) ``[L, 1, N, Te, KV, Dh]``,
    its mask ``[1, N, Te]``, the position after it ``[N]``).
    """
    N, Te = ext_tokens.shape
    base = prefix.mask.sum(-1).astype(jnp.int32)[0] + past_lengths.astype(jnp.int32)  # [N]
    positions = base[:, None] + jnp.arange(Te, dtype=jnp.int32)
    mask = jnp.arange(Te) < ext_lengths[:, None]
    hidden, (k, v) = model.apply(
        {"params": params}, ext_tokens[None], positions[None], mask[None], prefix=prefix, past=past
    )
    last = hidden[0, jnp.arange(N), jnp.maximum(ext_lengths - 1, 0)]  # [N, D]
    last_logits = model.apply({"params": params}, last, method=LlamaLM.logits)
    return last_logits, (k, v), mask[None], base + ext_lengths


@functools.partial(jax.jit, static_argnames=("config", "normalize"))
def context_action_logprobs(
    params: Params,
    prefix: Prefix,
    past: Past | None,
    past_lengths: jax.Array,
    ext_tokens: jax.Array,
    ext_lengths: jax.Array,
    trie_tokens: jax.Array,
    parents: jax.Array,
    depths: jax.Array,
    ancestors: jax.Array,
    ends: jax.Array,
    *,
    config: LlamaConfig,
    normalize: bool = False,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """:func:`trie_action_logprobs` for prompts that share a cached preamble and extend a cached history.

    Row ``n``'s prompt is ``preamble ++ past[n] ++ ext[n]``: ``prefix`` holds the preamble's KV (``B = 1``, shared
    by all rows, never copied per row), ``past`` the KV of the row's already-encoded turns (``[L, 1, N, P, KV, Dh]``
    with mask ``[1, N, P]``, or None), and ``ext_tokens [N, Te]`` (``ext_lengths [N] >= 1`` real tokens) the rest
    of the prompt: the new turns and the cue. The extension is encoded on top of prefix + past (pass 1), then the
    candidates' trie ``[N, L]`` (:func:`prior_rl.llm.padding.pack_trie`) attends to prefix + past + extension
    (pass 2). Equal to scoring the concatenated ids from scratch up to float rounding. Uses the model's
    ``attention="grouped"`` core (KV-head-major matmuls; about 2x faster on CPU against a long shared prefix).

    Returns (scores ``[N, A]``, the extension's k and v ``[L, N, Te, KV, Dh]``, to be cached by the caller: row
    n's first tokens of the extension continue its history).
    """
    model = LlamaLM(config, attention="grouped")
    last_logits, (k, v), ext_mask, start = _extend(model, params, prefix, past, past_lengths, ext_tokens, ext_lengths)
    if past is None:
        full = Past(k, v, ext_mask)
    else:
        full = Past(
            jnp.concatenate([past.k, k], axis=3),
            jnp.concatenate([past.v, v], axis=3),
            jnp.concatenate([past.mask, ext_mask], axis=2),
        )
    valid = jnp.diagonal(ancestors, axis1=1, axis2=2)
    hidden, _ = model.apply(
        {"params": params},
        trie_tokens[None],
        (start[:, None] + depths)[None],
        valid[None],
        prefix=prefix,
        past=full,
        attend=ancestors[None],
    )
    scores = _trie_scores(model, params, hidden[0], last_logits, trie_tokens, parents, ancestors, ends, normalize)
    return scores, k[:, 0], v[:, 0]


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
    temperature = jnp.asarray(temperature, jnp.float32)
    top_p = jnp.asarray(top_p, jnp.float32)
    last_logits, prefix, lengths = _prefill(model, params, prompt_tokens, prompt_mask)
    return _sample_loop(
        model, params, key, last_logits, prefix, lengths, stop_mask, config, k, max_new_tokens, temperature, top_p
    )


def _sample_loop(
    model, params, key, last_logits, prefix, lengths, stop_mask, config, k, max_new_tokens, temperature, top_p
):
    """k branches per row on a :class:`Prefix` whose next absolute position is ``lengths [B]``, given the logits
    after its last token ``[B, V]``: the decoding loop of :func:`sample_actions`."""
    G = max_new_tokens
    B = last_logits.shape[0]
    key, sub = jax.random.split(key)
    first = _sample_token(
        sub, jnp.broadcast_to(last_logits[:, None], (B, k, last_logits.shape[-1])), temperature, top_p
    )
    L, KV, Dh = config.num_layers, config.num_kv_heads, config.head_dim
    dtype = prefix.k.dtype
    tokens = jnp.zeros((B, k, G), jnp.int32).at[:, :, 0].set(first)
    done = stop_mask[first]
    out_len = jnp.where(done, 0, G).astype(jnp.int32)
    past = Past(
        jnp.zeros((L, B, k, G, KV, Dh), dtype), jnp.zeros((L, B, k, G, KV, Dh), dtype), jnp.zeros((B, k, G), bool)
    )

    def cond(state):
        t, _, _, done, _, _ = state
        return (t < G - 1) & ~jnp.all(done)

    def body(state):
        t, tokens, past, done, out_len, key = state
        cur = jax.lax.dynamic_slice_in_dim(tokens, t, 1, axis=2)  # [B, k, 1]
        positions = jnp.broadcast_to((lengths + t)[:, None, None], (B, k, 1))
        hidden, (nk, nv) = model.apply(
            {"params": params}, cur, positions, jnp.ones((B, k, 1), bool), prefix=prefix, past=past
        )
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


@functools.partial(jax.jit, static_argnames=("config", "k", "max_new_tokens"))
def context_sample_actions(
    params: Params,
    key: jax.Array,
    prefix: Prefix,
    past: Past | None,
    past_lengths: jax.Array,
    ext_tokens: jax.Array,
    ext_lengths: jax.Array,
    stop_mask: jax.Array,
    *,
    config: LlamaConfig,
    k: int,
    max_new_tokens: int,
    temperature: float | jax.Array = 1.0,
    top_p: float | jax.Array = 1.0,
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """:func:`sample_actions` for prompts laid out as in :func:`context_action_logprobs` (shared preamble
    ``prefix``, per-row cached ``past``, extension ``ext_tokens``). Returns (tokens ``[N, k, G]``, lengths
    ``[N, k]``, the extension's k and v ``[L, N, Te, KV, Dh]``)."""
    model = LlamaLM(config, attention="grouped")
    temperature = jnp.asarray(temperature, jnp.float32)
    top_p = jnp.asarray(top_p, jnp.float32)
    last_logits, (ek, ev), ext_mask, start = _extend(model, params, prefix, past, past_lengths, ext_tokens, ext_lengths)
    N = ext_tokens.shape[0]
    L, _, S, KV, Dh = prefix.k.shape
    ks = [jnp.broadcast_to(prefix.k, (L, N, S, KV, Dh))]
    vs = [jnp.broadcast_to(prefix.v, (L, N, S, KV, Dh))]
    ms = [jnp.broadcast_to(prefix.mask, (N, S))]
    if past is not None:
        ks.append(past.k[:, 0])
        vs.append(past.v[:, 0])
        ms.append(past.mask[0])
    ks.append(ek[:, 0])
    vs.append(ev[:, 0])
    ms.append(ext_mask[0])
    rows = Prefix(jnp.concatenate(ks, axis=2), jnp.concatenate(vs, axis=2), jnp.concatenate(ms, axis=1))
    tokens, lengths = _sample_loop(
        model, params, key, last_logits, rows, start, stop_mask, config, k, max_new_tokens, temperature, top_p
    )
    return tokens, lengths, ek[:, 0], ev[:, 0]


@functools.partial(jax.jit, static_argnames=("k",))
def sample_from_exact(
    key: jax.Array,
    logprobs: jax.Array,
    k: int,
    temperature: float | jax.Array = 1.0,
    mask: jax.Array | None = None,
) -> jax.Array:
    """``k`` candidate indices per row from softmax(logprobs / temperature) over the admissible set.

    logprobs: ``[B, A]`` (``-inf`` = not admissible); mask: optional ``bool [B, A]`` (False = not admissible).
    temperature <= 0 returns the argmax k times. Each row needs at least one admissible entry.
    Returns ``int32 [B, k]``; duplicates are kept (their frequency carries the prior, as in the reference).
    """
    logits = logprobs if mask is None else jnp.where(mask, logprobs, -jnp.inf)
    temperature = jnp.asarray(temperature, jnp.float32)
    draws = jax.random.categorical(key, logits / jnp.maximum(temperature, 1e-6), axis=-1, shape=(k, logits.shape[0])).T
    greedy = jnp.broadcast_to(jnp.argmax(logits, axis=-1)[:, None], draws.shape)
    return jnp.where(temperature > 0, draws, greedy).astype(jnp.int32)


# ---------------------------------------------------------------------------------------------------------------
# Text -> action
# ---------------------------------------------------------------------------------------------------------------
def map_text_to_action(text: str, actions: Sequence[str]) -> int:
    """The reference rule (docs/method.md §3.4): the action whose text occurs most often in ``text`` (case-insensitive,
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
