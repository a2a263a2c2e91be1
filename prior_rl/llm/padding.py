"""Padding and length bucketing, so jitted shapes repeat across environment steps.

Every distinct input shape costs one XLA compilation (about 1–2 s for SmolLM2 on 2 CPU cores). Prompt lengths,
action counts and batch sizes vary from state to state, so they are rounded up to a small set of bucket sizes
before they reach jitted code: lengths to multiples of ``multiple`` whose step grows with the length (eight
buckets per doubling, so less than 1/8 is padding above 16·multiple), counts and batch sizes to powers of two.
Padding is on the right; masks are True on real tokens. Candidate actions can instead be packed end to end per
prompt (:func:`pack_groups`), which wastes no tokens on per-candidate padding.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def next_pow2(n: int, minimum: int = 1) -> int:
    """Smallest power of two >= max(n, minimum)."""
    n = max(int(n), int(minimum), 1)
    return 1 << (n - 1).bit_length()


def bucket_length(n: int, multiple: int = 16, policy: str = "geometric") -> int:
    """Round a sequence length ``n`` up to its bucket.

    policy "multiple": the next multiple of ``multiple``.
    policy "pow2": the next power of two (at least ``multiple``).
    policy "geometric" (default): a multiple of max(``multiple``, 2**(bit_length(n-1) - 4)), i.e. steps of
    ``multiple`` for short sequences and eight buckets per doubling for long ones (padding < n/8 there).
    """
    if n < 0:
        raise ValueError(f"length must be >= 0, got {n}")
    if multiple < 1:
        raise ValueError(f"multiple must be >= 1, got {multiple}")
    n = max(int(n), 1)
    if policy == "multiple":
        step = multiple
    elif policy == "pow2":
        return next_pow2(n, multiple)
    elif policy == "geometric":
        step = max(multiple, 1 << max((n - 1).bit_length() - 4, 0))
    else:
        raise ValueError(f"unknown bucketing policy {policy!r}; use 'geometric', 'multiple' or 'pow2'")
    return -(-n // step) * step


def pad_sequences(seqs: Sequence[Sequence[int]], length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token lists to ``length``: tokens ``int32 [N, length]``, mask ``bool [N, length]``."""
    tokens = np.full((len(seqs), length), pad_id, dtype=np.int32)
    mask = np.zeros((len(seqs), length), dtype=bool)
    for i, s in enumerate(seqs):
        if len(s) > length:
            raise ValueError(f"sequence {i} has {len(s)} tokens, more than the padded length {length}")
        tokens[i, : len(s)] = s
        mask[i, : len(s)] = True
    return tokens, mask


def pad_nested(
    groups: Sequence[Sequence[Sequence[int]]], n_items: int, length: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad a ragged [B][A_b][T] list: tokens ``int32 [B, n_items, length]``, mask ``bool [B, n_items, length]``.

    Missing items (``A_b < n_items``) are all-padding rows (mask all False).
    """
    tokens = np.full((len(groups), n_items, length), pad_id, dtype=np.int32)
    mask = np.zeros((len(groups), n_items, length), dtype=bool)
    for b, group in enumerate(groups):
        if len(group) > n_items:
            raise ValueError(f"row {b} has {len(group)} items, more than the padded count {n_items}")
        for a, s in enumerate(group):
            if len(s) > length:
                raise ValueError(f"item ({b}, {a}) has {len(s)} tokens, more than the padded length {length}")
            tokens[b, a, : len(s)] = s
            mask[b, a, : len(s)] = True
    return tokens, mask


def pack_groups(
    groups: Sequence[Sequence[Sequence[int]]], length: int, pad_id: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pack each row's sequences end to end (no per-sequence padding) into ``length`` slots.

    Returns tokens ``int32 [B, length]``, segment ids ``int32 [B, length]`` (the sequence's index within its row;
    -1 on padding) and offsets ``int32 [B, length]`` (position within its sequence; 0 on padding).
    """
    tokens = np.full((len(groups), length), pad_id, dtype=np.int32)
    segments = np.full((len(groups), length), -1, dtype=np.int32)
    offsets = np.zeros((len(groups), length), dtype=np.int32)
    for b, group in enumerate(groups):
        total = sum(len(s) for s in group)
        if total > length:
            raise ValueError(f"row {b} has {total} tokens in all, more than the packed length {length}")
        at = 0
        for a, s in enumerate(group):
            n = len(s)
            tokens[b, at : at + n] = s
            segments[b, at : at + n] = a
            offsets[b, at : at + n] = np.arange(n)
            at += n
    return tokens, segments, offsets


def pack_trie(
    groups: Sequence[Sequence[Sequence[int]]], length: int, pad_id: int, num_items: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pack each row's sequences as a prefix trie: a token prefix shared by several sequences is stored once.

    ALFWorld's candidates share most of their tokens ("go to", "take ... from desk 1"): 25 actions of 135 tokens
    become a trie of 86 nodes. Nodes are in depth-first order, so a parent always precedes its children.

    Returns, with ``B`` rows, ``L = length`` node slots and ``A = num_items`` (default: the most sequences of a row):

    * tokens ``int32 [B, L]`` (``pad_id`` on padding);
    * parents ``int32 [B, L]``: the parent node's slot, -1 for a first token (predicted by the prompt) and padding;
    * depths ``int32 [B, L]``: the position within the sequence (0 for a first token and padding);
    * ancestors ``bool [B, L, L]``: ``[b, i, j]`` = node j is node i or one of its ancestors (what node i attends
      to among the packed tokens; False on padding rows and columns);
    * ends ``int32 [B, A]``: the node of each sequence's last token, -1 for an empty or missing sequence.
    """
    A = num_items if num_items is not None else max((len(g) for g in groups), default=0)
    tokens = np.full((len(groups), length), pad_id, dtype=np.int32)
    parents = np.full((len(groups), length), -1, dtype=np.int32)
    depths = np.zeros((len(groups), length), dtype=np.int32)
    ancestors = np.zeros((len(groups), length, length), dtype=bool)
    ends = np.full((len(groups), max(A, 1)), -1, dtype=np.int32)
    for b, group in enumerate(groups):
        if len(group) > A:
            raise ValueError(f"row {b} has {len(group)} sequences, more than the packed count {A}")
        children: dict[tuple[int, int], int] = {}  # (parent slot, token) -> slot
        # depth-first order = sorted order of the sequences (so siblings' subtrees are contiguous)
        order = sorted(range(len(group)), key=lambda a: list(group[a]))
        n = 0
        for a in order:
            parent = -1
            for d, t in enumerate(group[a]):
                slot = children.get((parent, int(t)))
                if slot is None:
                    if n >= length:
                        raise ValueError(f"row {b} needs more than the packed length {length} trie nodes")
                    slot = children[(parent, int(t))] = n
                    n += 1
                    tokens[b, slot], parents[b, slot], depths[b, slot] = t, parent, d
                    if parent >= 0:
                        ancestors[b, slot] = ancestors[b, parent]
                    ancestors[b, slot, slot] = True
                parent = slot
            ends[b, a] = parent
    return tokens, parents, depths, ancestors, ends


def trie_size(group: Sequence[Sequence[int]]) -> int:
    """Nodes of :func:`pack_trie`'s trie of one row's sequences (distinct non-empty prefixes)."""
    return len({tuple(s[: i + 1]) for s in group for i in range(len(s))})
