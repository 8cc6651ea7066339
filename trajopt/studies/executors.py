"""Executors: run a study's cells and yield each outcome as it finishes.

    LocalExecutor()                                 cells in this process, one after another
    RayExecutor(address=None, resources=...)        each cell a Ray task on a cluster (or a local Ray)

Both call the same pure `trajopt.studies.cells.run_cell` and yield `CellOutcome` objects; the caller (the CLI)
writes each one as it arrives, so an interrupted or crashed driver leaves every finished cell on disk. Neither
writes a file of its own (a local cell's history larger than memory goes to the store the caller gives,
`LocalExecutor.history`). The design: the worker returns the arrays (the `Result` and the summary) and the driver writes
the run folder, so a remote cluster needs no shared file system; a cell's problem travels as its decoded TOML.

Local runs use no process pool: on a 2-core machine JAX already uses both cores inside a cell, and a pool would
pay a JAX import and every compilation again per process. Ray is the way to spread cells over cores and nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional

from trajopt.studies.cells import CELL_FAILED, CellOutcome, StorageError, cell_rows, run_cell
from trajopt.studies.expand import Cell
from trajopt.studies.file import Resources

CellFn = Callable[..., CellOutcome]


@dataclass(frozen=True)
class LocalExecutor:
    """Run cells in this process, one after another. An exception inside a cell is recorded (run_cell catches
    it); ``should_stop`` is polled between compiled chunks of a cell and between cells.

    ``history``: None (every cell's history in memory), or ``(make_store, memory_limit)``: a cell whose recorded
    history is larger than ``memory_limit`` bytes keeps it in the store ``make_store()`` returns (the CLI's: a
    `trajopt.runs.DiskHistory` in the study folder), which is closed when the cell's outcome has been consumed
    (its files are then removed; the caller writes the run folder before asking for the next cell)."""

    name: str = "local"
    history: Optional[tuple] = None

    def run(self, cells: Iterable[Cell], *, should_stop: Optional[Callable[[], bool]] = None,
            cell_fn: CellFn = run_cell) -> Iterator[CellOutcome]:
        for cell in cells:
            if should_stop is not None and should_stop():
                return
            store = self.history[0]() if self.history is not None else None
            try:
                try:
                    if store is None:
                        outcome = cell_fn(cell, should_stop)
                    else:
                        outcome = cell_fn(cell, should_stop, history_store=store, memory_limit=self.history[1])
                except StorageError:  # the disk, not the cell: the study stops (its finished cells are kept)
                    raise
                except Exception as e:  # noqa: BLE001  (a cell_fn that does not catch its own errors)
                    msg = f"{type(e).__name__}: {e}"
                    outcome = CellOutcome(cell.index, CELL_FAILED, cell_rows(cell, error=msg), error=msg)
                yield outcome
            finally:
                if store is not None:
                    store.close()


def _ray():
    try:
        import ray
    except ImportError:  # pragma: no cover - exercised when the extra is missing
        raise ImportError("the Ray backend needs Ray: pip install 'trajopt-alpha[ray]'") from None
    return ray


@dataclass(frozen=True)
class RayExecutor:
    """Run each cell as a Ray task (``ray.remote`` with the study's per-cell resources; a task whose worker dies
    is retried ``resources.retries`` times by Ray, then recorded as failed with Ray's error).

    Attributes:
        address: the cluster (``ray://host:10001`` or ``host:6379``, what ``ray start --head`` prints); None uses
            ``RAY_ADDRESS`` if set, else starts a local Ray instance (stopped again at the end).
        resources: per-task ``num_cpus``, ``num_gpus`` and ``retries``.
        init_kwargs: extra ``ray.init`` arguments (e.g. ``num_cpus`` of a local instance, ``runtime_env``).
        poll_seconds: how often ``should_stop`` is polled while waiting.
    """

    address: Optional[str] = None
    resources: Resources = Resources()
    init_kwargs: Optional[dict] = None
    poll_seconds: float = 0.5
    name: str = "ray"

    def check(self, timeout: float = 5.0) -> None:
        """Fail fast on an unreachable cluster: a TCP connection to ``address`` (or ``RAY_ADDRESS``) within
        ``timeout`` seconds (``ray.init`` itself keeps retrying for minutes). Raises ConnectionError."""
        import os
        import socket

        _ray()
        address = self.address or os.environ.get("RAY_ADDRESS")
        if not address or address == "auto" or address.startswith("local"):
            return
        host_port = address.split("://", 1)[-1].rsplit("/", 1)[0]
        host, _, port = host_port.rpartition(":")
        try:
            socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
        except (OSError, ValueError) as e:
            raise ConnectionError(f"{address}: {e}") from None

    def run(self, cells: Iterable[Cell], *, should_stop: Optional[Callable[[], bool]] = None,
            cell_fn: CellFn = run_cell) -> Iterator[CellOutcome]:
        ray = _ray()
        cells = list(cells)
        started = False
        if not ray.is_initialized():
            kwargs = {"include_dashboard": False, "log_to_driver": False, **(self.init_kwargs or {})}
            previous = _sigterm_handler()
            ray.init(address=self.address, **kwargs)
            started = True
            if previous is not None:  # ray.init replaces the driver's SIGTERM handler (it exits): put ours back
                import signal

                signal.signal(signal.SIGTERM, previous)
        try:
            task = ray.remote(cell_fn).options(num_cpus=self.resources.num_cpus, num_gpus=self.resources.num_gpus,
                                               max_retries=self.resources.retries, retry_exceptions=False)
            pending = {task.remote(c): c for c in cells}
            while pending:
                if should_stop is not None and should_stop():
                    for ref in pending:
                        ray.cancel(ref, force=True)
                    return
                done, _ = ray.wait(list(pending), num_returns=1, timeout=self.poll_seconds)
                for ref in done:
                    cell = pending.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except Exception as e:  # noqa: BLE001  (worker died past its retries, task error)
                        msg = f"{type(e).__name__}: {_first_line(e)} (after {self.resources.retries} retries)"
                        outcome = CellOutcome(cell.index, CELL_FAILED, cell_rows(cell, error=msg), error=msg,
                                              attempts=self.resources.retries + 1)
                    yield outcome
        finally:
            if started:
                ray.shutdown()


def _sigterm_handler():
    """The current SIGTERM handler, when this is the main thread (where handlers can be set), else None."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.getsignal(signal.SIGTERM)


def _first_line(e: BaseException) -> str:
    """The informative line of a Ray error: ANSI colours removed, Ray's ``ray::fn() (pid=...)`` header skipped."""
    import re

    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in str(e).splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("ray::") and not set(ln) <= set("^~ ")]
    return lines[0] if lines else type(e).__name__


def executor(backend: str, *, address: Optional[str] = None, resources: Resources = Resources(),
             init_kwargs: Optional[dict] = None, history: Optional[tuple] = None):
    """The executor for ``--backend``: "local" (``history`` as in `LocalExecutor`) or "ray"."""
    if backend == "local":
        return LocalExecutor(history=history)
    if backend == "ray":
        return RayExecutor(address=address, resources=resources, init_kwargs=init_kwargs)
    raise ValueError(f"found backend {backend!r}, allowed: local, ray")
