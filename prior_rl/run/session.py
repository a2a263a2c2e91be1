"""What the loops share: the result type, checkpoint scheduling, the non-finite-loss stop, and the replay update."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import jax

from prior_rl import replay
from prior_rl.io import checkpoint as ckpt
from prior_rl.run import state as run_state
from prior_rl.run.config import NonFiniteLossError


@dataclass
class TrainResult:
    """config; history: every logged row; final_eval: the last evaluation; agent_state: final parameters;
    act: ``(rng, observations) -> action indices`` with the final parameters (greedy), e.g. to evaluate on
    other tasks: ``evaluate(dataclasses.replace(config, env_options=...), result.act, episodes, seed)``;
    policy: the :class:`prior_rl.run.acting.Policy` the run acted with."""

    config: Any
    history: list[dict[str, Any]]
    final_eval: dict[str, float]
    agent_state: Any
    run_dir: Optional[Path]
    wall_s: float
    act: Optional[Callable] = None
    policy: Any = None


class Checkpoints:
    """Saving and resuming the run state every ``checkpoint_every`` steps of a clock (updates, or env samples for
    the LLM policy, which has no updates)."""

    def __init__(self, config: Any, featurizer: Any, prior: Any, write: bool = True):
        """``write`` False: this process restores (``--resume``) but never saves (a run across processes saves
        from process 0 only)."""
        self.config, self.featurizer, self.prior, self.write = config, featurizer, prior, write
        self.manager = (
            ckpt.CheckpointManager(Path(config.run_dir) / "checkpoints", every=config.checkpoint_every)
            if config.run_dir and config.checkpoint_every
            else None
        )
        self.resuming = bool(config.resume and run_state.has_checkpoint(config))
        if config.resume and not self.resuming:
            run_state.say_no_checkpoint(config)

    def due(self, clock: int, host: run_state.HostState) -> bool:
        if self.manager is None or clock < host.next_ckpt:
            return False
        host.next_ckpt += self.config.checkpoint_every
        return True

    def save(self, clock: int, state: run_state.RunState) -> None:
        if self.write:
            run_state.save(self.manager, clock, state, self.featurizer, self.prior)

    def exists(self, clock: int) -> bool:
        return ckpt.step_path(self.manager.directory, clock).exists()

    def restore(self, agent: Any, buffer: Any) -> run_state.RunState:
        if self.manager is None:  # --resume without --checkpoint-every: read the run folder's checkpoints
            self.manager = ckpt.CheckpointManager(Path(self.config.run_dir) / "checkpoints")
        return run_state.restore(self.manager, agent, buffer, self.featurizer, self.prior)

    def where(self) -> str:
        return (
            f"The last good checkpoint is kept in {self.manager.directory}."
            if self.manager
            else "Lower the learning rate or check the rewards/features."
        )


def check_finite(metrics: dict, updates: int, where: str, recorder: Any, checkpoints: Checkpoints) -> float:
    """The last loss of a dispatch; a NaN/inf stops the run (the bad state is never saved)."""
    loss = float(metrics["loss"][-1])
    if not math.isfinite(loss):
        recorder.finish()
        raise NonFiniteLossError(f"loss became {loss} after {updates} updates{where}; stopped. {checkpoints.where()}")
    return loss


def make_replay_update(agent: Any, num_updates: int, batch_size: int, devices: int = 1, processes: int = 1) -> Callable:
    """``update(state, buffer, table, key) -> (state, metrics[num_updates])``: sample [U, B] rows from the replay
    buffer and run U scanned updates, each gathering its own minibatch's features from ``table`` — on one device,
    or data-parallel over ``devices`` (the minibatch split across a mesh, parameters replicated;
    ``prior_rl.parallel``), or with ``processes`` > 1 over every device of every process (each process holds the
    same buffer and key, so draws the same global batch, and keeps only its devices' part of it; the new state and
    metrics come back to every process as host arrays)."""
    if processes > 1:
        return _global_replay_update(agent, num_updates, batch_size)
    if devices <= 1:

        @jax.jit
        def update(state, buffer, table, key):
            return agent.update(state, replay.sample(buffer, key, num_updates, batch_size), table)

        return update
    from prior_rl.parallel import make_mesh, make_sharded_update, shard_batches

    mesh = make_mesh(devices)
    sharded = make_sharded_update(agent, mesh)
    draw = jax.jit(lambda buffer, key: replay.sample(buffer, key, num_updates, batch_size))

    def update(state, buffer, table, key):
        # blocking each multi-device call keeps fake CPU devices out of the all-reduce stall (docs/llm-offline.md §8.4)
        return jax.block_until_ready(sharded(state, shard_batches(draw(buffer, key), mesh), table))

    return update


def _global_replay_update(agent: Any, num_updates: int, batch_size: int) -> Callable:
    from jax.sharding import PartitionSpec as P

    from prior_rl import distributed
    from prior_rl.parallel import make_mesh, make_sharded_update

    mesh = make_mesh()  # after distributed.initialize: every device of every process
    sharded = make_sharded_update(agent, mesh)
    draw = jax.jit(lambda buffer, key: replay.sample(buffer, key, num_updates, batch_size))

    def update(state, buffer, table, key):
        batches = jax.device_get(draw(buffer, key))
        out = sharded(
            distributed.put(state, mesh), distributed.put(batches, mesh, P(None, "data")), distributed.put(table, mesh)
        )
        return distributed.fetch(jax.block_until_ready(out))

    return update
