"""Speculative decoding end to end: every drafter's greedy output equals plain greedy decoding."""

from __future__ import annotations

import pytest
import torch

from gorgon import LLM, GorgonError, SamplingParams, SpecConfig
from helpers import exact_two_tokens, sample_frequencies, total_variation, write_small_vocab_checkpoint

PROMPTS = [
    "The capital of France is",
    "Summarize: The council approved a plan to add three bus routes and extend the light rail line to the "
    "airport. The plan adds three bus routes and extends the light rail line to the airport by 2029.",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
]
GREEDY = SamplingParams(max_tokens=128, temperature=0.0)
SPECS = [
    SpecConfig("ngram", num_speculative_tokens=3),
    SpecConfig("ngram", num_speculative_tokens=2, num_branches=3, prompt_lookup_min=1),
    SpecConfig("draft", draft_layers=8, num_speculative_tokens=3),
    SpecConfig("draft", draft_layers=12, num_speculative_tokens=2, num_branches=2),
]


@pytest.fixture(scope="module")
def plain_outputs(default_llm):
    return [o.token_ids for o in default_llm.generate(PROMPTS, GREEDY)]


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec", SPECS, ids=lambda s: f"{s.method}-k{s.num_speculative_tokens}-w{s.num_branches}"
)
def test_greedy_output_equals_plain(default_path, plain_outputs, spec):
    llm = LLM(model=str(default_path), device="cpu", dtype="float32", speculative=spec)
    batch = llm.generate(PROMPTS, GREEDY)
    assert [o.token_ids for o in batch] == plain_outputs
    one = llm.generate(PROMPTS[1], GREEDY)[0]
    assert one.token_ids == plain_outputs[1]
    stats = one.stats
    assert stats["steps"] < len(one.token_ids)  # it did accept drafts
    assert len(stats["acceptance_rate_per_position"]) == spec.num_speculative_tokens
    assert stats["accepted_length"] == pytest.approx((len(one.token_ids) - 1) / stats["steps"])


@pytest.mark.slow
def test_target_as_its_own_draft_accepts_everything(default_path):
    k = 3
    llm = LLM(model=str(default_path), device="cpu", dtype="float32",
              speculative=SpecConfig("draft", draft_model=str(default_path), num_speculative_tokens=k))  # fmt: skip
    out = llm.generate(
        PROMPTS[0], SamplingParams(max_tokens=1 + 8 * (k + 1), temperature=0.0, ignore_eos=True)
    )[0]
    assert out.stats["accepted_length"] == k + 1
    assert out.stats["acceptance_rate_per_position"] == [1.0] * k


def test_bad_speculative_settings(tiny_hf, default_path):
    with pytest.raises(GorgonError, match="num_speculative_tokens"):
        SpecConfig("ngram", num_speculative_tokens=0)
    with pytest.raises(GorgonError, match="unknown speculative method"):
        SpecConfig("telepathy")
    with pytest.raises(GorgonError, match="exactly one"):
        SpecConfig("draft")
    with pytest.raises(GorgonError, match="layers"):
        LLM(model=str(tiny_hf[0]), device="cpu", speculative=SpecConfig("draft", draft_layers=99))
    with pytest.raises(GorgonError, match="vocabulary"):
        LLM(
            model=str(default_path),
            device="cpu",
            speculative=SpecConfig("draft", draft_model=str(tiny_hf[0])),
        )


@pytest.fixture(scope="module")
def small_vocab(tmp_path_factory):
    folder = tmp_path_factory.mktemp("small_vocab")
    write_small_vocab_checkpoint(folder)
    return folder


SAMPLING_SPECS = [
    SpecConfig("draft", draft_layers=1, num_speculative_tokens=2),  # stochastic drafts with their q
    SpecConfig("draft", draft_layers=1, num_speculative_tokens=2, num_branches=3),  # deterministic top-3 tree
    SpecConfig("ngram", num_speculative_tokens=2, prompt_lookup_min=1),  # deterministic lookups
]


@pytest.mark.parametrize("spec", SAMPLING_SPECS, ids=["draft-q", "draft-top3", "ngram"])
def test_sampling_is_lossless(small_vocab, spec):
    """The first two sampled tokens follow the target's exact joint distribution with speculation, as
    closely as plain sampling does; a rule that accepts every draft is caught by the same threshold."""
    prompt = [3, 5, 7, 3, 5, 9, 3, 5]  # repeats, so n-gram lookup finds drafts
    draws = 4000
    plain = LLM(model=str(small_vocab), device="cpu", dtype="float32")
    exact = exact_two_tokens(plain, prompt)
    # Expected TV of an honest sample of this size: sum_i E|p_hat_i - p_i| / 2 ~ sum_i sigma_i sqrt(2/pi) / 2
    noise = (0.5 * (exact * (1 - exact) / draws).sqrt() * (2 / torch.pi) ** 0.5).sum().item()
    threshold = 2.5 * noise
    assert total_variation(sample_frequencies(plain, prompt, draws), exact) < threshold
    speculative = LLM(model=str(small_vocab), device="cpu", dtype="float32", speculative=spec)
    assert total_variation(sample_frequencies(speculative, prompt, draws), exact) < threshold
    accept_all = SpecConfig(spec.method, num_speculative_tokens=2, num_branches=spec.num_branches,
                            draft_layers=spec.draft_layers, prompt_lookup_min=1, acceptance="typical",
                            typical_epsilon=1e-9, typical_alpha=1e-9)  # fmt: skip
    wrong = LLM(model=str(small_vocab), device="cpu", dtype="float32", speculative=accept_all)
    assert total_variation(sample_frequencies(wrong, prompt, draws), exact) > threshold


def test_typical_acceptance_runs_and_reports(small_vocab):
    spec = SpecConfig("draft", draft_layers=1, num_speculative_tokens=3, acceptance="typical")
    llm = LLM(model=str(small_vocab), device="cpu", dtype="float32", speculative=spec)
    out = llm.generate([3, 5, 7], SamplingParams(max_tokens=20, temperature=0.8, seed=1, ignore_eos=True))[0]
    assert len(out.token_ids) == 20 and out.stats["steps"] <= 19
