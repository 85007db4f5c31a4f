"""Running the model step by step on the device: prefill and decode, each replayed as a CUDA graph.

The runner owns the KV cache and the static buffers that captured graphs read and write. A decode
step reads each row's last token and position from those buffers, samples the next token, and
advances the buffers itself, so the host only replays the graph and, once per step, reads back the
new tokens. Prefill is graphed too, per prompt-length bucket, because an eager forward costs the host
~15 ms of kernel launches on the H100 machines (notes/gpu.md), which would dominate time to first token.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from gorgon.config import SamplingParams
from gorgon.kernels import backend_name
from gorgon.kernels.attention import TreeMask
from gorgon.kernels.host_blas import single_torch_thread
from gorgon.kv_cache import KVCache
from gorgon.model.llama import Llama, use_host_blas, use_kernels
from gorgon.sampling import SamplingTensors, sample
from gorgon.spec.drafters.base import Drafter, SpecState
from gorgon.spec.tree import StepTree
from gorgon.spec.verify import TypicalAcceptance, verify

KV_BLOCK = 256  # cache capacity and attended length are multiples of this
PREFILL_CHUNK = 2048  # prompt tokens per eager forward, bounding activation memory
GRAPHED_PREFILL_TOKENS = 8192  # batch x bucketed prompt length up to which prefill is a graph


def kv_bucket(n: int) -> int:
    """The attended cache length used for n live slots: a few sizes, so that few graphs are captured."""
    step = KV_BLOCK if n <= 2048 else (1024 if n <= 8192 else 4096)
    return -(-n // step) * step


def prompt_bucket(n: int) -> int:
    """Prompt lengths are padded to a power of two (at least 16) when prefill is graphed."""
    return max(16, 1 << (n - 1).bit_length())


@dataclass
class BatchBuffers:
    """Static inputs and outputs of one batch size's graphs."""

    sampling: SamplingTensors
    tokens: torch.Tensor  # [B, 1] the last token of each row (decode input; the tree's root)
    positions: torch.Tensor  # [B, 1] its position (the number of committed tokens)
    out: torch.Tensor  # [B] the token sampled by the last prefill or decode step
    history: torch.Tensor | None = None  # [B, S] every token so far (speculative decoding)
    spec_out: torch.Tensor | None = None  # [B, 2 + D + 1 (+ 3N + D)]: see ModelRunner.spec_step

    def narrow(self, batch: int) -> BatchBuffers:
        """The first `batch` rows, sharing this one's memory (smaller steps of a continuous batch)."""
        sampling = self.sampling.rows(0, batch)
        cut = lambda t: None if t is None else t[:batch]
        return BatchBuffers(sampling, self.tokens[:batch], self.positions[:batch], self.out[:batch],
                            cut(self.history), cut(self.spec_out))  # fmt: skip


@dataclass
class PrefillBuffers:
    tokens: torch.Tensor  # [B, T] prompts, right-padded
    last: torch.Tensor  # [B] index of each prompt's last token


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

    def __init__(
        self,
        model: Llama,
        cuda_graphs: bool = True,
        host_blas: bool = True,
        drafter: Drafter | None = None,
        typical: TypicalAcceptance | None = None,
        tree_debug: bool = False,
    ):
        """drafter: proposes trees for speculative steps (None: plain decoding only); typical: verify with
        Medusa's (lossy) typical acceptance instead of lossless speculative sampling; tree_debug: each
        speculative step also reads back its candidate tree and accepted path (see `read_tree`)."""
        self.model = model
        self.drafter, self.typical, self.tree_debug = drafter, typical, tree_debug
        weight = model.embed.weight
        self.device, self.dtype = weight.device, weight.dtype
        self.use_graphs = cuda_graphs and self.device.type == "cuda"
        # attend bucketed cache lengths (few graphs); eager runs attend exactly what is live, unless set
        # (tests compare eager steps with graph replays of the very same computation)
        self.bucketed = self.use_graphs
        self.ops = model.use_kernels()
        self.kernels = backend_name(self.ops)
        self.host_blas = host_blas and self.device.type == "cpu" and self.dtype == torch.float32
        if self.host_blas:
            model.use_host_blas()
        if drafter is not None:  # a drafter's own fused ops: the same backend
            drafter.ops = self.ops
        for net in drafter.networks() if drafter is not None else []:  # drafters' own nets: same backends
            use_kernels(net, self.ops)
            if self.host_blas:
                use_host_blas(net)
        self.cache: KVCache | None = None
        self.buffers: dict[int, BatchBuffers] = {}
        self.prefill_buffers: dict[tuple[int, int], PrefillBuffers] = {}
        # Each graph is kept with the step it replays: tensors the step closes over (made outside the
        # capture) must live as long as the graph reads them.
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, Callable[[], None]]] = {}
        self.graph_pool = None

    def step_context(self) -> contextlib.AbstractContextManager:
        """What generation runs inside: one PyTorch thread when numpy's BLAS owns the cores."""
        return single_torch_thread() if self.host_blas else contextlib.nullcontext()

    # ---------------------------------------------------------------------------------- memory

    def slots_needed(self, longest_prompt: int, longest_total: int) -> int:
        """Cache slots per row for prompts up to `longest_prompt` growing to `longest_total` tokens."""
        graphed = self.use_graphs and prompt_bucket(longest_prompt) <= GRAPHED_PREFILL_TOKENS
        if self.drafter is not None:  # room for a tree past the end, and a step's advance
            longest_total += self.drafter.scratch_slots + self.drafter.max_depth + 2
        return max(longest_total, prompt_bucket(longest_prompt) if graphed else 0)

    @property
    def max_advance(self) -> int:
        """The most tokens one step can add to a row."""
        return 1 if self.drafter is None else self.drafter.max_depth + 1

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
        self.prefill_buffers.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        self.cache = KVCache(self.model.config, batch, capacity, self.device, self.dtype)
        if self.drafter is not None:
            self.drafter.bind(batch, capacity, self.device, self.dtype)

    # ---------------------------------------------------------------------------------- steps

    @torch.inference_mode()
    def start(self, prompts: list[list[int]], sampling: SamplingTensors) -> torch.Tensor:
        """Prefill one prompt per cache row (any lengths), sample each row's first new token, and load
        the decode buffers. Returns the sampled tokens, int64 [B] on the device (a static buffer, valid
        until the next step)."""
        b = len(prompts)
        buf = self._buffers(b)
        buf.sampling.copy_(sampling)
        if self.drafter is not None:
            self.drafter.sampling, self.drafter.mode = buf.sampling, buf.sampling.mode
        lengths = [len(p) for p in prompts]
        bucket = prompt_bucket(max(lengths))
        if self.use_graphs and b * bucket <= GRAPHED_PREFILL_TOKENS:
            pre = self._prefill_buffers(b, bucket)
            pre.tokens.copy_(_padded(prompts, bucket))
            pre.last.copy_(torch.tensor(lengths) - 1)
            self._replay(("prefill", b, bucket, buf.sampling.mode), lambda: self._prefill_fn(buf, pre))
        else:
            self._prefill_eager(prompts, buf)
        buf.tokens.copy_(buf.out[:, None])
        buf.positions.copy_(torch.tensor(lengths, dtype=torch.int64)[:, None])
        if buf.history is not None:
            padded = _padded(prompts, max(lengths))
            buf.history[:, : padded.shape[1]].copy_(padded)
            buf.history.scatter_(1, buf.positions, buf.tokens)
        return buf.out

    @torch.inference_mode()
    def open_batch(self, batch: int) -> None:
        """Prepare a batch of `batch` rows that requests join one by one (`admit`), each row free until
        then: every row greedy and idle at position 0, stepping along harmlessly with the others."""
        buf = self._buffers(batch)
        # Steps run over the first k rows, k = 1 + the highest busy row: the buffers of every k < batch
        # become views of this batch's (graphs captured on separate buffers are dropped once).
        for k in range(1, batch):
            mine = self.buffers.get(k)
            if mine is None or mine.tokens.data_ptr() != buf.tokens.data_ptr():
                self.buffers[k] = buf.narrow(k)
                self.graphs = {key: g for key, g in self.graphs.items() if key[1] != k}
        buf.sampling.copy_(SamplingTensors.build([SamplingParams(temperature=0.0)] * batch, [0] * batch,
                                                 self.device))  # fmt: skip
        self._set_mode(batch, True, False)
        buf.tokens.zero_()
        buf.positions.zero_()

    def _set_mode(self, batch: int, all_greedy: bool, filtered: bool) -> None:
        """Sampling flags of an open batch and of its narrower views."""
        for k in range(1, batch + 1):
            self.buffers[k].sampling.all_greedy, self.buffers[k].sampling.filtered = all_greedy, filtered

    @torch.inference_mode()
    def admit(self, batch: int, row: int, prompt: list[int], sampling: SamplingTensors) -> torch.Tensor:
        """Start `prompt` in row `row` of an open batch while the other rows go on (continuous batching):
        prefill it into that row of the cache and of the drafter's state, sample its first token with the
        one-row `sampling`, and load the row's step inputs. Steps already queued still see the row's old
        state (their output for it is stale); steps launched after this see the new request.
        Returns the first token, int64 [1] on the device."""
        buf = self.buffers[batch]
        rows = slice(row, row + 1)
        for name in ("temperature", "top_p", "top_k", "seeds"):
            getattr(buf.sampling, name)[rows].copy_(getattr(sampling, name))
        # The batch's sampling mode only widens (greedy -> sample -> filtered): rows with temperature 0
        # still take the argmax in a sampling graph.
        self._set_mode(
            batch, buf.sampling.all_greedy and sampling.all_greedy, buf.sampling.filtered or sampling.filtered
        )
        row_sampling = buf.sampling.rows(row, row + 1)
        row_sampling.all_greedy, row_sampling.filtered = sampling.all_greedy, sampling.filtered
        first = torch.zeros(1, dtype=torch.int64, device=self.device)
        drafting = self.drafter.rows(row) if self.drafter is not None else contextlib.nullcontext()
        with drafting:
            self._prefill_eager([prompt], buf, self.cache.rows(row), row_sampling, first)
        n = len(prompt)
        buf.tokens[rows, 0] = first
        buf.positions[rows, 0] = n
        if buf.history is not None:
            buf.history[rows].zero_()
            buf.history[rows, :n] = torch.tensor(prompt, dtype=torch.int64, device=self.device)
            buf.history[rows, n] = first
        return first

    @torch.inference_mode()
    def spec_step(self, batch: int, max_committed: int) -> torch.Tensor:
        """One speculative step for rows 0..batch-1 (propose, verify, keep the accepted path), whose
        largest committed length is at most `max_committed`.

        Returns the static buffer [B, 2 + D + 1]: per row the number of tokens emitted (accepted drafts
        plus the bonus token), the depth the drafter proposed to, then the emitted tokens. With
        tree_debug, each row goes on with the tree (tokens, parents or -1 where invalid, depths: N each)
        and the accepted path (D node indices): still one small read-back per step.
        """
        buf = self.buffers[batch]
        self.drafter.sampling, self.drafter.mode = buf.sampling, buf.sampling.mode  # this batch's rows
        kv_len = self._kv_len(max_committed + self.drafter.scratch_slots)
        self._replay(("spec", batch, kv_len, buf.sampling.mode), lambda: self._spec_fn(buf, kv_len))
        return buf.spec_out

    @torch.inference_mode()
    def decode(self, batch: int, max_position: int) -> torch.Tensor:
        """One decode step for rows 0..batch-1, whose largest input position is `max_position`.

        Returns the static output buffer [B] holding the sampled tokens (valid until the next step).
        """
        buf = self.buffers[batch]
        kv_len = self._kv_len(max_position + 1)
        self._replay(("decode", batch, kv_len, buf.sampling.mode), lambda: self._decode_fn(buf, kv_len))
        return buf.out

    def read_tree(self, row: list[int]) -> StepTree:
        """The candidate tree and accepted path in one row of a tree_debug spec_step's output."""
        d, n = self.drafter.max_depth, self.drafter.tree_size
        start = 3 + d
        tokens, parents, depths = (row[start + i * n : start + (i + 1) * n] for i in range(3))
        path = row[start + 3 * n : start + 3 * n + d]
        n_accepted = row[0] - 1
        return StepTree(tokens, [-1, *parents[1:]], depths, [0, *path[:n_accepted]], row[2 + n_accepted])

    def _kv_len(self, live: int) -> int:
        """Cache slots to attend to when `live` may be in use: bucketed for graphs (few captures), exact
        otherwise."""
        return min(kv_bucket(live) if self.bucketed else live, self.cache.capacity)

    def _replay(self, key: tuple, make: Callable[[], Callable[[], None]]) -> None:
        """Run the step `make()` builds: replayed from a graph captured on first use, or eagerly."""
        if not self.use_graphs:
            make()()
            return
        if key not in self.graphs:
            step = make()
            self.graphs[key] = (self._capture(step), step)
        self.graphs[key][0].replay()

    # ------------------------------------------------------------------------------ functions

    def _sample(self, hidden: torch.Tensor, buf: BatchBuffers, positions: torch.Tensor) -> None:
        self._sample_into(hidden, buf.sampling, buf.out, positions)

    def _sample_into(
        self, hidden: torch.Tensor, sampling: SamplingTensors, out: torch.Tensor, positions: torch.Tensor
    ) -> None:
        logits = self.model.logits(hidden)
        out.copy_(sample(logits, sampling, positions, sampling.mode, self.ops.argmax))

    def _prefill_fn(self, buf: BatchBuffers, pre: PrefillBuffers) -> Callable[[], None]:
        model, cache = self.model, self.cache
        b, t = pre.tokens.shape
        positions = torch.arange(t, device=self.device).expand(b, -1)
        rows = torch.arange(b, device=self.device)

        def step() -> None:
            # Pads write slots past their row's prompt, which decode overwrites before anyone reads them.
            hidden = model(pre.tokens, positions, cache, kv_len=t).hidden
            if self.drafter is not None:
                following = torch.cat([pre.tokens[:, 1:], pre.tokens[:, :1]], dim=1)
                self.drafter.prefill(pre.tokens, following, positions, t, hidden)
            last_hidden = hidden[rows, pre.last]
            self._sample(last_hidden, buf, pre.last + 1)
            if self.drafter is not None:
                self.drafter.start(buf.out, pre.last, last_hidden, t)

        return step

    def _prefill_eager(
        self,
        prompts: list[list[int]],
        buf: BatchBuffers,
        cache: KVCache | None = None,
        sampling: SamplingTensors | None = None,
        out: torch.Tensor | None = None,
    ) -> None:
        """Prefill in chunks of PREFILL_CHUNK tokens (long prompts, or no graphs). `cache`, `sampling`
        and `out` default to the whole batch's; `admit` passes one row's views."""
        cache = self.cache if cache is None else cache
        sampling = buf.sampling if sampling is None else sampling
        out = buf.out if out is None else out
        b = len(prompts)
        lengths = torch.tensor([len(p) for p in prompts])
        longest = int(lengths.max())
        tokens = _padded(prompts, longest).to(self.device)
        following = torch.cat([tokens[:, 1:], tokens[:, :1]], dim=1)
        last = torch.empty(b, self.model.config.hidden_size, device=self.device, dtype=self.dtype)
        for start in range(0, longest, PREFILL_CHUNK):
            end = min(start + PREFILL_CHUNK, longest)
            positions = torch.arange(start, end, device=self.device).expand(b, -1)
            hidden = self.model(tokens[:, start:end], positions, cache, kv_len=end).hidden
            if self.drafter is not None:
                self.drafter.prefill(tokens[:, start:end], following[:, start:end], positions, end, hidden)
            ends_here = ((lengths - 1) >= start) & ((lengths - 1) < end)
            rows = ends_here.nonzero()[:, 0].tolist()  # host-side tensors: no device sync
            if rows:
                last[rows] = hidden[rows, (lengths[rows] - 1 - start).tolist()]
        self._sample_into(last, sampling, out, lengths.to(self.device))
        if self.drafter is not None:
            self.drafter.start(out, (lengths - 1).to(self.device), last, longest)

    def _decode_fn(self, buf: BatchBuffers, kv_len: int) -> Callable[[], None]:
        model, cache = self.model, self.cache
        last_slot = cache.capacity - 1

        def step() -> None:
            hidden = model(buf.tokens, buf.positions, cache, kv_len=kv_len).hidden
            self._sample(hidden[:, -1], buf, buf.positions[:, 0] + 1)
            buf.tokens.copy_(buf.out[:, None])
            # Rows that finished early keep stepping with the batch; the clamp keeps them in the cache.
            buf.positions.add_(1).clamp_(max=last_slot)

        return step

    def _spec_fn(self, buf: BatchBuffers, kv_len: int) -> Callable[[], None]:
        model, cache, drafter = self.model, self.cache, self.drafter
        n, depth = drafter.tree_size, drafter.max_depth
        # Rows that finished keep stepping with the batch; this keeps their trees inside the cache.
        limit = cache.capacity - drafter.scratch_slots - depth - 2
        node_slots = torch.arange(n, device=self.device)

        def step() -> None:
            committed = buf.positions[:, 0]
            state = SpecState(buf.tokens[:, 0], committed, buf.history, kv_len)
            tree = drafter.propose(state)
            slots = committed[:, None] + node_slots[None, :]
            shape = TreeMask(committed, tree.ancestor_matrix(), tree.bits)
            out = model(tree.tokens, committed[:, None] + tree.depths, cache, slots=slots, kv_len=kv_len,
                        tree=shape, hidden_layers=drafter.hidden_layers)  # fmt: skip
            logits = model.logits(out.hidden)
            acc = verify(tree, logits, buf.sampling, buf.sampling.mode, committed, self.ops, self.typical)
            cache.keep_path(committed, acc.path, acc.n_accepted, self.ops)
            drafter.update(state, tree, acc, out)
            if self.tree_debug:
                parents = torch.where(tree.valid, tree.parents, -1)
                debug = torch.cat([tree.tokens, parents, tree.depths, acc.path], dim=1)
                buf.spec_out[:, depth + 3 :].copy_(debug)
            # history, spec_out's first columns, the next root and its position: one kernel on GPUs
            self.ops.commit_step(tree.tokens, tree.depths, tree.valid, acc.path, acc.n_accepted, acc.bonus,
                                 buf.history, buf.spec_out, buf.tokens, buf.positions, limit)  # fmt: skip

        return step

    # -------------------------------------------------------------------------------- buffers

    def _buffers(self, batch: int) -> BatchBuffers:
        if batch not in self.buffers:
            dev = self.device
            self.buffers[batch] = BatchBuffers(
                sampling=SamplingTensors(
                    temperature=torch.zeros(batch, device=dev),
                    top_p=torch.ones(batch, device=dev),
                    top_k=torch.zeros(batch, dtype=torch.int64, device=dev),
                    seeds=torch.zeros(batch, dtype=torch.int64, device=dev),
                    all_greedy=True,
                    filtered=False,
                ),
                tokens=torch.zeros(batch, 1, dtype=torch.int64, device=dev),
                positions=torch.zeros(batch, 1, dtype=torch.int64, device=dev),
                out=torch.zeros(batch, dtype=torch.int64, device=dev),
            )
            if self.drafter is not None:
                buf = self.buffers[batch]
                buf.history = torch.zeros(batch, self.cache.capacity, dtype=torch.int64, device=dev)
                width = self.drafter.max_depth + 3
                if self.tree_debug:
                    width += 3 * self.drafter.tree_size + self.drafter.max_depth
                buf.spec_out = torch.zeros(batch, width, dtype=torch.int64, device=dev)
        return self.buffers[batch]

    def _prefill_buffers(self, batch: int, length: int) -> PrefillBuffers:
        key = (batch, length)
        if key not in self.prefill_buffers:
            self.prefill_buffers[key] = PrefillBuffers(
                tokens=torch.zeros(batch, length, dtype=torch.int64, device=self.device),
                last=torch.zeros(batch, dtype=torch.int64, device=self.device),
            )
        return self.prefill_buffers[key]

    def _capture(self, step: Callable[[], None]) -> torch.cuda.CUDAGraph:
        # The warm-up run (kernels compiled and chosen, workspaces allocated outside the capture) moves
        # the decode buffers on; put them back so the captured graph starts from the same state.
        saved = [
            (t, t.clone()) for buf in self.buffers.values() for t in (buf.tokens, buf.positions, buf.out)
        ]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            step()
        torch.cuda.current_stream().wait_stream(side)
        for tensor, value in saved:
            tensor.copy_(value)
        if self.graph_pool is None:
            self.graph_pool = torch.cuda.graph_pool_handle()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.graph_pool):
            step()
        return graph


def _padded(prompts: list[list[int]], length: int) -> torch.Tensor:
    out = torch.zeros(len(prompts), length, dtype=torch.int64)
    for i, p in enumerate(prompts):
        out[i, : len(p)] = torch.tensor(p, dtype=torch.int64)
    return out
