"""Segmented prompts: a fixed preamble, an episode's turns and a cue, tokenised segment by segment.

A prompt function may return a :class:`SegmentedPrompt` instead of a string::

    SegmentedPrompt(preamble, turns, cue).text == preamble + "".join(turns) + cue

* ``preamble``: identical for every prompt of a run (instruction header, expert demonstrations);
* ``turns``: the episode so far, oldest first; turn ``t``'s text never changes once produced and each step
  appends one turn;
* ``cue``: what follows the history (e.g. ``"\\n>"``); the scored continuations come after it.

**Tokens.** The token ids of a segmented prompt are *defined* as the concatenation of per-segment tokenisations:
the preamble encoded as a prompt (BOS added when the model wants one), then every turn and the cue encoded as
continuations (no special tokens). A byte-level BPE may merge across a segment boundary when the whole text is
encoded at once, so these ids can differ from ``tokenizer.encode(prompt.text)``; every path of the prior (the
cached ones and the uncached reference) scores these same ids, so cached and uncached scores differ only by
floating-point rounding: exactness is a property of the model computation, not of the tokenizer.

**Length.** :func:`fit` is the one truncation rule: when preamble + turns + cue + the longest continuation would
exceed a token budget, it drops the oldest turns after turn 0. It is applied *before* any scoring path, so the
cached and uncached paths score the same (fitted) prompt.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

__all__ = ["SegmentTokenizer", "SegmentedPrompt", "as_segmented", "fit", "segment_ids", "token_ids"]


class SegmentedPrompt(NamedTuple):
    """A prompt as ``preamble + "".join(turns) + cue`` (see the module docstring)."""

    preamble: str
    turns: tuple[str, ...]
    cue: str

    @property
    def text(self) -> str:
        """The prompt's full text."""
        return self.preamble + "".join(self.turns) + self.cue


def as_segmented(prompt: Any) -> SegmentedPrompt | None:
    """None for a string; a :class:`SegmentedPrompt` for one, or for any object with ``preamble``, ``turns`` and
    ``cue`` attributes (e.g. another module's NamedTuple of the same shape); ``TypeError`` otherwise."""
    if isinstance(prompt, str):
        return None
    if isinstance(prompt, SegmentedPrompt) and isinstance(prompt.turns, tuple):
        return prompt
    if all(hasattr(prompt, name) for name in SegmentedPrompt._fields):
        return SegmentedPrompt(prompt.preamble, tuple(prompt.turns), prompt.cue)
    raise TypeError(f"a prompt must be a str or a SegmentedPrompt, got {type(prompt).__name__}")


class SegmentTokenizer:
    """Per-segment token ids with a memo (a run re-tokenises the same preamble and turns every step).

    ``preamble(text)`` encodes as a prompt (``add_special_tokens=True``); ``piece(text)`` encodes a turn or a cue
    (``add_special_tokens=False``). Memos are LRU-bounded by ``max_entries`` strings each; returned lists are
    shared: treat them as read-only.
    """

    def __init__(self, tokenizer: Any, max_entries: int = 1 << 16):
        self.tokenizer = tokenizer
        self.max_entries = int(max_entries)
        self._pre: OrderedDict[str, list[int]] = OrderedDict()
        self._piece: OrderedDict[str, list[int]] = OrderedDict()

    def _get(self, memo: OrderedDict, text: str, special: bool) -> list[int]:
        ids = memo.get(text)
        if ids is None:
            ids = list(self.tokenizer.encode(text, add_special_tokens=special)) if text or special else []
            memo[text] = ids
            if len(memo) > self.max_entries:
                memo.popitem(last=False)
        else:
            memo.move_to_end(text)
        return ids

    def preamble(self, text: str) -> list[int]:
        return self._get(self._pre, text, True)

    def piece(self, text: str) -> list[int]:
        return self._get(self._piece, text, False)


def _as_segment_tokenizer(tokenizer: Any) -> SegmentTokenizer:
    return tokenizer if isinstance(tokenizer, SegmentTokenizer) else SegmentTokenizer(tokenizer)


def segment_ids(prompt: SegmentedPrompt, tokenizer: Any) -> tuple[list[int], list[list[int]], list[int]]:
    """(preamble ids, one id list per turn, cue ids). ``tokenizer``: a :class:`SegmentTokenizer` or anything with
    ``encode(text, add_special_tokens=...)``."""
    st = _as_segment_tokenizer(tokenizer)
    return st.preamble(prompt.preamble), [st.piece(t) for t in prompt.turns], st.piece(prompt.cue)


def token_ids(prompt: SegmentedPrompt, tokenizer: Any) -> list[int]:
    """The prompt's token ids: the concatenation of :func:`segment_ids` (the definition every path scores)."""
    pre, turns, cue = segment_ids(prompt, tokenizer)
    out = list(pre)
    for t in turns:
        out.extend(t)
    out.extend(cue)
    return out


def fit(
    prompt: SegmentedPrompt,
    tokenizer: Any,
    budget: int,
    *,
    reserve: int = 0,
    slack: float = 0.25,
) -> SegmentedPrompt:
    """``prompt`` with its oldest turns after turn 0 dropped so that preamble + turns + cue + ``reserve`` tokens
    (``reserve``: the longest continuation to be scored or generated) fit in ``budget`` tokens.

    The rule is a pure function of the prompt (and budget, reserve, slack), so the cached and uncached paths apply
    it identically. It keeps turn 0 and a contiguous window ``turns[s:]`` ending at the newest turn. ``s`` is found
    by replaying the episode step by step: ``s`` stays where it was while the window fits; when a new turn makes it
    overflow the history budget ``H = budget - preamble - cue - reserve``, ``s`` advances until the kept turns take
    at most ``H - slack·H`` tokens (a low-water mark), so the next several steps only append (an incremental KV
    cache extends instead of re-encoding the whole window every step). ``slack = 0`` keeps as many turns as fit.

    Returns ``prompt`` itself when nothing is dropped. Raises ``ValueError`` naming the lengths when the preamble,
    cue and reserve alone exceed the budget, or when the history budget cannot hold turn 0 plus the newest turn.
    """
    if not 0.0 <= slack < 1.0:
        raise ValueError(f"slack must be in [0, 1), got {slack}")
    pre, turns, cue = segment_ids(prompt, tokenizer)
    fixed = len(pre) + len(cue) + int(reserve)
    if fixed > budget:
        raise ValueError(
            f"the preamble ({len(pre)} tokens) + cue ({len(cue)}) + longest continuation ({int(reserve)}) = {fixed} "
            f"tokens exceed the token budget of {budget} (the model's context or the configured budget); "
            "shorten the preamble (fewer or shorter demonstrations) or raise the budget"
        )
    history = budget - fixed
    lens = [len(t) for t in turns]
    if sum(lens) <= history:
        return prompt
    newest = lens[-1]
    need = lens[0] + (newest if len(lens) > 1 else 0)
    if need > history:
        which = f"turn 0 ({lens[0]} tokens)" + (f" + the newest turn ({newest})" if len(lens) > 1 else "")
        raise ValueError(
            f"history budget of {history} tokens (budget {budget} - preamble {len(pre)} - cue {len(cue)} - longest "
            f"continuation {int(reserve)}) is smaller than {which} = {need} tokens; raise the budget or shorten the "
            "turns"
        )
    low = history - int(slack * history)
    s, kept = 1, lens[0]  # kept = tokens of turn 0 + turns[s : j + 1]
    for j in range(1, len(lens)):
        kept += lens[j]
        if kept > history:
            while s < j and kept > low:
                kept -= lens[s]
                s += 1
    return SegmentedPrompt(prompt.preamble, (prompt.turns[0],) + tuple(prompt.turns[s:]), prompt.cue)
