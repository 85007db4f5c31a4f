"""Drafters, and building one from a SpecConfig."""

from __future__ import annotations

import torch

from gorgon.config import SpecConfig
from gorgon.errors import GorgonError
from gorgon.model.llama import Llama
from gorgon.model.tokenizer import Tokenizer
from gorgon.spec.drafters.base import Drafter, SpecState
from gorgon.spec.drafters.draft_model import DraftModelDrafter
from gorgon.spec.drafters.lookup import LookupDrafter, with_lookup
from gorgon.spec.drafters.ngram import NGramDrafter

__all__ = ["DraftModelDrafter", "Drafter", "LookupDrafter", "NGramDrafter", "SpecState", "build_drafter"]


def build_drafter(spec: SpecConfig, target: Llama, tokenizer: Tokenizer) -> Drafter:
    """The drafter a SpecConfig asks for, checked against the target it will draft for."""
    k, w = spec.num_speculative_tokens, spec.num_branches
    if spec.method == "ngram":
        return NGramDrafter(k, spec.prompt_lookup_min, spec.prompt_lookup_max, w)
    if spec.method in ("medusa", "eagle"):
        return _head_drafter(spec, target)
    if spec.draft_layers is not None:
        depth = target.config.num_layers
        if spec.draft_layers > depth:
            raise GorgonError(
                f"draft_layers={spec.draft_layers}, but the model has {depth} layers", "draft_layers"
            )
        return DraftModelDrafter(target, k, w, layers=spec.draft_layers)
    from gorgon.model.weights import load_model

    weight = target.embed.weight
    draft = load_model(spec.draft_model, weight.device, weight.dtype)
    if draft.tokenizer.backend.get_vocab() != tokenizer.backend.get_vocab():
        raise GorgonError(
            f"the draft model {spec.draft_model} has a different vocabulary from the target; "
            "a draft model must share the target's tokenizer",
            "draft_model",
        )
    with torch.no_grad():
        return DraftModelDrafter(draft.model, k, w)


def _head_drafter(spec: SpecConfig, target: Llama) -> Drafter:
    """Medusa or EAGLE heads from spec.heads, or the ones shipped for the target."""
    from gorgon.heads.base import check_target, load_head, shipped

    path = spec.heads or shipped(spec.method, target)
    if path is None:
        raise GorgonError(
            f"no {spec.method} heads are shipped for this model; train them (gorgon train {spec.method}) "
            "and pass their path (--heads)",
            "heads",
        )
    state, config = load_head(path)
    if config.get("kind") != spec.method:
        raise GorgonError(f"{path} holds {config.get('kind')!r} heads, not {spec.method!r}", "heads")
    check_target(config.get("target", {}), target, f"the heads at {path}")
    return with_lookup(_heads(spec, target, state, config), spec, config[spec.method])


def _heads(spec: SpecConfig, target: Llama, state: dict, config: dict) -> Drafter:
    """The Medusa or EAGLE drafter of loaded heads (state, config), with spec's overrides."""
    from gorgon.heads.eagle import EagleConfig, EagleLayer
    from gorgon.heads.medusa import MedusaConfig, MedusaHeads
    from gorgon.spec.drafters.eagle import EagleDrafter
    from gorgon.spec.drafters.medusa import MedusaDrafter

    weight = target.embed.weight
    if spec.method == "medusa":
        heads = MedusaHeads(MedusaConfig.from_json(config["medusa"]))
        heads.load_state_dict(state)
        return MedusaDrafter(target, heads.to(weight.device, weight.dtype).eval().requires_grad_(False))
    eagle_cfg = EagleConfig.from_json(config["eagle"])
    for name in ("top_k", "depth", "total_tokens"):
        value = getattr(spec, f"eagle_{name}")
        if value is not None:
            setattr(eagle_cfg, name, value)
    if spec.eagle_draft_vocab is not None:  # a prefix of the frequency ranking, or none of it
        eagle_cfg.draft_vocab = eagle_cfg.draft_vocab[: spec.eagle_draft_vocab or 0]
    layer = EagleLayer(target.config)
    layer.load_state_dict(state)
    layer = layer.to(weight.device, weight.dtype).eval().requires_grad_(False)
    try:
        return EagleDrafter(target, layer, eagle_cfg)
    except ValueError as e:
        raise GorgonError(str(e), "eagle_total_tokens") from None
