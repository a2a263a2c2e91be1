"""ActionPrior: the LLM prior on environment observations — prompts, tokenisation, shape buckets, batching and the
prompt cache around the pure functions of :mod:`prior_rl.prior.scoring`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from envs.base import TextObservation
from prior_rl.llm.padding import bucket_length, next_pow2, pack_groups, pad_sequences
from prior_rl.llm.weights import LLM
from prior_rl.prior.prompts import PromptBuilder
from prior_rl.prior.scoring import map_text_to_action, packed_action_logprobs, sample_actions, sample_from_exact


class ActionPrior:
    """The prior over each observation's admissible actions, for environment loops.

    ``llm``: a loaded :class:`prior_rl.weights.LLM`. ``prompt_fn``: ``obs -> prompt text`` (default
    :class:`prior_rl.prior.prompts.PromptBuilder`, chosen by ``obs.family``); candidates are scored as the
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
        stop = (
            tok.newline_mask(llm.config.vocab_size).copy() if stop_at_newline else np.zeros(llm.config.vocab_size, bool)
        )
        stop[[i for i in tok.eos_ids if i < llm.config.vocab_size]] = True
        self._stop_mask = jnp.asarray(stop)
        self._action_ids: dict[str, list[int]] = {}
        self.model_key = f"{llm.name}|{'mean' if normalize else 'sum'}|{self.action_prefix!r}"

    # -- text preparation ----------------------------------------------------------------------------------
    def _prompt(self, obs: TextObservation) -> tuple[str, str]:
        """(prompt without trailing spaces, continuation prefix carrying them)."""
        text = self.prompt_fn(obs)
        stripped = text.rstrip(" ")
        return stripped, text[len(stripped) :] + self.action_prefix

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
        lp = packed_action_logprobs(
            self.llm.params, pt, pm, ct, seg, off, config=self.llm.config, num_actions=A, normalize=self.normalize
        )
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
            self.llm.params,
            key,
            pt,
            pm,
            self._stop_mask,
            config=self.llm.config,
            k=int(k),
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
        )
        tokens, lengths = np.asarray(tokens), np.asarray(lengths)
        tok = self.llm.tokenizer
        return [[tok.decode(tokens[b, j, : lengths[b, j]]) for j in range(int(k))] for b in range(len(prompts))]

    def candidates(
        self, rng: jax.Array | int, observations: Sequence[TextObservation], k: int, mode: str = "exact"
    ) -> np.ndarray:
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
            return np.array(
                [[map_text_to_action(t, obs.actions) for t in row] for row, obs in zip(texts, observations)],
                dtype=np.int32,
            )
        raise ValueError(f"unknown candidate mode {mode!r}; use 'exact' or 'generate'")
