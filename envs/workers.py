"""Environment copies stepped in worker processes, for engines that cannot be jitted (ALFWorld's TextWorld).

:class:`WorkerVectorEnv` is a :class:`envs.vector.VectorEnv` whose copies live in ``workers`` processes (copy i in
worker ``i % workers``). ``step`` sends every copy's action first and then collects the results, so the workers
step their engines at the same time while the caller waits once; everything else (automatic resets with the same
per-episode seeds, ``snapshot`` / ``restore``, ``final_observations``) is :class:`VectorEnv`'s, so a run gives the
same transitions with 0, 1 or N workers.

Workers are started with the "spawn" method (a fork of a process that has started JAX's threads is unsafe), so
``factory`` must be picklable: a module-level function or a ``functools.partial`` of one (e.g.
``functools.partial(envs.make, "alfworld-pick", max_steps=50)``).
"""

from __future__ import annotations

import multiprocessing as mp
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from envs.base import TextEnv, TextObservation
from envs.vector import VectorEnv


class WorkerError(RuntimeError):
    """A worker process failed; the message carries its traceback."""


def _serve(conn: Any, factory: Callable[[], TextEnv], count: int) -> None:
    """A worker's loop: ``count`` copies made by ``factory``, commands from ``conn`` until "close"."""
    try:
        envs = [factory() for _ in range(count)]
    except BaseException:
        conn.send(("error", traceback.format_exc()))
        return
    conn.send(("ok", None))
    while True:
        command, payload = conn.recv()
        try:
            if command == "close":
                for env in envs:
                    env.close()
                conn.send(("ok", None))
                return
            if command == "call":  # one method of one copy: (local index, name, args)
                local, name, args = payload
                result = getattr(envs[local], name)(*args)
            elif command == "steps":  # [(local, action index, seed of its next episode)]: step, reset if done
                result = []
                for local, index, next_seed in payload:
                    obs, reward, term, trunc, info = envs[local].step(index)
                    final = None
                    if term or trunc:
                        final = obs
                        obs, _ = envs[local].reset(seed=next_seed)
                    result.append((obs, reward, term, trunc, info, final))
            else:
                raise ValueError(f"unknown worker command {command!r}")
            conn.send(("ok", result))
        except BaseException:
            conn.send(("error", traceback.format_exc()))


class _Worker:
    def __init__(self, ctx: Any, factory: Callable[[], TextEnv], count: int):
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_serve, args=(child, factory, count), daemon=True)
        self.process.start()
        child.close()

    def send(self, command: str, payload: Any = None) -> None:
        self.conn.send((command, payload))

    def receive(self) -> Any:
        status, result = self.conn.recv()
        if status != "ok":
            raise WorkerError(f"environment worker failed:\n{result}")
        return result

    def call(self, command: str, payload: Any = None) -> Any:
        self.send(command, payload)
        return self.receive()


class _RemoteEnv:
    """The caller's handle on one copy in a worker: the TextEnv methods :class:`VectorEnv` uses, by RPC."""

    def __init__(self, worker: _Worker, local: int):
        self.worker, self.local = worker, local

    def _call(self, name: str, *args: Any) -> Any:
        return self.worker.call("call", (self.local, name, args))

    def reset(self, seed: int | None = None) -> tuple[TextObservation, dict[str, Any]]:
        return self._call("reset", seed)

    def step(self, index: int) -> tuple[TextObservation, float, bool, bool, dict[str, Any]]:
        return self._call("step", index)

    def action_index(self, action: int | str) -> int:
        return self._call("action_index", action)

    def expert_action(self) -> int:
        return self._call("expert_action")

    def close(self) -> None:  # the worker closes its copies
        pass


class WorkerVectorEnv(VectorEnv):
    """``num_envs`` copies of ``factory()`` in ``workers`` processes (see the module docstring)."""

    def __init__(self, factory: Callable[[], TextEnv], num_envs: int, workers: int):
        if num_envs < 1 or not 1 <= workers <= num_envs:
            raise ValueError(f"need 1 <= workers <= num_envs, got workers={workers}, num_envs={num_envs}")
        ctx = mp.get_context("spawn")
        counts = [len(range(w, num_envs, workers)) for w in range(workers)]
        self._workers = [_Worker(ctx, factory, n) for n in counts]
        for worker in self._workers:  # all start in parallel; wait for each to have made its copies
            worker.receive()
        super().__init__(lambda: None, num_envs)  # type: ignore[arg-type,return-value]
        self.envs = [_RemoteEnv(self._workers[i % workers], i // workers) for i in range(num_envs)]  # type: ignore

    def _indices(self, actions: Sequence[int | str] | np.ndarray) -> list[int]:
        # resolved here from the copies' current observations (no round trip); a bad index fails in the worker
        return [self.observations[i].actions.index(a) if isinstance(a, str) else int(a) for i, a in enumerate(actions)]

    def _step_copies(self, indices: list[int]) -> list[tuple]:
        """Every worker gets its copies' actions before any result is read, so the engines step at once."""
        n, W = self.num_envs, len(self._workers)
        for w, worker in enumerate(self._workers):
            steps = [(i // W, indices[i], self._episode_seed(i, int(self._episodes[i]) + 1)) for i in range(w, n, W)]
            worker.send("steps", steps)
        results: list[Any] = [None] * n
        for w, worker in enumerate(self._workers):
            for i, result in zip(range(w, n, W), worker.receive()):
                results[i] = result
        return results

    def close(self) -> None:
        for worker in self._workers:
            if worker.process.is_alive():
                try:
                    worker.call("close")
                except (EOFError, OSError, WorkerError):
                    pass
            worker.process.join(timeout=10)
        self._workers = []
