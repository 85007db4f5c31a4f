"""The engine thread: a bounded queue of requests in front of the one engine, run in micro-batches.

Model calls must not run concurrently, so one thread owns them. It takes the oldest waiting request and
up to `max_batch - 1` more that want the same method, runs them as one batch to the end, and hands
each event to its request's asyncio queue (loop.call_soon_threadsafe), so every client streams as its
tokens arrive. Requests that arrive meanwhile wait for the next batch (no joining a running batch).

A client that goes away cancels its request: a waiting one leaves the queue at once; a running one
stops between steps and no longer counts, and its batch ends as soon as all of its requests have.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from gorgon.engine import Request, RequestOutput, TokenEvent
from gorgon.serve.methods import Methods
from gorgon.serve.metrics import Metrics


class QueueFull(Exception):
    """The waiting queue holds max_queue requests already."""


@dataclass
class Job:
    """One request on its way through the engine, and the events it produced for its client."""

    request: Request
    method: str
    endpoint: str
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    arrived: float = field(default_factory=time.perf_counter)
    first_token: float | None = None

    def deliver(self, item: TokenEvent | RequestOutput | BaseException) -> None:
        """Called on the engine thread."""
        if self.first_token is None and isinstance(item, TokenEvent):
            self.first_token = time.perf_counter()
        try:
            self.loop.call_soon_threadsafe(self.events.put_nowait, item)
        except RuntimeError:  # the event loop is closed: the server is shutting down
            self.request.cancelled = True

    async def stream(self) -> AsyncIterator[TokenEvent | RequestOutput]:
        """The events, ending with the RequestOutput (errors from the engine are raised here)."""
        while True:
            item = await self.events.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if isinstance(item, RequestOutput):
                return


class Worker:
    def __init__(self, methods: Methods, metrics: Metrics, max_queue: int = 64, max_batch: int = 8):
        self.methods, self.metrics = methods, metrics
        self.max_queue, self.max_batch = max_queue, max_batch
        self.plain_tokens_per_s: float | None = None
        self._waiting: deque[Job] = deque()
        self._running: list[Job] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------- the asyncio side

    def submit(self, job: Job) -> None:
        with self._cond:
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(
                    f"the server's queue is full ({self.max_queue} requests waiting); retry later"
                )
            self._waiting.append(job)
            self.metrics.queue_depth.set(len(self._waiting))
            self._cond.notify()

    def cancel(self, job: Job) -> None:
        """Stop `job` (its client went away): out of the queue at once, or out of its batch at the next
        step. Idempotent; a finished job is left alone."""
        if job.request.cancelled:
            return
        job.request.cancelled = True
        with self._cond:
            if job in self._waiting:
                self._waiting.remove(job)
                self.metrics.queue_depth.set(len(self._waiting))
                self.metrics.requests.labels(job.endpoint, "cancelled").inc()

    @property
    def queue_depth(self) -> int:
        return len(self._waiting)

    # ------------------------------------------------------------------------ the engine thread

    def prepare(self, baseline_tokens: int = 0) -> None:
        """Before start(): build the default method and, with baseline_tokens > 0, measure plain decoding
        speed (the base of the speedups reported)."""
        self.methods.get(self.methods.default)
        if baseline_tokens > 0:
            self.plain_tokens_per_s = self.methods.measure_plain_speed(baseline_tokens)
            self.metrics.plain_speed.set(self.plain_tokens_per_s)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="gorgon-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            for job in [*self._waiting, *self._running]:
                job.request.cancelled = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _main(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._run(batch)

    def _next_batch(self) -> list[Job] | None:
        with self._cond:
            while not self._waiting and not self._stopping:
                self._cond.wait()
            if self._stopping:
                return None
            method = self._waiting[0].method
            batch = [j for j in self._waiting if j.method == method][: self.max_batch]
            for job in batch:
                self._waiting.remove(job)
            self._running = batch
            self.metrics.queue_depth.set(len(self._waiting))
            self.metrics.running.set(len(batch))
            return batch

    def _run(self, batch: list[Job]) -> None:
        now = time.perf_counter()
        for job in batch:
            self.metrics.queue_wait.observe(now - job.arrived)
        method = batch[0].method
        left = set(range(len(batch)))
        try:
            llm = self.methods.get(method)
            for event in llm.engine.stream([job.request for job in batch]):
                job = batch[event.index]
                if isinstance(event, RequestOutput):
                    left.discard(event.index)
                    self.metrics.running.dec()
                    end = time.perf_counter()
                    ttft = (job.first_token or end) - job.arrived
                    self.metrics.finished(job.endpoint, method, event, end - job.arrived, ttft)
                job.deliver(event)
        except Exception as e:  # a failed batch fails its requests, not the server
            for i in left:
                self.metrics.requests.labels(batch[i].endpoint, "error").inc()
                batch[i].deliver(e)
        finally:
            with self._cond:
                self._running = []
            self.metrics.running.set(0)
