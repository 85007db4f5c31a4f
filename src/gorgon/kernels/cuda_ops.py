"""The `cuda` backend: tree attention and KV compaction as CUDA C++ kernels (kernels/cuda/*.cu).

Built at first use with `torch.utils.cpp_extension` (nvcc and ninja needed; about a minute, cached under
~/.cache/gorgon/cuda-<hash> afterwards), for the architecture of the GPU at hand (sm_90 on H100/H200).
Tree attention in bfloat16/float16 with head_dim 64 or 128 runs a tensor-core kernel (`_auto_kernel`): on
Hopper (sm_90) the warp-specialized one (ws: a TMA producer warp, two consumer warp groups on wgmma) where
there is enough context to stream, else the mma.sync one's wgmma forms; elsewhere the mma.sync one
(FlashAttention-2 on raw PTX) in blocks of 4 or 8 warps; GORGON_CUDA_KERNEL forces one of KERNELS (wmma: the
older WMMA kernel, for comparison); float32 and other head sizes run the exact warp-per-row kernel
(GORGON_CUDA_KERNEL=exact forces it everywhere). The decode-step operations this backend has no CUDA kernel
for (RMSNorm, RoPE + KV write, SiLU, decode attention, argmax) come from the Triton backend when Triton is
installed, else from the reference.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from types import ModuleType

import torch

from gorgon.errors import GorgonError
from gorgon.kernels import reference
from gorgon.kernels.attention import (
    MAX_BLOCK_COUNTERS,
    AttentionMeta,
    balanced_splits,
    block_counters,
    split_in_rounds,
    tile_split,
)

SOURCES = [Path(__file__).parent / "cuda" / name for name in ("tree_attention.cu", "binding.cpp")]
MAX_TREE = 128
# the binding's codes
KERNELS = {"exact": 0, "mma4": 1, "wmma": 2, "mma8": 3, "wgmma4": 4, "wgmma8": 5, "ws": 6}
NAMES = (*KERNELS, "mma")  # "mma": whichever tensor-core kernel _auto_kernel picks
# (node, head) rows a block of each tensor-core kernel
BLOCK_ROWS = {1: 64, 2: 64, 3: 128, 4: 64, 5: 128, 6: 128}
WGMMA = {KERNELS["wgmma4"], KERNELS["wgmma8"], KERNELS["ws"]}  # Hopper's warp-group MMA: sm_90 only
WS_TILE = 128  # slots a tile of the warp-specialized kernel (fa2::kWsBN)
MIN_SPLIT = 128  # committed slots per split, at least
BALANCE_MIN_SPLIT = 2048  # committed slots per split, at least, where _splits balances a grid
WS_MIN_WORK = 32768  # ws row blocks x committed slots from which _auto_kernel takes ws on Hopper
SHORT_WORK = 32768  # committed slots x head_dim below which split_plan leaves the context unsplit


def buildable() -> bool:
    """Whether this machine can build the extension (a CUDA build of torch, nvcc, ninja)."""
    from torch.utils import cpp_extension

    return (
        torch.version.cuda is not None
        and cpp_extension.CUDA_HOME is not None
        and shutil.which("ninja") is not None
    )


@cache
def extension() -> ModuleType:
    """The compiled extension, built on first call."""
    if not buildable():
        raise GorgonError("the cuda backend needs a CUDA build of torch, nvcc (CUDA_HOME) and ninja")
    major, minor = torch.cuda.get_device_capability()
    # the GPU at hand only; sm_90a on Hopper, whose architecture-specific wgmma the wgmma kernels use
    os.environ["TORCH_CUDA_ARCH_LIST"] = f"{major}.{minor}" + ("a" if (major, minor) == (9, 0) else "")
    return build("gorgon_cuda", SOURCES, "cuda", ["-lineinfo"])


def build(name: str, sources: list[Path], tag: str, flags: Sequence[str] = ()) -> ModuleType:
    """`sources` (tree_attention.cu and binding.cpp) compiled with nvcc `flags` as extension `name`, cached
    under $GORGON_CACHE by `tag`, the sources and flags. extension() builds the shipped one; the study
    scripts build earlier versions and macro variants with it (after extension(), which sets the
    architecture list)."""
    from torch.utils import cpp_extension

    major, minor = torch.cuda.get_device_capability()
    digest = hashlib.sha256(b"".join(Path(p).read_bytes() for p in sources) + " ".join(flags).encode())
    folder = Path(os.environ.get("GORGON_CACHE", Path.home() / ".cache" / "gorgon"))
    folder = folder / f"{tag}-{digest.hexdigest()[:12]}-sm{major}{minor}"
    folder.mkdir(parents=True, exist_ok=True)
    return cpp_extension.load(
        name=name,
        sources=[str(p) for p in sources],
        build_directory=str(folder),
        extra_cuda_cflags=["-O3", "-std=c++17", *flags],
        extra_cflags=["-O3", "-std=c++17"],
    )


@cache
def _fallback() -> ModuleType:
    if importlib.util.find_spec("triton") is not None:
        from gorgon.kernels import triton_ops

        return triton_ops
    return reference


def __getattr__(name: str):
    # The reference's ops this module has no kernel for (rms_norm, argmax, accept_greedy, ...): whatever
    # the next backend down provides.
    if getattr(getattr(reference, name, None), "__module__", None) == reference.__name__:
        return getattr(_fallback(), name)
    raise AttributeError(name)


def pdl(code: int, rows: int) -> bool:
    """Whether kernel `code`'s merge is launched as a programmatic dependent (the extension checks for sm_90):
    GORGON_PDL=1 or 0 forces it on or off. By default (`rows`: tree nodes x GQA group, a KV head's rows):
    - the ws kernel's, at most 64 rows (one consumer group a block). The ws kernel lets the merge launch
      once its blocks leave their main loops: on the H100, Llama-3-8B heads, P=8192, same run, 0.4-0.8 us
      faster at batch 1-2, N=1-16 (reports/h100-2026-11-28d, round 3);
    - the wgmma kernels' (wgmma4, wgmma8), over 16 rows. With two warps a merged row (the PDL merge's
      shape), on the H200, same run, us (reports/h200-2026-11-28e, round 4): SmolLM2 heads, batch 1, N=16,
      P=768 8.41 -> 7.54, P=2048 8.64 -> 7.85, P=8192 11.14 -> 10.55, N=32, P=8192 12.66 -> 12.00;
      Llama-3-8B heads, N=16, P=512 10.56 -> 9.62, P=2048 12.61 -> 12.08, N=64, P=512 12.41 -> 11.83. At
      3-4 rows (N=1) it tied or lost: SmolLM2 heads, P=8192 9.84 -> 9.90, Llama-3-8B heads, P=2048 9.86 ->
      10.40.
    The mma kernels' (off Hopper) stay off: before two warps a row they were mixed on the H100, -4% to +6%
    (reports/h100-2026-11-26c)."""
    env = os.environ.get("GORGON_PDL")
    if env is not None and env not in ("0", "1"):
        raise GorgonError(f"GORGON_PDL: {env!r} is not 0 or 1")
    if env is not None:
        return env == "1"
    if code == KERNELS["ws"]:
        return rows <= 64
    return code in (KERNELS["wgmma4"], KERNELS["wgmma8"]) and rows > 16


def _aligned(*tensors: torch.Tensor) -> bool:
    # The tensor-core kernel moves 16-byte vectors: base addresses and row strides must allow it.
    return all(t.data_ptr() % 16 == 0 and all(s % 8 == 0 for s in t.stride()[:-1]) for t in tensors)


@cache
def _target_blocks(device: int) -> int:
    # One round of 4-warp blocks at head_dim 128: two fit an SM (registers and shared memory of the mma
    # kernel). split_plan doubles it at head_dim 64, whose blocks need half of both, and halves it for
    # 8-warp blocks.
    return 2 * torch.cuda.get_device_properties(device).multi_processor_count


def _splits(
    blocks: int, span: int, target: int, places: int, products: bool, tile: int = 64
) -> tuple[int, int]:
    """(splits, split size) of the committed span for a grid of `blocks` blocks per split, in multiples of
    the tile (64 slots; the warp-specialized kernel's 128): one round of `target` resident blocks
    (attention.split_in_rounds), or more splits where balance over the SMs asks for them
    (attention.balanced_splits, over `places`: two 64-row blocks an SM, one 128-row block). Balance
    applies to grids bound by their products (`products`: a KV head has more than 64 rows) over more than
    a third of the places but short of them, with room for two splits of BALANCE_MIN_SPLIT slots or more.

    On the H100 (cold L2, 5 repeats, PDL off; reports/h100-2026-11-27d/cuda_balance/), against one
    round, in us:
    - Llama-3-8B heads, P=8192: batch 2, N=128 unsplit -> 2 splits 140.2 -> 120.4; batch 4, N=64
      140.8 -> 123.3; batch 3, N=128 206.6 -> 191.2 (4 splits of 2048, wgmma4 instead of wgmma8:
      _auto_kernel). Batch 2, N=128, P=4096: 76.6 -> 74.5.
    - SmolLM2 heads, P=8192: batch 8, N=128 and batch 16, N=64 2 -> 3 splits 110.2 -> 96.8 and
      111.6 -> 98.6; batch 10, N=128 unsplit -> 4 splits 141.8 -> 113.0.
    - Lost, hence the limits: splits of 1024 slots (Llama-3-8B heads, batch 4, N=64, P=2048: 42.6
      unsplit, with no merge and no tree programs, -> 51.9 in 2) and a grid that streams K/V (batch 12,
      N=16, P=8192: 148.1 unsplit -> 159.9 in 2). Balance never gives fewer splits than one round: at
      head_dim 64, four blocks an SM resident, its model ties 1 and 2 splits where 2 were faster
      (SmolLM2 heads, batch 8, N=128, P=8192: 141.3 unsplit, 110.1 in 2)."""
    split = split_in_rounds(span, blocks, target, MIN_SPLIT, tile)
    most = span // BALANCE_MIN_SPLIT  # splits of BALANCE_MIN_SPLIT or more
    if products and places // 3 < blocks < places and most >= 2:
        count = balanced_splits(blocks, places, most)
        if count > -(-span // split):  # more splits only: the model ties 1 and 2 where 2 was faster
            split = tile_split(span, count, tile)
    return -(-span // split), split


def split_plan(
    q: torch.Tensor,
    cache_k: torch.Tensor,
    kv_len: int,
    code: int = KERNELS["mma4"],
    splits: int | None = None,
) -> tuple[int, int]:
    """(programs per row block, committed slots per split) of tensor-core kernel `code`: nsplit 1 is one
    block for everything; otherwise nsplit - 1 splits of the context and a last one for the tree.
    `splits` forces the count of context splits (a study knob, like the Triton backend's Launch.splits).
    A context shorter than SHORT_WORK / head_dim slots (512 at head_dim 64, 256 at 128) is not split: there
    a split saves less streaming than its merge kernel costs. The default model's verify step, SmolLM2
    heads, batch 1, P=256, same run on the H100 (reports/h100-2026-11-27f/short_splits): 7.7-8.1 us
    unsplit against 8.6-9.5 in 2 splits and the tree's; batch 8, N=64: 8.4 against 13.2. At P=768 the
    splits win (8.6-9.7 against 13.8-14.4 unsplit), and so they do for Llama-3-8B heads at P=512 (batch 1,
    N=16: 11.5 against 14.6)."""
    b, n, hq, d = q.shape
    hkv = cache_k.shape[2]
    span = max(kv_len - n, 1)
    ws = code == KERNELS["ws"]
    tile = WS_TILE if ws else 64
    if splits:
        split = tile_split(span, splits, tile)
        count = -(-span // split)
    elif span * d < SHORT_WORK:
        count, split = 1, span
    else:
        rows = BLOCK_ROWS[code]
        blocks = b * hkv * -(-n * (hq // hkv) // rows)
        places = _target_blocks(q.get_device()) * 64 // rows
        # the warp-specialized kernel's shared memory holds it to one block an SM at either head size
        target = places if ws else places * max(128 // d, 1)
        count, split = _splits(blocks, span, target, places, n * (hq // hkv) > 64, tile)
    return (1 if count == 1 else count + 1), split


def _kernel_code(
    q: torch.Tensor, tensors: tuple[torch.Tensor, ...], fast: bool | None, kernel: str | None, span: int
) -> int:
    """The binding's code of the kernel to run; `span`: the committed slots attended (kv_len - n)."""
    name = kernel or os.environ.get("GORGON_CUDA_KERNEL") or "mma"
    if name not in NAMES:
        raise GorgonError(f"GORGON_CUDA_KERNEL / kernel: {name!r} is not one of {sorted(NAMES)}")
    if name == "mma" or (fast is True and name == "exact"):
        name = _auto_kernel(q, tensors[1].shape[2], span)
        if name == "ws" and tensors[1].shape != tensors[2].shape:  # its TMA maps K and V alike
            name = "wgmma4"
    if KERNELS[name] in WGMMA and q.is_cuda and not _hopper(q):
        raise GorgonError(f"the CUDA kernel {name!r} runs on sm_90 GPUs (H100, H200) only; use mma4 or mma8")
    if fast is True:  # a tensor-core kernel, whatever the environment says
        return KERNELS[name]
    if fast is False or name == "exact":
        return KERNELS["exact"]
    applies = q.dtype in (torch.float16, torch.bfloat16) and q.shape[-1] in (64, 128) and _aligned(*tensors)
    return KERNELS[name] if applies else KERNELS["exact"]


@cache
def _capability(device: int) -> tuple[int, int]:
    return torch.cuda.get_device_capability(device)


def has_wgmma(device: int | None = None) -> bool:
    """Whether the GPU (default: the current one) is sm_90 (H100, H200), where the wgmma kernels run."""
    return _capability(torch.cuda.current_device() if device is None else device) == (9, 0)


def _hopper(q: torch.Tensor) -> bool:
    return q.is_cuda and has_wgmma(q.get_device())


def _auto_kernel(q: torch.Tensor, kv_heads: int, span: int) -> str:
    """Off Hopper: 8 warps (128-row blocks, one an SM) at head_dim 128 where a KV head has more than 64
    rows and the 4-warp blocks fill every SM without splitting the context; else 4. On the H100
    (reports/h100-2026-11-26e/cuda8_*.md, same run): batch 8, N=64 and 128, Llama-3-8B heads, 8-10%
    faster; batch 1 the same within 2% at N=64 and 128; slower at head_dim 64 (SmolLM2 heads, batch 8,
    N=64: 65 -> 84 us) and where rows would idle (N=1).
    On sm_90 the warp-specialized kernel (ws), faster than the wgmma forms (wgmma4, wgmma8: this rule's
    choice before it) in 13 of the 14 cases of reports/h100-2026-11-27e/ws_variants2 (cold L2, same run,
    us): Llama-3-8B heads, P=8192, batch 8, N=64 206.7 -> 150.3, N=128 425.9 -> 306.0, N=16 111.6 ->
    99.9, N=1 96.8 -> 92.5; batch 1, N=64 39.3 -> 31.4, N=128 73.5 -> 50.1, N=1 18.8 -> 18.5; SmolLM2
    heads, batch 8, N=128 97.6 -> 75.3. Where the ws kernel's work is short, a few blocks of 17-64 rows at
    head_dim 128 run the wgmma8 form, whose second warp group, all padding, only loads tiles
    (reports/h100-2026-11-26f: 25.5 -> 21.6 us against wgmma4). It took those shapes whatever the work
    until the ws kernel read Q and wrote its rows faster (2026-11-27j): batch 1, N=16, P=8192 ws 20.42
    against wgmma8 21.38 us (reports/h100-2026-11-27j/timeline, round 3).
    The ws kernel's fixed costs (three warp groups, barriers, TMA maps) need a long stream to pay off: with
    fewer than WS_MIN_WORK (ws row blocks x committed slots) it runs wgmma4. At the default model's verify
    shapes (SmolLM2 heads, batch 1, N=16-64, P=256 and 768; reports/h100-2026-11-27f/final/small, same run)
    ws took 10.3-13.0 us against wgmma4's 7.9-9.2, and the tables of 2026-11-27d (wgmma4/8) and -27f (ws)
    put the crossing near this much work: e.g. Llama-3-8B heads, batch 1, P=512, N=64 16.2 (wgmma4) against
    18.1 us (ws), P=2048 21.9 against 20.0; SmolLM2 heads, batch 8, P=512, N=128 23.7 against 16.8."""
    b, n, hq, d = q.shape
    rows = n * (hq // kv_heads)
    blocks = b * kv_heads * -(-rows // BLOCK_ROWS[KERNELS["mma4"]])
    target = _target_blocks(q.get_device())
    if not _hopper(q):
        wide = d == 128 and rows > 64 and blocks >= target // 2
        return "mma8" if wide else "mma4"
    ws_blocks = b * kv_heads * -(-rows // BLOCK_ROWS[KERNELS["ws"]])
    if ws_blocks * span >= WS_MIN_WORK:
        return "ws"
    few = d == 128 and 16 < rows <= 64 and blocks * 16 <= target
    return "wgmma8" if few else "wgmma4"


def tree_attention(
    q: torch.Tensor,
    cache_k: torch.Tensor,
    cache_v: torch.Tensor,
    committed: torch.Tensor,
    bits: torch.Tensor,
    kv_len: int,
    scale: float,
    out: torch.Tensor | None = None,
    fast: bool | None = None,
    kernel: str | None = None,
    splits: int | None = None,
    fuse: bool = False,
) -> torch.Tensor:
    """Same contract as gorgon.kernels.tree_attention.tree_attention (q [B, N, Hq, D], N <= 128).
    `fast`: force a tensor-core (True) or the exact (False) kernel; default: tensor cores where they
    apply. `kernel`: "mma" (default: _auto_kernel's choice), "mma4", "mma8", "wgmma4", "wgmma8" (their forms
    on Hopper's warp-group MMA, sm_90 only), "ws" (the warp-specialized wgmma form: TMA producer, two
    consumer warp groups; sm_90 only), "wmma" or "exact"; default: $GORGON_CUDA_KERNEL, else "mma".
    `splits`: force this many context splits (split_plan's study knob). `fuse`: True for split kernels
    that merge their own splits (fuse_merge; off by default)."""
    out = torch.empty_like(q) if out is None else out
    code = _kernel_code(q, (q, cache_k, cache_v, out), fast, kernel, max(kv_len - q.shape[1], 1))
    tensors = (q, cache_k, cache_v, committed, bits)
    return launch(extension(), code, *tensors, kv_len, scale, out, splits, fuse)


def fuse_merge(code: int, row_blocks: int, fuse: bool) -> bool:
    """Whether kernel `code`, split, merges its splits itself (the row block's last split to finish, a warp
    a row: merge_if_last in tree_attention.cu) instead of launching the merge kernel: only where asked
    (`fuse`), for the mma, wgmma and ws kernels (not the exact one, nor wmma), with a counter for each of
    the `row_blocks` row blocks.

    Off by default: it bought nothing on the H100 against the merge kernel (same run, cold L2, us,
    reports/h100-2026-11-27i/cuda_fuse round 7). Llama-3-8B heads, N=1, batch 1, P=8192 18.83 -> 18.81,
    P=2048 11.07 -> 11.18, P=512 9.47 -> 9.40, batch 2 31.18 -> 31.13; SmolLM2 heads, batch 8 26.42 ->
    26.06, batch 1, P=2048 8.43 -> 9.13. It loses more where a warp merges several rows (Llama-3-8B heads,
    N=2: 18.85 -> 21.24) or needs two rounds of loads (SmolLM2 heads, batch 1, P=8192, 65 splits: 10.49 ->
    13.43). The Triton kernel's fused merge, which loads a row block's partials with all its threads at
    once, does pay (tree_attention.FUSE_MAX_CELLS)."""
    if code in (KERNELS["exact"], KERNELS["wmma"]) or row_blocks > MAX_BLOCK_COUNTERS:
        return False
    return fuse


def launch(
    ext,
    code: int,
    q,
    cache_k,
    cache_v,
    committed,
    bits,
    kv_len: int,
    scale: float,
    out,
    splits: int | None = None,
    fuse: bool = False,
):
    """Kernel `code` of the extension `ext` (extension(), or a study build of the same binding) into `out`,
    with split_plan's splits and their scratch, merged by fuse_merge's choice; `splits` and `fuse` are
    tree_attention's knobs."""
    b, n, hq, d = q.shape
    exact = code == KERNELS["exact"]
    nsplit, split = (1, max(kv_len - n, 1)) if exact else split_plan(q, cache_k, kv_len, code, splits)
    parts = b * n * hq * nsplit if nsplit > 1 else 1
    lse = torch.empty(parts, device=q.device, dtype=torch.float32)
    part = torch.empty(parts, d if nsplit > 1 else 1, device=q.device, dtype=q.dtype)
    rows = n * (hq // cache_k.shape[2])
    row_blocks = b * cache_k.shape[2] * -(-rows // 64)
    fused = nsplit > 1 and fuse_merge(code, row_blocks, fuse)
    counters = block_counters(q.device) if fused else lse  # a valid tensor the kernels never read unfused
    args = (q, cache_k, cache_v, committed, bits, out, lse, part, scale, nsplit, split, code)
    ext.tree_attention(*args, pdl(code, rows), fused, counters)
    return out


def attend(
    q: torch.Tensor, cache_k: torch.Tensor, cache_v: torch.Tensor, meta: AttentionMeta, scale: float
) -> torch.Tensor:
    """Trees run the CUDA kernel; everything else (a drafter's partial trees too) the next backend down."""
    if meta.tree is not None and meta.tree.square and q.shape[1] <= MAX_TREE and q.shape[-1] <= 256:
        tree = meta.tree
        return tree_attention(q, cache_k, cache_v, tree.committed, tree.bits, meta.kv_len, scale)
    return _fallback().attend(q, cache_k, cache_v, meta, scale)


def keep_path(
    data: torch.Tensor, committed: torch.Tensor, path: torch.Tensor, n_accepted: torch.Tensor
) -> None:
    """The reference's keep_path as one kernel: a block per (plane, row) copies its accepted slots."""
    if path.shape[1] == 0:
        return
    if data.element_size() not in (2, 4) or not data.is_contiguous():
        return reference.keep_path(data, committed, path, n_accepted)
    as64 = lambda t: t.to(torch.int64).contiguous()
    extension().keep_path(data, as64(committed), as64(path), as64(n_accepted))
