"""The sampler: counter-based noise, greedy, and draws that follow the filtered target distribution."""

from __future__ import annotations

import pytest
import torch

from gorgon.config import SamplingParams
from gorgon.errors import GorgonError
from gorgon.sampling import SamplingTensors, sample, target_logprobs, uniform_noise


def _tensors(params, seeds):
    return SamplingTensors.build(params, seeds, torch.device("cpu"))


def test_noise_is_uniform_and_a_pure_function():
    seeds = torch.tensor([1, 2, 3])
    pos = torch.tensor([10, 10, 11])
    u = uniform_noise(seeds, pos, 50000)
    assert u.min() > 0 and u.max() < 1
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.var().item() - 1 / 12) < 0.005
    torch.testing.assert_close(u, uniform_noise(seeds, pos, 50000), rtol=0, atol=0)
    # rows, positions and streams give unrelated numbers
    corr = torch.corrcoef(torch.stack([u[0], u[1], u[2], uniform_noise(seeds, pos, 50000, stream=1)[0]]))
    assert corr.sub(torch.eye(4)).abs().max() < 0.03


def test_greedy_is_argmax():
    logits = torch.randn(4, 100)
    st = _tensors([SamplingParams(temperature=0.0)] * 4, [0] * 4)
    assert torch.equal(sample(logits, st, torch.zeros(4, dtype=torch.long), st.mode), logits.argmax(-1))


def _histogram(logits: torch.Tensor, params: SamplingParams, draws: int) -> torch.Tensor:
    """Frequencies of tokens drawn with `draws` different seeds (one batch row per seed)."""
    st = _tensors([params] * draws, list(range(draws)))
    toks = sample(logits.expand(draws, -1), st, torch.full((draws,), 7), st.mode)
    return torch.bincount(toks, minlength=logits.shape[-1]).float() / draws


def _tv(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * (p - q).abs().sum().item()


def test_sampled_frequencies_follow_the_distribution():
    logits = torch.randn(1, 12, generator=torch.Generator().manual_seed(0)) * 1.5
    for temperature in (0.5, 1.0, 2.0):
        freq = _histogram(logits, SamplingParams(temperature=temperature), 40000)
        target = torch.softmax(logits[0] / temperature, -1)
        assert _tv(freq, target) < 0.015
    # a wrong temperature is detected by the same threshold
    assert (
        _tv(_histogram(logits, SamplingParams(temperature=1.3), 40000), torch.softmax(logits[0], -1)) > 0.015
    )


def test_top_k_and_top_p_follow_transformers_warpers():
    from transformers.generation.logits_process import TopKLogitsWarper, TopPLogitsWarper

    logits = torch.randn(1, 30, generator=torch.Generator().manual_seed(1)) * 2
    for top_k, top_p in ((5, 1.0), (0, 0.7), (8, 0.8)):
        params = SamplingParams(temperature=0.9, top_k=top_k, top_p=top_p)
        scores = logits / 0.9
        if top_k:
            scores = TopKLogitsWarper(top_k)(None, scores)
        if top_p < 1:
            scores = TopPLogitsWarper(top_p)(None, scores)
        target = torch.softmax(scores[0], -1)
        st = _tensors([params], [0])
        torch.testing.assert_close(
            target_logprobs(logits, st, st.mode).exp()[0], target, rtol=1e-5, atol=1e-6
        )
        freq = _histogram(logits, params, 30000)
        assert freq[target == 0].sum() == 0
        assert _tv(freq, target) < 0.02


def test_a_row_samples_the_same_alone_or_in_a_batch():
    logits = torch.randn(5, 1000)
    params = [SamplingParams(temperature=1.0, seed=s) for s in range(5)]
    st = _tensors(params, list(range(5)))
    pos = torch.arange(5) + 3
    together = sample(logits, st, pos, st.mode)
    for i in range(5):
        one = _tensors([params[i]], [i])
        assert sample(logits[i : i + 1], one, pos[i : i + 1], one.mode).item() == together[i].item()


def test_mixed_greedy_and_sampled_rows():
    logits = torch.randn(2, 1000)
    st = _tensors([SamplingParams(temperature=0.0), SamplingParams(temperature=5.0)], [0, 0])
    draws = [sample(logits, st, torch.tensor([p, p]), st.mode) for p in range(20)]
    assert all(d[0] == logits[0].argmax() for d in draws)
    assert len({d[1].item() for d in draws}) > 5


@pytest.mark.parametrize(
    "kwargs, param",
    [
        (dict(temperature=-1.0), "temperature"),
        (dict(temperature=float("nan")), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_k=-2), "top_k"),
        (dict(max_tokens=0), "max_tokens"),
        (dict(max_tokens=-5), "max_tokens"),
        (dict(stop=[""]), "stop"),
    ],
)
def test_invalid_sampling_values(kwargs, param):
    with pytest.raises(GorgonError) as e:
        SamplingParams(**kwargs)
    assert e.value.param == param
