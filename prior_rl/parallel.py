"""Data-parallel update steps over a device mesh (``jax.shard_map``), equal to the single-device step.

The minibatch axis is split over the mesh axis ``"data"``; parameters, optimizer state and target network are
replicated. Each device computes its shard's loss; the loss is ``pmean``-ed *before* differentiation
(docs/llm-offline.md §8.3 — pmean-ing the gradients of local losses under ``check_vma=True`` yields n× the gradient).
A 'sum'-reduced TD loss is written as mean × global batch size (``num_shards`` tells the loss the global size),
so the pmean of shard losses is exactly the full-batch loss.

On fake CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=N``) keep at most a few multi-device
calls in flight: ``jax.block_until_ready`` the result of every call (docs/llm-offline.md §8.4, deadlock otherwise).
One call runs a whole ``lax.scan`` of updates, so blocking per call costs little.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from prior_rl.agents.common import Agent, make_update_step, scan_updates

PyTree = Any


def make_mesh(num_devices: Optional[int] = None, axis_name: str = "data", devices=None) -> Mesh:
    """A 1-D mesh over the first ``num_devices`` devices (all by default)."""
    devices = list(devices if devices is not None else jax.devices())
    if num_devices is not None:
        if num_devices > len(devices):
            raise ValueError(f"asked for {num_devices} devices, only {len(devices)} available")
        devices = devices[:num_devices]
    return Mesh(np.asarray(devices), (axis_name,))


def replicate(tree: PyTree, mesh: Mesh) -> PyTree:
    """Place every leaf fully replicated on the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_batches(batches: PyTree, mesh: Mesh, axis_name: str = "data") -> PyTree:
    """Place batches [U, B, ...] with B split over the mesh (B must be divisible by the mesh size)."""
    return jax.device_put(batches, NamedSharding(mesh, P(None, axis_name)))


def make_sharded_update(agent: Agent, mesh: Mesh, axis_name: str = "data") -> Callable[..., tuple[Any, dict]]:
    """``update(state, batches[U, B, ...], table=None) -> (state, metrics[U])``, data-parallel over ``mesh``
    (the feature ``table``, when the batches hold rows into one, is replicated).

    Same semantics as ``agent.update``; the result equals it up to float reassociation (~1e-6).
    """
    if getattr(agent.config, "reference_broadcast_bug", False):
        raise ValueError("reference_broadcast_bug couples every sample to the whole batch: it has no sharded form")
    n = mesh.shape[axis_name]
    step = make_update_step(agent.loss, agent.apply_gradients, axis_name=axis_name, num_shards=n)
    update_fn = scan_updates(step, agent.prepare)  # with a table: per-step gather of the local shard's rows

    sharded = jax.jit(
        jax.shard_map(update_fn, mesh=mesh, in_specs=(P(), P(None, axis_name), P()), out_specs=(P(), P()))
    )

    def update(state, batches, table=None):
        b = jax.tree.leaves(batches)[0].shape[1]
        if b % n:
            raise ValueError(f"batch size {b} is not divisible by the {n} devices of the mesh")
        return sharded(state, batches, table)

    return update
