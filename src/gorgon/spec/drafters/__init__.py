"""Drafters, and building one from a SpecConfig."""

from __future__ import annotations

import torch

from gorgon.config import SpecConfig
from gorgon.errors import GorgonError
from gorgon.model.llama import Llama
from gorgon.model.tokenizer import Tokenizer
from gorgon.spec.drafters.base import Drafter, SpecState
from gorgon.spec.drafters.draft_model import DraftModelDrafter
from gorgon.spec.drafters.ngram import NGramDrafter

__all__ = ["DraftModelDrafter", "Drafter", "NGramDrafter", "SpecState", "build_drafter"]


def build_drafter(spec: SpecConfig, target: Llama, tokenizer: Tokenizer) -> Drafter:
    """The drafter a SpecConfig asks for, checked against the target it will draft for."""
    k, w = spec.num_speculative_tokens, spec.num_branches
    if spec.method == "ngram":
        return NGramDrafter(k, spec.prompt_lookup_min, spec.prompt_lookup_max, w)
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
