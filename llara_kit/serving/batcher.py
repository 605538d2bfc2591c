"""A bounded queue in front of one worker thread that groups waiting jobs into batches.

Requests arrive on the server's event loop; the model runs on one thread (torch uses the
cores inside each call). ``submit`` never blocks: a full queue raises ``Busy`` with an estimate
of how long the backlog takes, which the server turns into 503 with Retry-After."""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

_STOP = object()


class Busy(Exception):
    """The queue is full; ``retry_after`` (whole seconds) is when a place is likely free."""

    def __init__(self, retry_after: int):
        super().__init__(f"The server is busy; retry after {retry_after} s.")
        self.retry_after = retry_after


class Batcher:
    """Runs ``work(jobs) -> results`` (same length and order) on a thread of its own, on at
    most ``max_batch`` queued jobs at a time, waiting at most ``max_wait_s`` for a batch to fill
    (jobs already waiting are always taken, up to ``max_batch``). At most ``max_queue`` jobs
    wait; ``close`` finishes every queued job, then stops the thread."""

    def __init__(self, work: Callable[[list[Any]], Sequence[Any]], max_batch: int = 1,
                 max_wait_s: float = 0.0, max_queue: int = 64):
        self.work, self.max_batch, self.max_wait_s = work, max_batch, max_wait_s
        self._queue: queue.Queue = queue.Queue(maxsize=max_queue)
        self._seconds_per_job = 0.0  # running mean, for Retry-After
        self.batches = 0  # batches run so far, and the jobs in them
        self.jobs = 0
        self._thread = threading.Thread(target=self._loop, name="llara-kit-batcher", daemon=True)
        self._thread.start()

    @property
    def waiting(self) -> int:
        """Jobs queued, not yet taken by the worker."""
        return self._queue.qsize()

    def submit(self, job: Any) -> Future:
        """The future of ``job``'s result; ``Busy`` when the queue is full."""
        future: Future = Future()
        try:
            self._queue.put_nowait((job, future))
        except queue.Full:
            backlog = self._queue.qsize() * self._seconds_per_job / self.max_batch
            raise Busy(max(1, math.ceil(backlog))) from None
        return future

    def close(self, timeout: float | None = None) -> None:
        """Answer every queued job, then stop the worker (waits up to ``timeout`` s)."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            group, stop = [first], False
            deadline = time.monotonic() + self.max_wait_s
            while len(group) < self.max_batch:
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                group.append(item)
            self._run(group)
            if stop:
                return

    def _run(self, group: list[tuple[Any, Future]]) -> None:
        live = [(job, f) for job, f in group if f.set_running_or_notify_cancel()]
        if not live:
            return
        start = time.perf_counter()
        try:
            results = self.work([job for job, _ in live])
        except Exception as error:  # noqa: BLE001 - every waiting caller gets the error
            for _, f in live:
                f.set_exception(error)
        else:
            for (_, f), result in zip(live, results, strict=True):
                f.set_result(result)
        per_job = (time.perf_counter() - start) / len(live)
        mean = self._seconds_per_job
        self._seconds_per_job = per_job if not self.jobs else 0.8 * mean + 0.2 * per_job
        self.batches += 1
        self.jobs += len(live)
