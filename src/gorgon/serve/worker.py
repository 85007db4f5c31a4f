"""The engine thread: a bounded queue of requests in front of the one engine, with continuous batching.

Model calls must not run concurrently, so one thread owns them. It runs a batch of `max_batch` rows
(Engine.serve) for the method at the head of the queue: whenever a row is free, the next waiting
request for that method joins the running batch, prefilled into the free row while the others keep
decoding, so nobody waits for somebody else's long answer to end. Each event goes to its request's
asyncio queue (loop.call_soon_threadsafe), so every client streams as its tokens arrive. A request
for another method waits until the batch drains (first come, first served by the queue's head).

A client that goes away cancels its request: a waiting one leaves the queue at once; a running one
stops at the next step and its row takes the next request.
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

# Cache rows are sized for at least this (prompt, total) in tokens, so that typical requests join a
# running batch without regrowing the cache (a larger request regrows it when its turn comes).
DEFAULT_ROW = (512, 1024)


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
        while (head := self._wait_for_work()) is not None:
            self._serve(head.method, head)

    def _wait_for_work(self) -> Job | None:
        with self._cond:
            while not self._waiting and not self._stopping:
                self._cond.wait()
            return None if self._stopping else self._waiting[0]

    def _poll(self, method: str, jobs: dict[int, Job]):
        """Engine.serve's source: waiting jobs for `method`, from the head of the queue, while they fit."""

        def poll(free: int, fits) -> list:
            taken = []
            with self._cond:
                while (
                    self._waiting and len(taken) < free and not self._stopping
                    and self._waiting[0].method == method and fits(self._waiting[0].request)
                ):  # fmt: skip
                    taken.append(self._waiting.popleft())
                self._running.extend(taken)
                self.metrics.queue_depth.set(len(self._waiting))
                self.metrics.running.set(len(self._running))
            now = time.perf_counter()
            for job in taken:
                self.metrics.queue_wait.observe(now - job.arrived)
                jobs[id(job)] = job
            return [(id(job), job.request) for job in taken]

        return poll

    def _serve(self, method: str, head: Job) -> None:
        """Run `method`'s batch until it drains; rows hold at least what the head of the queue needs."""
        jobs: dict[int, Job] = {}
        try:
            llm = self.methods.get(method)
            engine = llm.engine
            need = engine.runner.slots_needed(len(head.request.prompt_ids), engine.total_tokens(head.request))
            capacity = max(need, engine.runner.slots_needed(*DEFAULT_ROW))
            for event in engine.serve(self._poll(method, jobs), self.max_batch, capacity):
                job = jobs[event.index]
                if isinstance(event, RequestOutput):
                    self._finish(job, method, event)
                    del jobs[event.index]
                job.deliver(event)
        except Exception as e:  # a failed batch fails its requests, not the server
            with self._cond:
                if head in self._waiting and not any(j is head for j in jobs.values()):
                    self._waiting.remove(head)  # it failed before joining: don't retry it forever
                    jobs[id(head)] = head
            for job in jobs.values():
                self.metrics.requests.labels(job.endpoint, "error").inc()
                job.deliver(e)
        finally:
            with self._cond:
                self._running = []
            self.metrics.running.set(0)

    def _finish(self, job: Job, method: str, out: RequestOutput) -> None:
        with self._cond:
            if job in self._running:
                self._running.remove(job)
            self.metrics.running.set(len(self._running))
        end = time.perf_counter()
        ttft = (job.first_token or end) - job.arrived
        self.metrics.finished(job.endpoint, method, out, end - job.arrived, ttft)
