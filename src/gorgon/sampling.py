"""Choosing the next token on the device: greedy, or sampled with temperature, top-k and top-p.

Random numbers come from a counter-based hash of (request seed, position, token id) rather than a
stateful generator. A seeded request therefore samples the same tokens alone or in any batch, on
CPU or GPU, inside a CUDA graph or not, and the speculative verifier can recompute any draw.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from gorgon.config import SamplingParams

_MASK32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B1


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (xorshift-multiply) on int64 tensors holding values in [0, 2**32).

    The multiplier is below 2**31, so products stay below 2**63: no signed overflow on any device.
    """
    x = x ^ (x >> 16)
    x = (x * 0x45D9F3B) & _MASK32
    x = x ^ (x >> 16)
    x = (x * 0x45D9F3B) & _MASK32
    return x ^ (x >> 16)


def uniform_noise(seeds: torch.Tensor, positions: torch.Tensor, vocab: int, stream: int = 0) -> torch.Tensor:
    """Uniform numbers in (0, 1), float32 [B, vocab], a pure function of (seed, position, token, stream).

    seeds [B] int64 in [0, 2**32); positions [B] int64: the position of the token being chosen;
    `stream` separates independent uses at the same position (target sampling, drafting, ...).
    """
    base = mix32(mix32(seeds ^ stream) ^ (positions & _MASK32))
    tokens = torch.arange(vocab, device=seeds.device, dtype=torch.int64)
    bits = mix32(base[:, None] ^ ((tokens * _GOLDEN) & _MASK32))
    # 24 random bits and a half-step offset: exactly representable, never 0 or 1.
    return ((bits >> 8).float() + 0.5) * (1.0 / (1 << 24))


@dataclass
class SamplingTensors:
    """Per-row sampling parameters as device tensors [B], plus the host's view of what is needed."""

    temperature: torch.Tensor
    top_p: torch.Tensor
    top_k: torch.Tensor
    seeds: torch.Tensor
    all_greedy: bool
    filtered: bool

    @classmethod
    def build(cls, params: list[SamplingParams], seeds: list[int], device: torch.device) -> SamplingTensors:
        return cls(
            temperature=torch.tensor([p.temperature for p in params], dtype=torch.float32, device=device),
            top_p=torch.tensor([p.top_p for p in params], dtype=torch.float32, device=device),
            top_k=torch.tensor([p.top_k for p in params], dtype=torch.int64, device=device),
            seeds=torch.tensor([s & _MASK32 for s in seeds], dtype=torch.int64, device=device),
            all_greedy=all(p.greedy for p in params),
            filtered=any(p.top_p < 1.0 or p.top_k > 0 for p in params),
        )

    @property
    def mode(self) -> str:
        """What the sampling graph must compute: 'greedy', 'sample' or 'filtered'."""
        return "greedy" if self.all_greedy else ("filtered" if self.filtered else "sample")

    def rows(self, start: int, stop: int) -> SamplingTensors:
        """Rows start .. stop - 1, sharing this one's memory, with the same flags."""
        cut = slice(start, stop)
        return SamplingTensors(self.temperature[cut], self.top_p[cut], self.top_k[cut], self.seeds[cut],
                               self.all_greedy, self.filtered)  # fmt: skip

    def copy_(self, other: SamplingTensors) -> None:
        """Load another batch's parameters into these (static) buffers, and its mode."""
        for name in ("temperature", "top_p", "top_k", "seeds"):
            getattr(self, name)[: getattr(other, name).shape[0]].copy_(getattr(other, name))
        self.all_greedy, self.filtered = other.all_greedy, other.filtered


def target_logprobs(logits: torch.Tensor, st: SamplingTensors, mode: str) -> torch.Tensor:
    """The log-distribution sampling draws from, float32 [B, V]: logits / temperature, then top-k, then
    top-p (each renormalised), as transformers' warpers apply them. Greedy rows get temperature 1."""
    temp = torch.where(st.temperature > 0, st.temperature, torch.ones_like(st.temperature))
    scaled = logits.float() / temp[:, None]
    if mode == "filtered":
        scaled = _top_k_top_p(scaled, st.top_k, st.top_p)
    return torch.log_softmax(scaled, dim=-1)


def _top_k_top_p(logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    vocab = logits.shape[-1]
    ordered, index = logits.sort(dim=-1, descending=True)
    rank = torch.arange(vocab, device=logits.device)
    k = torch.where(top_k > 0, top_k, torch.full_like(top_k, vocab))
    ordered = ordered.masked_fill(rank[None, :] >= k[:, None], float("-inf"))
    probs = ordered.softmax(dim=-1)
    # Drop a token when the ones ranked above it already hold top_p of the mass (the first always stays).
    drop = (probs.cumsum(dim=-1) - probs) > top_p[:, None]
    ordered = ordered.masked_fill(drop, float("-inf"))
    return torch.full_like(logits, float("-inf")).scatter(-1, index, ordered)


def sample(
    logits: torch.Tensor,
    st: SamplingTensors,
    positions: torch.Tensor,
    mode: str,
    argmax: Callable[[torch.Tensor], torch.Tensor] = lambda x: x.argmax(dim=-1),
) -> torch.Tensor:
    """The next token of each row, int64 [B], from logits [B, V] for the token at positions [B].

    Sampled rows use the Gumbel-max trick with `uniform_noise`: argmax(log p + Gumbel) is a draw
    from p. Rows with temperature 0 take the argmax, as does every row when mode is 'greedy'.
    `argmax` is the row-wise argmax to use (first index among equal maxima), a kernel on GPUs.
    """
    greedy = argmax(logits)
    if mode == "greedy":
        return greedy
    logp = target_logprobs(logits, st, mode)
    u = uniform_noise(st.seeds, positions, logits.shape[-1])
    drawn = argmax(logp - torch.log(-torch.log(u)))
    return torch.where(st.temperature > 0, drawn, greedy)
