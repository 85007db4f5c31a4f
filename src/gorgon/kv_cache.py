"""The key/value cache: preallocated, indexed by slot, one row per sequence of the batch."""

from __future__ import annotations

import torch

from gorgon.config import ModelConfig


class KVCache:
    """Keys and values of every layer in one tensor [2, layers, batch, capacity, kv_heads, head_dim].

    Token-major (a token's heads are contiguous), so that writing a token or moving an accepted path
    into place touches contiguous rows. A slot is just an index along `capacity`: plain decoding
    writes position p to slot p, and anything written past the committed length is simply
    overwritten by the next step (a rejected draft costs nothing to undo).
    """

    def __init__(
        self, config: ModelConfig, batch: int, capacity: int, device: torch.device, dtype: torch.dtype
    ):
        shape = (2, config.num_layers, batch, capacity, config.num_kv_heads, config.head_dim)
        self.data = torch.zeros(shape, device=device, dtype=dtype)

    @property
    def batch(self) -> int:
        return self.data.shape[2]

    @property
    def capacity(self) -> int:
        return self.data.shape[3]

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()

    def rows(self, start: int, count: int = 1) -> KVCache:
        """A cache of rows start .. start + count - 1 that shares this one's memory (a request joining a
        running batch is prefilled through it)."""
        view = KVCache.__new__(KVCache)
        view.data = self.data[:, :, start : start + count]
        return view

    def layer(self, index: int, batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Views of layer `index`'s keys and values [batch, capacity, kv_heads, head_dim], for the
        first `batch` rows (all of them by default)."""
        rows = slice(None) if batch is None else slice(0, batch)
        return self.data[0, index, rows], self.data[1, index, rows]

    def keep_path(
        self, committed: torch.Tensor, path: torch.Tensor, n_accepted: torch.Tensor, ops=None
    ) -> None:
        """After verifying a tree written at slots committed .. committed + N - 1 (rows 0..B-1), move the
        accepted nodes' keys and values (tree indices path [B, D], the first n_accepted [B] of them) to
        slots committed + 1, committed + 2, ...; the root stays at slot `committed`, and whatever lies
        beyond is overwritten by the next step. `ops`: the kernel backend (default: the reference)."""
        from gorgon.kernels import reference

        (ops or reference).keep_path(self.data, committed, path, n_accepted)
