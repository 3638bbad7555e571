"""Executors: where cells run. Serial (in this process, the default), a local process pool
(``--jobs N``), or a Ray cluster (``--executor ray [--address HOST:PORT]``).

Every executor has one method, ``run(items, blobs, done, work=run_cell)``. An item is plain data
(a :class:`~compbench.cells.Cell`, or a training job) whose ``needs`` names the byte strings it
uses by content hash; ``blobs`` maps each hash to its bytes (a member, an artifact, a train
split); ``work(item, *needed_bytes)`` is a top-level function that runs anywhere and returns a
dict. ``done(item, result, error)`` is called in this process, the driver, as each item finishes. Only the driver writes the results store, so
the store has one writer whatever the cluster size.

Bytes travel once: a process pool gets them once per worker (its initializer), Ray once into its
object store (``ray.put``); a cell names them by hash.

Faults. A cell whose worker dies (a crash, a kill, out of memory) or that runs past
``cell_timeout`` is retried up to ``retries`` times, then reported failed with its error; it is
never dropped. In a process pool, a dead worker fails every cell the pool was running without
saying whose worker it was: those cells run again one at a time, unblamed, and only a cell whose
worker dies while it runs alone uses up a retry. Ctrl-C cancels the pending cells and re-raises:
what finished was already handed to ``done``. A coder's own failure (a failed round trip) is the
cell's record, not a fault.

Threads. Each worker runs one cell at a time with ``threads`` threads (OMP/MKL and torch), set
before any library starts its pool.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

from .cells import run_cell
from .errors import CompbenchError

Done = Callable[[object, "dict | None", "str | None"], None]


def _needed(item, blobs: dict[str, bytes]) -> list[bytes]:
    return [blobs.get(h, b"") for h in item.needs]


def _thread_env(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    import sys

    if "torch" in sys.modules:  # already started: tell it directly
        sys.modules["torch"].set_num_threads(threads)


@dataclass
class Serial:
    """Cells one after another in this process (today's behaviour). A crash is not retried: it
    would crash again the same way."""

    progress: Callable[[str], None] | None = None

    def run(self, cells: list, blobs: dict[str, bytes], done: Done, work: Callable = run_cell) -> None:
        for cell in cells:
            try:
                rec = work(cell, *_needed(cell, blobs), progress=self.progress)
            except CompbenchError as err:
                done(cell, None, str(err))
                continue
            except Exception as err:  # noqa: BLE001 - a buggy plug-in must not stop the other cells
                done(cell, None, f"crashed with {type(err).__name__}: {err}")
                continue
            done(cell, rec, None)


# -- a local process pool --------------------------------------------------------------------------
_BLOBS: dict[str, bytes] = {}


def _init_worker(threads: int, blobs: dict[str, bytes]) -> None:
    # Each worker leads its own process group, so stopping it also stops the programs it started
    # (an external coder's compressor), which would otherwise run on, orphaned, skewing timings.
    if hasattr(os, "setpgrp"):
        os.setpgrp()
    _thread_env(threads)
    _BLOBS.update(blobs)


def _pool_item(work: Callable, item) -> dict:
    return work(item, *_needed(item, _BLOBS))


@dataclass
class Pool:
    """``jobs`` local processes (spawned: no inherited torch thread pool), one cell at a time each."""

    jobs: int
    threads: int = 1
    retries: int = 2
    cell_timeout: float = 0.0  # seconds; 0: none
    progress: Callable[[str], None] | None = None

    def run(self, cells: list, blobs: dict[str, bytes], done: Done, work: Callable = run_cell) -> None:
        import multiprocessing
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        say = self.progress or (lambda _m: None)
        pending = list(cells)
        # When a worker dies, the pool fails every cell it was running, and which of them had the
        # dead worker is not known. So cells that ran beside others are not blamed: each runs again
        # alone (a suspect), and is blamed if its worker dies then. (Blaming them all let a cell
        # that kills its worker use up an innocent neighbour's retries.)
        suspects: list = []
        attempts = {id(c): 0 for c in cells}  # by identity: items need not be hashable
        ctx = multiprocessing.get_context("spawn")
        while pending or suspects:
            pool = ProcessPoolExecutor(self.jobs, mp_context=ctx, initializer=_init_worker,
                                       initargs=(self.threads, blobs))
            running: dict = {}
            started: dict = {}
            alone: set = set()  # the running suspect's future: nothing starts beside it
            broken = False
            try:
                while pending or suspects or running:
                    while not broken and not alone:
                        if suspects and not running:
                            cell, solo = suspects.pop(0), True
                        elif pending and not suspects and len(running) < self.jobs:
                            cell, solo = pending.pop(0), False
                        else:
                            break
                        try:
                            fut = pool.submit(_pool_item, work, cell)
                        except BrokenProcessPool:
                            # A worker died after the last wait() and before this submit: the pool
                            # refuses new work. This cell never ran, so it goes back unblamed; the
                            # cells that were running are dealt with below.
                            if running:
                                (suspects if solo else pending).insert(0, cell)
                            else:  # nothing ran, yet the pool broke: blame this cell, so retries bound the loop
                                self._fault(cell, attempts, pending, "its worker process died", done, say)
                            broken = True
                            break
                        running[fut], started[fut] = cell, time.monotonic()
                        if solo:
                            alone.add(fut)
                    finished, _ = wait(list(running), timeout=1.0, return_when=FIRST_COMPLETED)
                    casualties = []  # cells whose worker process (or a neighbour's) died
                    for fut in finished:
                        cell = running.pop(fut)
                        alone.discard(fut)
                        try:
                            rec = fut.result()
                        except BrokenProcessPool:
                            broken = True
                            casualties.append(cell)
                            continue
                        except CompbenchError as err:
                            done(cell, None, str(err))
                            continue
                        except Exception as err:  # noqa: BLE001 - a worker-side bug is the cell's fault
                            self._fault(cell, attempts, pending, f"{type(err).__name__}: {err}", done, say)
                            continue
                        done(cell, rec, None)  # outside the try: the driver's own errors (a full disk) are not the cell's
                    late = [f for f in running if self.cell_timeout and time.monotonic() - started[f] > self.cell_timeout]
                    if late or broken:
                        # A running task cannot be cancelled: stop the pool's processes, then retry what ran.
                        for fut in late:
                            self._fault(running.pop(fut), attempts, pending, f"ran past {self.cell_timeout:g} s",
                                        done, say)
                        for fut, cell in list(running.items()):
                            running.pop(fut)
                            if broken:
                                casualties.append(cell)
                            else:
                                pending.insert(0, cell)  # an innocent bystander: not its fault
                        if len(casualties) == 1:  # it ran alone: its own worker died
                            self._fault(casualties[0], attempts, pending, "its worker process died", done, say)
                        else:
                            for cell in casualties:
                                say(f"  {cell.label}: a worker process died while it ran beside others; "
                                    "running it again alone")
                            suspects.extend(casualties)
                        _kill(pool)
                        break
            except KeyboardInterrupt:
                _kill(pool)
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)

    def _fault(self, cell, attempts: dict, pending: list, why: str, done: Done, say) -> None:
        attempts[id(cell)] += 1
        if attempts[id(cell)] > self.retries:
            done(cell, None, f"failed after {attempts[id(cell)]} attempts: {why}")
        else:
            say(f"  {cell.label}: {why}; retrying ({attempts[id(cell)]}/{self.retries})")
            pending.append(cell)


def _kill(pool) -> None:
    # concurrent.futures has no public way to stop a running task; its processes are killed instead,
    # each with its process group (see _init_worker). Every group is killed, whether or not its worker
    # still lives: once one worker dies, the pool's manager thread terminates the others (SIGTERM to
    # the worker alone), and a worker that is already gone when this loop reaches it may have left a
    # child (an external coder's compressor) running in its group, orphaned.
    import signal

    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (OSError, AttributeError):  # no such group (the worker had not made it yet), or no killpg
            pass
        if proc.is_alive():
            proc.kill()


# -- Ray ----------------------------------------------------------------------------------------
def _ray_item(work: Callable, item, threads: int, *needed: bytes) -> dict:
    _thread_env(threads)
    return work(item, *needed)


@dataclass
class Ray:
    """Cells as Ray tasks, one CPU each. ``address``: a running cluster (``ray start --head``);
    none starts a local Ray instance with ``num_cpus`` CPUs."""

    address: str | None = None
    num_cpus: int | None = None
    threads: int = 1
    retries: int = 2
    cell_timeout: float = 0.0
    progress: Callable[[str], None] | None = None

    def run(self, cells: list, blobs: dict[str, bytes], done: Done, work: Callable = run_cell) -> None:
        try:
            import ray
        except ImportError:
            raise CompbenchError("--executor ray needs Ray: pip install 'compbench[ray]' (ray[default])") from None
        say = self.progress or (lambda _m: None)
        if not ray.is_initialized():
            try:
                if self.address:
                    _reachable(self.address)
                    ray.init(address=self.address, log_to_driver=False)
                else:
                    # address="local": a new instance of our own, even where a cluster is already
                    # running on this machine (ray.init() alone would join it).
                    ray.init(address="local", num_cpus=self.num_cpus, include_dashboard=False, log_to_driver=False)
            except CompbenchError:
                raise
            except Exception as err:  # noqa: BLE001 - Ray's many connection errors, as one line
                hint = ""
                if self.address and os.environ.get("RAY_AUTH_MODE") != "token":
                    # Ray >= 2.59 starts clusters with token authentication; a driver must opt in.
                    hint = " (if the cluster uses token authentication, run with RAY_AUTH_MODE=token and its token)"
                raise CompbenchError(f"cannot start Ray{' at ' + self.address if self.address else ''}: "
                                     f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}{hint}") from None
        # Every member's and artifact's bytes go into the object store once; cells name them.
        refs = {h: ray.put(b) for h, b in blobs.items()}
        empty = ray.put(b"")
        # max_retries: Ray itself resubmits a task whose worker process died.
        task = ray.remote(num_cpus=self.threads, max_retries=self.retries)(_ray_item)
        attempts = {id(c): 0 for c in cells}  # by identity: items need not be hashable

        def submit(item):
            # ObjectRefs given as top-level arguments reach the task as their bytes.
            return task.remote(work, item, self.threads, *(refs.get(h, empty) for h in item.needs))

        running = {submit(c): (c, time.monotonic()) for c in cells}
        try:
            while running:
                ready, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
                for ref in ready:
                    cell, _ = running.pop(ref)
                    try:
                        done(cell, ray.get(ref), None)
                    except ray.exceptions.RayTaskError as err:
                        cause = err.cause if isinstance(err.cause, Exception) else err
                        if isinstance(cause, CompbenchError):
                            done(cell, None, str(cause))
                        else:
                            self._retry(cell, attempts, f"{type(cause).__name__}: {cause}", running, submit, done, say)
                    except (ray.exceptions.WorkerCrashedError, ray.exceptions.RayError) as err:
                        # Ray's own retries are spent: the worker died every time.
                        done(cell, None, f"failed: its worker died ({type(err).__name__})")
                if self.cell_timeout:
                    now = time.monotonic()
                    for ref, (cell, t0) in list(running.items()):
                        if now - t0 > self.cell_timeout:
                            running.pop(ref)
                            ray.cancel(ref, force=True)
                            self._retry(cell, attempts, f"ran past {self.cell_timeout:g} s", running, submit, done, say)
        except KeyboardInterrupt:
            for ref in running:
                ray.cancel(ref, force=True)
            raise

    def _retry(self, cell, attempts, why, running, submit, done, say) -> None:
        attempts[id(cell)] += 1
        if attempts[id(cell)] > self.retries:
            done(cell, None, f"failed after {attempts[id(cell)]} attempts: {why}")
        else:
            say(f"  {cell.label}: {why}; retrying ({attempts[id(cell)]}/{self.retries})")
            running[submit(cell)] = (cell, time.monotonic())


def _reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds, in one line, when nothing listens at a Ray address: ``ray.init`` would
    otherwise retry for minutes."""
    import socket

    host, sep, port = address.rpartition(":")
    if address.startswith(("ray://", "auto")) or not sep or not port.isdigit():
        return  # a Ray client URL or "auto": leave it to Ray
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise CompbenchError(f"no Ray cluster at {address} ({err.strerror or err}): start one with `ray start --head` "
                             "and pass the address it prints") from None
