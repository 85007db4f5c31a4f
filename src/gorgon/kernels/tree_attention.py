"""Tree attention in Triton: N tree tokens over each row's committed cache slots plus the tree itself.

FlashAttention-2 style: a program owns a block of (node, query head) rows that share one KV head (grouped
heads read each K/V tile once), streams the committed slots in tiles with an online softmax (base 2, the
scale applied inside the exponent's multiply-add; full tiles unmasked, the ragged last tile masked), then
the tree's own slots in tiles of 32, masked from the packed ancestor bits (one int32 word per row and
tile, not a dense [N, P + N] mask). A grid that does not fill the GPU splits the context over programs (the tree being one
more split) in whole rounds of programs; each split writes its normalized output plus its log-sum-exp
(Launch says in which precision), and a second kernel merges. A plain decode step is the same kernel
with no tree slots (triton_ops.decode_attention). On Hopper, in half precision, shapes with many rows a
KV head over long contexts run a warp-specialized wgmma kernel instead (tree_attention_wgmma, chosen by
_wgmma_kind; GORGON_WGMMA=0 keeps this one).
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, replace
from functools import cache

import torch
import triton
import triton.language as tl

from gorgon.kernels.attention import (
    MAX_BLOCK_COUNTERS,
    balanced_splits,
    block_counters,
    split_in_rounds,
    tile_split,
)
from gorgon.kernels.tree_attention_wgmma import HAVE_GLUON

if HAVE_GLUON:
    from gorgon.kernels.tree_attention_wgmma import (
        _dyn_tree_attention_kernel,
        _wgmma_tree_attention_kernel,
        _ws_tree_attention_kernel,
        kv_descriptors,
    )

TREE_TILE = 32  # tree slots per tile: one int32 word of ancestor bits per row


@triton.jit
def _online(x, m_i, l_i, acc, v, qk_scale, PRECISION: tl.constexpr):
    """Fold a tile of raw scores x = q.k [M, T] (-inf where masked) and values v [T, D] into the running
    softmax, kept in base 2: scores are x * qk_scale, applied in the exponent's fused multiply-add (one
    instruction a score where a scaled copy of the tile took two). FlashAttention-4's conditional
    rescaling (skip acc * alpha unless a row's maximum grew by more than 8) was tried here and cost 5-20%
    on the H100: its block-wide branch stalls the pipelined loop."""
    m_new = tl.maximum(m_i, tl.max(x, 1) * qk_scale)
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # a row that has seen nothing yet stays empty
    p = tl.math.exp2(x * qk_scale - m_safe[:, None])
    alpha = tl.math.exp2(m_i - m_safe)
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return m_new, l_i, acc


@triton.jit
def _tree_attention_kernel(
    Q, K, V, COMMITTED, BITS, LSE, PART, OUT, scale, N, NT, HKV, NSPLIT, SPLIT, OFFSET,
    sqb, sqn, sqh, skb, sks, skh, svb, svs, svh, sbb, sbn, sob, son, soh, COUNT,
    G: tl.constexpr, BLOCK_M: tl.constexpr, D: tl.constexpr, BLOCK_N: tl.constexpr,
    DIRECT: tl.constexpr, PRECISION: tl.constexpr, PDL: tl.constexpr, TREE_SPLIT: tl.constexpr,
    FUSE: tl.constexpr = False, BLOCK_S: tl.constexpr = 1, ROWS_F: tl.constexpr = 1,
):  # fmt: skip
    bh = tl.program_id(0)
    mb = tl.program_id(1)
    sp = tl.program_id(2)
    b = bh // HKV
    kvh = bh % HKV
    rows = mb * BLOCK_M + tl.arange(0, BLOCK_M)  # row r is (node r // G, head kvh * G + r % G)
    node = rows // G
    head = kvh * G + rows % G
    live = node < N
    d = tl.arange(0, D)
    q = tl.load(
        Q + b * sqb + node[:, None] * sqn + head[:, None] * sqh + d[None, :], mask=live[:, None], other=0.0
    )
    qk_scale = scale * 1.4426950408889634  # scores in base 2: exp2 is the hardware's exponential
    committed = tl.load(COMMITTED + b).to(tl.int32) + OFFSET  # int32 bounds: Triton pipelines only those
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D], tl.float32)
    # The tree's slots: a split of their own (TREE_SPLIT: program NSPLIT) or the last context split's
    tree_sp = NSPLIT if TREE_SPLIT else NSPLIT - 1
    if DIRECT:
        lo = 0
        hi = committed
    else:
        lo = sp * SPLIT
        hi = tl.minimum(lo + SPLIT, committed)
        if TREE_SPLIT:
            hi = tl.where(sp == NSPLIT, lo, hi)  # the tree's split reads no context
    hi = tl.maximum(hi, lo)  # a split past this row's context is empty
    full = lo + (hi - lo) // BLOCK_N * BLOCK_N
    k_ptr = K + b * skb + kvh * skh + d[None, :]
    v_ptr = V + b * svb + kvh * svh + d[None, :]
    for n0 in range(lo, full, BLOCK_N):  # whole tiles: no masks on the loads or the scores
        cols = n0 + tl.arange(0, BLOCK_N)
        k = tl.load(k_ptr + cols[:, None] * sks)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION)
        v = tl.load(v_ptr + cols[:, None] * svs)
        m_i, l_i, acc = _online(s, m_i, l_i, acc, v, qk_scale, PRECISION)
    if full < hi:  # the ragged last tile
        cols = full + tl.arange(0, BLOCK_N)
        inside = cols < hi
        k = tl.load(k_ptr + cols[:, None] * sks, mask=inside[:, None], other=0.0)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION)
        s = tl.where(inside[None, :], s, float("-inf"))
        v = tl.load(v_ptr + cols[:, None] * svs, mask=inside[:, None], other=0.0)
        m_i, l_i, acc = _online(s, m_i, l_i, acc, v, qk_scale, PRECISION)
    if (sp == tree_sp) | DIRECT:
        jj = tl.arange(0, 32)
        for t0 in range(0, NT, 32):
            j = t0 + jj
            exists = j < NT
            slot = committed + j
            k = tl.load(k_ptr + slot[:, None] * sks, mask=exists[:, None], other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION)
            word = tl.load(BITS + b * sbb + node * sbn + t0 // 32, mask=live, other=0)
            visible = (((word[:, None] >> jj[None, :]) & 1) != 0) & exists[None, :]
            s = tl.where(visible, s, float("-inf"))
            v = tl.load(v_ptr + slot[:, None] * svs, mask=exists[:, None], other=0.0)
            m_i, l_i, acc = _online(s, m_i, l_i, acc, v, qk_scale, PRECISION)
    if PDL:  # the merge may be scheduled once every program has come this far (it waits for the end)
        tl.extra.cuda.gdc_launch_dependents()
    out = acc / tl.where(l_i == 0, 1.0, l_i)[:, None]  # l is 0 only where nothing was seen: out is 0
    if DIRECT:
        dst = OUT + b * sob + node[:, None] * son + head[:, None] * soh + d[None, :]
        tl.store(dst, out.to(OUT.dtype.element_ty), mask=live[:, None])
    else:
        parts = ((b * N + node) * (HKV * G) + head) * (NSPLIT + TREE_SPLIT) + sp
        lse = tl.where(l_i == 0, float("-inf"), m_i + tl.math.log2(tl.where(l_i == 0, 1.0, l_i)))
        tl.store(LSE + parts, lse, mask=live)
        tl.store(PART + parts[:, None] * D + d[None, :], out.to(PART.dtype.element_ty), mask=live[:, None])
        if FUSE:  # the row block's last program to finish merges it: no merge kernel (Launch.fuse_merge)
            # Every thread's partials are issued before one thread counts them (CUTLASS's semaphore: a CTA
            # barrier, then a release); the count is acquire-release, so the last program sees them all.
            tl.debug_barrier()
            counter = COUNT + bh * tl.num_programs(1) + mb
            ticket = tl.atomic_add(counter, 1, sem="acq_rel", scope="gpu")
            tl.debug_barrier()
            if ticket == NSPLIT + TREE_SPLIT - 1:
                tl.atomic_xchg(counter, 0, sem="relaxed", scope="gpu")  # zero for the next launch or replay
                _merge_block(LSE, PART, OUT, b, kvh, mb * BLOCK_M, N, HKV, NSPLIT + TREE_SPLIT, sob, son, soh,
                             G, ROWS_F, BLOCK_S, D)  # fmt: skip


@triton.jit
def _merge_block(
    LSE, PART, OUT, b, kvh, row0, N, HKV, NPARTS, sob, son, soh,
    G: tl.constexpr, ROWS: tl.constexpr, BLOCK_S: tl.constexpr, D: tl.constexpr,
):  # fmt: skip
    """The fused merge: rows row0 .. row0 + ROWS of a row block (their live ones), every partial of every
    row loaded at once (one memory latency; a loop over the splits, pipelined three deep, cost a batch-1
    call 2.2 us more than the merge kernel in 4cd819b), weighed as _merge_kernel weighs them. The loads
    skip L1 (.cg): other SMs wrote these lines during this launch."""
    r = row0 + tl.arange(0, ROWS)
    node = r // G
    head = kvh * G + r % G
    live = node < N
    s = tl.arange(0, BLOCK_S)
    d = tl.arange(0, D)
    first = ((b * N + node) * (HKV * G) + head) * NPARTS
    cell = live[:, None] & (s < NPARTS)[None, :]  # [ROWS, S]
    lse = tl.load(LSE + first[:, None] + s[None, :], mask=cell, other=float("-inf"), cache_modifier=".cg")
    ptr = PART + (first[:, None, None] + s[None, :, None]) * D + d[None, None, :]
    part = tl.load(ptr, mask=cell[:, :, None], other=0.0, cache_modifier=".cg")
    top = tl.max(lse, 1)
    top = tl.where(top == float("-inf"), 0.0, top)  # rows past the tree: nothing to weigh
    w = tl.where(lse == float("-inf"), 0.0, tl.math.exp2(lse - top[:, None]))  # empty splits weigh nothing
    total = tl.sum(w, 1)
    out = tl.sum(part.to(tl.float32) * w[:, :, None], 1) / tl.where(total == 0, 1.0, total)[:, None]
    dst = OUT + b * sob + node[:, None] * son + head[:, None] * soh + d[None, :]
    tl.store(dst, out.to(OUT.dtype.element_ty), mask=live[:, None])


@triton.jit
def _merge_kernel(
    LSE, PART, OUT, PARTS, N, HQ, sob, son, soh, BLOCK_S: tl.constexpr, D: tl.constexpr, PDL: tl.constexpr
):
    if PDL:  # launched before the attention kernel ended: wait for it (and its writes)
        tl.extra.cuda.gdc_wait()
    row = tl.program_id(0)  # (b * N + node) * HQ + head
    b = row // (N * HQ)
    node = (row // HQ) % N
    head = row % HQ
    s = tl.arange(0, BLOCK_S)
    d = tl.arange(0, D)
    inside = s < PARTS
    lse = tl.load(LSE + row * PARTS + s, mask=inside, other=float("-inf"))
    top = tl.max(lse, 0)
    w = tl.where(lse == float("-inf"), 0.0, tl.math.exp2(lse - top))  # empty splits weigh nothing
    part = tl.load(PART + (row * PARTS + s)[:, None] * D + d[None, :], mask=inside[:, None], other=0.0)
    out = tl.sum(part.to(tl.float32) * w[:, None], 0) / tl.sum(w, 0)
    tl.store(OUT + b * sob + node * son + head * soh + d, out.to(OUT.dtype.element_ty))


@dataclass(frozen=True)
class Launch:
    """How tree_attention launches; None picks from the shapes.

    block_m / block_n: rows and committed slots per tile. None: the smallest of 16/32/64 rows that holds a
    KV head's rows, or 128 rows where the grid fills the GPU unsplit; 128 slots for 16-row tiles in half
    precision, else 64. num_warps / num_stages: per program (None: 8 warps for 128-row tiles, else 4;
    Triton's default stages). Splitting: a grid that does not fill the GPU splits the committed context
    into about `waves` rounds of `per_sm` programs per SM (None: as many as the driver says an SM holds
    of the compiled Triton kernel where `occupancy` is on and the GPU can be asked, else an estimate from
    the tiles' shared memory and registers), in splits of at least `min_split` slots. waves None: one
    round, except for grids of 128-row blocks over more than a third of the SMs, split by their balance
    over the SMs (balanced_splits). splits: force this many context splits a row block (a study knob).
    half_partials: the splits' partial outputs in the input's precision (half the traffic of float32
    for bf16/fp16); None: where a KV head has more than 16 rows and a row has HALF_MIN_PARTS partials or
    more (not in the warp-specialized kernel). Their traffic counts where the kernel streams K/V (N=16,
    batch 1, P=8192: 14.6 us, against 18.3 in float32 on the H100); with a few rows
    (N=1) it is negligible and float32 was 4% faster in three runs (11.3 / 11.4 / 10.8 us against
    11.8 / 12.0 / 11.2). With several row blocks a head (N=64) float32 was faster while the merge kernel
    took 4 warps a row (36.4 us against 32.6); since it takes one, half precision is (cold L2, 5 repeats,
    reports/h100-2026-11-27b/merge/half_ab.md: Llama-3-8B heads, batch 1, N=64, P=8192 28.1 -> 26.8 us,
    P=2048 14.0 -> 13.4; SmolLM2 heads N=64 11.6 -> 11.1; N=128 44.3 either way). Not with fewer than
    HALF_MIN_PARTS partials a row, nor in the warp-specialized kernel: SmolLM2 heads at batch 8, N=64,
    P=8192 (5 a row) took 39.0 and 39.8 us with them against 36.0 and 36.1 in float32 in two runs
    (reports/h100-2026-11-27b/occupancy, split_tile), and batch 1, N=128 (warp-specialized) 44.1-44.4
    against 43.5-44.0; every batch-1 case with 8 or more a row was 2-5% faster with them.
    pdl: launch the merge with programmatic dependent launch (Hopper on), so that its launch overlaps
    the attention kernel's last programs; None: off unless GORGON_PDL=1 (and the GPU has it, sm_90+).
    Triggered after each program's main loop it made the kernel 2-4% faster in 5 of 6 split cases on
    the H100 (batch 1, N=16, P=8192: 14.7 -> 14.2 us); its one end-to-end A/B was spoiled by a one-off
    1.3 s stall inside a timed request (likely a graph captured mid-run; the harness now warms up on
    every prompt first), so it stays opt-in. Timed again (cold L2, 5 repeats, reports/h100-2026-11-27c/
    layout) it was within noise: Llama-3-8B heads, batch 1, P=8192, N=1 17.5 -> 17.8 us, N=16
    19.4 -> 19.1, N=64 27.3 -> 27.2; the Llama-3-8B verify step at 8192 tokens within 0.2% at every tree
    size. Triggered at the programs' start it cost 39% at N=16 (merge programs took SM slots that
    attention programs still needed).
    wgmma: run a kernel of tree_attention_wgmma (Hopper, half precision) on asynchronous wgmma, softmax
    overlapping the P V product: True forces it, False never; None: the warp-specialized one where it
    measured faster (_wgmma_kind), else the Triton kernel. num_stages is then its K/V pipeline depth
    (default 2); the plain one takes num_warps = block_m / 16 (measured slower than the Triton kernel).
    warp_specialize (with wgmma True): the warp-specialized form, 128 rows a program on two consumer warp
    groups fed by a TMA producer warp (K/V contiguous [B, S, Hkv, D], else the plain form); block_n
    defaults to 128 there and maxnreg is the consumers' register count (default 232).
    maxnreg: a cap on registers a thread (more programs an SM, at the risk of spills); None: the compiler's.
    occupancy: size the split rounds by the driver's count of resident programs (per_sm None, CUDA, the
    Triton kernel); False: by the estimate alone (the A/B switch).
    tree_split: give the tree's slots a split (a program a row block) of their own (None, True; the wgmma
    kernels always do), or (False, the Triton kernel only) let the last context split take them, so that
    every program of the round reads context. Measured with a cold L2 on the H100
    (reports/h100-2026-11-26e/tree_split_ab.md), False was 2-9% slower in 7 of 10 cases where the Triton
    kernel runs (splits rounded up to whole tiles stay as long, and the last one grows by the tree) and
    faster only where the tree is long against a split (Llama-3-8B heads, batch 1, N=64: 32.7 -> 31.9 us;
    N=128: 60.7 -> 54.0, where the warp-specialized kernel runs instead).
    Measured and not kept (cold L2, H100, reports/h100-2026-11-26f/fuse_ab.md): merging the splits inside
    this kernel (the last split of a row block to finish, counted on an atomic counter, merges the block)
    was slower in every case (batch 1, P=8192, N=1 17.3 -> 19.5 us, N=16 21.6 -> 28.4): one program
    reading a row block's partials costs more than the merge kernel's launch; PDL was within noise.
    Nor was a barrier among a row block's splits, after which each merged a slice of the block's rows (one
    cooperative launch; reports/h100-2026-11-27b/barrier): 0.1-0.7 us slower at batch 1 in every case
    (Llama-3-8B heads, P=8192: N=1 17.5 -> 17.8 us, N=16 19.3 -> 19.6, N=64 27.4 -> 27.9; SmolLM2 heads
    N=64 11.1 -> 12.9): the barrier's wait and the in-kernel merge cost more than the kernel boundary
    they replace. Nor were splits in multiples of 64 or 16 slots instead of whole tiles, each with a
    masked ragged tile (reports/h100-2026-11-27b/split_tile, 7 repeats): at batch 1, P=8192, N=1 and 16
    they keep 128 of 132 SMs busy where whole 128-slot tiles keep 112, yet took 17.4 -> 18.4 us and
    19.2 -> 20.5; elsewhere within 0.1 us or slower. Nor, in the caller, was K/V stored head-major
    ([B, Hkv, S, D] underneath, so that a split reads one run of memory; reports/h100-2026-11-27c/layout):
    Llama-3-8B heads, P=8192, batch 1 N=1 17.5 -> 17.8 us, N=16 19.4 -> 19.5, N=64 27.3 either way,
    batch 8 N=16 93.4 -> 99.8, and batch 1 N=128 44.2 -> 51.4 (the warp-specialized kernel's TMA needs
    the token-major layout).
    dynamic: the dynamic-tile kernel (tree_attention_wgmma._dyn_tree_attention_kernel: context tiles
    claimed one at a time from a counter a row block, so that the programs end together), where it
    applies (_dynamic_plan: Hopper, half precision, at most 64 rows a KV head, a long context and
    DYNAMIC_PROGRAMS programs a row block, where it measured faster); None: only with GORGON_DYNAMIC=1. Opt-in because which program
    sums which tiles varies from run to run, so its output is not reproducible to the bit (the static
    splits are: eager calls and graph replays agree). block_n and num_stages set its tile and ring
    (default 64 slots and 4 stages for 16 rows or fewer, else 128 and 2).
    fuse_merge: the Triton kernel's splits merged by the last program of each row block to finish (an
    acquire-release counter a row block, zeroed by that program), every partial of its rows loaded at
    once, instead of by the merge kernel; only where those partials fit FUSE_MAX_CELLS values (a few rows
    a block: N=1 and decode steps at head_dim 128) and the merge's registers leave the driver's count of
    resident programs as it was. None: there (the same order of sums every run: graphs replay eager calls
    to the bit); False: never. Same run, cold L2, H100 (reports/h100-2026-11-27h/fuse): Llama-3-8B heads,
    N=1, batch 1, P=8192 17.31 -> 16.86 us, P=2048 9.33 -> 8.81, P=512 7.57 -> 7.01; batch 2 and 4, P=8192
    28.30 -> 27.79 and 49.80 -> 49.11. With every partial loaded at once this wins where 4cd819b's fused
    merge, a loop over the splits three loads deep, lost 2.2 us.
    scripts/tree_attention_sweep.py times alternatives on a GPU."""

    block_n: int | None = None
    num_warps: int | None = None
    num_stages: int | None = None
    waves: int | None = None
    per_sm: int | None = None
    min_split: int = 256
    block_m: int | None = None
    half_partials: bool | None = None
    pdl: bool | None = None
    wgmma: bool | None = None
    maxnreg: int | None = None
    warp_specialize: bool = False
    tree_split: bool | None = None
    occupancy: bool = True
    splits: int | None = None
    dynamic: bool | None = None
    fuse_merge: bool | None = None


DEFAULT_LAUNCH = Launch()
HALF_MIN_PARTS = 8  # fewer partials a row than this stay in float32 (Launch.half_partials)
_resident: dict[tuple, int] = {}


@cache
def _libcuda() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None


def _resident_blocks(compiled) -> int:
    """Programs of a compiled Triton kernel that one SM holds at once, as the driver counts them
    (cuOccupancyMaxActiveBlocksPerMultiprocessor); 0 where it cannot be asked."""
    compiled._init_handles()
    lib, count = _libcuda(), ctypes.c_int(0)
    if lib is None:
        return 0
    threads = compiled.metadata.num_warps * 32
    status = lib.cuOccupancyMaxActiveBlocksPerMultiprocessor(
        ctypes.byref(count),
        ctypes.c_void_p(compiled.function),
        threads,
        ctypes.c_size_t(compiled.metadata.shared),
    )
    return count.value if status == 0 else 0


def _resident_per_sm(example: tuple, strides: tuple, consts: dict) -> int:
    """Programs of the Triton kernel (split form) that an SM holds at once, as the driver counts them for
    its compiled code: the estimate of _per_sm missed the registers the compiler gives some shapes, and a
    grid sized by it ran a second round nearly alone. Compiled (not launched) once a configuration. The
    key holds what the JIT specializes on (integers equal to 1, 16-divisible strides) as raw values: a
    flat tuple costs about 3 us a call where deriving those flags took 18 (on the 2-core CI CPU; this runs
    once a layer in eager steps)."""
    q, cache_k, cache_v, committed, bits, part_dtype, out, scale, n, nt, hkv, offset = example
    key = (q.device, q.dtype, part_dtype, n, nt, hkv, offset, strides, tuple(consts.values()))
    if key not in _resident:
        lse = torch.empty(1, device=q.device, dtype=torch.float32)
        part = torch.empty(1, q.shape[-1], device=q.device, dtype=part_dtype)
        args = (q, cache_k, cache_v, committed, bits, lse, part, out, scale, n, nt, hkv, 2, consts["BLOCK_N"], offset)  # fmt: skip
        compiled = _tree_attention_kernel.warmup(*args, *strides, lse, grid=(1, 1, 2), DIRECT=False, **consts)
        _resident[key] = _resident_blocks(compiled)
    return _resident[key]


def _num_sms(device: torch.device) -> int:
    if device.type != "cuda":
        return 132  # the interpreter: size the grid as for an H100
    return torch.cuda.get_device_properties(device).multi_processor_count


@cache
def _pdl_capable(device: torch.device) -> bool:
    # Programmatic dependent launch needs Hopper (sm_90) or later; the interpreter has no grid control.
    return device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 9


def _use_pdl(device: torch.device, launch: Launch) -> bool:
    wanted = launch.pdl if launch.pdl is not None else os.environ.get("GORGON_PDL", "0") == "1"
    return wanted and _pdl_capable(device)


@cache
def _hopper(device: torch.device) -> bool:
    # wgmma is sm_90 only (Blackwell has tcgen05 instead); asked once a device, not every call
    return HAVE_GLUON and device.type == "cuda" and torch.cuda.get_device_capability(device)[0] == 9


def _wgmma_capable(q: torch.Tensor) -> bool:
    # the kernels are written for 16-bit inputs and head sizes 64 and 128
    return _hopper(q.device) and q.dtype in (torch.bfloat16, torch.float16) and q.shape[-1] in (64, 128)


def _wgmma_kind(q: torch.Tensor, launch: Launch, rows: int, heads: int, span: int) -> str | None:
    """Which wgmma kernel runs: "ws" (warp-specialized), "plain", or None (the Triton kernel).
    launch.wgmma None picks the warp-specialized one where it measured faster than the Triton kernel on
    the H100, at head_dim 128 with 128 rows or more a KV head (reports/h100-2026-11-26d):
    - kernel sweep, batch 8 (K/V far beyond the 50 MB L2): 1.07-1.20x at 8192 committed slots from 32
      tree tokens, 1.10-1.14x at 2048 slots with a full grid of 128-row blocks; slower with fewer rows or
      shorter contexts (down to 0.65x), and at head_dim 64;
    - the Llama-3-8B verify step, batch 1, 8192-token context (cold K/V, layer after layer): faster from
      96 tree tokens (24 row blocks; the whole step 1-2% faster), slower up to 64 (16 row blocks, split
      into short programs that one program an SM cannot keep fed: the step 2-5% slower), although the
      kernel sweep, replaying one layer's 34 MB of K/V warm in L2, had it 7-13% faster there too.
    A decode step (a few rows a KV head) never takes it. GORGON_WGMMA=0 turns the automatic choice off."""
    off = launch.wgmma is None and os.environ.get("GORGON_WGMMA", "1") == "0"  # the A/B switch
    if launch.wgmma is False or off or not _wgmma_capable(q):
        return None
    if launch.wgmma:
        return "ws" if launch.warp_specialize else "plain"
    blocks = heads * triton.cdiv(rows, 128)  # its programs before splitting
    big = rows >= 128 and ((span >= 4096 and blocks >= 24) or (span >= 2048 and blocks >= 128))
    return "ws" if q.shape[-1] == 128 and big else None


# Where Launch(dynamic=True) takes the dynamic-tile kernel: committed spans from DYNAMIC_MIN_SPAN and
# DYNAMIC_PROGRAMS context programs a row block, where it measured faster than the default launch
# (reports/h100-2026-11-27h/dyn_sweep, cold L2, H100, bf16, dynamic / default: Llama-3-8B heads, P=8192,
# batch 1 N=1 0.98, N=16 0.96, batch 2 0.96 and 0.98; SmolLM2 heads, P=8192, batch 2 0.89 and 0.88,
# batch 4 0.95 and 0.93). Outside it was slower: SmolLM2 heads at batch 1 (43 programs of three tiles a
# head: 1.04), Llama-3-8B heads at batch 4 (3 programs: up to 1.02), N=16 at P=2048 and 512 (1.03-1.23).
DYNAMIC_MIN_SPAN = 4096
DYNAMIC_PROGRAMS = (7, 32)


def _dynamic_plan(q: torch.Tensor, launch: Launch, rows: int, heads: int, span: int, sms: int) -> int:
    """Context programs a row block for the dynamic-tile kernel (one round, one program an SM, the tree's
    own program beside them), or 0 where it does not run: not asked for (Launch.dynamic, GORGON_DYNAMIC),
    no wgmma, more than one 64-row block a KV head (measured slower: batch 1, N=64, Llama-3-8B heads,
    P=8192 35 us against 28 for the Triton kernel, reports/h100-2026-11-27h), a context shorter than
    DYNAMIC_MIN_SPAN, or a program count a row block outside DYNAMIC_PROGRAMS."""
    wanted = launch.dynamic if launch.dynamic is not None else os.environ.get("GORGON_DYNAMIC", "0") == "1"
    if not wanted or not _wgmma_capable(q) or rows > 64 or span < DYNAMIC_MIN_SPAN:
        return 0
    nprog = sms // heads - 1
    return nprog if DYNAMIC_PROGRAMS[0] <= nprog <= DYNAMIC_PROGRAMS[1] else 0


FUSE_MAX_CELLS = 8192  # partial values (rows x splits x head_dim) the fused merge loads at once: 64 a thread


def _fuse_merge(launch: Launch, cells: int, programs: int) -> bool:
    """Whether the Triton kernel merges its own splits (Launch.fuse_merge, None: on): a counter for every
    row block, and the partials of a row block's rows few enough to load at once."""
    return launch.fuse_merge is not False and programs <= MAX_BLOCK_COUNTERS and cells <= FUSE_MAX_CELLS


def _merge_warps(block_s: int, d: int) -> int:
    """Warps of a merge program (one row's [block_s, d] partials): as few as hold them at 64 values a
    thread, so that a whole batch-1 grid of 512-4096 rows is resident at once. With 4 warps a row the
    merge cost 2.0 / 4.6 / 8.0 / 13.0 us of the 17.5 / 21.3 / 33.4 / 52.7 us of a call at N=1 / 16 / 64 /
    128 (Llama-3-8B heads, P=8192, cold L2, H100); with one warp the calls took 17.3 / 19.0 / 28.4 / 43.4
    (reports/h100-2026-11-27)."""
    return min(max(block_s * d // 2048, 1), 8)


def _regs(launch: Launch) -> dict:
    return {} if launch.maxnreg is None else {"maxnreg": launch.maxnreg}


def _per_sm(block_m: int, block_n: int, d: int, esize: int, warps: int, launch: Launch) -> int:
    """Programs that fit on one SM at once: the pipeline's K/V tiles and the queries in shared memory
    (228 KiB on an H100 or H200), at most 255 registers a thread (64K registers an SM)."""
    if launch.per_sm is not None:
        return launch.per_sm
    stages = launch.num_stages or 3  # Triton's default on Hopper
    smem = (stages * 2 * block_n + block_m) * d * esize
    regs = launch.maxnreg or min(2 * d, 255)  # about what the compiler gives a thread at head_dim 64 and 128
    return max(min(228 * 1024 // smem, 65536 // (warps * 32 * regs)), 1)


# the warp-specialized kernel's splits under balanced_splits: shorter ones starve its pipeline (Llama-3-8B
# heads, batch 3, N=128, P=8192: 4 splits of 2048 slots 124.4 us against 116.4 unsplit)
WS_BALANCE_MIN_SPLIT = 4096


def _split_size(
    span: int,
    programs: int,
    sms: int,
    tile: int,
    per_sm: int,
    launch: Launch = DEFAULT_LAUNCH,
    tree_split: bool = True,
    block_m: int = 64,
    balance_min_split: int | None = None,
) -> int:
    """Committed slots per program. A grid of `programs` row blocks that already fills the SMs covers the
    whole context in one program per block (partials would only add traffic and a merge). A grid of
    128-row blocks (bound by their products) over more than a third of the SMs is split by
    balanced_splits, into splits of at least `balance_min_split` slots (default launch.min_split).
    Otherwise the context is split into whole rounds of `launch.waves` (default 1) times `per_sm`
    programs an SM (the tree's own split among them where `tree_split`); launch.splits forces the count."""
    if launch.splits:
        return tile_split(span, launch.splits, tile)
    if programs >= sms:
        return max(span, 1)
    if launch.waves is None and block_m >= 128 and programs > sms // 3:
        most = triton.cdiv(span, balance_min_split or launch.min_split)
        return tile_split(span, balanced_splits(programs, sms, most), tile)
    slots = (launch.waves or 1) * per_sm * sms
    return split_in_rounds(span, programs, slots, launch.min_split, tile, tree_split)


def _tiles(rows: int, esize: int, blocks: int, sms: int, launch: Launch) -> tuple[int, int, int]:
    """(block_m, block_n, num_warps) for a KV head's `rows` in `blocks` row blocks of 64 over all batch
    rows and KV heads. A grid that fills the SMs unsplit and has several row blocks a head is bound by its
    products: there 128-row tiles on two warp groups read each K/V tile for twice the rows (batch 8,
    N=64 and 128, P=8192: 11% and 16% faster on the H100)."""
    block_m = launch.block_m or (16 if rows <= 16 else (32 if rows <= 32 else 64))
    if launch.block_m is None and rows > 64 and blocks >= sms and esize <= 2:
        block_m = 128
    # 128-slot tiles for 16 rows or fewer, and where 33-64 rows fill one 64-row block (cold-L2 A/B on the
    # H100, reports/h100-2026-11-26e/wide_ab.md: Llama-3-8B heads, N=16, batch 8: P=512 23.1 -> 12.6 us,
    # 2048 42.6 -> 29.5, 8192 110.2 -> 93.1; batch 1 within 4%; 17-32 rows gained nothing). float32 tiles
    # of 128 slots overflow shared memory at D=128, and so would 128-row blocks.
    wide = esize <= 2 and (block_m <= 16 or (block_m == 64 and 32 < rows <= 64))
    warps = launch.num_warps or (8 if block_m >= 128 else 4)
    return block_m, launch.block_n or (128 if wide else 64), warps


def tree_attention(
    q: torch.Tensor,
    cache_k: torch.Tensor,
    cache_v: torch.Tensor,
    committed: torch.Tensor,
    bits: torch.Tensor | None,
    kv_len: int,
    scale: float,
    out: torch.Tensor | None = None,
    tree_len: int | None = None,
    launch: Launch = DEFAULT_LAUNCH,
    split_span: int | None = None,
    context_offset: int = 0,
) -> torch.Tensor:
    """q [B, N, Hq, D]: the tree's queries; cache rows [B, S, Hkv, D] holding each row's committed keys and
    values at slots < committed[b] and the tree's at committed[b] + j; bits [B, N, ceil(N / 32)] int32,
    the packed ancestor relation (TreeMask.bits), or None with tree_len 0 (no tree slots: a decode step);
    kv_len bounds committed + N over the batch.
    tree_len: the tree's slot count when the queries are only some of its nodes (default N); bits are
    then [B, N, ceil(tree_len / 32)]. Returns [B, N, Hq, D] (into `out` if given). `launch`: tiles, warps
    and splitting (the defaults unless a benchmark sweeps them). split_span: the span the split size is
    sized for (default: this call's context); a caller that runs one step both eagerly (exact kv_len)
    and in a CUDA graph (a kv_len bucket) passes the cache's capacity, so that both split the context at
    the same slots and agree to the bit. context_offset: added to every committed length (a decode step
    counts its own new slot as context: committed = position + 1, tree_len 0)."""
    b, n, hq, d = q.shape
    nt = n if tree_len is None else tree_len
    hkv = cache_k.shape[2]
    group = hq // hkv
    rows = n * group
    sms = _num_sms(q.device)
    span = max(kv_len - nt, 1)
    if bits is None and nt != 0:
        raise ValueError("tree_attention: bits may be None only with tree_len 0")
    bits = committed.view(-1, 1, 1) if bits is None else bits  # a valid pointer the kernel never reads
    out = torch.empty_like(q) if out is None else out
    nprog = _dynamic_plan(q, launch, rows, b * hkv, split_span or span, sms)
    if nprog:
        dyn_block_n = launch.block_n or (64 if rows <= 16 else 128)
        descs = kv_descriptors(cache_k, cache_v, dyn_block_n)
        if descs is not None:
            return _dynamic(q, descs, committed, bits, nt, hkv, cache_k.shape[1], scale, out, nprog, dyn_block_n,
                            launch, context_offset)  # fmt: skip
    kind = _wgmma_kind(q, launch, rows, b * hkv, split_span or span)  # split_span: graphs and eager agree
    descs = kv_descriptors(cache_k, cache_v, launch.block_n or 128) if kind == "ws" else None
    if kind == "ws" and descs is None:  # caches not laid out for TMA
        kind = "plain" if launch.wgmma else None
    if kind == "ws":  # two consumer warp groups of 64 rows and a producer warp, one program an SM
        block_m, block_n, warps = 128, launch.block_n or 128, 4
        launch = replace(launch, num_stages=launch.num_stages or 2, per_sm=launch.per_sm or 1)
    elif kind == "plain":  # one m64 slab of rows per warp group
        block_m, block_n = launch.block_m or 64, launch.block_n or 64
        warps = launch.num_warps or block_m // 16
        launch = replace(launch, num_stages=launch.num_stages or 2)
    else:
        block_m, block_n, warps = _tiles(rows, q.element_size(), b * hkv * triton.cdiv(rows, 64), sms, launch)
    # the pointer-based kernels' common arguments (the warp-specialized one reads K/V through descriptors)
    strides = (q.stride(0), q.stride(1), q.stride(2), cache_k.stride(0), cache_k.stride(1), cache_k.stride(2),
               cache_v.stride(0), cache_v.stride(1), cache_v.stride(2), bits.stride(0), bits.stride(1),
               out.stride(0), out.stride(1), out.stride(2))  # fmt: skip
    # the tree's own split (the wgmma kernels always; the Triton kernel unless launch.tree_split is False)
    tree_split = kind is not None or launch.tree_split is not False
    consts = dict(
        G=group, BLOCK_M=block_m, D=d, BLOCK_N=block_n, PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        TREE_SPLIT=tree_split, num_warps=warps, **_regs(launch),
        **({} if launch.num_stages is None else {"num_stages": launch.num_stages}),
    )  # fmt: skip
    pdl_wanted = kind is None and _use_pdl(q.device, launch)
    programs = b * hkv * triton.cdiv(rows, block_m)

    balance_min = WS_BALANCE_MIN_SPLIT if kind == "ws" else None  # _split_size

    def plan(part_dtype: torch.dtype) -> tuple[int, int, int]:
        """(split, nsplit, nparts) for partials of part_dtype, part of the compiled kernel whose residency
        sizes the split rounds."""
        per_sm = _per_sm(block_m, block_n, d, q.element_size(), warps, launch)
        if kind is None and launch.per_sm is None and launch.occupancy and q.device.type == "cuda":
            example = (q, cache_k, cache_v, committed, bits, part_dtype, out, scale, n, nt, hkv, context_offset)  # fmt: skip
            per_sm = _resident_per_sm(example, strides, dict(consts, PDL=pdl_wanted)) or per_sm
        split = _split_size(
            split_span or span, programs, sms, block_n, per_sm, launch, tree_split, block_m, balance_min
        )
        nsplit = triton.cdiv(span, split)
        return split, nsplit, nsplit + tree_split  # partials a row: one a split

    # half-precision partials (Launch.half_partials); with fewer than HALF_MIN_PARTS a row, planned again
    # in float32
    half = launch.half_partials if launch.half_partials is not None else rows > 16 and kind != "ws"
    part_dtype = q.dtype if half else torch.float32
    split, nsplit, nparts = plan(part_dtype)
    if launch.half_partials is None and half and nparts < HALF_MIN_PARTS:
        part_dtype = torch.float32
        split, nsplit, nparts = plan(part_dtype)
    direct = nsplit == 1
    parts = 1 if direct else b * n * hq * nparts
    lse = torch.empty(parts, device=q.device, dtype=torch.float32)
    part = torch.empty(parts, d, device=q.device, dtype=part_dtype)
    grid = (b * hkv, triton.cdiv(rows, block_m), 1 if direct else nparts)
    rows_f = triton.next_power_of_2(min(block_m, rows))  # a row block's rows the fused merge holds
    block_s = triton.next_power_of_2(nparts)
    fuse = not direct and kind is None and _fuse_merge(launch, rows_f * block_s * d, programs)
    if fuse and launch.per_sm is None and launch.occupancy and q.device.type == "cuda":
        # the split rounds were sized for the unfused kernel: fused only where the merge's registers leave
        # the driver's count of resident programs as it was
        example = (q, cache_k, cache_v, committed, bits, part_dtype, out, scale, n, nt, hkv, context_offset)
        fused = dict(consts, PDL=False, FUSE=True, BLOCK_S=block_s, ROWS_F=rows_f)
        fuse = _resident_per_sm(example, strides, fused) >= _resident_per_sm(
            example, strides, dict(consts, PDL=pdl_wanted)
        )
    pdl = pdl_wanted and not direct and not fuse  # a direct or fused launch has no merge to overlap
    args = (q, cache_k, cache_v, committed, bits, lse, part, out, scale, n, nt, hkv, nsplit, split, context_offset)  # fmt: skip
    if kind == "ws":
        _ws_tree_attention_kernel[grid](
            q, *descs, committed, bits, lse, part, out, scale, n, nt, hkv, cache_k.shape[1], nsplit, split,
            context_offset, q.stride(0), q.stride(1), q.stride(2), bits.stride(0), bits.stride(1), out.stride(0),
            out.stride(1), out.stride(2), G=group, D=d, BLOCK_N=block_n, STAGES=launch.num_stages, DIRECT=direct,
            CONSUMER_REGS=launch.maxnreg or 232, num_warps=4,
        )  # fmt: skip
    elif kind == "plain":
        _wgmma_tree_attention_kernel[grid](
            *args, *strides, G=group, BLOCK_M=block_m, D=d, BLOCK_N=block_n, STAGES=launch.num_stages,
            DIRECT=direct, num_warps=warps, **_regs(launch),
        )  # fmt: skip
    else:
        count = block_counters(q.device) if fuse else lse  # a valid pointer the kernel never reads unfused
        _tree_attention_kernel[grid](
            *args, *strides, count, DIRECT=direct, PDL=pdl, FUSE=fuse, BLOCK_S=block_s, ROWS_F=rows_f, **consts
        )  # fmt: skip
    if not direct and not fuse:
        _merge(lse, part, out, nparts, pdl)
    return out


def _merge(lse: torch.Tensor, part: torch.Tensor, out: torch.Tensor, nparts: int, pdl: bool = False) -> None:
    """The merge kernel over every row's nparts partials (LSE / PART as the attention kernels write them)."""
    b, n, hq, d = out.shape
    block_s = triton.next_power_of_2(nparts)
    _merge_kernel[(b * n * hq,)](
        lse, part, out, nparts, n, hq, out.stride(0), out.stride(1), out.stride(2),
        BLOCK_S=block_s, D=d, PDL=pdl, launch_pdl=pdl, num_warps=_merge_warps(block_s, d),
    )  # fmt: skip


def _dynamic(q, descs, committed, bits, nt, hkv, slots, scale, out, nprog, block_n, launch, offset):
    """tree_attention on the dynamic-tile kernel: nprog context programs and the tree's a row block (one
    64-row block a KV head), then the merge kernel over their partials."""
    b, n, hq, d = q.shape
    nparts = nprog + 1
    rows = n * (hq // hkv)
    half = (
        launch.half_partials if launch.half_partials is not None else rows > 16 and nparts >= HALF_MIN_PARTS
    )
    lse = torch.empty(b * n * hq * nparts, device=q.device, dtype=torch.float32)
    part = torch.empty(b * n * hq * nparts, d, device=q.device, dtype=q.dtype if half else torch.float32)
    _dyn_tree_attention_kernel[(b * hkv, 1, nparts)](
        q, *descs, committed, bits, lse, part, block_counters(q.device), scale, n, nt, hkv, slots, nprog, offset,
        q.stride(0), q.stride(1), q.stride(2), bits.stride(0), bits.stride(1), G=hq // hkv, D=d, BLOCK_N=block_n,
        STAGES=launch.num_stages or (4 if block_n == 64 else 2), num_warps=4,
    )  # fmt: skip
    _merge(lse, part, out, nparts)
    return out
