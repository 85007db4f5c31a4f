"""Study: tree attention with dynamic tile scheduling (Gluon, Hopper). A program holds 64 rows of a KV head
(one consumer warp group) fed by a TMA producer warp. Context tiles are not split statically: program s
starts on tile s and then takes the next unclaimed tile of its row block from an atomic counter, so SMs that
stream faster take more tiles and the programs of a row block end together. The tree's slots are one more
program a row block, as in the ws kernel. Each program leaves one partial a row; the merge kernel merges.

The counter: every program's producer claims tiles until a claim fails (tile >= the row block's tiles);
each program makes exactly one failing claim, so the claims number max(tiles, programs) and the one that
returns the last value zeroes the counter for the next launch or graph replay.
"""

from __future__ import annotations

import torch
import triton
from triton.experimental import gluon
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.language.nvidia.hopper import (
    fence_async_shared,
    mbarrier,
    warpgroup_mma,
    warpgroup_mma_wait,
)

import gorgon.kernels.tree_attention as ta
from gorgon.kernels.tree_attention_wgmma import (
    _barrier,
    _softmax_step,
    _tma_load,
    _write_rows,
    _ws_mask,
    kv_descriptors,
)


@gluon.jit
def _dyn_producer(k_desc, v_desc, k_smem, v_smem, k_ready, v_ready, k_empty, v_empty, idx_smem, CTR,
                  row0, col, sp, NPROG, TILES, lo, NT, CLAIMS,
                  BLOCK_N: gl.constexpr, STAGES: gl.constexpr):  # fmt: skip
    one: gl.constexpr = gl.BlockedLayout([1], [32], [1], [0])
    if sp == NPROG:  # the tree's program: its tiles in order, no claims
        t = 0
        count = gl.cdiv(NT, BLOCK_N)
    else:
        t = sp
        count = TILES
    i = 0
    while t < count:
        st = i % STAGES
        free = ((i // STAGES) & 1) ^ 1  # a fresh barrier's previous phase counts as complete
        mbarrier.wait(k_empty.index(st), free)
        idx_smem.index(st).store(gl.zeros([1], gl.int32, one) + (lo + t * BLOCK_N))
        mbarrier.expect(k_ready.index(st), k_desc.block_type.nbytes)
        _tma_load(k_desc, [row0 + lo + t * BLOCK_N, col], k_ready.index(st), k_smem.index(st))
        mbarrier.wait(v_empty.index(st), free)
        mbarrier.expect(v_ready.index(st), v_desc.block_type.nbytes)
        _tma_load(v_desc, [row0 + lo + t * BLOCK_N, col], v_ready.index(st), v_smem.index(st))
        if sp == NPROG:
            t += 1
        else:
            claim = gl.atomic_add(CTR, 1, sem="relaxed")
            if claim == CLAIMS - 1:
                gl.atomic_xchg(CTR, 0, sem="relaxed")
            t = claim + NPROG
        i += 1
    if (sp < NPROG) & (sp >= TILES):  # no tile of its own: its one failing claim
        claim = gl.atomic_add(CTR, 1, sem="relaxed")
        if claim == CLAIMS - 1:
            gl.atomic_xchg(CTR, 0, sem="relaxed")
    st = i % STAGES  # the end: slot -1 in the next stage
    mbarrier.wait(k_empty.index(st), ((i // STAGES) & 1) ^ 1)
    idx_smem.index(st).store(gl.zeros([1], gl.int32, one) - 1)
    mbarrier.arrive(k_ready.index(st))


@gluon.jit
def _dyn_consumer(Q, BITS, LSE, PART, OUT, q_smem, k_smem, v_smem, k_ready, v_ready, k_empty, v_empty, idx_smem,
                  scale, N, HKV, NPROG, NT, b, kvh, sp, hi, committed, r0,
                  sqb, sqn, sqh, sbb, sbn, sob, son, soh,
                  TIMES, G: gl.constexpr, D: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr,
                  STAMP: gl.constexpr):  # fmt: skip
    if STAMP:
        t_start = gl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l", [], dtype=gl.int64, is_pure=False, pack=1)
    dtype: gl.constexpr = Q.dtype.element_ty
    s_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_N, 16])
    o_layout: gl.constexpr = gl.NVMMADistributedLayout(version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, D, 16])
    p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
    lanes_d: gl.constexpr = D // 8
    ld_layout: gl.constexpr = gl.BlockedLayout([1, 8], [32 // lanes_d, lanes_d], [4, 1], [1, 0])
    row_s: gl.constexpr = gl.SliceLayout(1, s_layout)
    row_o: gl.constexpr = gl.SliceLayout(1, o_layout)
    one: gl.constexpr = gl.BlockedLayout([1], [32], [4], [0])
    qk_scale = scale * 1.4426950408889634

    r_ld = r0 + gl.arange(0, 64, layout=gl.SliceLayout(1, ld_layout))
    d_ld = gl.arange(0, D, layout=gl.SliceLayout(0, ld_layout))
    node_ld = r_ld // G
    q_ptr = Q + b * sqb + gl.expand_dims(node_ld * sqn + (kvh * G + r_ld % G) * sqh, 1) + gl.expand_dims(d_ld, 0)
    q_smem.store(gl.load(q_ptr, mask=gl.expand_dims(node_ld < N, 1), other=0.0))
    fence_async_shared()
    _barrier()

    r_s = r0 + gl.arange(0, 64, layout=row_s)
    node_s = r_s // G
    live_s = node_s < N
    limit = gl.minimum(hi, committed)  # tiles ending past it are masked
    m_i = gl.full([64], float("-inf"), gl.float32, row_s)
    l_i = gl.zeros([64], gl.float32, row_s)
    acc = gl.zeros([64, D], gl.float32, o_layout)
    s_zero = gl.zeros([64, BLOCK_N], gl.float32, s_layout)
    i = 0
    mbarrier.wait(k_ready.index(0), 0)
    slot = gl.max(idx_smem.index(0).load(one), 0)
    while slot >= 0:
        st = i % STAGES
        ph = (i // STAGES) & 1
        s = warpgroup_mma(q_smem, k_smem.index(st).permute((1, 0)), s_zero, use_acc=False, is_async=True)
        s = warpgroup_mma_wait(0, deps=[s])
        mbarrier.arrive(k_empty.index(st))
        if slot + BLOCK_N > limit:
            s = _ws_mask(s, slot, 0, hi, committed, NT, BITS, b, sbb, sbn, node_s, live_s, s_layout, BLOCK_N)
        m_i, l_i, p, alpha = _softmax_step(s, m_i, l_i, qk_scale)
        acc = acc * gl.expand_dims(gl.convert_layout(alpha, row_o), 1)
        p_op = gl.convert_layout(p.to(dtype), p_layout)
        mbarrier.wait(v_ready.index(st), ph)
        acc_tok = warpgroup_mma(p_op, v_smem.index(st), acc, is_async=True)
        acc = warpgroup_mma_wait(0, deps=[acc_tok])
        mbarrier.arrive(v_empty.index(st))
        i += 1
        st = i % STAGES
        mbarrier.wait(k_ready.index(st), (i // STAGES) & 1)
        slot = gl.max(idx_smem.index(st).load(one), 0)

    if STAMP:
        t_loop = gl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l", [], dtype=gl.int64, is_pure=False, pack=1)
    _write_rows(acc, m_i, l_i, r0, b, kvh, sp, N, HKV, NPROG, LSE, PART, OUT, sob, son, soh,
                G, D, 64, False, s_layout, o_layout)  # fmt: skip
    if STAMP:
        t_end = gl.inline_asm_elementwise("mov.u64 $0, %globaltimer;", "=l", [], dtype=gl.int64, is_pure=False, pack=1)
        smid = gl.inline_asm_elementwise("mov.u32 $0, %smid;", "=r", [], dtype=gl.int32, is_pure=True, pack=1)
        pid = (sp * gl.num_programs(1) + r0 // 64) * gl.num_programs(0) + b * HKV + kvh
        base = TIMES + pid * 5
        gl.store(base, smid.to(gl.int64))
        gl.store(base + 1, t_start)
        gl.store(base + 2, t_loop)
        gl.store(base + 3, t_end)
        gl.store(base + 4, i.to(gl.int64))


@gluon.jit
def _dyn_tree_attention_kernel(
    Q, k_desc, v_desc, COMMITTED, BITS, LSE, PART, OUT, CTRS, scale, N, NT, HKV, SLOTS, NPROG, OFFSET,
    sqb, sqn, sqh, sbb, sbn, sob, son, soh, TIMES,
    G: gl.constexpr, D: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr, CONSUMER_REGS: gl.constexpr,
    STAMP: gl.constexpr = False,
):  # fmt: skip
    dtype: gl.constexpr = Q.dtype.element_ty
    bh = gl.program_id(0)
    mb = gl.program_id(1)
    sp = gl.program_id(2)
    b = bh // HKV
    kvh = bh % HKV
    committed = gl.load(COMMITTED + b).to(gl.int32) + OFFSET
    tiles = gl.cdiv(committed, BLOCK_N)
    claims = gl.maximum(tiles, NPROG)
    lo = gl.where(sp == NPROG, committed, 0)
    hi = gl.where(sp == NPROG, committed + NT, committed)
    ctr = CTRS + bh * gl.num_programs(1) + mb

    q_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([64, D], dtype)
    q_smem = gl.allocate_shared_memory(dtype, [64, D], q_sl)
    k_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, D], k_desc.layout)
    v_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, D], v_desc.layout)
    idx_smem = gl.allocate_shared_memory(gl.int32, [STAGES, 1], gl.SwizzledSharedLayout(1, 1, 1, order=[0]))
    k_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    v_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    k_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    v_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
    for i in gl.static_range(STAGES):
        mbarrier.init(k_ready.index(i), count=1)
        mbarrier.init(v_ready.index(i), count=1)
        mbarrier.init(k_empty.index(i), count=1)
        mbarrier.init(v_empty.index(i), count=1)
    fence_async_shared()

    gl.warp_specialize(
        [
            (_dyn_consumer, (Q, BITS, LSE, PART, OUT, q_smem, k_smem, v_smem, k_ready, v_ready, k_empty, v_empty,
                             idx_smem, scale, N, HKV, NPROG, NT, b, kvh, sp, hi, committed, mb * 64,
                             sqb, sqn, sqh, sbb, sbn, sob, son, soh, TIMES, G, D, BLOCK_N, STAGES, STAMP)),
            (_dyn_producer, (k_desc, v_desc, k_smem, v_smem, k_ready, v_ready, k_empty, v_empty, idx_smem, ctr,
                             b * SLOTS, kvh * D, sp, NPROG, tiles, lo, NT, claims, BLOCK_N, STAGES)),
        ],
        [1],
        [24],
    )  # fmt: skip


_ctrs: dict = {}


def counters(device) -> torch.Tensor:
    if device not in _ctrs:
        _ctrs[device] = torch.zeros(1 << 16, dtype=torch.int32, device=device)
    return _ctrs[device]


def dyn_tree_attention(q, cache_k, cache_v, committed, bits, kv_len, scale, nprog=None, block_n=128, stages=3,
                       regs=240, half=True, maxnreg=None, times=None, out=None):  # fmt: skip
    b, n, hq, d = q.shape
    hkv = cache_k.shape[2]
    group = hq // hkv
    rows = n * group
    blocks = triton.cdiv(rows, 64)
    sms = torch.cuda.get_device_properties(q.device).multi_processor_count
    if nprog is None:
        nprog = max(sms // (b * hkv * blocks) - 1, 1)
    descs = kv_descriptors(cache_k, cache_v, block_n)
    nparts = nprog + 1
    part_dtype = q.dtype if half else torch.float32
    lse = torch.empty(b * n * hq * nparts, device=q.device, dtype=torch.float32)
    part = torch.empty(b * n * hq * nparts, d, device=q.device, dtype=part_dtype)
    out = torch.empty_like(q) if out is None else out
    grid = (b * hkv, blocks, nparts)
    _dyn_tree_attention_kernel[grid](
        q, *descs, committed, bits, lse, part, out, counters(q.device), scale, n, n, hkv, cache_k.shape[1], nprog, 0,
        q.stride(0), q.stride(1), q.stride(2), bits.stride(0), bits.stride(1), out.stride(0), out.stride(1),
        out.stride(2), lse if times is None else times, G=group, D=d, BLOCK_N=block_n, STAGES=stages,
        CONSUMER_REGS=regs, STAMP=times is not None, num_warps=4, **({} if maxnreg is None else {"maxnreg": maxnreg}),
    )  # fmt: skip
    block_s = triton.next_power_of_2(nparts)
    ta._merge_kernel[(b * n * hq,)](
        lse, part, out, nparts, n, hq, out.stride(0), out.stride(1), out.stride(2),
        BLOCK_S=block_s, D=d, PDL=False, num_warps=ta._merge_warps(block_s, d),
    )  # fmt: skip
    return out
