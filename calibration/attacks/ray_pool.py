"""Attack batches as Ray tasks: on this machine's cores (a local Ray) or on a cluster
(``edge-guard evaluate --ray [ADDRESS]``, docs/cluster.md). The pool protocol: pool.py.

The driver (run_attacks) prepares every batch and writes every result; a task only attacks
and returns arrays, so workers need edge-guard and torch but neither the data nor the output
folder. Ray is imported here only (the ``cluster`` extra); nothing in the core imports this.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterable, Iterator, Optional

from edge_guard.errors import MissingDependency, UserError


def _ray():
    try:
        import ray
    except ImportError:
        raise MissingDependency("Ray is not installed: pip install 'edge-guard[cluster]'") from None
    return ray


def _task(fn: Callable, shared: tuple, item, threads: int):
    """What a worker runs: ``fn(*shared, item)`` on ``threads`` torch threads."""
    import torch

    torch.set_num_threads(threads)
    return fn(*shared, item)


class RayPool:
    """Runs ``imap``'s items as Ray tasks of ``cpus_per_task`` CPUs each (torch threads too),
    at most ``max_in_flight`` at a time (default: twice ``workers``, so a worker never waits
    for the driver). ``address``: None (or "local") starts a local Ray on this machine
    (``num_cpus``: its CPUs, default all); "auto", "HOST:6379" or "ray://HOST:10001" joins a
    running cluster. A Ray already initialized in this process is used as it is (``address``
    then unused) and left running by ``close``."""

    name = "ray"

    def __init__(self, address: Optional[str] = None, cpus_per_task: int = 1,
                 max_in_flight: Optional[int] = None, num_cpus: Optional[int] = None):
        ray = self._ray = _ray()
        self.address = address
        self.cpus_per_task = int(cpus_per_task)
        if self.cpus_per_task < 1:
            raise UserError(f"--ray-cpus-per-task {cpus_per_task}: a task needs at least 1 CPU")
        self._owner = not ray.is_initialized()
        if self._owner:
            _connect(ray, address, num_cpus)
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if cpus < self.cpus_per_task:
            self.close()
            raise UserError(f"the Ray cluster at {address or 'this machine'} has {cpus} CPU(s), fewer than "
                            f"--ray-cpus-per-task {self.cpus_per_task}: pass a smaller one or add machines")
        self.workers = max(1, cpus // self.cpus_per_task)
        self.max_in_flight = max(1, int(max_in_flight or 2 * self.workers))
        self._remote = ray.remote(num_cpus=self.cpus_per_task)(_task)

    def imap(self, fn: Callable, shared: tuple, items: Iterable) -> Iterator:
        """(item, fn(*shared, item)) as tasks finish. ``shared`` goes into the object store once;
        ``items`` is drawn only while fewer than ``max_in_flight`` tasks are outstanding. A task's
        exception is raised here as itself (a UserError stays one line); an interrupt (or the
        caller stopping early) cancels the outstanding tasks."""
        ray = self._ray
        shared_ref = ray.put(tuple(shared))
        pending: dict = {}
        items = iter(items)
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < self.max_in_flight:
                    try:
                        item = next(items)
                    except StopIteration:
                        exhausted = True
                        break
                    pending[self._remote.remote(fn, shared_ref, item, self.cpus_per_task)] = item
                if not pending:
                    return
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    item = pending.pop(ref)
                    yield item, self._get(ref)
        finally:
            # An interrupt, an error, or the caller stopped: finished frames are in the manifest
            # already; a half-attacked frame is worth nothing, so its worker is stopped at once.
            for ref in pending:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # noqa: BLE001 - the task may have finished, or Ray gone down
                    pass

    def _get(self, ref):
        from ray.exceptions import RayTaskError

        try:
            return self._ray.get(ref)
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if not isinstance(cause, BaseException) or isinstance(cause, RayTaskError):
                raise
            if hasattr(cause, "add_note"):  # shown with a traceback, not in a UserError's one line
                cause.add_note(str(exc))  # the task's traceback, as Ray tells it
            raise cause from None

    def close(self) -> None:
        """Shuts down the Ray this pool started (a local one stops its processes)."""
        if self._owner and self._ray.is_initialized():
            self._ray.shutdown()
        self._owner = False


def _connect(ray, address: Optional[str], num_cpus: Optional[int]) -> None:
    if address in (None, "local"):  # a fresh Ray on this machine, even where one runs already
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level=logging.ERROR)
        return
    hint = ("start one with `ray start --head --port 6379` and check the address (HOST:6379 from a "
            "machine of the cluster, ray://HOST:10001 from elsewhere, or no address for a local Ray)")
    unreachable = _unreachable(address)
    if unreachable:  # Ray itself would retry for minutes
        raise UserError(f"--ray {address}: nothing answers there ({unreachable}): {hint}")
    try:
        ray.init(address=address, logging_level=logging.ERROR)
    except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
        text = str(exc).strip()
        if "ray[client]" in text:  # ray:// needs the Ray Client's gRPC
            raise MissingDependency(f"--ray {address}: a ray:// address needs the Ray Client: "
                                    "pip install 'ray[client]'") from None
        first = text.splitlines()[0] if text else type(exc).__name__
        raise UserError(f"--ray {address}: cannot connect to a Ray cluster ({first}): {hint}") from None


def _unreachable(address: str, timeout: float = 5.0) -> Optional[str]:
    """Why HOST:PORT (after any scheme) takes no TCP connection, or None (it does, or the address
    has no port: Ray resolves it, e.g. "auto")."""
    import socket

    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit():
        return None
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        return exc.strerror or str(exc) or type(exc).__name__
    return None
