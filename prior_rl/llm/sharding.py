"""Tensor-parallel placement of a Llama/Qwen2 model's parameters over a 1-D device mesh (Megatron-style).

The attention projections are split by heads and the MLP by its hidden columns:

* ``q_proj`` / ``k_proj`` / ``v_proj`` kernels ``[L, D, heads·Dh]`` (and biases ``[L, heads·Dh]``) by output
  column, so each device holds whole heads (``num_heads`` and ``num_kv_heads`` must divide by the mesh size);
* ``o_proj`` ``[L, heads·Dh, D]`` and ``down_proj`` ``[L, I, D]`` by input row;
* ``gate_proj`` / ``up_proj`` ``[L, D, I]`` by output column (``intermediate_size`` must divide);
* embeddings, the output head and the norms are replicated.

The jitted scoring and sampling functions run unchanged on parameters placed this way: XLA's SPMD partitioner
follows the shardings and inserts the two all-reduces per layer. Loading places each tensor straight from host
memory into its shards (:func:`place`), so a model larger than one device's memory never exists whole on one
device.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "tp"
DTYPES = ("float32", "bfloat16")

# (module, leaf) -> the sharded axis, counted from the end of the stacked [L, ...] array
_SHARDED_AXIS = {
    ("q_proj", "kernel"): -1,
    ("k_proj", "kernel"): -1,
    ("v_proj", "kernel"): -1,
    ("q_proj", "bias"): -1,
    ("k_proj", "bias"): -1,
    ("v_proj", "bias"): -1,
    ("o_proj", "kernel"): -2,
    ("gate_proj", "kernel"): -1,
    ("up_proj", "kernel"): -1,
    ("down_proj", "kernel"): -2,
}


class ShardingError(ValueError):
    """A tensor-parallel layout the model or the machine cannot take; the message names the value and the fix."""


def check_dtype(name: str) -> Any:
    """The jnp dtype for ``--llm-dtype`` ``name``; :class:`ShardingError` for a name we do not run or a dtype the
    backend lacks."""
    import jax.numpy as jnp

    if name not in DTYPES:
        raise ShardingError(f"unknown --llm-dtype {name!r}; use one of: {', '.join(DTYPES)}")
    dtype = jnp.dtype(name)
    try:
        jax.block_until_ready(jnp.ones((2, 2), dtype) @ jnp.ones((2, 2), dtype))
    except Exception as exc:  # the backend cannot compute in it
        raise ShardingError(
            f"--llm-dtype {name}: the {jax.default_backend()} backend cannot run it ({type(exc).__name__}); "
            "use --llm-dtype float32"
        ) from None
    return dtype


def check_divisible(config: Any, shards: int) -> None:
    """:class:`ShardingError` unless heads, KV heads and MLP columns all split evenly over ``shards`` devices."""
    if shards < 1:
        raise ShardingError(f"--llm-shards must be a positive number of devices, got {shards}")
    sizes = {
        "num_heads": config.num_heads,
        "num_kv_heads": config.num_kv_heads,
        "intermediate_size": config.intermediate_size,
    }
    bad = {k: v for k, v in sizes.items() if v % shards}
    if bad:
        ok = [n for n in range(1, config.num_kv_heads + 1) if all(v % n == 0 for v in sizes.values())]
        raise ShardingError(
            f"--llm-shards {shards} does not divide the model's "
            + ", ".join(f"{k}={v}" for k, v in bad.items())
            + f"; use one of: {', '.join(map(str, ok))}"
        )


def make_mesh(shards: int, devices: list | None = None) -> Mesh:
    """A 1-D mesh (axis ``"tp"``) over the first ``shards`` devices; :class:`ShardingError` if there are fewer."""
    devices = list(jax.devices() if devices is None else devices)
    if shards > len(devices):
        hint = (
            f"; on CPU, set XLA_FLAGS=--xla_force_host_platform_device_count={shards} before starting"
            if jax.default_backend() == "cpu"
            else ""
        )
        raise ShardingError(
            f"--llm-shards {shards} needs {shards} devices, jax sees {len(devices)} "
            f"({', '.join(str(d) for d in devices[:4])}){hint}"
        )
    return Mesh(np.asarray(devices[:shards]), (AXIS,))


def spec_for(path: tuple[str, ...], ndim: int) -> PartitionSpec:
    """The PartitionSpec of the parameter at ``path`` (e.g. ``("layers", "self_attn", "q_proj", "kernel")``)."""
    axis = _SHARDED_AXIS.get(tuple(path[-2:])) if len(path) >= 2 and path[0] == "layers" else None
    if axis is None:
        return PartitionSpec()
    parts: list[Any] = [None] * ndim
    parts[ndim + axis] = AXIS
    return PartitionSpec(*parts)


def _names(path: Any) -> tuple[str, ...]:
    return tuple(str(getattr(k, "key", k)) for k in path)


def place(params: Any, mesh: Mesh | None, dtype: Any) -> Any:
    """``params`` (host NumPy or device arrays) as ``dtype`` device arrays: on the default device without a mesh,
    else each leaf put straight into its shards over ``mesh`` (see the module docstring)."""
    import jax.numpy as jnp

    if mesh is None:
        return jax.tree.map(lambda a: jnp.asarray(a, dtype=dtype), params)

    def put(path, a):
        host = np.asarray(a).astype(jnp.dtype(dtype))  # ml_dtypes gives NumPy a bfloat16
        return jax.device_put(host, NamedSharding(mesh, spec_for(_names(path), host.ndim)))

    return jax.tree_util.tree_map_with_path(put, params)


def shard_params(params: Any, config: Any, mesh: Mesh) -> Any:
    """An already-loaded model's ``params`` re-placed tensor-parallel over ``mesh`` (same dtype)."""
    check_divisible(config, mesh.devices.size)
    return jax.tree_util.tree_map_with_path(
        lambda path, a: jax.device_put(a, NamedSharding(mesh, spec_for(_names(path), a.ndim))), params
    )
