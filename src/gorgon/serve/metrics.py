"""Prometheus metrics of a server (GET /metrics), in a registry of its own so that several servers can
live in one process (tests). The names, as scraped:

gorgon_requests_total{endpoint, outcome}      requests by outcome: stop, length (finished), cancelled
                                              (client went away), error, invalid (400), not_found
                                              (404), queue_full (503)
gorgon_prompt_tokens_total                    prompt tokens of requests that ran
gorgon_generation_tokens_total                tokens generated
gorgon_request_latency_seconds{endpoint}      arrival to last token (histogram)
gorgon_time_to_first_token_seconds{endpoint}  arrival to first token, queueing included (histogram)
gorgon_queue_wait_seconds                     arrival to the start of its batch (histogram)
gorgon_queue_depth                            requests waiting for the engine
gorgon_running_requests                       requests in the engine's current batch
gorgon_plain_decode_tokens_per_second         plain decoding speed measured at start (the speedup's base)
gorgon_spec_drafts_total{method}              speculative steps that drafted at least one token
gorgon_spec_draft_tokens_total{method}        drafted tokens that could be accepted: per step, the
                                              depth of the tree proposed
gorgon_spec_accepted_tokens_total{method}     drafted tokens accepted
gorgon_spec_accepted_tokens_per_position_total{method, position}
                                              accepted tokens at each draft depth (position 0 = first)
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gorgon.engine import RequestOutput

_LATENCY = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("gorgon_requests", "Requests by endpoint and outcome",
                                ["endpoint", "outcome"], registry=r)  # fmt: skip
        self.prompt_tokens = Counter("gorgon_prompt_tokens", "Prompt tokens of requests that ran", registry=r)
        self.generation_tokens = Counter("gorgon_generation_tokens", "Tokens generated", registry=r)
        self.latency = Histogram("gorgon_request_latency_seconds", "Arrival to last token",
                                 ["endpoint"], buckets=_LATENCY, registry=r)  # fmt: skip
        self.ttft = Histogram("gorgon_time_to_first_token_seconds", "Arrival to first token",
                              ["endpoint"], buckets=_LATENCY, registry=r)  # fmt: skip
        self.queue_wait = Histogram("gorgon_queue_wait_seconds", "Arrival to the start of its batch",
                                    buckets=_LATENCY, registry=r)  # fmt: skip
        self.queue_depth = Gauge("gorgon_queue_depth", "Requests waiting for the engine", registry=r)
        self.running = Gauge("gorgon_running_requests", "Requests in the engine's current batch", registry=r)
        self.plain_speed = Gauge("gorgon_plain_decode_tokens_per_second",
                                 "Plain decoding speed measured at start", registry=r)  # fmt: skip
        self.drafts = Counter("gorgon_spec_drafts", "Speculative steps that drafted", ["method"], registry=r)
        self.draft_tokens = Counter("gorgon_spec_draft_tokens", "Drafted tokens (depth proposed per step)",
                                    ["method"], registry=r)  # fmt: skip
        self.accepted_tokens = Counter("gorgon_spec_accepted_tokens", "Drafted tokens accepted",
                                       ["method"], registry=r)  # fmt: skip
        self.accepted_per_position = Counter("gorgon_spec_accepted_tokens_per_position",
                                             "Accepted tokens at each draft depth",
                                             ["method", "position"], registry=r)  # fmt: skip

    def rejected(self, endpoint: str, outcome: str) -> None:
        self.requests.labels(endpoint, outcome).inc()

    def finished(self, endpoint: str, method: str, out: RequestOutput, latency: float, ttft: float) -> None:
        """A request the engine ran, finished or cancelled; latencies from its arrival."""
        self.requests.labels(endpoint, out.finish_reason).inc()
        self.prompt_tokens.inc(len(out.prompt_token_ids))
        self.generation_tokens.inc(len(out.token_ids))
        if out.finish_reason != "cancelled":
            self.latency.labels(endpoint).observe(latency)
            self.ttft.labels(endpoint).observe(ttft)
        drafted, accepted = out.stats["drafted_per_position"], out.stats["accepted_per_position"]
        if method == "plain" or not drafted:
            return
        self.drafts.labels(method).inc(drafted[0])
        self.draft_tokens.labels(method).inc(sum(drafted))
        self.accepted_tokens.labels(method).inc(sum(accepted))
        for position, n in enumerate(accepted):
            self.accepted_per_position.labels(method, str(position)).inc(n)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
