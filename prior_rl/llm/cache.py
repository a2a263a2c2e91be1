"""Key → value caches for LLM priors and text-encoder features, with hit/miss counts and safe persistence.

Scoring an LLM prior or encoding a string costs milliseconds to seconds on CPU, while RL revisits the same
(observation, action set) pairs thousands of times, so both are memoised here. One generic class serves both:

* LLM priors: key ``prior_key(model_name, prompt, actions)`` = ``(model_name, prompt, tuple(actions))``, value e.g. a
  ``[k]`` float array of log-probs or a tuple of sampled action texts;
* encoder features: key ``(encoder_id, text)``, value a ``[D]`` float32 array (see :mod:`prior_rl.llm.encoder`).

Keys and values are restricted to what can be stored without pickle: ``None``, ``bool``, ``int``, ``float``,
``str``, tuples/lists/str-or-int-keyed dicts of these, and (values only) numeric numpy arrays and numpy scalars.
Files are ``.npz`` archives (read with ``allow_pickle=False``) holding one JSON manifest plus the arrays (stacked by
dtype and shape, so 10^5 feature vectors are one ``[N, D]`` member rather than 10^5 zip members); they are
written to a temporary file in the same directory and moved into place with ``os.replace``, so a crash never leaves
a half-written cache behind and a reader never sees one.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CacheFormatError", "PriorCache", "prior_key"]

_FORMAT = "prior_rl.llm.cache"
_VERSION = 1
_MANIFEST = "__manifest__"


class CacheFormatError(ValueError):
    """A cache file cannot be read back (truncated, not a cache, unknown version), or an entry cannot be saved."""


def prior_key(model_name: str, prompt: str, actions: tuple[str, ...] | list[str]) -> tuple[str, str, tuple[str, ...]]:
    """The canonical key of an LLM prior: ``(model_name, prompt, tuple(actions))``."""
    return (str(model_name), str(prompt), tuple(str(a) for a in actions))


class PriorCache:
    """In-memory key → value cache with hit/miss counters, optional LRU bound and atomic ``.npz`` persistence.

    ``get`` and ``get_or_compute`` count a hit or a miss; ``put``, ``in`` and ``peek`` count nothing. With
    ``max_entries`` set, the least recently used entry is evicted past that size (``evictions`` counts them).
    Values are returned as stored (arrays are not copied): treat them as read-only.
    """

    def __init__(self, max_entries: int | None = None, name: str = "cache"):
        if max_entries is not None and max_entries < 1:
            raise ValueError(f"max_entries must be a positive int or None, got {max_entries!r}")
        self.max_entries = max_entries
        self.name = name
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    # -- mapping ----------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[Hashable]:
        return iter(list(self._data))

    def items(self) -> list[tuple[Hashable, Any]]:
        return list(self._data.items())

    def peek(self, key: Hashable, default: Any = None) -> Any:
        """Look up without counting or touching LRU order."""
        return self._data.get(key, default)

    def get(self, key: Hashable, default: Any = None) -> Any:
        """The stored value (a hit) or ``default`` (a miss)."""
        try:
            value = self._data[key]
        except KeyError:
            self.misses += 1
            return default
        self.hits += 1
        self._data.move_to_end(key)
        return value

    def put(self, key: Hashable, value: Any) -> None:
        """Store ``value`` under ``key`` (replacing any previous value). ``None`` is not storable: it means a miss."""
        if value is None:
            raise ValueError("PriorCache cannot store None (get() returns None for a miss)")
        hash(key)  # fail here, not later, on unhashable keys
        self._data[key] = value
        self._data.move_to_end(key)
        if self.max_entries is not None:
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)
                self.evictions += 1

    def get_or_compute(self, key: Hashable, fn: Callable[[], Any]) -> Any:
        """Return the cached value, or compute ``fn()``, store it and return it."""
        value = self.get(key)
        if value is None:
            value = fn()
            self.put(key, value)
        return value

    def update(self, other: PriorCache) -> None:
        """Copy all entries of ``other`` into this cache (counters unchanged)."""
        for key, value in other._data.items():
            self.put(key, value)

    def clear(self) -> None:
        self._data.clear()

    def reset_stats(self) -> None:
        self.hits = self.misses = self.evictions = 0

    def stats(self) -> dict[str, float]:
        """``{"hits", "misses", "size", "evictions", "hit_rate"}`` (hit_rate is 0.0 before any lookup)."""
        lookups = self.hits + self.misses
        return {
            "hits": self.hits,
            "misses": self.misses,
            "size": len(self._data),
            "evictions": self.evictions,
            "hit_rate": self.hits / lookups if lookups else 0.0,
        }

    def __repr__(self) -> str:
        return f"PriorCache(name={self.name!r}, size={len(self)}, hits={self.hits}, misses={self.misses})"

    # -- persistence ------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write every entry to ``path`` atomically (temp file in the same directory, then ``os.replace``).

        Raises :class:`CacheFormatError` (before touching ``path``) if a key or value is not storable.
        """
        path = Path(path)
        arrays = _ArrayPacker()
        entries = []
        for i, (key, value) in enumerate(self._data.items()):
            try:
                entries.append([_encode(key, arrays, allow_arrays=False), _encode(value, arrays, allow_arrays=True)])
            except TypeError as e:
                raise CacheFormatError(f"cannot save entry {i} (key {key!r:.200}): {e}") from e
        manifest = {
            "format": _FORMAT,
            "version": _VERSION,
            "name": self.name,
            "max_entries": self.max_entries,
            "entries": entries,
        }
        blob = np.frombuffer(json.dumps(manifest, allow_nan=True).encode("utf-8"), dtype=np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **{_MANIFEST: blob}, **arrays.stacked())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, missing_ok: bool = False) -> PriorCache:
        """Read a cache written by :meth:`save`. Counters start at zero.

        ``missing_ok=True`` returns an empty cache when ``path`` does not exist. A file that exists but cannot be
        read raises :class:`CacheFormatError`; it is left untouched, so nothing is lost by accident.
        """
        path = Path(path)
        if not path.exists():
            if missing_ok:
                return cls()
            raise FileNotFoundError(f"cache file {str(path)!r} does not exist")
        try:
            with np.load(path, allow_pickle=False) as npz:
                if _MANIFEST not in npz.files:
                    raise CacheFormatError(f"{path}: not a prior_rl cache (no manifest)")
                manifest = json.loads(npz[_MANIFEST].tobytes().decode("utf-8"))
                if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT:
                    raise CacheFormatError(f"{path}: not a prior_rl cache (format {manifest.get('format')!r})")
                if manifest.get("version") != _VERSION:
                    raise CacheFormatError(
                        f"{path}: cache format version {manifest.get('version')!r}, this code reads {_VERSION}"
                    )
                arrays = {name: npz[name] for name in npz.files if name != _MANIFEST}
            cache = cls(max_entries=manifest.get("max_entries"), name=manifest.get("name", "cache"))
            for key_enc, value_enc in manifest["entries"]:
                cache.put(_decode(key_enc, arrays), _decode(value_enc, arrays))
        except CacheFormatError:
            raise
        except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile, UnicodeDecodeError) as e:
            raise CacheFormatError(f"{path}: corrupt or unreadable cache file ({type(e).__name__}: {e})") from e
        return cache


# -- pickle-free encoding ----------------------------------------------------------------------------------------
# JSON cannot tell a tuple from a list, and keys must come back as the same hashable tuples, so containers are
# tagged: {"t": [...]} tuple, {"l": [...]} list, {"d": [[k, v], ...]} dict, {"a": ["g_G", i]} array (row i of the
# stacked group G), {"s": ["g_G", i]} numpy scalar. Plain JSON scalars stand for themselves.


class _ArrayPacker:
    """Collects arrays into one stack per (dtype, shape); ``add`` returns the (member name, row) reference."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, tuple[int, ...]], tuple[str, list[np.ndarray]]] = {}

    def add(self, a: np.ndarray) -> list:
        name, rows = self._groups.setdefault((a.dtype.str, a.shape), (f"g_{len(self._groups)}", []))
        rows.append(a)
        return [name, len(rows) - 1]

    def stacked(self) -> dict[str, np.ndarray]:
        return {name: np.stack(rows) for name, rows in self._groups.values()}


def _encode(obj: Any, arrays: _ArrayPacker, allow_arrays: bool) -> Any:
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, float)) and not isinstance(obj, np.generic):
        return obj
    if isinstance(obj, tuple):
        return {"t": [_encode(x, arrays, allow_arrays) for x in obj]}
    if isinstance(obj, list):
        return {"l": [_encode(x, arrays, allow_arrays) for x in obj]}
    if isinstance(obj, dict):
        return {"d": [[_encode(k, arrays, False), _encode(v, arrays, allow_arrays)] for k, v in obj.items()]}
    if isinstance(obj, (np.ndarray, np.generic)):
        if not allow_arrays:
            raise TypeError(f"numpy {type(obj).__name__} cannot be part of a key")
        if obj.dtype.kind not in "biufc":
            raise TypeError(f"only numeric arrays can be saved without pickle, got dtype {obj.dtype}")
        return {"s" if isinstance(obj, np.generic) else "a": arrays.add(np.asarray(obj))}
    raise TypeError(f"{type(obj).__name__} is not storable (use str/int/float/bool/None, containers, numeric arrays)")


def _decode(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, dict) and len(obj) == 1:
        ((tag, payload),) = obj.items()
        if tag == "t":
            return tuple(_decode(x, arrays) for x in payload)
        if tag == "l":
            return [_decode(x, arrays) for x in payload]
        if tag == "d":
            return {_decode(k, arrays): _decode(v, arrays) for k, v in payload}
        if tag in ("a", "s"):
            name, row = payload
            value = arrays[name][row, ...]  # `...` keeps a 0-d array an array
            return value[()] if tag == "s" else value
    raise CacheFormatError(f"unknown encoded entry {obj!r:.200}")
