"""ActionPrior: the LLM prior on environment observations — prompts, tokenisation, shape buckets, batching, the
prompt cache, the KV caches of segmented prompts and the generation cache, around the pure functions of
:mod:`prior_rl.prior.scoring`."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from envs.base import TextObservation
from prior_rl.llm.cache import PriorCache
from prior_rl.llm.llama import Past
from prior_rl.llm.padding import (
    bucket_length,
    next_pow2,
    pack_groups,
    pack_trie,
    pad_nested,
    pad_sequences,
    trie_size,
)
from prior_rl.llm.weights import LLM
from prior_rl.prior.kv_cache import ContextCache, PreambleEntry, TurnNode
from prior_rl.prior.prompts import PromptBuilder
from prior_rl.prior.scoring import (
    action_hidden_states,
    context_action_logprobs,
    context_sample_actions,
    map_text_to_action,
    packed_action_logprobs,
    prefill,
    sample_actions,
    sample_from_exact,
    trie_action_logprobs,
)
from prior_rl.prior.segments import SegmentedPrompt, SegmentTokenizer, as_segmented, fit, token_ids

Prompt = str | SegmentedPrompt
CONTEXT_MODES = ("episode", "preamble", "off")

# Query-key pairs per context call (candidates and the newest turn against the whole context): beyond about this
# many, the float32 score tensors (x heads) fall out of a CPU's cache and batching more rows stops paying.
_MAX_PAIRS = 1 << 21

COUNTERS = (
    "llm_s",  # wall time inside logprobs() and candidates(), each call counted once (cache hits included)
    "logprobs_calls",  # ActionPrior.logprobs calls (candidates(mode="exact") makes one each)
    "logprobs_s",  # their total wall time
    "last_logprobs_s",
    "candidates_calls",
    "candidates_s",  # total wall time of candidates() (includes its logprobs / generation)
    "last_candidates_s",
    "prompt_cache_hits",  # observations answered by the prompt cache (key: model, full prompt, actions)
    "prompt_cache_misses",
    "prompts_scored",  # distinct prompts sent to the LLM
    "segmented_prompts",  # of which SegmentedPrompts
    "truncations",  # SegmentedPrompts that fit() shortened (oldest turns after turn 0 dropped)
    "preamble_hits",  # segmented rows whose preamble KV was already prefilled
    "preamble_prefills",  # preamble prefills (once per (model, preamble) while it stays cached)
    "episode_hits",  # rows whose whole history was cached (only the cue encoded)
    "episode_extensions",  # rows that encoded exactly one new turn on top of their cached history
    "episode_reprefills",  # rows that had to encode two or more turns (truncation shift, eviction, resume)
    "turn_tokens_reused",  # history tokens read from the caches instead of encoded
    "turn_tokens_encoded",  # history tokens encoded (plus the cue tokens, encoded every time)
    "cue_tokens_encoded",
    "context_fallbacks",  # segmented rows with nothing to encode after the preamble (scored uncached)
    "generation_hits",  # generate-mode observations whose k texts came from the generation cache
    "generation_misses",
)


@dataclasses.dataclass
class _Row:
    """One segmented prompt planned onto the context caches."""

    prompt: SegmentedPrompt
    turn_ids: list[list[int]]
    chain: list[TurnNode]
    past_len: int  # cached history tokens the row attends to
    ext: list[int]  # tokens to encode: the new turns, then the cue
    new_from: int  # index of the first turn not cached (turns[new_from:] start the extension)
    conts: list[list[int]] | None = None


class ActionPrior:
    """The prior over each observation's admissible actions, for environment loops.

    ``llm``: a loaded :class:`prior_rl.weights.LLM`. ``prompt_fn``: ``obs -> prompt`` (default
    :class:`prior_rl.prior.prompts.PromptBuilder`, chosen by ``obs.family``), a string or a
    :class:`prior_rl.prior.segments.SegmentedPrompt`; candidates are scored as the continuation
    ``action_prefix + action`` (default: ``prompt_fn.action_prefix`` if it has one, else ``" "``). Trailing spaces
    of a prompt (of a segmented prompt's cue) move into the continuation, so the prompt and the action tokenise as
    they would together. ``cache``: optional object with ``get(key)`` / ``put(key, value)`` (or a dict), keyed by
    ``(model key, prompt, actions)`` where prompt is the text, or ``("segments", preamble, turns, cue)`` of the
    fitted segmented prompt (the full transcript); it stores the log-softmax arrays of :meth:`logprobs`.
    ``normalize`` (default True): score an action by its mean token log-prob instead of the sum. Sums favour short
    actions; on hand-written Overcooked and ALFWorld states SmolLM2-135M put the right action first in 4 of 8
    states with the mean and 2 of 8 with the sum (TWOSOME also normalises by length).

    ``candidate_trie`` (default True): pack each prompt's candidates as a prefix trie, so a shared prefix ("go to",
    "take ... from desk 1") is encoded once (:func:`~prior_rl.prior.scoring.trie_action_logprobs`); False packs
    them end to end (:func:`~prior_rl.prior.scoring.packed_action_logprobs`). Equal scores up to float rounding.

    ``max_tokens_per_call`` bounds the tokens (prompts plus candidates, after padding) of one jitted call; larger
    batches are split.

    Segmented prompts (:mod:`prior_rl.prior.segments`):

    * Their token ids are the concatenation of per-segment tokenisations, on every path.
    * :func:`~prior_rl.prior.segments.fit` is applied first, with the budget ``context_budget`` (default: the
      model's ``max_position_embeddings``), ``reserve = max(action_reserve, longest continuation)`` (or
      ``max_new_tokens`` when generating) and ``slack = history_slack``; every path scores the fitted prompt.
    * ``context_cache``: ``"episode"`` (default) — the preamble's KV is prefilled once and shared, and each
      history is extended from its cached previous step (a trie keyed by the exact turn strings, at most
      ``episode_cache_bytes`` of KV); ``"preamble"`` — only the preamble is cached, turns and cue are encoded every
      call; ``"off"`` — the uncached reference (a full prefill of the same ids). The three agree to float rounding.
      The cached history's length is bucketed to multiples of ``past_multiple`` tokens (padded keys are masked):
      larger means fewer compilations over an episode and more padded attention.

    ``generation_cache`` (default True): in ``candidates(mode="generate")`` the k generations of a prompt are
    drawn once and reused whenever that prompt comes back (the reference's per-prompt cache), so revisited
    prompts get the same k texts (mapped to the current actions). True = an in-memory
    :class:`~prior_rl.llm.cache.PriorCache`; or pass a cache object; False = draw every time.

    :attr:`counters` (see :data:`COUNTERS`) count calls, wall time and cache use, for the run loop to log;
    :meth:`stats` adds the KV cache's size; :meth:`reset_counters` zeroes them.
    """

    def __init__(
        self,
        llm: LLM,
        prompt_fn: Callable[[TextObservation], Prompt] | None = None,
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
        context_cache: str = "episode",
        context_budget: int | None = None,
        history_slack: float = 0.25,
        action_reserve: int = 16,
        episode_cache_bytes: int = 1 << 30,
        past_multiple: int = 64,
        generation_cache: Any = True,
        candidate_trie: bool = True,
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
        self.candidate_trie = bool(candidate_trie)
        if context_cache not in CONTEXT_MODES:
            raise ValueError(f"context_cache must be one of {CONTEXT_MODES}, got {context_cache!r}")
        self.context_mode = context_cache
        limit = llm.config.max_position_embeddings
        if context_budget is not None and not 0 < int(context_budget) <= limit:
            raise ValueError(
                f"context_budget must be in [1, {limit}] (the context of model '{llm.name}'), got {context_budget}"
            )
        self.context_budget = int(context_budget) if context_budget is not None else limit
        self.history_slack = float(history_slack)
        self.action_reserve = int(action_reserve)
        self.past_multiple = int(past_multiple)
        self.context = ContextCache(max_bytes=episode_cache_bytes)
        if generation_cache is True:
            generation_cache = PriorCache(name="generations")
        self.generation_cache = None if generation_cache is False else generation_cache
        tok = llm.tokenizer
        stop = (
            tok.newline_mask(llm.config.vocab_size).copy() if stop_at_newline else np.zeros(llm.config.vocab_size, bool)
        )
        stop[[i for i in tok.eos_ids if i < llm.config.vocab_size]] = True
        self._stop_mask = jnp.asarray(stop)
        self._action_ids: dict[str, list[int]] = {}
        self._segtok = SegmentTokenizer(tok)
        self.model_key = f"{llm.name}|{'mean' if normalize else 'sum'}|{self.action_prefix!r}"
        self.counters: dict[str, float] = dict.fromkeys(COUNTERS, 0)
        self._in_candidates = False  # logprobs() inside candidates() is timed by candidates()
        self.group: Any = None  # set by split_scoring: the processes that share the scoring of new prompts

    def split_scoring(self, group: Any) -> None:
        """Share :meth:`logprobs`' work with the other processes of ``group`` (a
        :class:`prior_rl.distributed.ProcessGroup`): each scores its share of a call's new prompts and every process
        receives all the scores, so the caches stay the same everywhere. Every process must then make the same
        calls in the same order (a run across processes does: it runs the same program on the same values).
        Generation (``mode="generate"``) and :meth:`action_features` are not split."""
        self.group = group if group is not None and group.size > 1 else None

    # -- counters ------------------------------------------------------------------------------------------
    def reset_counters(self) -> None:
        self.counters = dict.fromkeys(COUNTERS, 0)

    def stats(self) -> dict[str, float]:
        """:attr:`counters` plus the KV cache's size (preambles, turn nodes, bytes, evictions)."""
        return {**self.counters, **self.context.stats()}

    def _count(self, name: str, n: float = 1) -> None:
        self.counters[name] += n

    # -- text preparation ----------------------------------------------------------------------------------
    def _prompt(self, obs: TextObservation) -> tuple[Prompt, str]:
        """(prompt without trailing spaces, continuation prefix carrying them). For a segmented prompt only the
        cue is stripped (the turns stay as cached)."""
        p = self.prompt_fn(obs)
        seg = as_segmented(p)
        if seg is not None:
            cue = seg.cue.rstrip(" ")
            return SegmentedPrompt(seg.preamble, seg.turns, cue), seg.cue[len(cue) :] + self.action_prefix
        stripped = p.rstrip(" ")
        return stripped, p[len(stripped) :] + self.action_prefix

    def _fit(self, prompt: Any, reserve: int) -> Prompt:
        """:func:`fit` for a segmented prompt (counted in ``truncations``); a string is returned as is."""
        seg = as_segmented(prompt)
        if seg is None:
            return prompt
        fitted = fit(
            seg, self._segtok, self.context_budget, reserve=max(self.action_reserve, reserve), slack=self.history_slack
        )
        if fitted is not seg:
            self._count("truncations")
        return fitted

    @staticmethod
    def _key_text(prompt: Prompt) -> Any:
        if isinstance(prompt, SegmentedPrompt):
            return ("segments", prompt.preamble, tuple(prompt.turns), prompt.cue)
        return prompt

    def _prompt_ids(self, prompt: Prompt) -> list[int]:
        if isinstance(prompt, SegmentedPrompt):
            ids = token_ids(prompt, self._segtok)
            if not ids:
                raise ValueError(f"empty prompt: the prompt function returned {prompt!r}")
            return ids
        return self._encode_prompts([prompt])[0]

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

    def _check_context(self, n_prompt: int, n_cont: int, prompt: Any) -> None:
        limit = self.llm.config.max_position_embeddings
        if n_prompt + n_cont > limit:
            text = prompt.text if isinstance(prompt, SegmentedPrompt) else prompt
            raise ValueError(
                f"prompt of {n_prompt} tokens plus a continuation of {n_cont} tokens exceeds the context limit of "
                f"{limit} tokens of model '{self.llm.name}' (max_position_embeddings); shorten the prompt (e.g. a "
                f"shorter history). Prompt starts: {text[:80]!r}"
            )

    # -- cache ---------------------------------------------------------------------------------------------
    def _cache_get(self, key: Any, cache: Any = None) -> Any:
        cache = self.cache if cache is None else cache
        if cache is None:
            return None
        return cache.get(key)

    def _cache_put(self, key: Any, value: Any, cache: Any = None) -> None:
        cache = self.cache if cache is None else cache
        if cache is None:
            return
        if hasattr(cache, "put"):
            cache.put(key, value)
        else:
            cache[key] = value

    # -- scoring -------------------------------------------------------------------------------------------
    def logprobs(self, observations: Sequence[TextObservation]) -> list[np.ndarray]:
        """Per observation, ``float32 [len(obs.actions)]``: log-softmax of the LLM's action scores over the
        observation's admissible actions."""
        t0 = time.perf_counter()
        results: list[np.ndarray | None] = [None] * len(observations)
        todo: list[tuple[int, Prompt, list[str], Any]] = []
        for i, obs in enumerate(observations):
            if not obs.actions:
                raise ValueError(f"observation {i} has no admissible actions")
            prompt, prefix = self._prompt(obs)
            conts = [prefix + a for a in obs.actions]
            if isinstance(prompt, SegmentedPrompt):
                prompt = self._fit(prompt, max(len(self._encode_action(c)) for c in conts))
            key = (self.model_key, self._key_text(prompt), tuple(obs.actions))
            hit = self._cache_get(key)
            if hit is not None:
                results[i] = np.asarray(hit)
                self._count("prompt_cache_hits")
            else:
                self._count("prompt_cache_misses")
                todo.append((i, prompt, conts, key))
        if todo:
            unique: dict[Any, tuple[Prompt, list[str]]] = {}  # a batch often repeats a state
            for _, prompt, conts, key in todo:
                unique.setdefault(key, (prompt, conts))
            keys = list(unique)
            items = [unique[k] for k in keys]

            def score(part: list) -> list:
                return self._score([p for p, _ in part], [c for _, c in part])

            # across processes this process scores its share; the others' scores arrive in the same order
            scores = score(items) if self.group is None else self.group.map_batch(score, items)
            computed = {}
            for key, s in zip(keys, scores):
                computed[key] = (s - np.logaddexp.reduce(s)).astype(np.float32)
                self._cache_put(key, computed[key])
            for i, _, _, key in todo:
                results[i] = computed[key]
        dt = time.perf_counter() - t0
        self._count("logprobs_calls")
        self._count("logprobs_s", dt)
        if not self._in_candidates:
            self._count("llm_s", dt)
        self.counters["last_logprobs_s"] = dt
        return results  # type: ignore[return-value]

    def action_features(self, observations: Sequence[TextObservation], rows_per_call: int = 16) -> list[np.ndarray]:
        """Per observation, ``float32 [len(obs.actions), D]``: the LLM's hidden state after each admissible action
        appended to the observation's prompt (:func:`prior_rl.prior.scoring.action_hidden_states`), a text
        feature for Q that needs no second encoder. Plain-string prompts only (env, paper, chat)."""
        pad = self.llm.tokenizer.pad_id
        out: list[np.ndarray] = []
        for start in range(0, len(observations), rows_per_call):
            chunk = observations[start : start + rows_per_call]
            prompts, groups = [], []
            for obs in chunk:
                prompt, prefix = self._prompt(obs)
                if isinstance(prompt, SegmentedPrompt):
                    raise ValueError("action_features takes plain-string prompts (env, paper or chat), not transcripts")
                prompts.append(prompt)
                groups.append([self._encode_action(prefix + a) for a in obs.actions])
            p_ids = self._encode_prompts(prompts)
            B, A = next_pow2(len(chunk)), next_pow2(max(len(g) for g in groups))
            Tp = bucket_length(max(len(p) for p in p_ids), self.length_multiple)
            Ta = max(len(c) for g in groups for c in g)
            pt, pm = pad_sequences(p_ids + [[pad]] * (B - len(chunk)), Tp, pad)
            at, am = pad_nested(groups + [[]] * (B - len(chunk)), A, Ta, pad)
            h = np.asarray(action_hidden_states(self.llm.params, pt, pm, at, am, config=self.llm.config))
            out += [h[b, : len(g)] for b, g in enumerate(groups)]
        return out

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Raw log p(continuation | prompt) (sum, or mean if ``normalize``) for arbitrary strings; no softmax,
        no prompt cache. ``continuations[b]`` are the full continuation strings of ``prompts[b]``. A segmented
        prompt is fitted (reserve: its longest continuation) and scored through the context caches of
        ``context_cache``; nothing is stripped."""
        prompts = [
            self._fit(p, max(len(self._encode_action(c)) for c in conts)) for p, conts in zip(prompts, continuations)
        ]
        return self._score(list(prompts), [list(c) for c in continuations])

    def _score(self, prompts: list[Prompt], conts: list[list[str]]) -> list[np.ndarray]:
        c_ids = [[self._encode_action(c) for c in group] for group in conts]
        out: list[np.ndarray] = [None] * len(prompts)  # type: ignore[list-item]
        self._count("prompts_scored", len(prompts))
        direct = [i for i, p in enumerate(prompts) if not isinstance(p, SegmentedPrompt) or self.context_mode == "off"]
        context = [i for i, p in enumerate(prompts) if isinstance(p, SegmentedPrompt) and self.context_mode != "off"]
        self._count("segmented_prompts", sum(isinstance(p, SegmentedPrompt) for p in prompts))
        if context:
            fallback = self._score_context([prompts[i] for i in context], [c_ids[i] for i in context])
            for i, s in zip(context, fallback):
                if s is None:
                    direct.append(i)  # nothing to encode after the preamble: score from scratch
                    self._count("context_fallbacks")
                else:
                    out[i] = s
        if direct:
            plain = [i for i in direct if not isinstance(prompts[i], SegmentedPrompt)]
            p_ids: dict[int, list[int]] = {}
            if plain:
                p_ids.update(zip(plain, self._encode_prompts([prompts[i] for i in plain])))
            for i in direct:
                if i not in p_ids:
                    p_ids[i] = self._prompt_ids(prompts[i])
            scores = self._score_ids(
                [p_ids[i] for i in direct], [c_ids[i] for i in direct], [prompts[i] for i in direct]
            )
            for i, s in zip(direct, scores):
                out[i] = s
        return out

    def _score_ids(self, p_ids: list[list[int]], c_ids: list[list[list[int]]], prompts: list[Any]) -> list[np.ndarray]:
        for p, pi, group in zip(prompts, p_ids, c_ids):
            self._check_context(len(pi), max(len(c) for c in group), p)
        out: list[np.ndarray] = [None] * len(p_ids)  # type: ignore[list-item]
        # Sort by prompt length so a chunk's rows have similar lengths (less padding).
        order = sorted(range(len(p_ids)), key=lambda i: (len(p_ids[i]), len(c_ids[i])))
        start = 0
        while start < len(order):
            chunk = self._chunk(order[start:], p_ids, c_ids)
            idx = order[start : start + chunk]
            start += chunk
            out_chunk = self._score_chunk([p_ids[i] for i in idx], [c_ids[i] for i in idx])
            for j, i in enumerate(idx):
                out[i] = out_chunk[j][: len(c_ids[i])]
        return out

    def _shapes(self, p_ids, c_ids) -> tuple[int, int, int]:
        """Bucketed (prompt length, candidates per row, packed candidate tokens per row)."""
        Tp = bucket_length(max(len(p) for p in p_ids), self.length_multiple)
        A = next_pow2(max(len(g) for g in c_ids))
        L = bucket_length(max(self._packed_length(g) for g in c_ids), self.length_multiple)
        return Tp, A, L

    def _packed_length(self, group: Sequence[Sequence[int]]) -> int:
        """Token slots one row's candidates take: trie nodes, or the sum of their lengths."""
        return trie_size(group) if self.candidate_trie else sum(len(c) for c in group)

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
        if self.candidate_trie:
            trie = pack_trie(c_rows, L, pad, num_items=A)
            lp = trie_action_logprobs(self.llm.params, pt, pm, *trie, config=self.llm.config, normalize=self.normalize)
        else:
            ct, seg, off = pack_groups(c_rows, L, pad)
            lp = packed_action_logprobs(
                self.llm.params, pt, pm, ct, seg, off, config=self.llm.config, num_actions=A, normalize=self.normalize
            )
        return np.asarray(lp)[: len(p_ids)]

    # -- context caches (segmented prompts) ----------------------------------------------------------------
    def _preamble(self, text: str, rows: int) -> PreambleEntry:
        """The preamble's prefilled KV (prefilled now on a miss) for ``rows`` prompts: every row but a prefill's
        first counts as a preamble hit."""
        key = (self.model_key, text)
        entry = self.context.preamble(key)
        self._count("preamble_hits", rows if entry is not None else rows - 1)
        if entry is not None:
            return entry
        ids = self._segtok.preamble(text)
        S = bucket_length(len(ids), self.length_multiple)
        pt, pm = pad_sequences([ids], S, self.llm.tokenizer.pad_id)
        prefix = prefill(self.llm.params, pt, pm, config=self.llm.config)
        self._count("preamble_prefills")
        return self.context.put_preamble(key, prefix, ids)

    def _plan(self, entry: PreambleEntry, prompt: SegmentedPrompt, reserve: int) -> _Row | None:
        """Match a prompt's turns against the episode trie; None when there is nothing to encode after the
        preamble (the caller scores it from scratch)."""
        turn_ids = [self._segtok.piece(t) for t in prompt.turns]
        cue = self._segtok.piece(prompt.cue)
        chain = self.context.match(entry.root, prompt.turns) if self.context_mode == "episode" else []
        m = len(chain)
        past_len = chain[-1].length if chain else 0
        ext: list[int] = [t for ids in turn_ids[m:] for t in ids] + list(cue)
        if not ext:
            # The logits after the last history token are needed: re-encode that token (its cached KV is masked).
            last = next((n.ids[-1] for n in reversed(chain) if n.ids), None)
            if last is None:
                return None
            ext, past_len = [last], past_len - 1
        self._check_context(entry.length + past_len + len(ext), reserve, prompt)
        new_turns = len(prompt.turns) - m
        reused = chain[-1].length if chain else 0
        self._count("turn_tokens_reused", reused)
        self._count("turn_tokens_encoded", sum(len(t) for t in turn_ids[m:]))
        self._count("cue_tokens_encoded", len(cue))
        if self.context_mode == "episode":
            self._count(
                "episode_hits" if new_turns == 0 else "episode_extensions" if new_turns == 1 else "episode_reprefills"
            )
        return _Row(prompt, turn_ids, chain, past_len, ext, m)

    def _context_batch(self, entry: PreambleEntry, rows: list[_Row]):
        """Device arrays for :func:`context_action_logprobs` / :func:`context_sample_actions` (rows padded to a
        power of two: padding rows have one pad token and no candidates)."""
        c = self.llm.config
        pad = self.llm.tokenizer.pad_id
        N = next_pow2(len(rows))
        Te = bucket_length(max(len(r.ext) for r in rows), self.length_multiple)
        ext_t, ext_m = pad_sequences([r.ext for r in rows] + [[pad]] * (N - len(rows)), Te, pad)
        ext_len = ext_m.sum(-1).astype(np.int32)
        past_len = np.zeros(N, np.int32)
        past_len[: len(rows)] = [r.past_len for r in rows]
        longest = max((r.chain[-1].length if r.chain else 0) for r in rows)
        past = None
        if longest:
            P = bucket_length(longest, self.past_multiple)
            dtype = entry.prefix.k.dtype
            k = np.zeros((c.num_layers, 1, N, P, c.num_kv_heads, c.head_dim), dtype)
            v = np.zeros_like(k)
            for i, r in enumerate(rows):
                at = 0
                for node in r.chain:
                    if node.k is not None:
                        n = node.k.shape[1]
                        k[:, 0, i, at : at + n] = node.k
                        v[:, 0, i, at : at + n] = node.v
                        at += n
            mask = (np.arange(P)[None, :] < past_len[:, None])[None]
            past = Past(jnp.asarray(k), jnp.asarray(v), jnp.asarray(mask))
        return past, jnp.asarray(past_len), jnp.asarray(ext_t), jnp.asarray(ext_len)

    def _store(self, entry: PreambleEntry, rows: list[_Row], ek: jax.Array, ev: jax.Array) -> None:
        """Cache each row's newly encoded turns (the first tokens of its extension) in the episode trie."""
        if self.context_mode != "episode":
            return
        ek_np = ev_np = None
        for i, r in enumerate(rows):
            if r.new_from == len(r.prompt.turns):
                continue
            if ek_np is None:
                ek_np, ev_np = np.asarray(ek), np.asarray(ev)  # [L, N, Te, KV, Dh]
            parent = r.chain[-1].id if r.chain else entry.root
            at = 0
            for turn, ids in zip(r.prompt.turns[r.new_from :], r.turn_ids[r.new_from :]):
                n = len(ids)
                k = ek_np[:, i, at : at + n].copy() if n else None
                v = ev_np[:, i, at : at + n].copy() if n else None
                parent = self.context.add(parent, turn, ids, k, v).id
                at += n

    def _groups(self, prompts: list[SegmentedPrompt]) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(prompts):
            groups.setdefault(p.preamble, []).append(i)
        return groups

    def _score_context(self, prompts: list[SegmentedPrompt], c_ids: list[list[list[int]]]) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = [None] * len(prompts)
        for preamble, idx in self._groups(prompts).items():
            entry = self._preamble(preamble, len(idx))
            order = sorted(idx, key=lambda i: (len(prompts[i].turns), len(c_ids[i])))
            # Rows are planned chunk by chunk, so a chunk can reuse turns the previous chunk has just cached.
            start = 0
            while start < len(order):
                n, cands = 1, order[start : start + 1]
                while start + n < len(order):
                    nxt = order[start : start + 2 * n]
                    ext = max(
                        len(self._segtok.piece(prompts[i].cue))
                        + sum(len(self._segtok.piece(t)) for t in prompts[i].turns)
                        for i in nxt
                    )
                    L = max(trie_size(c_ids[i]) for i in nxt)
                    last = max(len(self._segtok.piece(prompts[i].turns[-1])) if prompts[i].turns else 0 for i in nxt)
                    rows = next_pow2(len(nxt))
                    if rows * (ext + L) > self.max_tokens_per_call:
                        break
                    if rows * (L + last) * (entry.length + ext) > _MAX_PAIRS:  # score tensors out of cache
                        break
                    n, cands = len(nxt), nxt
                start += len(cands)
                rows, kept = [], []
                for i in cands:
                    row = self._plan(entry, prompts[i], max(len(c) for c in c_ids[i]))
                    if row is not None:
                        row.conts = c_ids[i]
                        rows.append(row)
                        kept.append(i)
                if not rows:
                    continue
                scores = self._context_chunk(entry, rows)
                for j, i in enumerate(kept):
                    out[i] = scores[j][: len(c_ids[i])]
        return out

    def _context_chunk(self, entry: PreambleEntry, rows: list[_Row]) -> np.ndarray:
        pad = self.llm.tokenizer.pad_id
        past, past_len, ext_t, ext_len = self._context_batch(entry, rows)
        N = ext_t.shape[0]
        conts = [r.conts for r in rows] + [[]] * (N - len(rows))
        A = next_pow2(max(len(g) for g in conts))
        # the context path always packs candidates as a trie (its scores are new, so nothing pins the layout)
        L = bucket_length(max(trie_size(g) for g in conts), self.length_multiple)
        trie = pack_trie(conts, L, pad, num_items=A)
        lp, ek, ev = context_action_logprobs(
            self.llm.params,
            entry.prefix,
            past,
            past_len,
            ext_t,
            ext_len,
            *trie,
            config=self.llm.config,
            normalize=self.normalize,
        )
        self._store(entry, rows, ek, ev)
        return np.asarray(lp)[: len(rows)]

    # -- candidates ----------------------------------------------------------------------------------------
    def _generation_prompt(self, obs: TextObservation) -> Prompt:
        return self._fit(self.prompt_fn(obs), self.max_new_tokens)

    def generate(self, rng: jax.Array | int, observations: Sequence[TextObservation], k: int) -> list[list[str]]:
        """``k`` generated texts per observation (sampled with this prior's temperature / top_p, at most
        ``max_new_tokens`` tokens, cut at EOS or a newline). No generation cache (see :meth:`candidates`)."""
        key = jax.random.key(rng) if isinstance(rng, (int, np.integer)) else rng
        return self._generate([self._generation_prompt(o) for o in observations], key, int(k))

    def _generate(self, prompts: list[Prompt], key: jax.Array, k: int) -> list[list[str]]:
        out: list[list[str] | None] = [None] * len(prompts)
        context = [i for i, p in enumerate(prompts) if isinstance(p, SegmentedPrompt) and self.context_mode != "off"]
        in_context = set(context)
        direct = [i for i in range(len(prompts)) if i not in in_context]
        if context:
            got = self._generate_context([prompts[i] for i in context], key, k)
            for i, texts in zip(context, got):
                if texts is None:
                    direct.append(i)
                    self._count("context_fallbacks")
                else:
                    out[i] = texts
        if direct:
            direct.sort()
            plain = [i for i in direct if not isinstance(prompts[i], SegmentedPrompt)]
            ids: dict[int, list[int]] = (
                dict(zip(plain, self._encode_prompts([prompts[i] for i in plain]))) if plain else {}
            )
            for i in direct:
                if i not in ids:
                    ids[i] = self._prompt_ids(prompts[i])
            for i in direct:
                self._check_context(len(ids[i]), self.max_new_tokens, prompts[i])
            p_ids = [ids[i] for i in direct]
            Tp = bucket_length(max(len(p) for p in p_ids), self.length_multiple)
            B = next_pow2(len(p_ids))
            pad = self.llm.tokenizer.pad_id
            pt, pm = pad_sequences(list(p_ids) + [[pad]] * (B - len(p_ids)), Tp, pad)
            tokens, lengths = sample_actions(
                self.llm.params,
                key,
                pt,
                pm,
                self._stop_mask,
                config=self.llm.config,
                k=k,
                max_new_tokens=self.max_new_tokens,
                temperature=self.temperature,
                top_p=self.top_p,
            )
            for j, i in enumerate(direct):
                out[i] = self._decode(tokens, lengths, j, k)
        return out  # type: ignore[return-value]

    def _decode(self, tokens, lengths, row: int, k: int) -> list[str]:
        tokens, lengths = np.asarray(tokens), np.asarray(lengths)
        return [self.llm.tokenizer.decode(tokens[row, j, : lengths[row, j]]) for j in range(k)]

    def _generate_context(self, prompts: list[SegmentedPrompt], key: jax.Array, k: int) -> list[list[str] | None]:
        out: list[list[str] | None] = [None] * len(prompts)
        calls = 0
        for preamble, idx in self._groups(prompts).items():
            entry = self._preamble(preamble, len(idx))
            # Each row gets its own copy of the context for the k branches: bound rows per call by the tokens.
            longest = max(len(token_ids(prompts[i], self._segtok)) for i in idx) + self.max_new_tokens
            per_call = 1 << max(0, (max(1, self.max_tokens_per_call // longest)).bit_length() - 1)
            for start in range(0, len(idx), per_call):
                rows, kept = [], []
                for i in idx[start : start + per_call]:
                    row = self._plan(entry, prompts[i], self.max_new_tokens)
                    if row is not None:
                        rows.append(row)
                        kept.append(i)
                if not rows:
                    continue
                past, past_len, ext_t, ext_len = self._context_batch(entry, rows)
                tokens, lengths, ek, ev = context_sample_actions(
                    self.llm.params,
                    jax.random.fold_in(key, calls),
                    entry.prefix,
                    past,
                    past_len,
                    ext_t,
                    ext_len,
                    self._stop_mask,
                    config=self.llm.config,
                    k=k,
                    max_new_tokens=self.max_new_tokens,
                    temperature=self.temperature,
                    top_p=self.top_p,
                )
                calls += 1
                self._store(entry, rows, ek, ev)
                for j, i in enumerate(kept):
                    out[i] = self._decode(tokens, lengths, j, k)
        return out

    def _generations(self, rng: jax.Array | int, observations: Sequence[TextObservation], k: int) -> list[list[str]]:
        """k texts per observation through the generation cache (drawn once per distinct prompt)."""
        key = jax.random.key(rng) if isinstance(rng, (int, np.integer)) else rng
        prompts = [self._generation_prompt(o) for o in observations]
        if self.generation_cache is None:
            return self._generate(prompts, key, k)
        settings = (k, self.temperature, self.top_p, self.max_new_tokens)
        keys = [(self.model_key, "generate", self._key_text(p), *settings) for p in prompts]
        texts: dict[Any, list[str]] = {}
        missing: dict[Any, Prompt] = {}
        for key_i, p in zip(keys, prompts):
            if key_i in texts or key_i in missing:
                continue
            hit = self._cache_get(key_i, self.generation_cache)
            if hit is not None:
                texts[key_i] = list(hit)
            else:
                missing[key_i] = p
        self._count("generation_misses", sum(1 for key_i in keys if key_i in missing))
        self._count("generation_hits", sum(1 for key_i in keys if key_i not in missing))
        if missing:
            drawn = self._generate(list(missing.values()), key, k)
            for key_i, t in zip(missing, drawn):
                texts[key_i] = t
                self._cache_put(key_i, tuple(t), self.generation_cache)
        return [texts[key_i] for key_i in keys]

    def candidates(
        self, rng: jax.Array | int, observations: Sequence[TextObservation], k: int, mode: str = "exact"
    ) -> np.ndarray:
        """``int32 [B, k]`` action indices per observation (duplicates kept).

        mode "exact": k draws from the softmax of :meth:`logprobs` (at this prior's temperature).
        mode "generate": k generations mapped to actions with :func:`map_text_to_action` (the reference's way);
        with ``generation_cache`` on, a prompt's k generations are drawn on its first visit and reused after.
        """
        t0 = time.perf_counter()
        self._in_candidates = True
        try:
            out = self._candidates(rng, observations, k, mode)
        finally:
            self._in_candidates = False
        dt = time.perf_counter() - t0
        self._count("candidates_calls")
        self._count("candidates_s", dt)
        self._count("llm_s", dt)
        self.counters["last_candidates_s"] = dt
        return out

    def _candidates(self, rng: jax.Array | int, observations: Sequence[TextObservation], k: int, mode: str):
        if mode == "exact":
            lps = self.logprobs(observations)
            A = max(len(x) for x in lps)
            table = np.full((len(lps), A), -np.inf, np.float32)
            for i, x in enumerate(lps):
                table[i, : len(x)] = x
            key = jax.random.key(rng) if isinstance(rng, (int, np.integer)) else rng
            out = np.asarray(sample_from_exact(key, jnp.asarray(table), int(k), self.temperature))
        elif mode == "generate":
            texts = self._generations(rng, observations, int(k))
            out = np.array(
                [[map_text_to_action(t, obs.actions) for t in row] for row, obs in zip(texts, observations)],
                dtype=np.int32,
            )
        else:
            raise ValueError(f"unknown candidate mode {mode!r}; use 'exact' or 'generate'")
        return out
