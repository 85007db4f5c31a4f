"""The generation loop: prefill a batch, then step until every sequence has finished.

Each step is launched before the previous one's tokens are read back, so the device always has the
next step queued while the host turns tokens into text and checks stop conditions; the host reads
one small tensor per step and nothing else.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from gorgon.config import SamplingParams
from gorgon.errors import GorgonError
from gorgon.model.tokenizer import Detokenizer, Tokenizer
from gorgon.runner import HostFetch, ModelRunner
from gorgon.sampling import SamplingTensors
from gorgon.spec.tree import StepTree


@dataclass
class Request:
    """One prompt, as token ids, and how to continue it.

    `cancelled` may be set from any thread (a server whose client went away): the request then stops
    between steps, ending with finish reason "cancelled", and a batch whose requests have all stopped ends.
    """

    prompt_ids: list[int]
    params: SamplingParams
    cancelled: bool = False


@dataclass
class TokenEvent:
    """What one step added to one request: new ids, the text they completed, and whether it ended."""

    index: int
    token_ids: list[int]
    text: str
    finished: bool = False
    finish_reason: str | None = None
    tree: StepTree | None = None  # the step's candidate tree, when the runner reads it back (tree_debug)


@dataclass
class RequestOutput:
    """A finished request: generated ids (the prompt excluded), their text, and statistics."""

    index: int
    prompt_token_ids: list[int]
    token_ids: list[int]
    text: str
    finish_reason: str
    stats: dict = field(default_factory=dict)


class Sequence:
    """A request in flight: its tokens so far, its stop conditions, its streamed text."""

    def __init__(self, index: int, req: Request, tokenizer: Tokenizer, max_position: int, stream: bool):
        self.index, self.req, self.params = index, req, req.params
        self.tokenizer = tokenizer
        self.output: list[int] = []
        room = max_position - len(req.prompt_ids)
        self.max_tokens = min(self.params.max_tokens, room)
        stops = set(self.params.stop_token_ids)
        if not self.params.ignore_eos:
            stops.update(tokenizer.eos_token_ids)
        self.stop_ids = stops
        # Text is tracked as it grows only when someone reads it (a stream) or stop strings need it.
        self.detok = Detokenizer(tokenizer, req.prompt_ids) if stream or self.params.stop else None
        self.text = ""
        self.emitted = 0
        self.holdback = max((len(s) for s in self.params.stop), default=1) - 1
        self.finish_reason: str | None = None
        self.start = time.perf_counter()
        self.first_token_time: float | None = None
        self.end_time: float | None = None
        # Decode steps, tokens they emitted, and per draft depth: steps that proposed it, and accepted it.
        self.steps = 0
        self.step_tokens = 0
        self.proposed: list[int] = []
        self.accepted: list[int] = []

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None

    def append(self, tokens: list[int], proposed_depth: int | None = None) -> TokenEvent:
        """Take the tokens one step produced (the first comes from prefill, `proposed_depth` None), up to
        the first that ends the request; return the event they cause."""
        now = time.perf_counter()
        if self.first_token_time is None:
            self.first_token_time = now
        taken = []
        for token in tokens:
            taken.append(token)
            self.output.append(token)
            if token in self.stop_ids:
                self.finish_reason = "stop"
            elif len(self.output) >= self.max_tokens:
                self.finish_reason = "length"
            if self.finished:
                break
        if proposed_depth is not None:
            self._count_step(len(tokens), len(taken), proposed_depth)
        delta = ""
        if self.detok is not None:
            self.text += self.detok.push(taken)
            if self.finished:
                self.text += self.detok.flush()
            delta = self._release()
        if self.finished:
            self.end_time = now
        return TokenEvent(self.index, taken, delta, self.finished, self.finish_reason)

    def cancel(self) -> None:
        self.finish_reason, self.end_time = "cancelled", time.perf_counter()

    def _count_step(self, produced: int, taken: int, proposed_depth: int) -> None:
        self.steps += 1
        self.step_tokens += taken
        grow = proposed_depth - len(self.proposed)
        if grow > 0:
            self.proposed += [0] * grow
            self.accepted += [0] * grow
        for d in range(proposed_depth):
            self.proposed[d] += 1
            self.accepted[d] += d < produced - 1  # drafts accepted this step: produced minus the bonus

    def _release(self) -> str:
        """The text that can be shown now: up to a stop string if one appeared, otherwise all but the
        last few characters, which might yet become the start of a stop string."""
        for s in self.params.stop:
            cut = self.text.find(s, max(0, self.emitted - len(s)))
            if cut >= 0:
                self.text = self.text[:cut]
                self.finish_reason = "stop"
        upto = len(self.text) if self.finished else max(self.emitted, len(self.text) - self.holdback)
        delta, self.emitted = self.text[self.emitted : upto], upto
        return delta

    def result(self) -> RequestOutput:
        text = self.text if self.params.stop else self.tokenizer.decode(self.output)
        end = self.end_time or time.perf_counter()
        n = len(self.output)
        first = (self.first_token_time or end) - self.start
        decode_time = end - (self.first_token_time or end)
        stats = {
            "prompt_tokens": len(self.req.prompt_ids),
            "generated_tokens": n,
            "time_to_first_token_s": first,
            "total_time_s": end - self.start,
            "tokens_per_s": n / (end - self.start) if end > self.start else 0.0,
            "decode_tokens_per_s": (n - 1) / decode_time if n > 1 and decode_time > 0 else 0.0,
            "steps": self.steps,
            # tau: tokens per target forward in decoding, the bonus token included (1.0 for plain decoding)
            "accepted_length": self.step_tokens / self.steps if self.steps else 1.0,
            "acceptance_rate_per_position": [
                a / p if p else 0.0 for a, p in zip(self.accepted, self.proposed)
            ],
            # the counts behind the rates: steps that drafted each depth, and that accepted it
            "drafted_per_position": list(self.proposed),
            "accepted_per_position": list(self.accepted),
        }
        return RequestOutput(self.index, self.req.prompt_ids, self.output, text, self.finish_reason, stats)


class Engine:
    """Generates continuations for batches of requests with one model."""

    def __init__(self, runner: ModelRunner, tokenizer: Tokenizer):
        self.runner = runner
        self.tokenizer = tokenizer
        self.max_position = runner.model.config.max_position

    def validate(self, req: Request) -> None:
        n = len(req.prompt_ids)
        if n == 0:
            raise GorgonError("the prompt is empty", "prompt")
        if n >= self.max_position:
            raise GorgonError(
                f"the prompt has {n} tokens, but the model's context holds {self.max_position} "
                "(prompt and generated tokens together); shorten the prompt",
                "input_tokens",
            )
        vocab = self.runner.model.config.vocab_size
        if any(not 0 <= t < vocab for t in req.prompt_ids):
            raise GorgonError(f"prompt token ids must be in [0, {vocab})", "prompt")

    def stream(
        self, requests: list[Request], stream_text: bool = True
    ) -> Iterator[TokenEvent | RequestOutput]:
        """Generate for all requests together, yielding a TokenEvent per new token and a RequestOutput
        when a request finishes. `stream_text=False` skips incremental decoding (final text only)."""
        for r in requests:
            self.validate(r)
        with self.runner.step_context():
            yield from self._run(requests, stream_text)

    def _run(self, requests: list[Request], stream_text: bool) -> Iterator[TokenEvent | RequestOutput]:
        seqs = [
            Sequence(i, r, self.tokenizer, self.max_position, stream_text) for i, r in enumerate(requests)
        ]
        lengths = [len(r.prompt_ids) for r in requests]
        b = len(requests)
        longest_total = max(n + s.max_tokens for n, s in zip(lengths, seqs)) + 1
        self.runner.reserve(b, self.runner.slots_needed(max(lengths), longest_total))
        seeds = [r.params.seed if r.params.seed is not None else random.getrandbits(32) for r in requests]
        sampling = SamplingTensors.build([r.params for r in requests], seeds, self.runner.device)

        runner = self.runner
        pending = HostFetch(runner.start([r.prompt_ids for r in requests], sampling))
        # On a GPU the next step is queued before this one's tokens are read (the device never waits
        # for the host); on the CPU there is nothing to overlap, so a step runs only when needed.
        ahead = runner.device.type == "cuda"
        committed = list(lengths)  # each row's committed length as of the last step read
        unread = {"prefill": 1, "steps": 0}  # fetches not yet read; every one adds >= 1 token per row

        def launch() -> HostFetch | None:
            owed = unread["prefill"] + unread["steps"]
            if not any(not s.finished and len(s.output) + owed < s.max_tokens for s in seqs):
                return None
            live = [c for c, s in zip(committed, seqs) if not s.finished] or committed
            bound = max(live) + unread["steps"] * runner.max_advance  # largest committed length it may see
            out = runner.decode(b, bound) if runner.drafter is None else runner.spec_step(b, bound)
            unread["steps"] += 1
            return HostFetch(out)

        while pending is not None:
            nxt = launch() if ahead else None
            rows = pending.wait()
            first = unread["prefill"] == 1
            unread["prefill" if first else "steps"] -= 1
            for i, (s, row) in enumerate(zip(seqs, rows)):
                tokens, depth, tree = ([row], None, None) if first else self._step_row(row)
                if not first:
                    committed[i] += len(tokens)
                if not s.finished:
                    yield from self._advance(s, tokens, depth, tree)
            if all(s.finished for s in seqs):
                break
            pending = nxt if ahead else launch()
        if ahead:
            torch.cuda.synchronize()  # a step launched for rows that then stopped must not outlive us

    def fits(self, req: Request, capacity: int) -> bool:
        """Whether `req` fits a row of `capacity` cache slots."""
        return self.runner.slots_needed(len(req.prompt_ids), self.total_tokens(req)) <= capacity

    def total_tokens(self, req: Request) -> int:
        """Prompt plus the most tokens `req` may generate (the context bounds max_tokens), plus one."""
        n = len(req.prompt_ids)
        return n + min(req.params.max_tokens, self.max_position - n) + 1

    def serve(
        self, poll: Callable[[int, Callable[[Request], bool]], list[tuple[int, Request]]], batch: int,
        capacity: int, stream_text: bool = True,
    ) -> Iterator[TokenEvent | RequestOutput]:  # fmt: skip
        """Continuous batching: `batch` rows that requests join whenever a row is free, while the others
        keep decoding. Before each step, `poll(free_rows, fits)` hands over up to `free_rows` validated
        (id, request) pairs, in order, each one that `fits` a row; events carry the id as `index`. Ends
        when no row is busy and poll has nothing. Rows hold `capacity` cache slots (see `fits`)."""
        runner = self.runner
        with runner.step_context():
            runner.reserve(batch, capacity)
            runner.open_batch(batch)
            yield from self._serve(poll, batch, stream_text)

    def _serve(self, poll, batch: int, stream_text: bool) -> Iterator[TokenEvent | RequestOutput]:
        runner = self.runner
        capacity = runner.cache.capacity
        seqs: list[Sequence | None] = [None] * batch
        committed = [0] * batch
        joined = [0] * batch  # the first step launched after the row's request joined (earlier: stale)
        launched = 0
        inflight: deque[tuple[int, HostFetch]] = deque()
        ahead = 2 if runner.device.type == "cuda" else 1  # steps queued at once (see `stream`)

        def admit() -> Iterator[TokenEvent | RequestOutput]:
            free = [r for r in range(batch) if seqs[r] is None]
            if not free:
                return
            for (rid, req), row in zip(poll(len(free), lambda q: self.fits(q, capacity)), free):
                seq = Sequence(rid, req, self.tokenizer, self.max_position, stream_text)
                seed = req.params.seed if req.params.seed is not None else random.getrandbits(32)
                sampling = SamplingTensors.build([req.params], [seed], runner.device)
                first = HostFetch(runner.admit(batch, row, req.prompt_ids, sampling)).wait()
                seqs[row], committed[row], joined[row] = seq, len(req.prompt_ids), launched
                yield from self._advance(seq, first, None, None)
                if seq.finished:
                    seqs[row] = None

        step = runner.decode if runner.drafter is None else runner.spec_step
        yield from admit()
        while True:
            while len(inflight) < ahead and any(seqs):
                # Only rows up to the highest busy one step (admission fills the lowest free row).
                rows = 1 + max(r for r, s in enumerate(seqs) if s)
                bound = max(c for c, s in zip(committed, seqs) if s) + len(inflight) * runner.max_advance
                inflight.append((launched, HostFetch(step(rows, bound))))
                launched += 1
            if not inflight:
                break
            index, fetch = inflight.popleft()
            for r, row in enumerate(fetch.wait()):
                seq = seqs[r]
                if seq is None or index < joined[r]:
                    continue
                tokens, depth, tree = self._step_row(row)
                committed[r] += len(tokens)
                yield from self._advance(seq, tokens, depth, tree)
                if seq.finished:
                    seqs[r] = None
            yield from admit()
        if runner.device.type == "cuda":
            torch.cuda.synchronize()  # steps queued for rows that then stopped must not outlive us

    def _step_row(self, row) -> tuple[list[int], int, StepTree | None]:
        """One row of a decode or speculative step's read-back: (new tokens, depth drafted, tree)."""
        runner = self.runner
        if runner.drafter is None:
            return [row], 0, None
        tree = runner.read_tree(row) if runner.tree_debug else None
        return row[2 : 2 + row[0]], row[1], tree

    def _advance(
        self, seq: Sequence, tokens: list[int], depth: int | None, tree: StepTree | None
    ) -> Iterator[TokenEvent | RequestOutput]:
        """A row's new tokens: its event (or its cancellation), then its result if it ended."""
        if seq.req.cancelled:
            seq.cancel()
        else:
            event = seq.append(tokens, depth)
            event.tree = tree
            yield event
        if seq.finished:
            result = seq.result()
            result.stats["backend"] = self.runner.kernels
            yield result

    def generate(self, requests: list[Request]) -> list[RequestOutput]:
        """Run to completion; the outputs in request order."""
        done = [e for e in self.stream(requests, stream_text=False) if isinstance(e, RequestOutput)]
        return sorted(done, key=lambda o: o.index)
