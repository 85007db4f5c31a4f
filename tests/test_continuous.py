"""Continuous batching: requests that join a running batch (Engine.serve) generate exactly what they
generate alone, whatever row they land in and whoever else is running (float32, greedy)."""

from __future__ import annotations

import pytest

from gorgon import LLM, SamplingParams, SpecConfig
from gorgon.engine import Request, RequestOutput

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "List three colours:",
    "Summarize: the council approved a new bus plan with three routes.",
    "Once upon a time",
    "Translate into French: good morning",
]
SPECS = {
    "plain": None,
    "ngram": SpecConfig("ngram", num_speculative_tokens=3),
    "draft": SpecConfig("draft", draft_layers=6, num_speculative_tokens=2, num_branches=2),
    "medusa": SpecConfig("medusa"),
    "eagle": SpecConfig("eagle", eagle_top_k=3, eagle_depth=3, eagle_total_tokens=8),
}


def _requests(llm: LLM, lengths: list[int]) -> list[Request]:
    return llm._requests(
        PROMPTS[: len(lengths)], [SamplingParams(max_tokens=n, temperature=0.0) for n in lengths]
    )


def _serve(llm: LLM, reqs: list[Request], batch: int, arrive_every: int) -> dict[int, RequestOutput]:
    """Serve `reqs` through a batch of `batch` rows, one more request arriving every `arrive_every` polls."""
    queue = list(enumerate(reqs))
    polls = {"n": 0}

    def poll(free, fits):
        polls["n"] += 1
        due = min(len(reqs), 1 + polls["n"] // arrive_every)  # requests that have arrived by now
        taken = []
        while queue and len(taken) < free and len(reqs) - len(queue) < due and fits(queue[0][1]):
            taken.append(queue.pop(0))
        return taken

    capacity = llm.engine.runner.slots_needed(64, 64 + 40)
    outs = {}
    while queue:
        for e in llm.engine.serve(poll, batch, capacity):
            if isinstance(e, RequestOutput):
                outs[e.index] = e
    return outs


@pytest.mark.parametrize("method", list(SPECS))
def test_requests_joining_a_running_batch_generate_what_they_do_alone(default_path, method):
    llm = LLM(model=str(default_path), device="cpu", dtype="float32", speculative=SPECS[method])
    lengths = [24, 6, 17, 30, 9, 20]  # rows free up at different steps and are reused
    reqs = _requests(llm, lengths)
    alone = [llm.engine.generate([r])[0].token_ids for r in reqs]
    served = _serve(llm, reqs, batch=3, arrive_every=2)
    assert sorted(served) == list(range(len(reqs)))
    for i, out in served.items():
        assert out.token_ids == alone[i], (method, i)
        assert out.finish_reason in ("length", "stop")


def test_a_cancelled_row_is_reused_at_once(default_path):
    llm = LLM(model=str(default_path), device="cpu", dtype="float32")
    reqs = _requests(llm, [200, 8, 8])
    queue = list(enumerate(reqs))
    seen, results = [], {}

    def poll(free, fits):
        taken = queue[:free]
        del queue[:free]
        return taken

    for e in llm.engine.serve(poll, 2, llm.engine.runner.slots_needed(64, 300)):
        if isinstance(e, RequestOutput):
            results[e.index] = e
            continue
        seen.append(e.index)
        if e.index == 0 and seen.count(0) == 3:
            reqs[0].cancelled = True
    assert results[0].finish_reason == "cancelled"
    assert len(results[0].token_ids) < 10  # stopped after a few tokens, not 200
    assert results[2].finish_reason == "length"  # the third request ran once a row was free


@pytest.mark.parametrize("method", ["plain", "eagle"])
def test_seeded_sampling_is_the_same_in_a_running_batch(default_path, method):
    """Sampling noise depends on (seed, position, token) only, so a seeded request samples the same
    tokens whether it runs alone or joins others (mixed greedy and sampled rows)."""
    llm = LLM(model=str(default_path), device="cpu", dtype="float32", speculative=SPECS[method])
    params = [
        SamplingParams(max_tokens=n, temperature=t, top_p=p, seed=s)
        for n, t, p, s in [(20, 0.8, 1.0, 1), (8, 0.0, 1.0, None), (16, 1.0, 0.9, 7), (12, 0.7, 1.0, 3)]
    ]
    reqs = llm._requests(PROMPTS[:4], params)
    alone = [llm.engine.generate([r])[0].token_ids for r in reqs]
    served = _serve(llm, reqs, batch=2, arrive_every=2)
    assert [served[i].token_ids for i in range(len(reqs))] == alone
