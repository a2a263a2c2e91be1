"""Length bucketing and padding/packing helpers of the prior."""

from __future__ import annotations

import numpy as np
import pytest

from prior_rl.llm.padding import bucket_length, next_pow2, pack_groups, pad_nested, pad_sequences


def test_bucket_length_policies():
    assert [bucket_length(n) for n in (1, 16, 17, 60, 128, 129, 150, 300, 600, 1000)] == [
        16,
        16,
        32,
        64,
        128,
        144,
        160,
        320,
        640,
        1024,
    ]
    assert [bucket_length(n, 16, "multiple") for n in (1, 17, 150)] == [16, 32, 160]
    assert [bucket_length(n, 16, "pow2") for n in (1, 17, 150)] == [16, 32, 256]
    for n in range(1, 3000):  # a bucket holds n, and wastes fewer than max(multiple, n/8) slots
        b = bucket_length(n)
        assert n <= b < n + max(16, n / 8)
    # Few distinct shapes: lengths 1..4096 fall into far fewer buckets than a step of 16 would give (256).
    assert len({bucket_length(n) for n in range(1, 4097)}) <= 64
    with pytest.raises(ValueError, match="unknown bucketing policy"):
        bucket_length(5, policy="fib")
    assert [next_pow2(n) for n in (0, 1, 3, 8, 9)] == [1, 1, 4, 8, 16]


def test_pad_sequences_and_nested():
    t, m = pad_sequences([[5, 6], [7]], 4, 0)
    assert t.tolist() == [[5, 6, 0, 0], [7, 0, 0, 0]] and m.tolist() == [[1, 1, 0, 0], [1, 0, 0, 0]]
    t, m = pad_nested([[[1], [2, 3]], [[4]]], 3, 2, 9)
    assert t.shape == (2, 3, 2) and t[0, 1].tolist() == [2, 3] and not m[1, 1:].any()
    with pytest.raises(ValueError, match="more than the padded length"):
        pad_sequences([[1, 2, 3]], 2, 0)


def test_pack_groups():
    t, seg, off = pack_groups([[[1, 2], [3], [4, 5, 6]], [[7]]], 8, 0)
    assert t[0].tolist() == [1, 2, 3, 4, 5, 6, 0, 0]
    assert seg[0].tolist() == [0, 0, 1, 2, 2, 2, -1, -1] and off[0].tolist() == [0, 1, 0, 0, 1, 2, 0, 0]
    assert seg[1].tolist() == [0] + [-1] * 7
    assert t.dtype == seg.dtype == off.dtype == np.int32
    with pytest.raises(ValueError, match="more than the packed length"):
        pack_groups([[[1, 2, 3]]], 2, 0)
