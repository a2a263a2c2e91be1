"""Parsing cache for textworld's PDDL engine: same text in, same observations out; steps 3-4.5x and
resets 20-100x faster (benchmarks/RESULTS.md, ALFWorld).

After every step textworld 1.7.0 re-renders the command of every applicable action through the grammar, which
re-parses (with tatsu) the same few template strings and logic queries; every reset re-runs Fast Downward's
PDDL->SAS translator twice on the same problem text. All three results depend on their text input only, so they
are memoised here:

- ``textworld.envs.pddl.textgen._parse_and_convert`` (template strings -> symbol lists), keyed by its arguments.
  Results are handed out as deep copies: the grammar's derivation mutates the symbol lists it receives.
- ``textworld.logic.Rule.parse_conjunctive_query`` (logic query -> Rule), keyed by the expression. Rules are
  only read by ``State.all_assignments``, so the cached object itself is returned.
- ``textworld.envs.pddl.logic._parse_and_convert`` (the grammar document of a game -> actions and grammar),
  keyed by the text; handed out as deep copies like the templates.
- ``fast_downward.pddl2sas`` (domain, problem, verbose, optimize) -> (task, sas). ``PddlState`` only reads the
  task. The wrapper also restores ``sys.argv``, which the translator overwrites on every call.

These are private functions of textworld 1.7.0 (pinned in ``engine.PINNED``); ``install`` refuses to patch any
other version, and tests/test_alfworld.py checks that observations are identical with and without the cache.
"""

from __future__ import annotations

import contextlib
import copy
import sys
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

from envs.alfworld import engine

_LOCK = threading.Lock()
_STATE = {"installed": False, "enabled": False}
_ORIGINALS: dict[str, Callable[..., Any]] = {}


class _LRU:
    """A small thread-safe LRU map (bounded: a real ALFWorld run visits thousands of distinct problems)."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._data: OrderedDict[Any, Any] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: Any) -> tuple[bool, Any]:
        with _LOCK:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return True, self._data[key]
            self.misses += 1
            return False, None

    def put(self, key: Any, value: Any) -> None:
        with _LOCK:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with _LOCK:
            self._data.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._data)


TEMPLATES = _LRU(16384)
DOCUMENTS = _LRU(256)
QUERIES = _LRU(8192)
SAS = _LRU(128)  # (task, sas) of one problem is ~1 MB for a large room


def _cached_textgen_parse(*args: Any, **kwargs: Any) -> Any:
    original = _ORIGINALS["textgen"]
    if not _STATE["enabled"]:
        return original(*args, **kwargs)
    key = (args, tuple(sorted(kwargs.items())))
    found, value = TEMPLATES.get(key)
    if not found:
        value = original(*args, **kwargs)
        TEMPLATES.put(key, value)
    return copy.deepcopy(value)


def _cached_logic_parse(*args: Any, **kwargs: Any) -> Any:
    original = _ORIGINALS["logic"]
    if not _STATE["enabled"]:
        return original(*args, **kwargs)
    key = (args, tuple(sorted(kwargs.items())))
    found, value = DOCUMENTS.get(key)
    if not found:
        value = original(*args, **kwargs)
        DOCUMENTS.put(key, value)
    return copy.deepcopy(value)


def _cached_conjunctive_query(cls: type, expr: str) -> Any:
    original = _ORIGINALS["query"]
    if not _STATE["enabled"]:
        return original(expr)
    found, value = QUERIES.get(expr)
    if not found:
        value = original(expr)
        QUERIES.put(expr, value)
    return value


def _cached_pddl2sas(domain: str, problem: str, verbose: bool = False, optimize: bool = False) -> Any:
    original = _ORIGINALS["pddl2sas"]
    key = (domain, problem, bool(verbose), bool(optimize))
    if _STATE["enabled"]:
        found, value = SAS.get(key)
        if found:
            return value
    argv = list(sys.argv)
    try:
        value = original(domain, problem, verbose=verbose, optimize=optimize)
    finally:
        sys.argv = argv  # the translator replaces sys.argv with ['translate.py', 'domain', 'task']
    if _STATE["enabled"]:
        SAS.put(key, value)
    return value


def install() -> bool:
    """Patch textworld (once per process) and enable the cache. Returns False, with a warning, on a textworld
    version other than the pinned one: the engine then runs unpatched (slower, same results)."""
    with _LOCK:
        if _STATE["installed"]:
            _STATE["enabled"] = True
            return True
        version = getattr(engine.textworld, "__version__", None)
        if version != engine.PINNED["textworld"]:
            warnings.warn(
                f"alfworld-pick: the parsing cache patches textworld {engine.PINNED['textworld']} internals; "
                f"found textworld {version}, so it stays off (steps will be ~3x slower)",
                RuntimeWarning,
                stacklevel=2,
            )
            return False
        _ORIGINALS["textgen"] = engine.tw_textgen._parse_and_convert
        _ORIGINALS["logic"] = engine.tw_pddl_logic._parse_and_convert
        _ORIGINALS["query"] = engine.tw_logic.Rule.parse_conjunctive_query
        _ORIGINALS["pddl2sas"] = engine.fast_downward.pddl2sas
        engine.tw_textgen._parse_and_convert = _cached_textgen_parse
        engine.tw_pddl_logic._parse_and_convert = _cached_logic_parse
        engine.tw_logic.Rule.parse_conjunctive_query = classmethod(_cached_conjunctive_query)
        engine.fast_downward.pddl2sas = _cached_pddl2sas
        _STATE["installed"] = _STATE["enabled"] = True
        return True


def enabled() -> bool:
    return bool(_STATE["enabled"])


def set_enabled(flag: bool) -> bool:
    """Turn the (installed) cache on or off; returns the previous setting. Turning it on installs it."""
    previous = enabled()
    if flag:
        install()
    else:
        _STATE["enabled"] = False
    return previous


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Run a block on the stock engine code paths (used by the equivalence test)."""
    previous = _STATE["enabled"]
    _STATE["enabled"] = False
    try:
        yield
    finally:
        _STATE["enabled"] = previous


def clear() -> None:
    for cache in (TEMPLATES, DOCUMENTS, QUERIES, SAS):
        cache.clear()


def stats() -> dict[str, dict[str, int]]:
    return {
        name: {"size": len(c), "hits": c.hits, "misses": c.misses}
        for name, c in (("templates", TEMPLATES), ("documents", DOCUMENTS), ("queries", QUERIES), ("sas", SAS))
    }
