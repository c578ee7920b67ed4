"""One worker thread runs the model; requests wait in a bounded queue and are refused when it is full.

The model is not thread-safe and one CPU inference already uses every core, so requests are run one
at a time. A full queue raises :class:`QueueFull` at once (the API answers 503 with ``Retry-After``)
instead of letting requests pile up until they time out.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")


class QueueFull(RuntimeError):
    def __init__(self, retry_after: int):
        self.retry_after = retry_after
        super().__init__(f"the model queue is full; retry in about {retry_after} s")


class ModelQueue:
    """Bounded FIFO of model jobs served by one daemon thread."""

    def __init__(self, max_pending: int = 8, name: str = "radscribe-model"):
        self.max_pending = max_pending
        self._jobs: queue.Queue[tuple[Callable[[], Any], Future] | None] = queue.Queue(maxsize=max_pending)
        self._average_seconds = 5.0  # until measured: a CPU draft takes seconds
        self._running = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        return self._jobs.qsize()

    def submit(self, job: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        try:
            self._jobs.put_nowait((job, future))
        except queue.Full:
            raise QueueFull(self.retry_after()) from None
        return future

    def retry_after(self) -> int:
        """Seconds until a slot is likely free: the queue ahead of it at the measured job time."""
        return max(1, math.ceil((self.pending + self._running) * self._average_seconds))

    def close(self) -> None:
        self._jobs.put(None)

    def _work(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            job, future = item
            if not future.set_running_or_notify_cancel():
                continue
            with self._lock:
                self._running = 1
            start = time.perf_counter()
            try:
                future.set_result(job())
            except BaseException as error:  # the caller sees the error; the worker goes on
                future.set_exception(error)
            finally:
                seconds = time.perf_counter() - start
                with self._lock:
                    self._running = 0
                    self._average_seconds = 0.8 * self._average_seconds + 0.2 * seconds
