"""Configuration dataclasses: the model's shape, and how to sample from it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from gorgon.errors import GorgonError

# Architectures whose checkpoints are a Llama with at most these differences: q/k/v bias (qwen2),
# an explicit head_dim, tied or untied embeddings.
SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2")


@dataclass(frozen=True)
class RopeConfig:
    """Rotary position embedding: base frequency and an optional scaling rule.

    `kind` is "default", "linear" (positions divided by `factor`) or "llama3" (Llama-3.1's
    frequency-dependent rescaling, with `low_freq_factor`, `high_freq_factor` and
    `original_max_position`). `freq_factors`, when given, divides the frequencies instead.
    """

    theta: float = 10000.0
    kind: str = "default"
    factor: float = 1.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position: int = 8192
    # Per-frequency divisors stored explicitly (llama.cpp writes Llama-3.1's as `rope_freqs.weight`).
    freq_factors: tuple[float, ...] = ()

    @classmethod
    def from_hf(cls, cfg: dict[str, Any]) -> RopeConfig:
        """From a config.json: older files have `rope_theta` + `rope_scaling`, transformers 5 writes
        `rope_parameters` holding both."""
        params = dict(cfg.get("rope_parameters") or {})
        scaling = dict(cfg.get("rope_scaling") or {})
        merged = {**scaling, **params}
        theta = float(merged.get("rope_theta", cfg.get("rope_theta", 10000.0)))
        kind = merged.get("rope_type", merged.get("type", "default")) or "default"
        if kind not in ("default", "linear", "llama3"):
            raise GorgonError(
                f"RoPE scaling type {kind!r} is not supported (supported: default, linear, llama3)"
            )
        return cls(
            theta=theta,
            kind=kind,
            factor=float(merged.get("factor", 1.0)),
            low_freq_factor=float(merged.get("low_freq_factor", 1.0)),
            high_freq_factor=float(merged.get("high_freq_factor", 4.0)),
            original_max_position=int(merged.get("original_max_position_embeddings", 8192)),
        )


@dataclass(frozen=True)
class ModelConfig:
    """The shape of a Llama-family transformer."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float = 1e-5
    rope: RopeConfig = field(default_factory=RopeConfig)
    max_position: int = 4096
    tie_embeddings: bool = False
    attention_bias: bool = False
    architecture: str = "llama"
    bos_token_id: int | None = None
    eos_token_ids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.num_heads % self.num_kv_heads:
            raise GorgonError(
                f"num_heads ({self.num_heads}) must be a multiple of num_kv_heads ({self.num_kv_heads})"
            )

    @property
    def num_params(self) -> int:
        """Parameter count, counting a tied embedding once."""
        h, q, kv = self.hidden_size, self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        attn = h * (q + 2 * kv) + q * h + (q + 2 * kv if self.attention_bias else 0)
        layer = attn + 3 * h * self.intermediate_size + 2 * h
        embed = self.vocab_size * h * (1 if self.tie_embeddings else 2)
        return self.num_layers * layer + embed + h

    @classmethod
    def from_hf(cls, cfg: dict[str, Any]) -> ModelConfig:
        """From a Hugging Face config.json dictionary."""
        arch = cfg.get("model_type", "")
        if arch not in SUPPORTED_ARCHITECTURES:
            names = cfg.get("architectures") or [arch or "unknown"]
            raise GorgonError(
                f"architecture {', '.join(names)} (model_type {arch!r}) is not supported; "
                f"Gorgon runs Llama-family models: {', '.join(SUPPORTED_ARCHITECTURES)}"
            )
        if cfg.get("hidden_act", "silu") != "silu":
            raise GorgonError(f"activation {cfg['hidden_act']!r} is not supported (only silu)")
        window = cfg.get("sliding_window")
        uses_window = cfg.get("use_sliding_window", arch == "mistral")
        if window and uses_window:
            raise GorgonError(f"sliding-window attention (sliding_window={window}) is not supported")
        heads = cfg["num_attention_heads"]
        eos = cfg.get("eos_token_id")
        eos_ids = tuple(eos) if isinstance(eos, list) else (() if eos is None else (eos,))
        return cls(
            vocab_size=cfg["vocab_size"],
            hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"],
            num_layers=cfg["num_hidden_layers"],
            num_heads=heads,
            num_kv_heads=cfg.get("num_key_value_heads") or heads,
            head_dim=cfg.get("head_dim") or cfg["hidden_size"] // heads,
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-5)),
            rope=RopeConfig.from_hf(cfg),
            max_position=int(cfg.get("max_position_embeddings", 4096)),
            tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
            attention_bias=bool(cfg.get("attention_bias", arch == "qwen2")),
            architecture=arch,
            bos_token_id=cfg.get("bos_token_id"),
            eos_token_ids=eos_ids,
        )


@dataclass
class SamplingParams:
    """How to pick tokens, with vLLM's names.

    temperature 0 is greedy. top_k 0 (or -1) and top_p 1 disable those filters. `seed` makes a
    sampled request reproducible, alone or in any batch. Generation stops at an end-of-sequence
    token (unless `ignore_eos`), at any of `stop_token_ids`, at any string in `stop` (which is cut
    from the text), or after `max_tokens` tokens.
    """

    max_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        if not isinstance(self.max_tokens, int) or self.max_tokens < 1:
            raise GorgonError(f"max_tokens must be an integer >= 1, got {self.max_tokens!r}", "max_tokens")
        if not _finite(self.temperature) or self.temperature < 0:
            raise GorgonError(f"temperature must be >= 0, got {self.temperature!r}", "temperature")
        if not _finite(self.top_p) or not 0 < self.top_p <= 1:
            raise GorgonError(f"top_p must be in (0, 1], got {self.top_p!r}", "top_p")
        if not isinstance(self.top_k, int) or self.top_k < -1:
            raise GorgonError(
                f"top_k must be an integer >= 0 (0 or -1 disables it), got {self.top_k!r}", "top_k"
            )
        if self.top_k == -1:
            self.top_k = 0
        if self.seed is not None and not isinstance(self.seed, int):
            raise GorgonError(f"seed must be an integer, got {self.seed!r}", "seed")
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise GorgonError("stop must be a list of non-empty strings", "stop")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


SPEC_METHODS = ("ngram", "draft", "medusa", "eagle")


@dataclass
class SpecConfig:
    """Speculative decoding settings, with vLLM's names where they exist.

    method: "ngram" (prompt lookup), "draft" (a draft model: `draft_model` PATH, or the first
    `draft_layers` layers of the target itself), "medusa" or "eagle" (trained heads: `heads` PATH, or
    the heads shipped for the default model). num_speculative_tokens: drafted tokens per branch (k).
    num_branches: parallel branches under the root (several n-gram matches, or the draft model's top-w
    first tokens each continued greedily); the tree has 1 + num_branches * k nodes.
    acceptance: "lossless" (greedy, or speculative sampling) or "typical" (Medusa's typical acceptance,
    lossy, thresholds typical_epsilon and typical_alpha).
    eagle_top_k, eagle_depth, eagle_total_tokens: EAGLE-2 tree growth (None: the heads' own settings).
    eagle_draft_vocab: draft over the heads' N most frequent tokens (None: the heads' setting; 0: all).
    lookup: medusa and eagle: also verify a prompt-lookup chain of this many tokens from the root
    (matched as method "ngram" matches, prompt_lookup_min..max tokens; None: the heads' setting; 0: none).
    """

    method: str
    num_speculative_tokens: int = 4
    num_branches: int = 1
    prompt_lookup_min: int = 2
    prompt_lookup_max: int = 4
    draft_model: str | None = None
    draft_layers: int | None = None
    heads: str | None = None
    eagle_top_k: int | None = None
    eagle_depth: int | None = None
    eagle_total_tokens: int | None = None
    eagle_draft_vocab: int | None = None
    lookup: int | None = None
    acceptance: str = "lossless"
    typical_epsilon: float = 0.09
    typical_alpha: float = 0.3

    def __post_init__(self) -> None:
        if self.method not in SPEC_METHODS:
            raise GorgonError(
                f"unknown speculative method {self.method!r} (known: {', '.join(SPEC_METHODS)})", "method"
            )
        k = self.num_speculative_tokens
        if not isinstance(k, int) or k < 1:
            raise GorgonError(
                f"num_speculative_tokens must be an integer >= 1, got {k!r}", "num_speculative_tokens"
            )
        if not isinstance(self.num_branches, int) or self.num_branches < 1:
            raise GorgonError(
                f"num_branches must be an integer >= 1, got {self.num_branches!r}", "num_branches"
            )
        if 1 + k * self.num_branches > 128:
            raise GorgonError(
                "the tree (1 + num_branches * num_speculative_tokens) must hold at most 128 nodes"
            )
        if self.lookup is not None:
            if not isinstance(self.lookup, int) or not 0 <= self.lookup <= 16:
                raise GorgonError(f"lookup must be an integer in 0..16, got {self.lookup!r}", "lookup")
            if self.lookup and self.method not in ("medusa", "eagle"):
                raise GorgonError("lookup adds a prompt-lookup chain to medusa or eagle trees", "lookup")
        uses_lookup = self.method == "ngram" or bool(self.lookup)
        if uses_lookup and not 1 <= self.prompt_lookup_min <= self.prompt_lookup_max:
            raise GorgonError("need 1 <= prompt_lookup_min <= prompt_lookup_max", "prompt_lookup_min")
        if self.method == "draft" and (self.draft_model is None) == (self.draft_layers is None):
            raise GorgonError(
                "method 'draft' needs exactly one of draft_model (a path) or draft_layers (a count)"
            )
        if self.draft_layers is not None and (
            not isinstance(self.draft_layers, int) or self.draft_layers < 1
        ):
            raise GorgonError(
                f"draft_layers must be an integer >= 1, got {self.draft_layers!r}", "draft_layers"
            )
        if self.acceptance not in ("lossless", "typical"):
            raise GorgonError(
                f"acceptance must be 'lossless' or 'typical', got {self.acceptance!r}", "acceptance"
            )
        if not (0 < self.typical_epsilon < 1 and self.typical_alpha > 0):
            raise GorgonError("typical acceptance needs 0 < typical_epsilon < 1 and typical_alpha > 0")
