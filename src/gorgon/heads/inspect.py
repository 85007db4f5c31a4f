"""What trained heads guess after a prompt: the check that they learned something (`gorgon heads`)."""

from __future__ import annotations

import torch

from gorgon.config import SpecConfig
from gorgon.kv_cache import KVCache
from gorgon.llm import LLM
from gorgon.spec.drafters import build_drafter


@torch.inference_mode()
def head_guesses(llm: LLM, prompt_ids: list[int], kind: str, heads: str | None, top: int = 5):
    """[(label, [(token text, probability), ...]), ...]: the target's own next-token guess, then each
    Medusa head's guess for the tokens after it (or EAGLE's, following its greedy chain)."""
    model, tok = llm.model, llm.tokenizer
    drafter = build_drafter(SpecConfig(kind, heads=heads), model, tok)
    device = model.embed.weight.device
    n = len(prompt_ids)
    cache = KVCache(model.config, 1, n + 16, device, model.embed.weight.dtype)
    hidden = model(
        torch.tensor([prompt_ids], device=device), torch.arange(n, device=device)[None], cache
    ).hidden
    last = hidden[:, -1]

    def show(logits: torch.Tensor) -> list[tuple[str, float]]:
        probs = torch.softmax(logits.float(), -1)
        values, ids = probs.topk(top)
        return [(tok.decode([i]), v) for i, v in zip(ids.tolist(), values.tolist())]

    base = model.logits(last)[0]
    rows = [("target (next token)", show(base))]
    if kind == "medusa":
        features = drafter.heads(last)[0]  # [K, H]
        for k in range(features.shape[0]):
            rows.append((f"medusa head {k + 1} (token +{k + 2})", show(model.logits(features[k]))))
        return rows
    layer = drafter.layer
    eagle_cache = layer.new_cache(1, n + 16, device, model.embed.weight.dtype)
    following = torch.tensor([[*prompt_ids[1:], int(base.argmax())]], device=device)
    pred = layer(model, hidden, following, torch.arange(n, device=device)[None], eagle_cache)
    feature, position = pred[:, -1], n
    for d in range(drafter.config.depth):
        logits = model.logits(feature)[0]
        rows.append((f"eagle step {d + 1} (token +{d + 2})", show(logits)))
        nxt = logits.argmax()[None, None]
        feature = layer(model, feature[:, None], nxt, torch.tensor([[position]], device=device), eagle_cache)[
            :, 0
        ]
        position += 1
    return rows
