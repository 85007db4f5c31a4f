"""Running the model step by step on the device: prefill, and a decode step replayed as a CUDA graph.

The runner owns the KV cache and the static buffers a captured graph reads and writes. A decode step
reads the last token and its position from those buffers, samples the next token, and advances the
buffers itself, so the host only replays the graph and, once per step, reads back the new tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from gorgon.kernels.host_blas import single_torch_thread
from gorgon.kv_cache import KVCache
from gorgon.model.llama import Llama
from gorgon.sampling import SamplingTensors, sample

KV_BLOCK = 256  # cache capacity and attended length are multiples of this
PREFILL_CHUNK = 2048  # prompt tokens per forward in prefill, bounding activation memory


def kv_bucket(n: int) -> int:
    """The attended cache length used for n live slots: a few sizes, so that few graphs are captured."""
    step = KV_BLOCK if n <= 2048 else (1024 if n <= 8192 else 4096)
    return -(-n // step) * step


@dataclass
class DecodeBuffers:
    """Static inputs and outputs of the decode step for one batch size."""

    tokens: torch.Tensor  # [B, 1] the last token of each row
    positions: torch.Tensor  # [B, 1] its position
    out: torch.Tensor  # [B] the sampled next token
    sampling: SamplingTensors


class HostFetch:
    """A device tensor on its way to the host: a non-blocking copy and an event to wait on."""

    def __init__(self, tensor: torch.Tensor):
        if tensor.device.type == "cuda":
            self.host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            self.host.copy_(tensor, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.host, self.event = tensor.clone(), None

    def wait(self) -> list[int]:
        if self.event is not None:
            self.event.synchronize()
        return self.host.tolist()


class ModelRunner:
    """Prefill and decode steps of one model on one device, with CUDA graphs where available."""

    def __init__(self, model: Llama, cuda_graphs: bool = True, host_blas: bool = True):
        self.model = model
        weight = model.embed.weight
        self.device, self.dtype = weight.device, weight.dtype
        self.use_graphs = cuda_graphs and self.device.type == "cuda"
        self.kernels = model.use_kernels().__name__.rsplit(".", 1)[-1]
        self.host_blas = host_blas and self.device.type == "cpu" and self.dtype == torch.float32
        if self.host_blas:
            model.use_host_blas()
        self.cache: KVCache | None = None
        self.buffers: dict[int, DecodeBuffers] = {}
        self.graphs: dict[tuple[int, int, str], torch.cuda.CUDAGraph] = {}
        self.graph_pool = None

    def step_context(self) -> contextlib.AbstractContextManager:
        """What generation runs inside: one PyTorch thread when numpy's BLAS owns the cores."""
        return single_torch_thread() if self.host_blas else contextlib.nullcontext()

    # ---------------------------------------------------------------------------------- memory

    def reserve(self, batch: int, capacity: int) -> None:
        """Make sure the cache holds `batch` rows of `capacity` slots (growing it drops the graphs)."""
        capacity = -(-capacity // KV_BLOCK) * KV_BLOCK
        if self.cache is not None and self.cache.batch >= batch and self.cache.capacity >= capacity:
            return
        if self.cache is not None:
            batch, capacity = max(batch, self.cache.batch), max(capacity, self.cache.capacity)
        self.cache = None
        self.graphs.clear()
        self.graph_pool = None  # a pool outlives its graphs only as a PyTorch assertion failure
        self.buffers.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self.cache = KVCache(self.model.config, batch, capacity, self.device, self.dtype)

    # --------------------------------------------------------------------------------- prefill

    @torch.inference_mode()
    def prefill(self, prompts: list[list[int]], sampling: SamplingTensors) -> torch.Tensor:
        """Run the prompts (one per cache row, any lengths) and sample each one's first new token.

        Rows are right-padded; a pad writes a cache slot past its row's prompt, which the first decode
        steps overwrite before anything attends to it. Returns the tokens, int64 [B] on the device.
        """
        b = len(prompts)
        lengths = torch.tensor([len(p) for p in prompts])
        longest = int(lengths.max())
        padded = torch.zeros(b, longest, dtype=torch.int64)
        for i, p in enumerate(prompts):
            padded[i, : len(p)] = torch.tensor(p, dtype=torch.int64)
        padded = padded.to(self.device)
        last = torch.empty(b, self.model.config.hidden_size, device=self.device, dtype=self.dtype)
        for start in range(0, longest, PREFILL_CHUNK):
            end = min(start + PREFILL_CHUNK, longest)
            positions = torch.arange(start, end, device=self.device).expand(b, -1)
            hidden = self.model(padded[:, start:end], positions, self.cache, kv_len=end).hidden
            ends_here = ((lengths - 1) >= start) & ((lengths - 1) < end)
            rows = ends_here.nonzero()[:, 0].tolist()  # host-side tensors: no device sync
            if rows:
                offsets = (lengths[rows] - 1 - start).tolist()
                last[rows] = hidden[rows, offsets]
        logits = self.model.logits(last)
        mode = sampling.mode
        return sample(logits, sampling, lengths.to(self.device), mode)

    # ---------------------------------------------------------------------------------- decode

    def start_decode(self, first: torch.Tensor, lengths: list[int], sampling: SamplingTensors) -> None:
        """Load the decode buffers: each row's last token `first` [B] sits at position lengths[i]."""
        buf = self._buffers(len(lengths))
        buf.tokens.copy_(first[:, None])
        buf.positions.copy_(torch.tensor(lengths, dtype=torch.int64)[:, None])
        buf.sampling.copy_(sampling)
        buf.sampling.all_greedy, buf.sampling.filtered = sampling.all_greedy, sampling.filtered

    @torch.inference_mode()
    def decode(self, batch: int, max_position: int) -> torch.Tensor:
        """One decode step for rows 0..batch-1, whose largest input position is `max_position`.

        Returns the static output buffer [B] holding the sampled tokens (valid until the next step).
        """
        buf = self.buffers[batch]
        kv_len = min(kv_bucket(max_position + 1), self.cache.capacity)
        step = self._step_fn(buf, kv_len)
        if not self.use_graphs:
            step()
            return buf.out
        key = (batch, kv_len, buf.sampling.mode)
        graph = self.graphs.get(key)
        if graph is None:
            graph = self.graphs[key] = self._capture(step, buf)
        graph.replay()
        return buf.out

    def _buffers(self, batch: int) -> DecodeBuffers:
        if batch not in self.buffers:
            dev = self.device
            self.buffers[batch] = DecodeBuffers(
                tokens=torch.zeros(batch, 1, dtype=torch.int64, device=dev),
                positions=torch.zeros(batch, 1, dtype=torch.int64, device=dev),
                out=torch.zeros(batch, dtype=torch.int64, device=dev),
                sampling=SamplingTensors(
                    temperature=torch.zeros(batch, device=dev),
                    top_p=torch.ones(batch, device=dev),
                    top_k=torch.zeros(batch, dtype=torch.int64, device=dev),
                    seeds=torch.zeros(batch, dtype=torch.int64, device=dev),
                    all_greedy=True,
                    filtered=False,
                ),
            )
        return self.buffers[batch]

    def _step_fn(self, buf: DecodeBuffers, kv_len: int) -> Callable[[], None]:
        model, cache, mode = self.model, self.cache, buf.sampling.mode
        last_slot = cache.capacity - 1

        def step() -> None:
            hidden = model(buf.tokens, buf.positions, cache, kv_len=kv_len).hidden
            nxt = sample(model.logits(hidden[:, -1]), buf.sampling, buf.positions[:, 0] + 1, mode)
            buf.out.copy_(nxt)
            buf.tokens.copy_(nxt[:, None])
            # Rows that finished early keep stepping with the batch; the clamp keeps them in the cache.
            buf.positions.add_(1).clamp_(max=last_slot)

        return step

    def _capture(self, step: Callable[[], None], buf: DecodeBuffers) -> torch.cuda.CUDAGraph:
        saved = (buf.tokens.clone(), buf.positions.clone())
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            step()  # warm-up: kernels chosen, workspaces allocated, outside the capture
        torch.cuda.current_stream().wait_stream(side)
        buf.tokens.copy_(saved[0])
        buf.positions.copy_(saved[1])
        if self.graph_pool is None:
            self.graph_pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.graph_pool):
            step()
        return graph
