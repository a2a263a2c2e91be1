"""Checkpoints of an agent state (any pytree of arrays, e.g. a NamedTuple with optax state inside), a PRNG key and
JSON metadata (counters, config, ...), via orbax.

Layout: ``<directory>/step_<10-digit step>/`` with orbax items ``state`` (the arrays), and ``meta`` (JSON). orbax
writes into a temporary directory and renames it when complete, so a crash mid-write never leaves a directory
that :func:`latest` would pick. A checkpoint directory is never overwritten; a checkpoint that fails to read is
reported as :class:`CorruptCheckpointError` naming its path, and is left on disk for inspection.

:class:`CheckpointManager` saves every ``every`` updates, reads each new checkpoint back before pruning older
ones (so the last good checkpoint always survives a bad write), and keeps the newest ``keep``.
"""

from __future__ import annotations

import json
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any
PathLike = Union[str, Path]

_STEP_DIR = re.compile(r"^step_(\d+)$")
_FORMAT = 1


class CorruptCheckpointError(RuntimeError):
    """A finalised checkpoint directory exists but cannot be read back."""


class Restored(NamedTuple):
    state: PyTree
    step: int
    rng: Optional[jax.Array]
    metadata: dict
    path: Path


def _ocp():
    import orbax.checkpoint as ocp  # imported lazily: it is slow to import and only needed here

    return ocp


def _checkpointer():
    """An orbax Checkpointer for this process alone.

    orbax's defaults make every save a collective: process 0 writes and all processes meet at barriers. Our
    multi-process runs save from one process only (it holds the whole, replicated state), so under
    ``jax.distributed`` each process is told it is its own primary host and the only active one: no barrier
    waits for processes that never call save.
    """
    ocp = _ocp()
    if jax.process_count() == 1:
        return ocp.Checkpointer(ocp.CompositeCheckpointHandler())
    rank = jax.process_index()
    solo = ocp.options.MultiprocessingOptions(
        primary_host=rank, active_processes={rank}, barrier_sync_key_prefix=f"prior_rl_p{rank}"
    )
    handler = ocp.CompositeCheckpointHandler(
        composite_options=ocp.CompositeOptions(multiprocessing_options=solo),
        state=ocp.StandardCheckpointHandler(multiprocessing_options=solo),
        meta=ocp.JsonCheckpointHandler(multiprocessing_options=solo),
    )
    return ocp.Checkpointer(handler, multiprocessing_options=solo)


def step_path(directory: PathLike, step: int) -> Path:
    return Path(directory) / f"step_{int(step):010d}"


def list_steps(directory: PathLike) -> list[int]:
    """Steps of the finalised checkpoints in ``directory``, ascending (orbax temp directories are ignored)."""
    d = Path(directory)
    if not d.is_dir():
        return []
    steps = []
    for child in d.iterdir():
        m = _STEP_DIR.match(child.name)
        if m and child.is_dir():
            steps.append(int(m.group(1)))
    return sorted(steps)


def latest(directory: PathLike) -> Optional[int]:
    """The newest finalised checkpoint step in ``directory``, or None."""
    steps = list_steps(directory)
    return steps[-1] if steps else None


def _rng_to_array(rng: jax.Array) -> tuple[np.ndarray, Optional[str]]:
    if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(rng)), str(jax.random.key_impl(rng))
    return np.asarray(rng), None


def save(
    directory: PathLike,
    step: int,
    state: PyTree,
    *,
    rng: Optional[jax.Array] = None,
    metadata: Optional[dict] = None,
) -> Path:
    """Write ``state`` (+ rng, + JSON ``metadata``) as checkpoint ``step``; atomic; refuses to overwrite."""
    ocp = _ocp()
    path = step_path(directory, step)
    if path.exists():
        raise FileExistsError(f"checkpoint {path} already exists; refusing to overwrite it")
    metadata = dict(metadata or {})
    try:
        json.dumps(metadata)
    except TypeError as e:
        raise TypeError(f"checkpoint metadata must be JSON-serialisable: {e}") from None
    # orbax refuses process-local jax.Arrays under jax.distributed; as host numpy they are plain data
    arrays: dict[str, Any] = {"state": jax.device_get(state) if jax.process_count() > 1 else state}
    meta = {
        "format": _FORMAT,
        "step": int(step),
        "metadata": metadata,
        "rng_impl": None,
        "has_rng": rng is not None,
        # shapes/dtypes of the state's leaves: tells a template mismatch apart from a damaged file on restore
        "leaves": _leaf_specs(state),
    }
    if rng is not None:
        arrays["rng"], meta["rng_impl"] = _rng_to_array(rng)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckptr = _checkpointer()
    try:
        ckptr.save(
            path.absolute(), ocp.args.Composite(state=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta))
        )
    finally:
        ckptr.close()
    return path


def _spec(x: Any) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) of an array, a jax.ShapeDtypeStruct or a Python scalar."""
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return tuple(x.shape), np.dtype(x.dtype)
    a = np.asarray(x)
    return a.shape, a.dtype


def _leaf_specs(tree: PyTree) -> list[list]:
    return [[list(shape), str(dtype)] for shape, dtype in map(_spec, jax.tree.leaves(tree))]


def _template_arrays(template: PyTree) -> PyTree:
    if jax.process_count() > 1:  # restore as host numpy: a process-local jax.Array template is refused (see save)
        return jax.tree.map(lambda x: np.zeros(*_spec(x)), template)
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(*_spec(x)), template)


def read_metadata(directory: PathLike, step: Optional[int] = None) -> tuple[int, dict]:
    """``(step, metadata)`` of checkpoint ``step`` (default: the latest) without reading its arrays, e.g. to size a
    restore template from what the run had grown to. FileNotFoundError when there is none."""
    step = latest(directory) if step is None else step
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {Path(directory)}")
    meta_file = step_path(directory, step) / "meta" / "metadata"
    try:
        return step, json.loads(meta_file.read_text())["metadata"]
    except (OSError, ValueError, KeyError) as e:
        raise CorruptCheckpointError(f"checkpoint {step_path(directory, step)} is corrupt: {e}") from e


def restore(directory: PathLike, template: PyTree, step: Optional[int] = None, *, fallback: bool = False) -> Restored:
    """Read checkpoint ``step`` (default: the latest) into the structure of ``template``.

    ``template``: a state with the right tree structure, shapes and dtypes (e.g. ``agent.init(...)`` output or
    ``jax.eval_shape`` of it); NamedTuple types (optax states included) come back as in the template.
    Raises FileNotFoundError when there is no checkpoint, :class:`CorruptCheckpointError` (naming the path) when
    it cannot be read, ValueError when it does not match the template. With ``fallback=True`` and ``step=None``,
    unreadable checkpoints are skipped with a warning naming each, and the newest readable one is returned.
    """
    if step is not None:
        return _restore_path(step_path(directory, step), template)
    steps = list_steps(directory)
    if not steps:
        raise FileNotFoundError(f"no checkpoint in {Path(directory)}")
    for s in reversed(steps):
        try:
            return _restore_path(step_path(directory, s), template)
        except CorruptCheckpointError as e:
            if not fallback:
                raise
            warnings.warn(f"{e}; trying an older checkpoint", RuntimeWarning, stacklevel=2)
    raise CorruptCheckpointError(f"no readable checkpoint in {Path(directory)} (steps {steps} all failed)")


def _restore_path(path: Path, template: PyTree) -> Restored:
    ocp = _ocp()
    if not path.is_dir():
        raise FileNotFoundError(f"no checkpoint at {path}")
    meta_file = path / "meta" / "metadata"
    try:
        meta = json.loads(meta_file.read_text())
        assert meta.get("format") == _FORMAT, f"unknown format {meta.get('format')!r}"
    except Exception as e:  # missing or garbled JSON
        raise CorruptCheckpointError(f"checkpoint {path} is corrupt: cannot read {meta_file}: {e}") from e
    stored, wanted = meta.get("leaves"), _leaf_specs(template)
    if stored != wanted:
        diff = next((i for i, (a, b) in enumerate(zip(stored, wanted)) if a != b), min(len(stored), len(wanted)))
        raise ValueError(
            f"checkpoint {path} does not match the template: {len(stored)} arrays stored vs {len(wanted)} in the "
            f"template; first difference at array {diff}: stored "
            f"{stored[diff] if diff < len(stored) else None}, template {wanted[diff] if diff < len(wanted) else None}"
        )
    arrays_template: dict[str, Any] = {"state": _template_arrays(template)}
    if meta["has_rng"]:
        shape = (
            (2,) if meta["rng_impl"] is None else jax.random.key_data(jax.random.key(0, impl=meta["rng_impl"])).shape
        )
        arrays_template["rng"] = _template_arrays(jax.ShapeDtypeStruct(shape, jnp.uint32))
    ckptr = _checkpointer()
    try:
        out = ckptr.restore(path.absolute(), ocp.args.Composite(state=ocp.args.StandardRestore(arrays_template)))
        arrays = out.state
    except Exception as e:
        raise CorruptCheckpointError(
            f"checkpoint {path} is corrupt or unreadable: {type(e).__name__}: {str(e)[:500]}"
        ) from e
    finally:
        ckptr.close()
    state = _as_template_structure(arrays["state"], template, path)
    rng = None
    if meta["has_rng"]:
        rng = jnp.asarray(arrays["rng"], jnp.uint32)
        if meta["rng_impl"] is not None:
            rng = jax.random.wrap_key_data(rng, impl=meta["rng_impl"])
    return Restored(state, int(meta["step"]), rng, meta["metadata"], path)


def _as_template_structure(restored: PyTree, template: PyTree, path: Path) -> PyTree:
    # orbax returns nested NamedTuples (e.g. optax's ScaleByAdamState) as plain tuples: rebuild the template's tree
    leaves, t_leaves = jax.tree.leaves(restored), jax.tree.leaves(template)
    if len(leaves) != len(t_leaves):
        raise ValueError(f"checkpoint {path} has {len(leaves)} arrays, the template {len(t_leaves)}")
    for i, (x, t) in enumerate(zip(leaves, t_leaves)):
        if _spec(x) != _spec(t):
            raise ValueError(f"checkpoint {path}: array {i} is {_spec(x)}, the template expects {_spec(t)}")
    return jax.tree.unflatten(jax.tree.structure(template), [jnp.asarray(x) for x in leaves])


class CheckpointManager:
    """Save every ``every`` steps into ``directory``, verify, and keep the newest ``keep`` checkpoints."""

    def __init__(self, directory: PathLike, every: int = 1000, keep: int = 3):
        if every < 1 or keep < 1:
            raise ValueError("every and keep must be >= 1")
        self.directory, self.every, self.keep = Path(directory), int(every), int(keep)

    def should_save(self, step: int) -> bool:
        return step % self.every == 0 and not step_path(self.directory, step).exists()

    def maybe_save(
        self, step: int, state: PyTree, *, rng: Optional[jax.Array] = None, metadata: Optional[dict] = None
    ) -> Optional[Path]:
        """Save when ``step`` is a multiple of ``every`` (and not saved yet); returns the path or None."""
        if not self.should_save(step):
            return None
        return self.save(step, state, rng=rng, metadata=metadata)

    def save(
        self, step: int, state: PyTree, *, rng: Optional[jax.Array] = None, metadata: Optional[dict] = None
    ) -> Path:
        path = save(self.directory, step, state, rng=rng, metadata=metadata)
        # read it back before deleting anything: a bad write must not cost us the previous good checkpoint
        restored = _restore_path(path, state)
        for a, b in zip(jax.tree.leaves(restored.state), jax.tree.leaves(state)):
            if not np.array_equal(np.asarray(a), np.asarray(b)):
                raise CorruptCheckpointError(f"checkpoint {path} does not read back what was written")
        self._prune()
        return path

    def _prune(self) -> None:
        for s in list_steps(self.directory)[: -self.keep]:
            shutil.rmtree(step_path(self.directory, s), ignore_errors=True)
            for sidecar in self.directory.glob(step_path(self.directory, s).name + ".*"):
                sidecar.unlink(missing_ok=True)  # files kept beside a checkpoint (e.g. its prior cache)

    def sidecar(self, step: int, name: str) -> Path:
        """A file kept beside checkpoint ``step`` and pruned with it: ``step_<N>.<name>``."""
        return self.directory / f"{step_path(self.directory, step).name}.{name}"

    def latest(self) -> Optional[int]:
        return latest(self.directory)

    def restore(self, template: PyTree, step: Optional[int] = None, *, fallback: bool = False) -> Restored:
        return restore(self.directory, template, step, fallback=fallback)
