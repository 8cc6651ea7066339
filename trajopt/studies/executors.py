"""Executors: run a study's cells and yield each outcome as it finishes.

    LocalExecutor()                                 cells in this process, one group or cell after another
    RayExecutor(address=None, resources=...)        each chunk of a group, or cell, a Ray task on a cluster (or a
                                                    local Ray)

Both group the cells that differ only in the numbers their grid varies (`trajopt.studies.groups`: one compiled
program vmapped over a chunk of them, ``group_cells`` or ``TRAJOPT_GROUP_CELLS`` at most per chunk, memory allowing;
by default on an accelerator only: on a CPU the cells run in turn, each compiled once, `groups.default_group_cells`)
and run every other cell alone through the same pure `trajopt.studies.cells.run_cell` (as every cell when a
caller gives its own ``cell_fn``); both yield `CellOutcome` objects; the caller (the CLI)
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

from trajopt.studies import groups
from trajopt.studies.cells import CELL_FAILED, CellOutcome, StorageError, cell_rows, run_cell
from trajopt.studies.expand import Cell
from trajopt.studies.file import Resources

CellFn = Callable[..., CellOutcome]


@dataclass(frozen=True)
class LocalExecutor:
    """Run cells in this process, one group (`trajopt.studies.groups.run_chunk`, chunk by chunk) or cell after
    another. An exception inside a cell is recorded (run_cell catches it); ``should_stop`` is polled between
    compiled chunks of a cell and between cells.

    ``group_cells``: the most cells one compiled program runs together (1: one program per cell; None: the default
    of the backend, `trajopt.studies.groups.default_group_cells`: 1 on a CPU, on an accelerator as many as
    ``history``'s memory limit, or `trajopt.studies.groups.DEFAULT_MEMORY`, allows).

    ``history``: None (every cell's history in memory), or ``(make_store, memory_limit)``: a cell whose recorded
    history is larger than ``memory_limit`` bytes keeps it in the store ``make_store()`` returns (the CLI's: a
    `trajopt.runs.DiskHistory` in the study folder), which is closed when the cell's outcome has been consumed
    (its files are then removed; the caller writes the run folder before asking for the next cell)."""

    name: str = "local"
    history: Optional[tuple] = None
    group_cells: Optional[int] = None

    def run(self, cells: Iterable[Cell], *, should_stop: Optional[Callable[[], bool]] = None,
            cell_fn: CellFn = run_cell) -> Iterator[CellOutcome]:
        cells = list(cells)
        memory = self.history[1] if self.history is not None else None
        chunks = (groups.plan(cells, memory_limit=memory, max_cells=self.group_cells) if cell_fn is run_cell
                  else [groups.Chunk((c,)) for c in cells])
        for chunk in chunks:
            if should_stop is not None and should_stop():
                return
            if len(chunk.cells) > 1:  # one program for the chunk's cells, each outcome as the chunk finishes
                yield from groups.run_chunk(chunk, should_stop)
                continue
            cell = chunk.cells[0]
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
    """Run each cell, or each chunk of a group of cells (`trajopt.studies.groups`: one compiled program for the
    chunk), as a Ray task (``ray.remote`` with the study's per-cell resources; a task whose worker dies is retried
    ``resources.retries`` times by Ray, then every cell of it is recorded as failed with Ray's error). A group is cut
    into at least as many chunks as the cluster runs tasks at once (its CPUs / ``num_cpus``), so that its cells
    spread over the cluster.

    Attributes:
        address: the cluster (``ray://host:10001`` or ``host:6379``, what ``ray start --head`` prints); None uses
            ``RAY_ADDRESS`` if set, else starts a local Ray instance (stopped again at the end).
        resources: per-task ``num_cpus``, ``num_gpus`` and ``retries``.
        init_kwargs: extra ``ray.init`` arguments (e.g. ``num_cpus`` of a local instance, ``runtime_env``).
        poll_seconds: how often ``should_stop`` is polled while waiting.
        group_cells: the most cells per task's program (1: a task per cell; None: 1 unless the tasks ask for GPUs,
            then as memory allows: `trajopt.studies.groups.default_group_cells`).
        memory_limit: the bytes a chunk's histories and rollout states stay under (None:
            `trajopt.studies.groups.DEFAULT_MEMORY`).
    """

    address: Optional[str] = None
    resources: Resources = Resources()
    init_kwargs: Optional[dict] = None
    poll_seconds: float = 0.5
    name: str = "ray"
    group_cells: Optional[int] = None
    memory_limit: Optional[int] = None

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
            options = dict(num_cpus=self.resources.num_cpus, num_gpus=self.resources.num_gpus,
                           max_retries=self.resources.retries, retry_exceptions=False)
            task = ray.remote(cell_fn).options(**options)
            if cell_fn is run_cell:
                slots = int(ray.cluster_resources().get("CPU", 1) // max(self.resources.num_cpus or 1, 1e-9))
                chunks = groups.plan(cells, memory_limit=self.memory_limit, max_cells=self.group_cells,
                                     spread=max(slots, 1), accelerator=bool(self.resources.num_gpus))
            else:
                chunks = [groups.Chunk((c,)) for c in cells]
            chunk_task = ray.remote(_chunk_outcomes).options(**options)
            pending = {(task.remote(ch.cells[0]) if len(ch.cells) == 1 else chunk_task.remote(ch)): ch.cells
                       for ch in chunks}
            while pending:
                if should_stop is not None and should_stop():
                    for ref in pending:
                        ray.cancel(ref, force=True)
                    return
                done, _ = ray.wait(list(pending), num_returns=1, timeout=self.poll_seconds)
                for ref in done:
                    its = pending.pop(ref)
                    try:
                        got = ray.get(ref)
                        outcomes = got if isinstance(got, list) else [got]
                    except Exception as e:  # noqa: BLE001  (worker died past its retries, task error)
                        msg = f"{type(e).__name__}: {_first_line(e)} (after {self.resources.retries} retries)"
                        outcomes = [CellOutcome(cell.index, CELL_FAILED, cell_rows(cell, error=msg), error=msg,
                                                attempts=self.resources.retries + 1) for cell in its]
                    yield from outcomes
        finally:
            if started:
                ray.shutdown()


def _chunk_outcomes(chunk: "groups.Chunk") -> list:
    """A Ray task: the outcomes of one chunk of a group (`trajopt.studies.groups.run_chunk`), returned together."""
    return list(groups.run_chunk(chunk))


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
             init_kwargs: Optional[dict] = None, history: Optional[tuple] = None,
             group_cells: Optional[int] = None):
    """The executor for ``--backend``: "local" (``history`` as in `LocalExecutor`) or "ray" (its chunks held to
    ``history``'s memory limit). ``group_cells``: the most cells per compiled program (default
    ``TRAJOPT_GROUP_CELLS``, `trajopt.studies.groups.group_cells_limit`: a ValueError on a bad value)."""
    if group_cells is None:
        group_cells = groups.group_cells_limit()
    if backend == "local":
        return LocalExecutor(history=history, group_cells=group_cells)
    if backend == "ray":
        return RayExecutor(address=address, resources=resources, init_kwargs=init_kwargs, group_cells=group_cells,
                           memory_limit=history[1] if history is not None else None)
    raise ValueError(f"found backend {backend!r}, allowed: local, ray")
