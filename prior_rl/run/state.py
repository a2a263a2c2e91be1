"""The complete state of a run, saved with orbax and restored to a bit-identical continuation.

:class:`RunState` = device arrays (agent state, replay buffer, feature table, jax key) + :class:`HostState`, named
JSON fields (counters, schedules, the numpy generator's state, each environment copy's seed, episode count and
actions since its reset, pending candidates, logged rows). No pickle and no live objects: environment copies are
rebuilt by replaying their actions (:meth:`envs.VectorEnv.restore`). The prior's cache is written beside the
checkpoint (``step_<N>.prior_cache.npz``) so a resumed run pays and counts LLM calls exactly as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Optional

import jax
import numpy as np

from prior_rl.io import checkpoint as ckpt
from prior_rl.replay import FeatureTable

PRIOR_CACHE = "prior_cache.npz"
GENERATION_CACHE = "generation_cache.npz"  # generate mode's k texts per prompt, drawn once and reused


@dataclass
class HostState:
    """The host side of a run, all JSON. ``position`` is what checkpoints are numbered and logs truncated by."""

    env_steps: int = 0
    updates: int = 0
    episodes: int = 0
    next_log: int = 0
    next_eval: int = 0
    next_ckpt: int = 0
    ep_returns: list = field(default_factory=list)
    last_metrics: dict = field(default_factory=dict)
    best_eval_success: float = -1.0
    rng: Optional[dict] = None  # numpy bit-generator state of the host generator
    envs: Optional[dict] = None  # envs.VectorEnv.snapshot()
    pending: Optional[dict] = None  # candidates of the current observations (value loop)
    table_keys: list = field(default_factory=list)  # the feature table's strings, in row order
    recorder: dict = field(default_factory=dict)  # Recorder.state()
    cache_counts: Optional[list] = None  # the prior cache's (hits, misses)


class RunState(NamedTuple):
    """agent: the agent's state pytree; buffer: a ReplayState or None; key: the run's jax key; host: HostState."""

    agent: Any
    buffer: Any
    key: jax.Array
    host: HostState


def table_of(featurizer: Any) -> Optional[np.ndarray]:
    """The feature table's rows, or None when there are none (orbax stores no empty arrays)."""
    if featurizer is None or len(featurizer.table) == 0:
        return None
    return np.asarray(featurizer.table.array)


def save(manager: ckpt.CheckpointManager, step: int, state: RunState, featurizer: Any, prior: Any) -> Path:
    """Write ``state`` (+ the feature table and the prior cache) as checkpoint ``step``, atomically."""
    host = dataclasses.replace(state.host, table_keys=featurizer.table.keys() if featurizer else [])
    cache = getattr(prior, "cache", None)
    if cache is not None:
        host.cache_counts = [cache.hits, cache.misses]
        cache.save(manager.sidecar(step, PRIOR_CACHE))  # first: a checkpoint is only complete with its cache
    generations = getattr(prior, "generation_cache", None)
    if generations is not None and hasattr(generations, "save"):
        generations.save(manager.sidecar(step, GENERATION_CACHE))
    arrays = _arrays(state.agent, state.buffer, table_of(featurizer))
    return manager.save(step, arrays, rng=state.key, metadata={"host": dataclasses.asdict(host)})


def _arrays(agent: Any, buffer: Any, table: np.ndarray) -> dict:
    """The device part of a checkpoint; absent parts (the LLM policy has no agent or buffer) are left out."""
    arrays = {"agent": agent, "buffer": buffer, "table": table}
    return {name: value for name, value in arrays.items() if value is not None}


def has_checkpoint(config: Any) -> bool:
    return bool(config.run_dir) and ckpt.latest(Path(config.run_dir) / "checkpoints") is not None


def say_no_checkpoint(config: Any) -> None:
    print(
        f"prior-rl: --resume: no checkpoint in {Path(config.run_dir) / 'checkpoints'}; starting a new run",
        file=sys.stderr,
    )


def restore(manager: ckpt.CheckpointManager, agent: Any, buffer: Any, featurizer: Any, prior: Any) -> RunState:
    """The latest checkpoint into templates ``agent`` / ``buffer`` (arrays of the right structure and shapes);
    refills ``featurizer``'s table and swaps the checkpointed cache into ``prior``."""
    step, meta = ckpt.read_metadata(manager.directory)
    host = HostState(**meta["host"])
    dim = featurizer.table.dim if featurizer is not None else 1
    table = np.zeros((len(host.table_keys), dim), np.float32) if host.table_keys else None
    template = _arrays(agent, buffer, table)
    restored = manager.restore(template, step)
    if featurizer is not None:
        table = FeatureTable(dim)
        rows = np.asarray(restored.state["table"]) if host.table_keys else ()
        for text, row in zip(host.table_keys, rows):
            table.add(text, row)
        featurizer.table = table
    if getattr(prior, "cache", None) is not None:
        from prior_rl.prior import PriorCache

        cache = PriorCache.load(manager.sidecar(step, PRIOR_CACHE))
        cache.hits, cache.misses = host.cache_counts
        prior.cache = cache
    generations = getattr(prior, "generation_cache", None)
    if generations is not None and hasattr(generations, "save"):
        from prior_rl.prior import PriorCache

        # missing_ok: checkpoints written before the generation cache existed
        prior.generation_cache = PriorCache.load(manager.sidecar(step, GENERATION_CACHE), missing_ok=True)
    return RunState(restored.state.get("agent"), restored.state.get("buffer"), restored.rng, host)


def generator_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


def generator_from(state: dict) -> np.random.Generator:
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    return rng


def pending_to_json(pending: Optional[tuple]) -> Optional[dict]:
    if pending is None:
        return None
    return {name: np.asarray(a).tolist() for name, a in zip(("indices", "mask", "rows"), pending)}


def pending_from_json(pending: Optional[dict]) -> Optional[tuple]:
    if pending is None:
        return None
    return (
        np.asarray(pending["indices"], np.int32),
        np.asarray(pending["mask"], bool),
        np.asarray(pending["rows"], np.int32),
    )
