"""Token datasets for head training: conversations the target wrote, stored flat in one safetensors file.

A dataset is a list of sequences (prompt tokens followed by response tokens). On disk: `tokens` int32
[total], `offsets` int64 [n + 1] (sequence i is tokens[offsets[i]:offsets[i + 1]]) and `prompt_lengths`
int32 [n], plus metadata naming the target that wrote it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from gorgon.errors import GorgonError


@dataclass
class TokenDataset:
    sequences: list[list[int]]
    prompt_lengths: list[int]
    meta: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def num_tokens(self) -> int:
        return sum(len(s) for s in self.sequences)

    def save(self, path: str | Path) -> None:
        lengths = torch.tensor([len(s) for s in self.sequences], dtype=torch.int64)
        offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])
        flat = [t for s in self.sequences for t in s]
        tensors = {
            "tokens": torch.tensor(flat, dtype=torch.int32),
            "offsets": offsets,
            "prompt_lengths": torch.tensor(self.prompt_lengths, dtype=torch.int32),
        }
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(path), metadata={k: str(v) for k, v in self.meta.items()})

    @classmethod
    def load(cls, path: str | Path) -> TokenDataset:
        from safetensors import safe_open

        try:
            tensors = load_file(str(path))
            with safe_open(str(path), framework="pt") as f:
                meta = dict(f.metadata() or {})
        except Exception as e:
            raise GorgonError(f"{path} is not a readable dataset file: {e}") from None
        tokens, offsets = tensors["tokens"].tolist(), tensors["offsets"].tolist()
        sequences = [tokens[a:b] for a, b in itertools.pairwise(offsets)]
        return cls(sequences, tensors["prompt_lengths"].tolist(), meta)

    def split(self, held_out: float, seed: int = 0) -> tuple[TokenDataset, TokenDataset]:
        """(train, held-out) with a `held_out` fraction of the sequences, chosen at random."""
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed)).tolist()
        cut = max(1, round(len(self) * held_out))
        return self._subset(order[cut:]), self._subset(order[:cut])

    def _subset(self, idx: list[int]) -> TokenDataset:
        seqs, lengths = [self.sequences[i] for i in idx], [self.prompt_lengths[i] for i in idx]
        return TokenDataset(seqs, lengths, self.meta)


@dataclass
class Batch:
    """Right-padded sequences: tokens [B, T] (pads are 0), loss_mask [B, T] True on response tokens."""

    tokens: torch.Tensor
    loss_mask: torch.Tensor
    lengths: torch.Tensor


def batches(data: TokenDataset, tokens_per_batch: int, max_len: int, seed: int | None = 0) -> Iterator[Batch]:
    """Batches of about `tokens_per_batch` tokens, sequences cut to `max_len`, grouped by length (so little
    is padding), in a random order of batches (`seed` None keeps the dataset order)."""
    order = sorted(range(len(data)), key=lambda i: len(data.sequences[i]))
    groups, current = [], []
    for i in order:  # ascending lengths: the newest sequence sets the padded width
        width = min(len(data.sequences[i]), max_len)
        if current and (len(current) + 1) * width > tokens_per_batch:
            groups.append(current)
            current = []
        current.append(i)
    if current:
        groups.append(current)
    if seed is not None:
        perm = torch.randperm(len(groups), generator=torch.Generator().manual_seed(seed)).tolist()
        groups = [groups[p] for p in perm]
    for group in groups:
        seqs = [data.sequences[i][:max_len] for i in group]
        width = max(len(s) for s in seqs)
        tokens = torch.zeros(len(seqs), width, dtype=torch.int64)
        mask = torch.zeros(len(seqs), width, dtype=torch.bool)
        for row, (i, s) in enumerate(zip(group, seqs)):
            tokens[row, : len(s)] = torch.tensor(s)
            mask[row, min(data.prompt_lengths[i], len(s)) : len(s)] = True
        yield Batch(tokens, mask, torch.tensor([len(s) for s in seqs]))


def read_prompts(path: str | Path) -> list[str | list[dict[str, str]]]:
    """Prompts from a JSONL file (`prompt`: text, or `turns`: user turns, the first one used) or plain
    text (one prompt per line)."""
    path = Path(path)
    if not path.is_file():
        raise GorgonError(f"prompt file {path} not found")
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    if not lines or not lines[0].lstrip().startswith("{"):
        return lines
    prompts: list[str | list[dict[str, str]]] = []
    for n, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except ValueError as e:
            raise GorgonError(f"{path}:{n}: not valid JSON: {e}") from None
        if "prompt" in row:
            prompts.append(row["prompt"])
        elif row.get("turns"):
            prompts.append(row["turns"][0])
        else:
            raise GorgonError(f"{path}:{n}: a line needs a 'prompt' or a 'turns' field")
    return prompts
