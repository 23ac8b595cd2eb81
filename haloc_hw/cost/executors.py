"""Where table-building jobs run: in this process, in a local process pool, or on Dask.

A job is a picklable callable applied to one item. Every executor yields
:class:`JobResult` objects *as jobs finish* (so the cost table can commit each one at once),
tagged with the item's index so that callers can put results back in order: results are the
same whatever the number of workers, only their arrival order changes.

A job that raises does not stop the others: its exception becomes ``JobResult.error`` (a
one-line text) and the caller decides what to do (the cost table never stores it).

* :class:`SerialExecutor` – ``--jobs 1``: no processes, easiest to debug.
* :class:`LocalExecutor` – ``--jobs N``: a ``concurrent.futures`` process pool. Workers are
  started with the ``forkserver`` method: forking a parent that already ran PyTorch (to
  extract layer shapes) can deadlock in OpenMP, and ``spawn`` re-imports the world per worker.
* :class:`DaskExecutor` – ``--scheduler ADDRESS``: a running ``distributed`` scheduler, so
  jobs spread over several machines.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol, Self, Sequence

from haloc_hw.errors import HalocError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobResult:
    """Outcome of one job: ``value`` on success, else ``error`` (one line) and ``value`` None."""

    index: int
    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _describe(err: BaseException) -> str:
    if isinstance(err, HalocError):
        return str(err)
    return f"{err.__class__.__name__}: {err}"


def _guarded(fn: Callable[[Any], Any], item: Any) -> tuple[Any, str | None]:
    """Run one job; turn its exception into text so it crosses process boundaries safely.

    A job's failure must not abort the build (the other jobs' results are still worth
    keeping), so every exception a job raises is reported, not raised, here.
    """
    try:
        return fn(item), None
    except Exception as err:  # noqa: BLE001 - boundary between one job and the whole build
        if not isinstance(err, HalocError):
            log.debug("job failed:\n%s", traceback.format_exc())
        return None, _describe(err)


_WORKER_FN: Callable[[Any], Any] | None = None


def _init_worker(fn: Callable[[Any], Any]) -> None:
    """Pool initializer: unpickle the job function (and the backend inside it) once per worker,
    so per-worker caches (a mapper's map-space tables) stay warm across jobs."""
    global _WORKER_FN
    _WORKER_FN = fn


def _guarded_worker(item: Any) -> tuple[Any, str | None]:
    assert _WORKER_FN is not None, "worker started without a job function"
    return _guarded(_WORKER_FN, item)


class Executor(Protocol):
    """Runs ``fn`` over ``items`` and yields results as they finish."""

    name: str
    workers: int

    def run(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[JobResult]: ...

    def close(self) -> None: ...


class _Closing:
    """``with executor:`` closes it (shuts a pool down, drops a Dask client) on the way out."""

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SerialExecutor(_Closing):
    """Jobs one after another in this process (``--jobs 1``)."""

    name = "serial"
    workers = 1

    def run(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[JobResult]:
        for index, item in enumerate(items):
            value, error = _guarded(fn, item)
            yield JobResult(index, value, error)


class LocalExecutor(_Closing):
    """A local process pool with ``jobs`` workers, started for each :meth:`run`.

    The job function is sent once per worker (pool initializer), not once per job. At most
    ``2 * jobs`` jobs are in flight at once, so a kill loses little work and the parent
    never pickles thousands of jobs up front.
    """

    name = "local"

    def __init__(self, jobs: int) -> None:
        if jobs < 1:
            raise HalocError(f"--jobs must be at least 1, got {jobs}", key="jobs", fix="pass --jobs 1 or more")
        self.workers = jobs
        self._pool: ProcessPoolExecutor | None = None

    def run(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[JobResult]:
        if not items:
            return
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        pool = ProcessPoolExecutor(
            max_workers=min(self.workers, len(items)),
            mp_context=multiprocessing.get_context(method),
            initializer=_init_worker,
            initargs=(fn,),
        )
        self._pool = pool
        pending: dict[Future, int] = {}
        next_index = 0
        limit = 2 * self.workers
        try:
            while next_index < len(items) or pending:
                while next_index < len(items) and len(pending) < limit:
                    pending[pool.submit(_guarded_worker, items[next_index])] = next_index
                    next_index += 1
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in sorted(done, key=pending.__getitem__):
                    index = pending.pop(future)
                    try:
                        value, error = future.result()
                    except Exception as err:  # noqa: BLE001 - a worker died (killed, out of memory)
                        value, error = None, f"worker process failed: {_describe(err)}"
                    yield JobResult(index, value, error)
        finally:
            for future in pending:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class DaskExecutor(_Closing):
    """Jobs on a Dask ``distributed`` cluster reached at ``address`` (``tcp://host:8786``).

    ``client`` may be given instead of an address (tests pass one for a ``LocalCluster``).
    An unreachable scheduler is a :class:`HalocError` after ``timeout_s`` seconds.
    """

    name = "dask"

    def __init__(self, address: str | None = None, *, timeout_s: float = 10.0, client: Any = None) -> None:
        try:
            from distributed import Client
        except ImportError:  # pragma: no cover - distributed is a dependency
            raise HalocError(
                "the Dask 'distributed' package is not installed", key="scheduler", fix="pip install distributed, or drop --scheduler"
            ) from None
        self._own_client = client is None
        if client is None:
            if not address:
                raise HalocError("no Dask scheduler address given", key="scheduler", fix="pass --scheduler tcp://HOST:PORT")
            try:
                client = Client(address, timeout=timeout_s, set_as_default=False)
            except (OSError, TimeoutError) as err:
                raise HalocError(
                    f"cannot reach the Dask scheduler at {address} within {timeout_s:g} s ({err.__class__.__name__})",
                    key="scheduler",
                    fix="start it with 'dask scheduler' (and workers with 'dask worker ADDRESS'), or drop --scheduler to run locally",
                ) from None
        self.client = client
        workers = client.scheduler_info().get("workers", {})
        self.workers = max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))

    def run(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> Iterator[JobResult]:
        from distributed import as_completed

        if not items:
            return
        with self.client.as_current():
            # ship the job function (and the backend in it) once per worker, not once per job
            [fn_remote] = self.client.scatter([fn], broadcast=True, hash=False)
            futures = [self.client.submit(_guarded, fn_remote, item, pure=False) for item in items]
            index_of = {f.key: i for i, f in enumerate(futures)}
            try:
                for future in as_completed(futures):
                    index = index_of[future.key]
                    try:
                        value, error = future.result()
                    except Exception as err:  # noqa: BLE001 - a worker was lost
                        value, error = None, f"dask worker failed: {_describe(err)}"
                    yield JobResult(index, value, error)
            finally:
                for future in futures:
                    if not future.done():
                        future.cancel()

    def close(self) -> None:
        if self._own_client:
            self.client.close()


def make_executor(jobs: int | None = None, scheduler: str | None = None, *, timeout_s: float = 10.0) -> Executor:
    """The executor the CLI flags ask for: Dask with ``--scheduler``, serial for one job, else a pool.

    ``jobs=None`` means one worker per CPU core.
    """
    if scheduler:
        return DaskExecutor(scheduler, timeout_s=timeout_s)
    if jobs is None:
        jobs = os.cpu_count() or 1
    return SerialExecutor() if jobs == 1 else LocalExecutor(jobs)  # LocalExecutor rejects jobs < 1
