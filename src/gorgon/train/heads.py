"""Training Medusa heads and the EAGLE draft layer on the target's own outputs.

The target stays frozen; each batch of distilled sequences goes through it once (no gradients) for its
final hidden states, and only the heads learn. Held-out sequences measure each head's top-1 and top-5
accuracy every `eval_every` steps and at the end.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm import tqdm

from gorgon.errors import GorgonError
from gorgon.heads.base import target_signature
from gorgon.heads.eagle import EagleConfig, EagleLayer
from gorgon.heads.medusa import MedusaConfig, MedusaHeads, best_tree
from gorgon.kv_cache import KVCache
from gorgon.model.llama import Llama
from gorgon.train.data import Batch, TokenDataset, batches

MEDUSA_DECAY = 0.8  # head k's loss weighs 0.8^k
EAGLE_CLS_WEIGHT = 0.1  # EAGLE-1: feature regression plus 0.1 x cross-entropy
EAGLE_NOISE = 0.1  # EAGLE-1: uniform noise on input features during training, against drift
EAGLE_UNROLL_DECAY = 0.8  # weight of each further unrolled pass (as Medusa weighs its later heads)


@dataclass
class TrainConfig:
    epochs: float = 2.0
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup: int = 50
    tokens_per_batch: int = 4096
    max_len: int = 512
    held_out: float = 0.05
    eval_every: int = 200
    seed: int = 0
    progress: bool = True
    max_seconds: float | None = None  # stop early (then evaluate and save) after this long
    # batch order (None: `seed`); a run continuing an earlier one's heads (`init`) passes another, so that
    # it does not replay the same order, while `seed` keeps the held-out split the same
    shuffle_seed: int | None = None


@dataclass
class TrainReport:
    losses: list[float] = field(default_factory=list)
    evals: list[dict] = field(default_factory=list)  # {"step", "top1": [...], "top5": [...]} per evaluation

    @property
    def final(self) -> dict:
        return self.evals[-1] if self.evals else {}


@torch.no_grad()
def target_features(model: Llama, batch: Batch) -> torch.Tensor:
    """The target's final (normed) hidden states [B, T, H] of a batch, float32."""
    device = model.embed.weight.device
    tokens = batch.tokens.to(device)
    b, t = tokens.shape
    cache = KVCache(model.config, b, t, device, model.embed.weight.dtype)
    positions = torch.arange(t, device=device).expand(b, -1)
    return model(tokens, positions, cache, kv_len=t).hidden.float()


def _head_weight(model: Llama) -> torch.Tensor:
    return model.lm_head.weight.detach().float()


def _schedule(step: int, progress: float, warmup: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay over `progress` (0..1 of the run)."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _load(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Earlier heads' weights into `module`, or one clear error when their shapes differ."""
    try:
        module.load_state_dict(state)
    except RuntimeError as e:
        detail = str(e).splitlines()[-1].strip()
        raise GorgonError(f"the heads to continue from have another shape: {detail}", "init") from None


def _train(module, loss_fn, evaluate, model, data: TokenDataset, cfg: TrainConfig, desc: str) -> TrainReport:
    train, held = data.split(cfg.held_out, cfg.seed)
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    per_epoch = sum(1 for _ in batches(train, cfg.tokens_per_batch, cfg.max_len, seed=None))
    total = max(1, int(per_epoch * cfg.epochs))
    report = TrainReport()
    step, epoch = 0, 0
    start = time.monotonic()
    deadline = start + cfg.max_seconds if cfg.max_seconds else float("inf")
    # TF32 for the vocabulary-sized products of training (float32 weights, ~10x the speed on an H100)
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    with tqdm(total=total, desc=desc, disable=not cfg.progress) as bar:
        while step < total and time.monotonic() < deadline:
            order = cfg.seed if cfg.shuffle_seed is None else cfg.shuffle_seed
            for batch in batches(train, cfg.tokens_per_batch, cfg.max_len, seed=order + epoch):
                if step >= total or time.monotonic() >= deadline:
                    break
                # A time limit ends the run like the last epoch would: the decay follows whichever is nearer.
                progress = (step - cfg.warmup) / max(1, total - cfg.warmup)
                if cfg.max_seconds:
                    progress = max(progress, (time.monotonic() - start) / cfg.max_seconds)
                for group in opt.param_groups:
                    group["lr"] = cfg.lr * _schedule(step, progress, cfg.warmup)
                loss = loss_fn(batch, target_features(model, batch))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                report.losses.append(loss.item())
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}")
                if cfg.eval_every and step % cfg.eval_every == 0:
                    report.evals.append({"step": step, **evaluate(held)})
            epoch += 1
    report.evals.append({"step": step, **evaluate(held)})
    torch.backends.cuda.matmul.allow_tf32 = tf32
    return report


# ---------------------------------------------------------------------------------------- Medusa


def train_medusa(
    model: Llama,
    data: TokenDataset,
    cfg: TrainConfig,
    num_heads: int = 4,
    num_layers: int = 1,
    tree_size: int = 32,
    init: dict[str, torch.Tensor] | None = None,
) -> tuple[MedusaHeads, dict, TrainReport]:
    """Train Medusa heads (from `init`'s weights when given: a run continuing an earlier one); returns
    them, their JSON config (with the tree chosen from held-out accuracies) and the training report."""
    torch.manual_seed(cfg.seed)
    device = model.embed.weight.device
    heads = MedusaHeads(MedusaConfig(model.config.hidden_size, num_heads, num_layers))
    if init is not None:
        _load(heads, init)
    heads = heads.to(device)
    weight = _head_weight(model)

    def loss_fn(batch: Batch, features: torch.Tensor) -> torch.Tensor:
        tokens, mask = batch.tokens.to(device), batch.loss_mask.to(device)
        total = features.new_zeros(())
        for k, head in enumerate(heads.heads):
            ahead = k + 2  # head k at position t predicts token t + k + 2
            keep = mask[:, ahead:]
            if not keep.any():
                continue
            logits = F.linear(head(features[:, :-ahead][keep]), weight)
            total = total + MEDUSA_DECAY**k * F.cross_entropy(logits, tokens[:, ahead:][keep])
        return total

    report = _train(heads, loss_fn, lambda held: evaluate_medusa(model, heads, held, cfg), model, data, cfg,
                    "medusa")  # fmt: skip
    ranks = report.final["rank_accuracy"]
    tree = best_tree(ranks, tree_size)
    heads.config.tree = tree.paths
    config = {"kind": "medusa", "target": target_signature(model), "medusa": heads.config.to_json(),
              "accuracy": {k: report.final[k] for k in ("top1", "top5")}}  # fmt: skip
    return heads.eval(), config, report


@torch.no_grad()
def evaluate_medusa(
    model: Llama, heads: MedusaHeads, held: TokenDataset, cfg: TrainConfig, ranks: int = 10
) -> dict:
    """Per head: top-1 and top-5 accuracy on held-out response tokens, and accuracy at each rank < `ranks`
    (how often the rank-r guess is the right token), which the tree is built from."""
    device = model.embed.weight.device
    weight = _head_weight(model)
    k_heads = heads.config.num_heads
    hits = torch.zeros(k_heads, ranks)
    counts = torch.zeros(k_heads)
    for batch in batches(held, cfg.tokens_per_batch, cfg.max_len, seed=None):
        features = target_features(model, batch)
        tokens, mask = batch.tokens.to(device), batch.loss_mask.to(device)
        for k, head in enumerate(heads.heads):
            ahead = k + 2
            keep = mask[:, ahead:]
            if not keep.any():
                continue
            top = F.linear(head(features[:, :-ahead][keep]), weight).topk(ranks, dim=-1).indices
            right = top == tokens[:, ahead:][keep][:, None]
            hits[k] += right.float().sum(0).cpu()
            counts[k] += keep.sum().item()
    rank_acc = hits / counts.clamp_min(1)[:, None]
    return {
        "top1": rank_acc[:, 0].tolist(),
        "top5": rank_acc[:, :5].sum(1).tolist(),
        "rank_accuracy": rank_acc.tolist(),
    }


# ----------------------------------------------------------------------------------------- EAGLE


def train_eagle(
    model: Llama,
    data: TokenDataset,
    cfg: TrainConfig,
    drafting: EagleConfig | None = None,
    unroll: int = 1,
    draft_vocab: int = 0,
    init: dict[str, torch.Tensor] | None = None,
):
    """Train the EAGLE draft layer; returns it, its JSON config and the report.

    unroll 1: EAGLE-1's losses on teacher-forced features. unroll k > 1 adds k - 1 passes in which the
    layer reads its own previous prediction instead of the target's feature, as it does when drafting
    past depth 1 (EAGLE-3's training-time test), each pass's loss weighted by EAGLE_UNROLL_DECAY^pass.
    draft_vocab > 0: drafting will score only the data's `draft_vocab` most frequent answer tokens.
    init: start from these weights (a run continuing an earlier one)."""
    if unroll < 1:
        raise ValueError(f"unroll must be >= 1, got {unroll}")
    torch.manual_seed(cfg.seed)
    device = model.embed.weight.device
    layer = EagleLayer(model.config)
    if init is not None:
        _load(layer, init)
    layer = layer.to(device)
    weight = _head_weight(model)

    def loss_fn(batch: Batch, features: torch.Tensor) -> torch.Tensor:
        total = features.new_zeros(())
        passes = _eagle_unrolled(model, layer, batch, features, unroll, EAGLE_NOISE)
        for j, (mine, truth) in enumerate(passes):
            regression = F.smooth_l1_loss(mine, truth)
            target_probs = torch.softmax(F.linear(truth, weight), dim=-1)
            cls = -(target_probs * torch.log_softmax(F.linear(mine, weight), dim=-1)).sum(-1).mean()
            total = total + EAGLE_UNROLL_DECAY**j * (regression + EAGLE_CLS_WEIGHT * cls)
        return total

    report = _train(
        layer, loss_fn, lambda held: evaluate_eagle(model, layer, held, cfg), model, data, cfg, "eagle"
    )
    drafting = drafting or EagleConfig(model.config.hidden_size)
    coverage = None
    if draft_vocab:
        drafting.draft_vocab, coverage = frequent_tokens(data, draft_vocab)
    config = {"kind": "eagle", "target": target_signature(model), "eagle": drafting.to_json(),
              "accuracy": {k: report.final[k] for k in ("top1", "top5")}}  # fmt: skip
    config["training_unroll"] = unroll
    if coverage is not None:
        config["draft_vocab_coverage"] = coverage
    return layer.eval(), config, report


def frequent_tokens(data: TokenDataset, count: int) -> tuple[tuple[int, ...], float]:
    """The `count` most frequent tokens of the answers (what drafting proposes), most frequent first,
    and the share of answer tokens they cover."""
    answers = [t for s, p in zip(data.sequences, data.prompt_lengths) for t in s[p:]]
    counts = torch.bincount(torch.tensor(answers, dtype=torch.int64)) if answers else torch.zeros(1)
    ranked = counts.argsort(descending=True, stable=True)[: min(count, int((counts > 0).sum()))]
    coverage = float(counts[ranked].sum() / max(counts.sum(), 1))
    return tuple(int(t) for t in ranked), coverage


def _eagle_unrolled(model, layer, batch: Batch, features: torch.Tensor, steps: int, noise: float = 0.0):
    """(predicted, true) features of the counted (response) positions for each of `steps` passes.

    Pass 1 is teacher-forced: query i (position i) reads (feature i, token i + 1) and predicts feature
    i + 1. Pass j reads pass j - 1's prediction in place of the feature: query i sits at position
    i + j - 1, reads (prediction, token i + j), predicts feature i + j, and attends to pass 1's slots
    0..i (the target's features, as the draft cache holds them) and to the slot of query i in each later
    pass up to its own (the chain it drafted), which is what drafting at depth j sees."""
    device = features.device
    tokens, loss_mask = batch.tokens.to(device), batch.loss_mask.to(device)
    b, t = tokens.shape
    n = t - 1
    cache = _TrainingKV(b, n * steps, model.config, device)
    query = torch.arange(n, device=device)
    slot = torch.arange(n * steps, device=device)
    inputs = features[:, :-1]
    if noise:
        inputs = inputs + (torch.rand_like(inputs) * 2 - 1) * noise
    out = []
    for j in range(1, steps + 1):
        if j > 1:  # a pass writes into copies: earlier passes' attention saved the old tensors for backward
            cache.k, cache.v = cache.k.clone(), cache.v.clone()
        m = n - j + 1  # queries of pass j
        i = query[:m]
        first_pass = (slot[None, :] < n) & (slot[None, :] <= i[:, None])
        own = (slot[None, :] >= n) & (slot[None, :] % n == i[:, None]) & (slot[None, :] // n < j)
        mask = (first_pass | own)[None].expand(b, -1, -1)
        positions = (i + j - 1)[None].expand(b, -1)
        slots = ((j - 1) * n + i)[None].expand(b, -1)
        pred = layer(model, inputs[:, :m], tokens[:, j:], positions, cache, slots=slots, mask=mask)
        keep = loss_mask[:, j:]
        out.append((pred[keep], features[:, j:][keep]))
        inputs = pred[:, :-1]  # pass j + 1 reads these in place of features j .. n - 1
    return out


def _eagle_forward(model, layer, batch: Batch, features: torch.Tensor, noise: float = 0.0):
    """Teacher-forced EAGLE over a batch: predicted features for positions 1..T-1, and which of them count
    (response tokens)."""
    device = features.device
    tokens, mask = batch.tokens.to(device), batch.loss_mask.to(device)
    b, t = tokens.shape
    inputs = features[:, :-1]
    if noise:
        inputs = inputs + (torch.rand_like(inputs) * 2 - 1) * noise
    cache = _TrainingKV(b, t - 1, model.config, device)
    positions = torch.arange(t - 1, device=device).expand(b, -1)
    pred = layer(model, inputs, tokens[:, 1:], positions, cache, kv_len=t - 1)
    return pred, mask[:, 1:]


class _TrainingKV:
    """Keys and values of one layer in two fresh tensors: gradients flow through writes into them, which
    they cannot through views of one shared cache tensor."""

    def __init__(self, batch: int, length: int, config, device: torch.device):
        shape = (batch, length, config.num_kv_heads, config.head_dim)
        self.k = torch.zeros(shape, device=device)
        self.v = torch.zeros(shape, device=device)
        self.capacity = length

    def layer(self, index: int, batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.k, self.v


@torch.no_grad()
def evaluate_eagle(model: Llama, layer: EagleLayer, held: TokenDataset, cfg: TrainConfig) -> dict:
    """Top-1 and top-5 agreement of the layer's next-token guess with the target's greedy choice."""
    weight = _head_weight(model)
    top1 = top5 = count = 0
    for batch in batches(held, cfg.tokens_per_batch, cfg.max_len, seed=None):
        features = target_features(model, batch)
        pred, keep = _eagle_forward(model, layer, batch, features)
        truth = F.linear(features[:, 1:][keep], weight).argmax(-1)
        guess = F.linear(pred[keep], weight).topk(5, dim=-1).indices
        top1 += (guess[:, 0] == truth).sum().item()
        top5 += (guess == truth[:, None]).any(-1).sum().item()
        count += keep.sum().item()
    return {"top1": [top1 / max(count, 1)], "top5": [top5 / max(count, 1)]}
