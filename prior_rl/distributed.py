"""Several processes (machines) as one JAX runtime, for multi-host data parallelism.

    from prior_rl import distributed, parallel
    distributed.initialize("10.0.0.1:12355", num_processes=2, process_id=0)   # on host 0; process_id=1 on host 1
    distributed.initialize()                                                  # under SLURM / OpenMPI: detected
    mesh = parallel.make_mesh()                    # every device of every process (jax.devices() is global)
    update = parallel.make_sharded_update(agent, mesh)
    state = distributed.put(state, mesh)                                      # replicated on all devices
    batches = distributed.put(batches, mesh, P(None, "data"))                 # the global batch, split on B
    state, metrics = jax.block_until_ready(update(state, batches))
    metrics = distributed.fetch(metrics)                                      # numpy on every process

:func:`initialize` must run in every process before anything else touches JAX; after it, ``jax.devices()`` lists
the devices of all processes and a mesh over them spans the hosts. Every process must then run the same
program on the same (global) values: :func:`put` builds each global array from the host value that every process
holds, keeping only this process's shards. On CPU, cross-process collectives go through gloo (JAX's default).

The value-based training loop runs across processes with a :class:`ProcessGroup` (``prior-rl train
--coordinator``, ``prior_rl.run.value_loop``): every process runs the same host program on the same values, and the
expensive pure parts are split: each process steps its own environment copies and scores its share of the
prompts, the results are all-gathered (:meth:`ProcessGroup.map`), and the update runs over the global mesh.
"""

from __future__ import annotations

import pickle
import re
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DEFAULT_TIMEOUT_S = 60  # how long initialize waits for the coordinator and every process (JAX's default is 300)
_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


class DistributedError(ValueError):
    """The processes could not be joined (bad arguments, unreachable coordinator, no cluster detected)."""


def check_address(address: str) -> str:
    """``HOST:PORT`` (an IPv6 host in brackets), port 1-65535; returned unchanged, or DistributedError."""
    m = _ADDRESS.match(address)
    if not m or not 1 <= int(m.group(2)) <= 65535:
        raise DistributedError(
            f"coordinator address {address!r} is not HOST:PORT (e.g. 10.0.0.1:12355 or node01:12355); give the "
            "address of process 0's machine and a free port"
        )
    return address


def check_arguments(coordinator_address: Optional[str], num_processes: Optional[int], process_id: Optional[int]):
    """Either all three are given (explicit), or none (detected from SLURM / OpenMPI)."""
    given = [x is not None for x in (coordinator_address, num_processes, process_id)]
    if any(given) and not all(given):
        raise DistributedError(
            "give all of the coordinator address, the number of processes and this process's id, or none of them "
            "(then they are read from SLURM or OpenMPI)"
        )
    if not any(given):
        return
    check_address(coordinator_address)
    if num_processes < 1:
        raise DistributedError(f"the number of processes must be 1 or more, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise DistributedError(
            f"process id {process_id} is out of range for {num_processes} processes (ids are 0..{num_processes - 1})"
        )


def initialize(
    coordinator_address: Optional[str] = None,
    num_processes: Optional[int] = None,
    process_id: Optional[int] = None,
    *,
    timeout_s: Optional[float] = None,
    local_device_ids: Any = None,
) -> None:
    """Join this process to the others: ``jax.distributed.initialize`` with argument checks and clear errors.

    With all arguments None, JAX detects a SLURM or OpenMPI launch (``srun`` / ``mpirun``) and reads them from the
    environment. Process 0 runs the coordinator service on ``coordinator_address``'s port; the others connect to
    it. With an explicit address, the processes first meet on that port in a plain TCP rendezvous that waits at
    most ``timeout_s`` (default :data:`DEFAULT_TIMEOUT_S`): an unreachable coordinator or a process that never
    starts is a :class:`DistributedError` naming the address and what to check, where JAX itself would abort the
    process after its timeout. (Under SLURM / OpenMPI detection there is no rendezvous: JAX's own timeout applies.)
    """
    check_arguments(coordinator_address, num_processes, process_id)
    timeout = float(timeout_s if timeout_s is not None else DEFAULT_TIMEOUT_S)
    if coordinator_address is not None and num_processes > 1:
        rendezvous(coordinator_address, num_processes, process_id, timeout)
    try:
        jax.distributed.initialize(
            coordinator_address,
            num_processes,
            process_id,
            local_device_ids=local_device_ids,
            initialization_timeout=max(int(timeout), 1),
        )
    except ValueError as exc:  # nothing given and no cluster detected, or JAX refused the arguments
        if coordinator_address is None:
            raise DistributedError(
                f"no SLURM or OpenMPI launch detected ({' '.join(str(exc).split())}); run under srun/mpirun, or "
                "give the coordinator address, the number of processes and the process id"
            ) from None
        raise DistributedError(f"cannot start the distributed runtime: {' '.join(str(exc).split())}") from None
    except RuntimeError as exc:  # jaxlib's XlaRuntimeError (when JAX raises instead of aborting)
        _shutdown_quietly()
        raise DistributedError(
            f"could not join the JAX coordinator at {coordinator_address or 'the detected address'} "
            f"({' '.join(str(exc).split())[:200]}); {_FIX}"
        ) from None


_FIX = (
    "check that process 0 runs on that host, that the port is free there and open between the machines, and that "
    "every process was started with the same address and process count"
)


def _split(address: str) -> tuple[str, int]:
    host, port = address.rsplit(":", 1)
    return host.strip("[]"), int(port)


def rendezvous(address: str, num_processes: int, process_id: int, timeout_s: float) -> None:
    """Meet on ``address`` before JAX does: process 0 listens on its port until the other ``num_processes - 1``
    have connected (then tells them to go on and closes it, for JAX's coordinator to bind); the others retry
    connecting until it answers. Each side gives up after ``timeout_s`` with a :class:`DistributedError`."""
    host, port = _split(address)
    deadline = time.monotonic() + timeout_s
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise DistributedError(
            f"coordinator host {host!r} ({address}) does not resolve ({exc.strerror}); {_FIX}"
        ) from None
    if process_id == 0:
        _serve(host, port, family, num_processes, deadline, address, timeout_s)
    else:
        _join(host, port, num_processes, process_id, deadline, address, timeout_s)


def _serve(host, port, family, n, deadline, address, timeout_s) -> None:
    with socket.socket(family, socket.SOCK_STREAM) as probe:  # is HOST one of this machine's addresses?
        try:
            probe.bind((host, 0))
        except OSError:
            raise DistributedError(
                f"process 0 must run on the coordinator host, and {host!r} ({address}) is not an address of this "
                "machine; start process 0 there, or give this machine's address"
            ) from None
    server = socket.socket(family, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        server.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))
    except OSError as exc:
        server.close()
        raise DistributedError(
            f"process 0 cannot listen on port {port} ({address}): {exc.strerror}; choose a free port"
        ) from None
    server.listen(n)
    peers: dict[int, socket.socket] = {}
    try:
        while len(peers) < n - 1:
            left = deadline - time.monotonic()
            if left <= 0:
                missing = sorted(set(range(1, n)) - set(peers))
                raise DistributedError(
                    f"process 0 waited {timeout_s:g} s at {address} and only {len(peers) + 1} of {n} processes "
                    f"arrived (missing ids {missing}); start every process with --num-processes {n} and the same "
                    "coordinator address, within the timeout"
                )
            server.settimeout(left)
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.settimeout(max(deadline - time.monotonic(), 0.1))
            try:
                pid, their_n = (int(x) for x in conn.makefile().readline().split())
            except (OSError, ValueError):
                conn.close()
                continue
            problem = (
                f"it was started for {their_n} processes, process 0 for {n}"
                if their_n != n
                else f"process id {pid} has already joined or is out of range"
                if pid in peers or not 0 < pid < n
                else None
            )
            if problem:
                conn.sendall(f"refused {problem}\n".encode())
                conn.close()
                continue
            peers[pid] = conn
        for conn in peers.values():
            conn.sendall(b"go\n")
        for conn in peers.values():  # let the clients close first, so this port holds no TIME_WAIT for JAX
            conn.settimeout(5.0)
            try:
                conn.recv(1)
            except OSError:
                pass
    finally:
        for conn in peers.values():
            conn.close()
        server.close()


def _join(host, port, n, pid, deadline, address, timeout_s) -> None:
    last = "no answer"
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise DistributedError(
                f"process {pid} could not reach the coordinator at {address} within {timeout_s:g} s ({last}); {_FIX}"
            )
        try:
            conn = socket.create_connection((host, port), timeout=min(left, 2.0))
        except OSError as exc:
            last = exc.strerror or str(exc)
            time.sleep(min(0.2, max(deadline - time.monotonic(), 0)))
            continue
        with conn:
            conn.settimeout(max(deadline - time.monotonic(), 0.1))
            try:
                conn.sendall(f"{pid} {n}\n".encode())
                reply = conn.makefile().readline().strip()
            except OSError as exc:
                raise DistributedError(
                    f"process {pid} reached {address} but the other processes did not all arrive within "
                    f"{timeout_s:g} s ({exc.strerror or 'timed out'}); {_FIX}"
                ) from None
        if reply == "go":
            return
        if reply.startswith("refused"):
            raise DistributedError(
                f"process 0 at {address} refused process {pid}: {reply[len('refused ') :]}; give every process "
                "the same number of processes and a distinct process id"
            )
        last = f"unexpected answer {reply!r}: is something else listening on port {port}?"
        raise DistributedError(f"process {pid} at {address}: {last}; {_FIX}")


def _shutdown_quietly() -> None:
    try:
        jax.distributed.shutdown()
    except Exception:  # a half-made client: nothing more to release
        pass


def put(tree: Any, mesh: Mesh, spec: Optional[P] = None) -> Any:
    """Global arrays on ``mesh`` (which may span processes) from a host pytree that every process holds the same:
    each process keeps only its own devices' shards. ``spec`` is one PartitionSpec for every leaf (default:
    replicated; ``P(None, "data")`` splits batches ``[U, B, ...]`` on B)."""
    sharding = NamedSharding(mesh, P() if spec is None else spec)

    def leaf(x):
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(leaf, tree)


def fetch(tree: Any) -> Any:
    """NumPy copies of global arrays on every process (replicated ones are read locally; sharded ones gathered)."""
    from jax.experimental import multihost_utils

    def leaf(x):
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))

    return jax.tree.map(leaf, tree)


def allgather_objects(obj: Any) -> list[Any]:
    """Every process's ``obj`` (any picklable value), in process order, on every process: a collective that all
    processes must call together. Pickled to bytes, padded to the longest, gathered as one uint8 array."""
    from jax.experimental import multihost_utils

    data = np.frombuffer(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.array([data.size], np.int64))).reshape(-1)
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[: data.size] = data
    gathered = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(sizes), -1)
    return [pickle.loads(gathered[i, : int(n)].tobytes()) for i, n in enumerate(sizes)]


class ProcessGroup(NamedTuple):
    """This process's place among ``size`` processes running the same program, and how they share work.

    Item i of a list belongs to process ``i % size``. :meth:`map_batch` computes this process's items and returns
    every item's result on every process, in list order; every process must call it with the same list (the
    loops guarantee it by running the same program on the same values). ``allgather`` is
    :func:`allgather_objects` across processes; :func:`local_group` is a group of one (no communication).
    """

    rank: int
    size: int
    allgather: Callable[[Any], list[Any]]

    def owns(self, i: int) -> bool:
        return i % self.size == self.rank

    def map_batch(self, fn: Callable[[list[Any]], Sequence[Any]], items: Sequence[Any]) -> list[Any]:
        """``fn(this process's items) -> their results``; returns the results of all ``items`` in order."""
        items = list(items)
        mine = items[self.rank :: self.size]
        results = list(fn(mine)) if mine else []
        if len(results) != len(mine):
            raise ValueError(f"map_batch: fn returned {len(results)} results for {len(mine)} items")
        if self.size == 1:
            return results
        shares = self.allgather(results)
        out: list[Any] = [None] * len(items)
        for rank, share in enumerate(shares):
            out[rank :: self.size] = share
        return out

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """``[fn(x) for x in items]``, each computed by the process that owns it and gathered to all."""
        return self.map_batch(lambda xs: [fn(x) for x in xs], items)


def local_group() -> ProcessGroup:
    """One process: ``map`` is a plain loop."""
    return ProcessGroup(0, 1, lambda obj: [obj])


def process_group() -> ProcessGroup:
    """The group of every process of the JAX runtime (after :func:`initialize`; one process without it)."""
    if jax.process_count() == 1:
        return local_group()
    return ProcessGroup(jax.process_index(), jax.process_count(), allgather_objects)
