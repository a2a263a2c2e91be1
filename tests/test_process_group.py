"""``ProcessGroup`` and ``SplitVectorEnv`` without a JAX runtime: two threads stand in for two processes, joined by
an all-gather over a barrier, so the split-and-gather logic is checked in milliseconds (the real two-process run
is ``tests/test_multihost_train.py``)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import envs
from envs.vector import SplitVectorEnv
from prior_rl.distributed import ProcessGroup, local_group


def _thread_groups(size: int) -> list[ProcessGroup]:
    slots: list = [None] * size
    barrier = threading.Barrier(size)

    def allgather(rank: int, obj):
        slots[rank] = obj
        barrier.wait()
        out = list(slots)
        barrier.wait()  # nobody overwrites a slot before everyone has read it
        return out

    return [ProcessGroup(r, size, lambda obj, r=r: allgather(r, obj)) for r in range(size)]


def _in_threads(groups: list[ProcessGroup], fn) -> list:
    results: list = [None] * len(groups)
    errors: list = []

    def run(g: ProcessGroup):
        try:
            results[g.rank] = fn(g)
        except Exception as e:  # re-raised in the test thread
            errors.append(e)

    threads = [threading.Thread(target=run, args=(g,)) for g in groups]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    if errors:
        raise errors[0]
    return results


def test_map_computes_each_item_once_and_gives_every_process_all_results():
    calls: list = []

    def square(pair):
        rank, x = pair
        calls.append((rank, x))
        return x * x

    out = _in_threads(_thread_groups(3), lambda g: g.map(lambda x: square((g.rank, x)), range(7)))
    assert out == [[x * x for x in range(7)]] * 3
    assert sorted(x for _, x in calls) == list(range(7))  # each item computed once, by its owner i % 3
    assert all(x % 3 == rank for rank, x in calls)
    assert local_group().map(lambda x: x + 1, [1, 2]) == [2, 3]


def test_map_batch_refuses_a_wrong_number_of_results():
    with pytest.raises(ValueError, match="2 results for 1 items"):
        local_group().map_batch(lambda xs: [0, 0], [5])


def test_split_vector_env_steps_like_one_vector_env():
    def rollout(vec):
        obs, _ = vec.reset(seed=4)
        rng, trace = np.random.default_rng(0), []
        for _ in range(12):
            actions = [int(rng.integers(len(o.actions))) for o in vec.observations]
            step = vec.step(actions)
            trace.append((step.prompts, [float(r) for r in step.rewards], step.terminated.tolist()))
        return trace

    ref = rollout(envs.VectorEnv("frozen-lake", 3))
    groups = _thread_groups(2)
    split = _in_threads(groups, lambda g: rollout(SplitVectorEnv(lambda: envs.make("frozen-lake"), 3, g)))
    assert split == [ref, ref]
