"""Generation end to end: greedy equals transformers, batches equal singles, stop conditions, streams."""

from __future__ import annotations

import pytest
import torch

from gorgon import GorgonError, RequestOutput, SamplingParams, TokenEvent

PROMPTS = [
    "The capital of France is",
    "def fibonacci(n):",
    "Once upon a time, in a small village by the sea,",
    "Here is a list of the planets of the solar system:\n1.",
]


@pytest.mark.slow
def test_greedy_equals_transformers_generate(default_llm, hf_default):
    chat = default_llm.tokenizer.apply_chat_template(
        [{"role": "user", "content": "Explain what a hash table is."}], tokenize=True
    )
    prompts = [default_llm.tokenizer.encode(p) for p in PROMPTS[:3]] + [chat]
    outs = default_llm.generate(prompts, SamplingParams(max_tokens=64, temperature=0.0))
    lengths = []
    for ids, out in zip(prompts, outs):
        with torch.inference_mode():
            ref = hf_default.generate(torch.tensor([ids]), max_new_tokens=64, do_sample=False)
        assert out.token_ids == ref[0, len(ids) :].tolist()
        lengths.append(len(out.token_ids))
    assert max(lengths) == 64


@pytest.mark.slow
def test_batch_equals_one_by_one(default_llm):
    params = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)
    batch = default_llm.generate(PROMPTS, params)
    for prompt, out in zip(PROMPTS, batch):
        single = default_llm.generate(prompt, params)[0]
        assert out.token_ids == single.token_ids and out.text == single.text
        assert out.stats["generated_tokens"] == 24


def test_seeded_sampling_is_batch_invariant_and_reproducible(tiny_llm):
    prompts = ["The quick brown", "def add(a, b):", "Paris is"]
    params = [
        SamplingParams(max_tokens=12, temperature=1.0, top_p=0.9, seed=s, ignore_eos=True) for s in (1, 2, 3)
    ]
    batch = tiny_llm.generate(prompts, params)
    for p, sp, out in zip(prompts, params, batch):
        assert tiny_llm.generate(p, sp)[0].token_ids == out.token_ids
    unseeded = SamplingParams(max_tokens=12, temperature=1.0, ignore_eos=True)
    assert len({tuple(tiny_llm.generate(prompts[0], unseeded)[0].token_ids) for _ in range(3)}) > 1


def test_stop_conditions(tiny_llm):
    prompt = "The quick brown fox"
    free = tiny_llm.generate(prompt, SamplingParams(max_tokens=20, temperature=0.0, ignore_eos=True))[0]
    assert free.finish_reason == "length" and len(free.token_ids) == 20
    # stop at a token id: the output ends with it
    stop_id = free.token_ids[5]
    out = tiny_llm.generate(prompt, SamplingParams(max_tokens=20, temperature=0.0, stop_token_ids=[stop_id]))[
        0
    ]
    assert (
        out.finish_reason == "stop" and out.token_ids == free.token_ids[: free.token_ids.index(stop_id) + 1]
    )
    # stop at a string: the text is cut before it
    text = free.text
    clean = text.split("\ufffd")[0]  # a random model may emit broken UTF-8; pick a stop in valid text
    stop = clean[len(clean) // 2 : len(clean) // 2 + 3]
    assert len(stop) == 3
    out = tiny_llm.generate(
        prompt, SamplingParams(max_tokens=20, temperature=0.0, ignore_eos=True, stop=[stop])
    )[0]
    assert out.finish_reason == "stop" and out.text == text[: text.index(stop)]


def test_eos_ends_generation(tiny_llm):
    prompt = tiny_llm.tokenizer.encode("The quick brown fox")
    free = tiny_llm.generate(prompt, SamplingParams(max_tokens=30, temperature=0.0, ignore_eos=True))[0]
    ids = free.token_ids
    eos = next(
        t for i, t in enumerate(ids) if i >= 1 and ids.index(t) == i
    )  # first new token after the start
    tiny_llm.engine.tokenizer.eos_token_ids = (eos,)
    try:
        out = tiny_llm.generate(prompt, SamplingParams(max_tokens=30, temperature=0.0))[0]
    finally:
        tiny_llm.engine.tokenizer.eos_token_ids = (2,)
    assert out.finish_reason == "stop" and out.token_ids == ids[: ids.index(eos) + 1]


def test_stream_events_add_up_to_the_result(tiny_llm):
    params = SamplingParams(max_tokens=16, temperature=0.0, ignore_eos=True, stop=["zzz-never"])
    events = list(tiny_llm.stream(["The quick brown", "Paris is"], params))
    results = [e for e in events if isinstance(e, RequestOutput)]
    assert len(results) == 2
    for r in results:
        tokens = [e for e in events if isinstance(e, TokenEvent) and e.index == r.index]
        assert [t for e in tokens for t in e.token_ids] == r.token_ids
        assert "".join(e.text for e in tokens) == r.text
        assert tokens[-1].finished and tokens[-1].finish_reason == "length"


def test_chat_uses_the_template(tiny_llm):
    out = tiny_llm.chat([{"role": "user", "content": "hi"}], SamplingParams(max_tokens=3, temperature=0.0))[0]
    expected = tiny_llm.tokenizer.encode("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    assert out.prompt_token_ids == expected


def test_prompt_longer_than_context(tiny_llm):
    too_long = [5] * tiny_llm.config.max_position
    with pytest.raises(GorgonError) as e:
        tiny_llm.generate(too_long, SamplingParams(max_tokens=4))
    assert e.value.param == "input_tokens" and "context" in str(e.value)


def test_generation_stops_at_the_context_end(tiny_llm):
    n = tiny_llm.config.max_position - 3
    out = tiny_llm.generate([5] * n, SamplingParams(max_tokens=10, temperature=0.0, ignore_eos=True))[0]
    assert len(out.token_ids) == 3 and out.finish_reason == "length"


def test_stats_fields(tiny_llm):
    out = tiny_llm.generate("Paris is", SamplingParams(max_tokens=5, temperature=0.0, ignore_eos=True))[0]
    for key in (
        "prompt_tokens",
        "generated_tokens",
        "tokens_per_s",
        "time_to_first_token_s",
        "accepted_length",
    ):
        assert key in out.stats
    assert out.stats["generated_tokens"] == 5 and out.stats["accepted_length"] == 1.0


def test_bad_prompts(tiny_llm):
    with pytest.raises(GorgonError):
        tiny_llm.generate([], SamplingParams())
    with pytest.raises(GorgonError, match="token ids"):
        tiny_llm.generate([10**9], SamplingParams())
    with pytest.raises(GorgonError, match="empty"):
        tiny_llm.generate("", SamplingParams())
