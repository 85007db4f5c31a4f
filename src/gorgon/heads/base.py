"""Saving and loading draft heads: safetensors weights beside a JSON config naming their target."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from gorgon.errors import GorgonError
from gorgon.model.llama import Llama

SHIPPED = Path(__file__).with_name("weights")  # heads trained for the default model, shipped in the package


def target_signature(model: Llama) -> dict[str, Any]:
    """What identifies a target for its heads: its shape, and a statistic of its embedding that survives
    a change of dtype (compared with a tolerance, not bit for bit)."""
    c = model.config
    return {
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "num_layers": c.num_layers,
        "num_heads": c.num_heads,
        "num_kv_heads": c.num_kv_heads,
        "intermediate_size": c.intermediate_size,
        "embed_mean_abs": float(model.embed.weight[:4096].float().abs().mean()),
    }


def fingerprint(model: Llama) -> str:
    return json.dumps(target_signature(model), sort_keys=True)


def check_target(signature: dict[str, Any], model: Llama, where: str) -> None:
    """Raise a clear error when heads were trained for another model."""
    mine = target_signature(model)
    shape = {k: v for k, v in signature.items() if k != "embed_mean_abs"}
    differs = [k for k, v in shape.items() if mine.get(k) != v]
    stat, theirs = mine["embed_mean_abs"], signature.get("embed_mean_abs", 0.0)
    if differs or abs(stat - theirs) > 0.01 * max(abs(theirs), 1e-12):
        detail = ", ".join(f"{k} {signature[k]} vs {mine[k]}" for k in differs) or "different weights"
        raise GorgonError(f"{where} were trained for another model ({detail}); train heads for this one")


def save_head(path: str | Path, module: torch.nn.Module, config: dict[str, Any]) -> None:
    """path.safetensors (weights, stored as bfloat16 to halve the artifact) and path.json (config).

    The module's own weights are rounded to bfloat16 too, so that it predicts exactly what the saved
    heads will once loaded."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.to(torch.bfloat16).to(p.dtype))
    state = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(path.with_suffix(".safetensors")))
    path.with_suffix(".json").write_text(json.dumps(config, indent=2))


def load_head(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(float32 state dict, config) of heads saved by `save_head`."""
    path = Path(path)
    weights, config = path.with_suffix(".safetensors"), path.with_suffix(".json")
    if not weights.is_file() or not config.is_file():
        raise GorgonError(f"no heads at {path} (expected {weights.name} and {config.name})")
    try:
        state = {k: v.float() for k, v in load_file(str(weights)).items()}
        return state, json.loads(config.read_text())
    except Exception as e:
        raise GorgonError(f"{weights} is not a readable heads file: {e}") from None


def shipped(kind: str, model: Llama) -> Path | None:
    """The heads of this kind shipped for `model`, if any (the default model's)."""
    for config in sorted(SHIPPED.glob(f"*/{kind}.json")):
        signature = json.loads(config.read_text()).get("target", {})
        try:
            check_target(signature, model, "shipped heads")
        except GorgonError:
            continue
        return config.with_suffix("")
    return None
