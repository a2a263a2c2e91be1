"""KV caches for segmented prompts (:mod:`prior_rl.prior.segments`): a preamble cache and an episode trie.

* **Preamble cache**: the preamble's KV (``Prefix [L, 1, S, KV, Dh]``, a device array) is prefilled once per
  (model, preamble) and shared by every prompt, every row of a batch and every step. LRU-bounded by count.
* **Episode trie**: one node per (parent node, exact turn string) holding the KV of that turn's tokens only
  (``[L, n, KV, Dh]``, host memory), encoded on top of the preamble and the parent's turns. A prompt's history
  is the chain of nodes that matches its turns one by one from the preamble's root, so a cached history is reused
  only when every earlier turn string (and the preamble) is identical: an episode reset (a new turn 0), another
  environment copy with a different history, or a truncated window (turn 0 followed by later turns) can never
  pick up the wrong KV; copies that share a prefix (the same first observation) share its nodes, and nothing is
  stored twice. LRU-bounded by bytes: evicting a node removes its subtree.

Per-turn KV lives in host NumPy arrays: assembling a batch's ``[L, 1, N, P, KV, Dh]`` past from chains of
different lengths is then plain slicing, with no per-shape compilation (on a GPU a device-resident slot bank
would avoid the host round trip; the layout is private to this module).
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class PreambleEntry:
    """A prefilled preamble: its KV ``prefix`` (``Prefix`` with ``B = 1``), token ids, and its trie root id."""

    prefix: Any
    ids: list[int]
    root: int

    @property
    def length(self) -> int:
        return len(self.ids)


@dataclass
class TurnNode:
    """One cached turn: KV of its own tokens (``k, v [L, n, KV, Dh]`` or None when ``n == 0``); ``length`` =
    tokens of all turns from turn 0 through this one (the preamble excluded)."""

    id: int
    parent: int
    turn: str
    ids: list[int]
    k: np.ndarray | None
    v: np.ndarray | None
    length: int
    children: set[int] = field(default_factory=set)

    @property
    def nbytes(self) -> int:
        return 0 if self.k is None else self.k.nbytes + self.v.nbytes


class ContextCache:
    """The preamble cache and the episode trie of one :class:`prior_rl.prior.action_prior.ActionPrior` (one model).

    ``max_bytes`` bounds the trie's KV bytes, ``max_preambles`` the number of prefilled preambles.
    """

    def __init__(self, max_bytes: int = 1 << 30, max_preambles: int = 4):
        if max_bytes < 0 or max_preambles < 1:
            raise ValueError(f"max_bytes must be >= 0 and max_preambles >= 1, got {max_bytes}, {max_preambles}")
        self.max_bytes = int(max_bytes)
        self.max_preambles = int(max_preambles)
        self._ids = itertools.count(1)
        self._preambles: OrderedDict[Any, PreambleEntry] = OrderedDict()
        self._nodes: OrderedDict[int, TurnNode] = OrderedDict()  # LRU order, oldest first
        self._index: dict[tuple[int, str], int] = {}
        self._root_children: dict[int, set[int]] = {}
        self.nbytes = 0
        self.evictions = 0

    # -- preambles -----------------------------------------------------------------------------------------
    def preamble(self, key: Any) -> PreambleEntry | None:
        entry = self._preambles.get(key)
        if entry is not None:
            self._preambles.move_to_end(key)
        return entry

    def put_preamble(self, key: Any, prefix: Any, ids: list[int]) -> PreambleEntry:
        entry = PreambleEntry(prefix, ids, next(self._ids))
        self._preambles[key] = entry
        self._root_children[entry.root] = set()
        while len(self._preambles) > self.max_preambles:
            _, old = self._preambles.popitem(last=False)
            for child in list(self._root_children.pop(old.root, ())):
                self._remove(child)
        return entry

    # -- episode trie --------------------------------------------------------------------------------------
    def match(self, root: int, turns: tuple[str, ...]) -> list[TurnNode]:
        """The longest chain of cached nodes matching ``turns[0], turns[1], ...`` under ``root`` (touched as
        recently used)."""
        chain: list[TurnNode] = []
        parent = root
        for turn in turns:
            nid = self._index.get((parent, turn))
            if nid is None:
                break
            node = self._nodes[nid]
            self._nodes.move_to_end(nid)
            chain.append(node)
            parent = nid
        return chain

    def add(self, parent: int, turn: str, ids: list[int], k: np.ndarray | None, v: np.ndarray | None) -> TurnNode:
        """Cache ``turn`` (its ids and KV) under ``parent`` (a node id or a preamble root); returns the node (the
        existing one if that turn is already cached there)."""
        nid = self._index.get((parent, turn))
        if nid is not None:
            self._nodes.move_to_end(nid)
            return self._nodes[nid]
        if parent not in self._nodes and parent not in self._root_children:
            # the parent was evicted meanwhile: nothing could reach this node, so do not store it
            return TurnNode(next(self._ids), parent, turn, ids, None, None, len(ids))
        base = self._nodes[parent].length if parent in self._nodes else 0
        node = TurnNode(next(self._ids), parent, turn, ids, k, v, base + len(ids))
        self._nodes[node.id] = node
        self._index[(parent, turn)] = node.id
        siblings = (
            self._nodes[parent].children if parent in self._nodes else self._root_children.setdefault(parent, set())
        )
        siblings.add(node.id)
        self.nbytes += node.nbytes
        while self.nbytes > self.max_bytes and self._nodes:
            self._remove(next(iter(self._nodes)))
            self.evictions += 1
        return node

    def _remove(self, nid: int) -> None:
        stack = [nid]
        while stack:
            node = self._nodes.pop(stack.pop(), None)
            if node is None:
                continue
            self._index.pop((node.parent, node.turn), None)
            parent = self._nodes.get(node.parent)
            (parent.children if parent is not None else self._root_children.get(node.parent, set())).discard(node.id)
            self.nbytes -= node.nbytes
            stack.extend(node.children)

    def clear(self) -> None:
        self._preambles.clear()
        self._nodes.clear()
        self._index.clear()
        self._root_children.clear()
        self.nbytes = 0

    def stats(self) -> dict[str, int]:
        return {
            "preambles": len(self._preambles),
            "turn_nodes": len(self._nodes),
            "episode_cache_bytes": self.nbytes,
            "episode_cache_evictions": self.evictions,
        }
