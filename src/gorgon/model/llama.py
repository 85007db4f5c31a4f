"""The Llama-family transformer: a function of tokens, positions, a mask and a KV cache.

Nothing here knows about generation. The caller says where each new token sits (its RoPE position),
which cache slot receives its key and value, and which slots each token may attend to, so the same
forward serves prefill, plain decoding and tree verification (where positions are depths in a tree,
slots are consecutive, and the mask is the tree's ancestor relation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import nn

from gorgon.config import ModelConfig
from gorgon.kernels import AttentionMeta, TreeMask, host_blas, ops_for, reference
from gorgon.kv_cache import KVCache
from gorgon.model.rope import inverse_frequencies, rope_tables

ROPE_MARGIN = 256


class Linear(nn.Linear):
    """nn.Linear that can route its product through Gorgon's CPU kernel or numpy (kernels.host_blas)."""

    host_blas = False
    packed: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is not None:
            return host_blas.packed_linear(x, self.packed, self.out_features, self.bias)
        if self.host_blas:
            return host_blas.numpy_linear(x, self.weight, self.bias)
        return F.linear(x, self.weight, self.bias)


class RMSNorm(nn.Module):
    """Root-mean-square norm; `forward(x, residual)` also adds the residual first (one fused op)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps
        self.ops = reference

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(normalised x + residual, x + residual): the sublayer's input and the new residual stream."""
        return self.ops.rms_norm(x, self.weight, self.eps, residual)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
        q, kv = cfg.num_heads * cfg.head_dim, cfg.num_kv_heads * cfg.head_dim
        # One matrix for q, k and v: one GEMM instead of three per layer.
        self.qkv = Linear(cfg.hidden_size, q + 2 * kv, bias=cfg.attention_bias)
        self.o = Linear(q, cfg.hidden_size, bias=False)
        self.scale = cfg.head_dim**-0.5
        self.ops = reference

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor], cache_kv, slots, meta):
        b, t, _ = x.shape
        cache_k, cache_v = cache_kv
        q = self.ops.rope_write_kv(
            self.qkv(x), meta.positions, slots, *rope, cache_k, cache_v, self.num_heads
        )
        out = self.ops.attend(q, cache_k, cache_v, meta, self.scale)
        return self.o(out.reshape(b, t, -1))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_up = Linear(cfg.hidden_size, 2 * cfg.intermediate_size, bias=False)
        self.down = Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)
        self.ops = reference

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> torch.Tensor:
        """down(SiLU(gate) * up), plus `residual` when given: then one product-and-add (addmm) where the
        product runs through torch, one kernel fewer."""
        act = self.ops.silu_mul(self.gate_up(x))
        if residual is None:
            return self.down(act)
        if self.down.packed is not None or self.down.host_blas:
            return self.down(act) + residual
        flat, stream = act.reshape(-1, act.shape[-1]), residual.reshape(-1, residual.shape[-1])
        return torch.addmm(stream, flat, self.down.weight.t()).view(residual.shape)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, h, residual, rope, cache_kv, slots, meta, summed: bool = False):
        """h: the previous sublayer's output (the embedding for the first block), residual: the stream it
        adds to (None for the first block). Returns this block's MLP output and the stream before it, or
        (summed) their sum: the block's output stream, its last addition fused into the MLP's product."""
        x, residual = self.attn_norm(h, residual)
        h = self.attn(x, rope, cache_kv, slots, meta)
        x, residual = self.mlp_norm(h, residual)
        if summed:
            return self.mlp(x, residual)
        return self.mlp(x), residual


@dataclass
class ForwardOutput:
    """hidden: the final-normed hidden states [B, T, H] (what the LM head and Medusa/EAGLE heads read);
    layers: the residual stream after each requested layer, in the order requested."""

    hidden: torch.Tensor
    layers: list[torch.Tensor] = field(default_factory=list)


class Llama(nn.Module):
    """A Llama-family causal language model.

    Parameter names follow the fused layout (`layers.i.attn.qkv`, `layers.i.mlp.gate_up`); the loaders
    in `gorgon.model.weights` map checkpoint names onto them.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.num_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.register_buffer("rope_cos", torch.empty(0), persistent=False)
        self.register_buffer("rope_sin", torch.empty(0), persistent=False)
        self.reset_rope()

    def reset_rope(self) -> None:
        """(Re)compute the RoPE tables on the model's device and dtype: after `to_empty`, say."""
        weight = self.embed.weight
        if weight.is_meta:
            return
        inv = inverse_frequencies(self.config.head_dim, self.config.rope)
        # Drafted tokens near the end of the context may sit a tree's depth past it (never emitted).
        cos, sin = rope_tables(inv, self.config.max_position + ROPE_MARGIN)
        # Computed in float32, then rounded to the model dtype, as transformers does.
        self.rope_cos = cos.to(device=weight.device, dtype=weight.dtype)
        self.rope_sin = sin.to(device=weight.device, dtype=weight.dtype)

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        cache: KVCache,
        slots: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        kv_len: int | None = None,
        hidden_layers: tuple[int, ...] = (),
        upto: int | None = None,
        tree: TreeMask | None = None,
    ) -> ForwardOutput:
        """Run tokens [B, T] at RoPE positions [B, T] through the model, writing their keys and values
        into the cache at slots [B, T] (default: slot = position).

        mask [B, T, kv_len] bool says which cache slots each token attends to (its own slot included);
        `tree` says the same compactly when the tokens are a tree after each row's committed slots (the
        kernels read its packed ancestor bits instead of a dense mask).
        Without one the mask is causal by position over the first kv_len slots (default: the cache's
        capacity), which is right whenever slot = position. Rows of the cache beyond B are untouched.
        `upto` runs only the first `upto` layers, then the final norm: the target's own early layers as a
        draft model, with a cache of that many layers.
        """
        b = tokens.shape[0]
        slots = positions if slots is None else slots
        if mask is not None:
            kv_len = mask.shape[-1]
        meta = AttentionMeta(positions, cache.capacity if kv_len is None else kv_len, mask, tree)
        if any(not 0 <= i < len(self.layers) for i in hidden_layers):
            raise ValueError(f"hidden_layers {hidden_layers} outside 0..{len(self.layers) - 1}")
        rope = (self.rope_cos, self.rope_sin)
        h, residual = self.embed(tokens), None
        kept = {}
        for i, layer in enumerate(self.layers[:upto]):
            h, residual = layer(h, residual, rope, cache.layer(i, b), slots, meta)
            if i in hidden_layers:
                kept[i] = h + residual
        return ForwardOutput(self.norm(h, residual)[0], [kept[i] for i in hidden_layers])

    def use_kernels(self, ops: ModuleType | None = None) -> ModuleType:
        """Route the fused operations to `ops` (default: the best backend for the model's device)."""
        ops = ops or ops_for(self.embed.weight.device)
        use_kernels(self, ops)
        return ops

    def use_host_blas(self) -> None:
        """Multiply with Gorgon's packed CPU kernel (or numpy's BLAS where it can't be built) from now on:
        float32 models on the CPU only. The packed copies double the weights' memory."""
        if self.embed.weight.device.type != "cpu" or self.embed.weight.dtype != torch.float32:
            raise ValueError("host BLAS serves float32 models on the CPU")
        use_host_blas(self)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Vocabulary logits [..., V] of final-normed hidden states [..., H]."""
        return self.lm_head(hidden)


def use_kernels(module: nn.Module, ops: ModuleType) -> None:
    """Point every fused-op user inside `module` (norms, attention, MLPs) at the `ops` backend."""
    for sub in module.modules():
        if hasattr(sub, "ops"):
            sub.ops = ops


def use_host_blas(module: nn.Module) -> None:
    """Route every Linear of `module` through the CPU kernel (packing its weight), or numpy without it."""
    if host_blas.library() is None:
        host_blas.transpose_storage(module)
    for sub in module.modules():
        if isinstance(sub, Linear):
            sub.host_blas = True
            if host_blas.library() is not None and sub.packed is None:
                sub.packed = host_blas.pack(sub.weight)
