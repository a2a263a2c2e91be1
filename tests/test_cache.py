"""PriorCache: hit/miss accounting, LRU bound, pickle-free atomic persistence, corrupt-file handling."""

from __future__ import annotations

import os

import numpy as np
import pytest

from prior_rl.llm import cache as cache_mod
from prior_rl.llm.cache import CacheFormatError, PriorCache, prior_key


def test_prior_key_is_canonical_and_hashable():
    k1 = prior_key("smollm2", "You see a fridge.", ["open fridge", "go north"])
    k2 = prior_key("smollm2", "You see a fridge.", ("open fridge", "go north"))
    assert k1 == k2 == ("smollm2", "You see a fridge.", ("open fridge", "go north"))
    assert hash(k1) == hash(k2)
    assert prior_key("other", "You see a fridge.", ["open fridge", "go north"]) != k1


def test_hits_misses_and_get_or_compute():
    c = PriorCache()
    key = prior_key("m", "p", ["a", "b"])
    assert c.get(key) is None
    assert (c.hits, c.misses) == (0, 1)
    calls = []

    def compute():
        calls.append(1)
        return np.array([-0.1, -2.3], np.float32)

    v1 = c.get_or_compute(key, compute)
    v2 = c.get_or_compute(key, compute)
    assert len(calls) == 1
    np.testing.assert_array_equal(v1, v2)
    assert (c.hits, c.misses) == (1, 2)
    assert key in c and len(c) == 1  # `in` does not count
    assert c.stats() == {"hits": 1, "misses": 2, "size": 1, "evictions": 0, "hit_rate": pytest.approx(1 / 3)}
    c.put(("other",), "x")
    assert c.peek(("other",)) == "x" and c.stats()["hits"] == 1
    c.reset_stats()
    assert (c.hits, c.misses) == (0, 0)


def test_none_and_unhashable_rejected():
    c = PriorCache()
    with pytest.raises(ValueError, match="None"):
        c.put("k", None)
    with pytest.raises(TypeError):
        c.put(["list", "key"], 1)


def test_lru_bound_evicts_least_recently_used():
    c = PriorCache(max_entries=2)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1  # "a" becomes most recent
    c.put("c", 3)  # evicts "b"
    assert "b" not in c and "a" in c and "c" in c
    assert c.evictions == 1
    with pytest.raises(ValueError):
        PriorCache(max_entries=0)


def _rich_cache() -> PriorCache:
    c = PriorCache(name="rich", max_entries=100)
    c.put(
        prior_key("smollm2", "prompt with ünïcode ✓", ["open fridge", "go north"]),
        np.array([-0.5, -3.25], np.float32),
    )
    c.put(prior_key("smollm2", "prompt 2", ["x"]), np.array([-1.0], np.float32))  # same dtype, other shape
    c.put(("feat", "text"), np.arange(384, dtype=np.float32))
    c.put(("ints", 3, 2.5, None, True, ("nested", (1, 2))), np.arange(6, dtype=np.int64).reshape(2, 3))
    c.put("samples", ("open fridge", "open fridge", "go north"))  # tuple stays a tuple
    c.put("list", ["a", 1, [2.0, None]])
    c.put("dict", {"texts": ("a", "b"), "logp": np.float64(-0.25), 3: np.array(7, np.int8), "flag": False})
    c.put("scalar", 1.5)
    return c


def test_round_trip_preserves_keys_values_and_types(tmp_path):
    c = _rich_cache()
    path = c.save(tmp_path / "sub" / "priors.npz")
    assert path.is_file()
    d = PriorCache.load(path)
    assert (d.hits, d.misses) == (0, 0)
    assert d.name == "rich" and d.max_entries == 100
    assert list(d) == list(c)
    for (k1, v1), (k2, v2) in zip(c.items(), d.items()):
        assert k1 == k2 and type(k1) is type(k2)
        _assert_same(v1, v2)
    # a loaded cache answers lookups by the original keys
    np.testing.assert_array_equal(d.get(prior_key("smollm2", "prompt 2", ["x"])), [-1.0])
    assert d.hits == 1
    assert not [p for p in os.listdir(path.parent) if p.endswith(".tmp")]


def _assert_same(a, b):
    assert type(a) is type(b), (a, b)
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _assert_same(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, np.generic):
        assert a.dtype == b.dtype and a == b
    else:
        assert a == b


def test_many_same_shape_arrays_are_stacked(tmp_path):
    c = PriorCache()
    for i in range(50):
        c.put(("enc", f"text {i}"), np.full(8, i, np.float32))
    path = c.save(tmp_path / "f.npz")
    with np.load(path, allow_pickle=False) as npz:
        members = [n for n in npz.files if n != "__manifest__"]
        assert len(members) == 1 and npz[members[0]].shape == (50, 8)
    d = PriorCache.load(path)
    np.testing.assert_array_equal(d.peek(("enc", "text 17")), np.full(8, 17, np.float32))


def test_save_overwrites_atomically_and_load_missing(tmp_path):
    path = tmp_path / "c.npz"
    with pytest.raises(FileNotFoundError):
        PriorCache.load(path)
    assert len(PriorCache.load(path, missing_ok=True)) == 0
    c = PriorCache()
    c.put("a", 1)
    c.save(path)
    c.put("b", 2)
    c.save(path)
    assert set(PriorCache.load(path)) == {"a", "b"}


@pytest.mark.parametrize(
    "content",
    [b"definitely not a zip file", b"PK\x03\x04" + b"\x00" * 40, None],
    ids=["garbage", "broken-zip", "truncated"],
)
def test_corrupt_file_clear_error_and_untouched(tmp_path, content):
    path = tmp_path / "c.npz"
    if content is None:  # a real cache file cut in half, as after a crash without atomic writes
        _rich_cache().save(path)
        content = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(content)
    with pytest.raises(CacheFormatError, match="c.npz"):
        PriorCache.load(path)
    with pytest.raises(CacheFormatError):
        PriorCache.load(path, missing_ok=True)  # missing_ok never papers over a corrupt file
    assert path.read_bytes() == content


def test_npz_that_is_not_a_cache(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, x=np.arange(3))
    with pytest.raises(CacheFormatError, match="not a prior_rl cache"):
        PriorCache.load(path)


def test_unstorable_entries_fail_before_touching_the_file(tmp_path):
    path = tmp_path / "c.npz"
    good = PriorCache()
    good.put("a", np.ones(3))
    good.save(path)
    before = path.read_bytes()
    for bad_value in (np.array(["s", "t"]), np.array([object()], dtype=object), object(), b"bytes"):
        c = PriorCache()
        c.put("k", bad_value)
        with pytest.raises(CacheFormatError, match="cannot save"):
            c.save(path)
        assert path.read_bytes() == before
    c = PriorCache()
    c.put((np.float32(1.0),), 1)  # numpy values are not allowed inside keys
    with pytest.raises(CacheFormatError):
        c.save(path)
    assert path.read_bytes() == before


def test_crash_during_write_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "c.npz"
    old = PriorCache()
    old.put("a", 1)
    old.save(path)
    before = path.read_bytes()

    def exploding_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(cache_mod.np, "savez", exploding_savez)
    new = PriorCache()
    new.put("b", 2)
    with pytest.raises(OSError, match="disk full"):
        new.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["c.npz"]  # the temp file was removed


def test_update_merges_entries():
    a, b = PriorCache(), PriorCache()
    a.put("x", 1)
    b.put("y", 2)
    a.update(b)
    assert set(a) == {"x", "y"} and (a.hits, a.misses) == (0, 0)
