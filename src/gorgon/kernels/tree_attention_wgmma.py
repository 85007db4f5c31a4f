"""Tree attention on Hopper's asynchronous warp-group MMA (wgmma), written in Gluon (Triton's explicit
layout language), for the shapes bound by their matrix products (many tree rows per KV head).

Same operation, splits and partials as tree_attention._tree_attention_kernel; what differs is the loop
over the committed slots. The Triton compiler waits for each Q K^T product before its softmax, so
softmax and tensor cores take turns (read from the compiled kernel, Triton 3.6-3.9 on sm_90). Both
kernels here run FlashAttention-3's intra-warpgroup pipeline instead: tile t's Q K^T and tile t-1's P V
are issued together and the softmax of tile t runs while P V t-1 is still on the tensor cores.

- _wgmma_tree_attention_kernel ("plain"): one warp group a program, K/V by cp.async STAGES - 1 tiles
  ahead, the ragged end and the tree's slots on a synchronous masked path. Measured no faster than the
  Triton kernel (5-20% slower but for one case, reports/h100-2026-11-26d): opt-in, Launch(wgmma=True).
- _ws_tree_attention_kernel (warp-specialized): a producer warp streams K/V by TMA into a ring of
  stages guarded by mbarriers, two consumer warp groups of 64 rows each take turns on the tensor cores.
  Up to 1.27x faster than the Triton kernel with many rows over long contexts; tree_attention picks it
  there by default (tree_attention._wgmma_kind).
- _dyn_tree_attention_kernel (dynamic tiles): 64 rows a program on one consumer warp group fed by a TMA
  producer warp, the context's tiles claimed one at a time from a counter a row block instead of split
  statically, so that SMs that stream faster take more tiles and a row block's programs end together.
  Faster at batch 1 with few rows a KV head over long contexts; not reproducible to the bit (which
  program sums which tiles varies run to run), so opt-in: Launch(dynamic=True) or GORGON_DYNAMIC=1.

Only half precision (bf16/fp16) on sm_90.
"""

from __future__ import annotations

try:
    from triton.experimental import gluon
    from triton.experimental.gluon import language as gl
    from triton.experimental.gluon.language.nvidia.hopper import (
        async_copy,
        fence_async_shared,
        mbarrier,
        tma,
        warpgroup_mma,
        warpgroup_mma_wait,
    )
    from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

    # cp.async into shared memory: async_load since Triton 3.7, async_copy_global_to_shared before
    _cp_async = getattr(async_copy, "async_load", None) or async_copy.async_copy_global_to_shared
    # a TMA tile load: tma.async_load since Triton 3.7, tma.async_copy_global_to_shared before
    _tma_load = getattr(tma, "async_load", None) or tma.async_copy_global_to_shared
    # a CTA-wide barrier: gl.barrier since Triton 3.7, gl.thread_barrier before
    _barrier = getattr(gl, "barrier", None) or gl.thread_barrier
    HAVE_GLUON = True
except (ImportError, AttributeError):  # a Triton without (this) Gluon: tree_attention keeps its own kernel
    HAVE_GLUON = False


if HAVE_GLUON:

    @gluon.jit
    def _softmax_step(s, m_i, l_i, qk_scale):
        """Fold raw scores s [M, T] (-inf where masked) into the running base-2 softmax (m_i, l_i).
        Returns the new maximum and sum, the tile's probabilities and the accumulator's rescale."""
        m_new = gl.maximum(m_i, gl.max(s, 1) * qk_scale)
        m_safe = gl.where(m_new == float("-inf"), 0.0, m_new)  # a row that has seen nothing stays empty
        p = gl.exp2(s * qk_scale - gl.expand_dims(m_safe, 1))
        alpha = gl.exp2(m_i - m_safe)
        l_i = l_i * alpha + gl.sum(p, 1)
        return m_new, l_i, p, alpha

    @gluon.jit
    def _issue_tile(k_smem, v_smem, k_rows, v_rows, lo, t, T, sks, svs,
                    BLOCK_N: gl.constexpr, STAGES: gl.constexpr):  # fmt: skip
        """cp.async K/V tile t (slots lo + t * BLOCK_N onward) into stage t % STAGES, as one commit group;
        the group is empty past the last tile, so that the wait_group counts stay the same every turn."""
        if t < T:
            st = t % STAGES
            first = lo + t * BLOCK_N
            _cp_async(k_smem.index(st), k_rows + first * sks)
            _cp_async(v_smem.index(st), v_rows + first * svs)
        async_copy.commit_group()

    @gluon.jit
    def _masked_tile(q_smem, k_smem, v_smem, k_rows, v_rows, first, valid_rows, visible, m_i, l_i, acc, qk_scale,
                     sks, svs, s_layout: gl.constexpr, o_layout: gl.constexpr, p_layout: gl.constexpr,
                     BLOCK_M: gl.constexpr, BLOCK_N: gl.constexpr):  # fmt: skip
        """One tile of slots first.. with masked loads (zeros outside `valid_rows`) and scores masked by
        `visible` [M, T], synchronously: the ragged end of the context and the tree's slots."""
        k = gl.load(k_rows + first * sks, mask=gl.expand_dims(valid_rows, 1), other=0.0)
        v = gl.load(v_rows + first * svs, mask=gl.expand_dims(valid_rows, 1), other=0.0)
        _barrier()  # every warp is done with the previous tile in these buffers
        k_smem.store(k)
        v_smem.store(v)
        fence_async_shared()  # generic-proxy stores, read by wgmma through the async proxy
        _barrier()
        s = warpgroup_mma(
            q_smem, k_smem.permute((1, 0)), gl.zeros([BLOCK_M, BLOCK_N], gl.float32, s_layout), use_acc=False
        )
        s = gl.where(visible, s, float("-inf"))
        m_i, l_i, p, alpha = _softmax_step(s, m_i, l_i, qk_scale)
        acc = acc * gl.expand_dims(gl.convert_layout(alpha, gl.SliceLayout(1, o_layout)), 1)
        acc = warpgroup_mma(gl.convert_layout(p.to(k.dtype), p_layout), v_smem, acc)
        return m_i, l_i, acc

    @gluon.jit
    def _write_rows(acc, m_i, l_i, r0, b, kvh, sp, N, HKV, NSPLIT, LSE, PART, OUT, sob, son, soh,
                    G: gl.constexpr, D: gl.constexpr, ROWS: gl.constexpr, DIRECT: gl.constexpr,
                    s_layout: gl.constexpr, o_layout: gl.constexpr):  # fmt: skip
        """Rows r0 .. r0 + ROWS of a program, (node r // G, head kvh * G + r % G): their normalized output
        (a direct launch), or this split's partial output and log2-sum-exp for the merge."""
        row_o: gl.constexpr = gl.SliceLayout(1, o_layout)
        l_o = gl.convert_layout(l_i, row_o)
        out = acc / gl.expand_dims(gl.where(l_o == 0, 1.0, l_o), 1)  # l is 0 only where nothing was seen
        r_o = r0 + gl.arange(0, ROWS, layout=row_o)
        node_o = r_o // G
        head_o = kvh * G + r_o % G
        d_o = gl.arange(0, D, layout=gl.SliceLayout(0, o_layout))
        live_o = gl.expand_dims(node_o < N, 1)
        if DIRECT:
            dst = OUT + b * sob + gl.expand_dims(node_o * son + head_o * soh, 1) + gl.expand_dims(d_o, 0)
            gl.store(dst, out.to(OUT.dtype.element_ty), mask=live_o)
        else:
            parts_o = ((b * N + node_o) * (HKV * G) + head_o) * (NSPLIT + 1) + sp
            gl.store(PART + gl.expand_dims(parts_o * D, 1) + gl.expand_dims(d_o, 0), out.to(PART.dtype.element_ty),
                     mask=live_o)  # fmt: skip
            r_s = r0 + gl.arange(0, ROWS, layout=gl.SliceLayout(1, s_layout))
            parts_s = ((b * N + r_s // G) * (HKV * G) + kvh * G + r_s % G) * (NSPLIT + 1) + sp
            lse = gl.where(l_i == 0, float("-inf"), m_i + gl.log2(gl.where(l_i == 0, 1.0, l_i)))
            gl.store(LSE + parts_s, lse, mask=r_s // G < N)

    @gluon.jit
    def _wgmma_tree_attention_kernel(
        Q, K, V, COMMITTED, BITS, LSE, PART, OUT, scale, N, NT, HKV, NSPLIT, SPLIT, OFFSET,
        sqb, sqn, sqh, skb, sks, skh, svb, svs, svh, sbb, sbn, sob, son, soh,
        G: gl.constexpr, BLOCK_M: gl.constexpr, D: gl.constexpr, BLOCK_N: gl.constexpr,
        STAGES: gl.constexpr, DIRECT: gl.constexpr, num_warps: gl.constexpr,
    ):  # fmt: skip
        dtype: gl.constexpr = Q.dtype.element_ty
        # Layouts: the two products' accumulators (one m64 slab of rows per warp group), P as the register
        # operand of the second product, 16-byte vectors for the loads.
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, BLOCK_N, 16]
        )
        o_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[num_warps, 1], instr_shape=[16, D, 16]
        )
        p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
        lanes_d: gl.constexpr = D // 8
        ld_layout: gl.constexpr = gl.BlockedLayout([1, 8], [32 // lanes_d, lanes_d], [num_warps, 1], [1, 0])
        q_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_M, D], dtype)
        kv_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([BLOCK_N, D], dtype)
        row_s: gl.constexpr = gl.SliceLayout(1, s_layout)
        col_s: gl.constexpr = gl.SliceLayout(0, s_layout)
        row_o: gl.constexpr = gl.SliceLayout(1, o_layout)

        bh = gl.program_id(0)
        mb = gl.program_id(1)
        sp = gl.program_id(2)
        b = bh // HKV
        kvh = bh % HKV
        qk_scale = scale * 1.4426950408889634
        committed = gl.load(COMMITTED + b).to(gl.int32) + OFFSET

        # Q: row r is (node r // G, head kvh * G + r % G), staged once in shared memory
        r_ld = mb * BLOCK_M + gl.arange(0, BLOCK_M, layout=gl.SliceLayout(1, ld_layout))
        d_ld = gl.arange(0, D, layout=gl.SliceLayout(0, ld_layout))
        node_ld = r_ld // G
        q_ptr = (
            Q
            + b * sqb
            + gl.expand_dims(node_ld * sqn + (kvh * G + r_ld % G) * sqh, 1)
            + gl.expand_dims(d_ld, 0)
        )
        q = gl.load(q_ptr, mask=gl.expand_dims(node_ld < N, 1), other=0.0)
        q_smem = gl.allocate_shared_memory(dtype, [BLOCK_M, D], q_sl, q)
        k_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, D], kv_sl)
        v_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, D], kv_sl)
        kr = gl.arange(0, BLOCK_N, layout=gl.SliceLayout(1, ld_layout))
        k_rows = K + b * skb + kvh * skh + gl.expand_dims(kr * sks, 1) + gl.expand_dims(d_ld, 0)
        v_rows = V + b * svb + kvh * svh + gl.expand_dims(kr * svs, 1) + gl.expand_dims(d_ld, 0)

        if DIRECT:
            lo = 0
            hi = committed
        else:
            lo = sp * SPLIT
            hi = gl.minimum(lo + SPLIT, committed)
            hi = gl.where(sp == NSPLIT, lo, hi)  # the last split takes the tree instead
        hi = gl.maximum(hi, lo)
        T = (hi - lo) // BLOCK_N  # whole tiles, unmasked
        full = lo + T * BLOCK_N

        m_i = gl.full([BLOCK_M], float("-inf"), gl.float32, row_s)
        l_i = gl.zeros([BLOCK_M], gl.float32, row_s)
        acc = gl.zeros([BLOCK_M, D], gl.float32, o_layout)
        s_zero = gl.zeros([BLOCK_M, BLOCK_N], gl.float32, s_layout)
        fence_async_shared()  # Q's generic stores before wgmma reads them
        for first_tiles in gl.static_range(STAGES - 1):
            _issue_tile(k_smem, v_smem, k_rows, v_rows, lo, first_tiles, T, sks, svs, BLOCK_N, STAGES)
        if T > 0:
            # tile 0: its scores alone (no P V in flight yet)
            async_copy.wait_group(STAGES - 2)
            fence_async_shared()
            _barrier()
            s = warpgroup_mma(q_smem, k_smem.index(0).permute((1, 0)), s_zero, use_acc=False, is_async=True)
            s = warpgroup_mma_wait(0, deps=[s])
            m_i, l_i, p, alpha = _softmax_step(s, m_i, l_i, qk_scale)
            p_op = gl.convert_layout(p.to(dtype), p_layout)
            _barrier()
            _issue_tile(k_smem, v_smem, k_rows, v_rows, lo, STAGES - 1, T, sks, svs, BLOCK_N, STAGES)
            for t in range(1, T):
                async_copy.wait_group(STAGES - 2)  # tile t has landed
                fence_async_shared()
                _barrier()
                s_tok = warpgroup_mma(
                    q_smem, k_smem.index(t % STAGES).permute((1, 0)), s_zero, use_acc=False, is_async=True
                )
                acc_tok = warpgroup_mma(p_op, v_smem.index((t - 1) % STAGES), acc, is_async=True)
                s = warpgroup_mma_wait(1, deps=[s_tok])  # Q K^T t done; P V t-1 may still run
                m_i, l_i, p, alpha = _softmax_step(s, m_i, l_i, qk_scale)
                acc, p_op = warpgroup_mma_wait(0, deps=[acc_tok, p_op])
                acc = acc * gl.expand_dims(gl.convert_layout(alpha, row_o), 1)
                p_op = gl.convert_layout(p.to(dtype), p_layout)
                _barrier()  # every warp is past tile t - 1's buffers
                _issue_tile(k_smem, v_smem, k_rows, v_rows, lo, t + STAGES - 1, T, sks, svs, BLOCK_N, STAGES)
            acc_tok = warpgroup_mma(p_op, v_smem.index((T - 1) % STAGES), acc, is_async=True)
            acc, p_op = warpgroup_mma_wait(0, deps=[acc_tok, p_op])
        async_copy.wait_group(0)  # only empty groups remain; the stage-0 buffers are reused below

        r_s = mb * BLOCK_M + gl.arange(0, BLOCK_M, layout=row_s)
        node_s = r_s // G
        live_s = node_s < N
        c_s = gl.arange(0, BLOCK_N, layout=col_s)
        if full < hi:  # the ragged last tile of the context
            vis = gl.expand_dims(full + c_s < hi, 0) & gl.expand_dims(live_s, 1)
            m_i, l_i, acc = _masked_tile(q_smem, k_smem.index(0), v_smem.index(0), k_rows, v_rows, full,
                                         full + kr < hi, vis, m_i, l_i, acc, qk_scale, sks, svs,
                                         s_layout, o_layout, p_layout, BLOCK_M, BLOCK_N)  # fmt: skip
        if (sp == NSPLIT) | DIRECT:  # the tree's own slots, masked by the ancestor bits
            for t0 in range(0, NT, BLOCK_N):
                j = t0 + c_s
                exists = j < NT
                word = gl.load(
                    BITS + b * sbb + gl.expand_dims(node_s * sbn, 1) + gl.expand_dims(j // 32, 0),
                    mask=gl.expand_dims(live_s, 1) & gl.expand_dims(exists, 0),
                    other=0,
                )
                vis = ((word >> gl.expand_dims(j % 32, 0)) & 1) != 0
                m_i, l_i, acc = _masked_tile(q_smem, k_smem.index(0), v_smem.index(0), k_rows, v_rows,
                                             committed + t0, t0 + kr < NT, vis, m_i, l_i, acc, qk_scale, sks,
                                             svs, s_layout, o_layout, p_layout, BLOCK_M, BLOCK_N)  # fmt: skip

        _write_rows(acc, m_i, l_i, mb * BLOCK_M, b, kvh, sp, N, HKV, NSPLIT, LSE, PART, OUT, sob, son, soh,
                    G, D, BLOCK_M, DIRECT, s_layout, o_layout)  # fmt: skip

    # ---- warp-specialized form: a producer warp streams K/V tiles by TMA into a ring of shared-memory
    # stages; two consumer warp groups (64 rows each) take turns on the tensor cores, each with the
    # intra-warpgroup overlap above. The context's ragged end and the tree's slots are whole TMA tiles too
    # (rows past the tensor are zero-filled; slots past this row's keys are masked out of the scores, so
    # the cache must hold finite values there, which kv_cache's zero-initialised buffer does).

    @gluon.jit
    def _ws_producer(k_desc, v_desc, k_smem, v_smem, k_ready, v_ready, k_empty, v_empty, row0, col, T,
                     BLOCK_N: gl.constexpr, STAGES: gl.constexpr):  # fmt: skip
        for t in range(T):
            st = t % STAGES
            free = ((t // STAGES) & 1) ^ 1  # a fresh barrier's previous phase counts as complete
            mbarrier.wait(k_empty.index(st), free)
            mbarrier.expect(k_ready.index(st), k_desc.block_type.nbytes)
            _tma_load(k_desc, [row0 + t * BLOCK_N, col], k_ready.index(st), k_smem.index(st))
            mbarrier.wait(v_empty.index(st), free)
            mbarrier.expect(v_ready.index(st), v_desc.block_type.nbytes)
            _tma_load(v_desc, [row0 + t * BLOCK_N, col], v_ready.index(st), v_smem.index(st))

    @gluon.jit
    def _ws_mask(s, lo, t, hi, committed, NT, BITS, b, sbb, sbn, node_s, live_s,
                 s_layout: gl.constexpr, BLOCK_N: gl.constexpr):  # fmt: skip
        """Scores of slots outside [0, hi) or, among the tree's slots, not ancestors, to -inf."""
        slot = lo + t * BLOCK_N + gl.arange(0, BLOCK_N, layout=gl.SliceLayout(0, s_layout))
        rel = slot - committed
        tree = (rel >= 0) & (rel < NT)
        word = gl.load(
            BITS + b * sbb + gl.expand_dims(node_s * sbn, 1) + gl.expand_dims(gl.maximum(rel, 0) // 32, 0),
            mask=gl.expand_dims(live_s, 1) & gl.expand_dims(tree, 0),
            other=0,
        )
        bit = ((word >> gl.expand_dims(gl.maximum(rel, 0) % 32, 0)) & 1) != 0
        vis = gl.expand_dims((slot < hi) & (rel < 0), 0) | (bit & gl.expand_dims(slot < hi, 0))
        return gl.where(vis, s, float("-inf"))

    @gluon.jit
    def _stage_q(Q, q_smem, r0, b, kvh, N, sqb, sqn, sqh, G: gl.constexpr, D: gl.constexpr,
                 ld_layout: gl.constexpr):  # fmt: skip
        """A consumer warp group's 64 rows of Q (r0 onward; rows past the tree zero) into q_smem, fenced for
        wgmma's reads and synchronized over the group's four warps."""
        r_ld = r0 + gl.arange(0, 64, layout=gl.SliceLayout(1, ld_layout))
        d_ld = gl.arange(0, D, layout=gl.SliceLayout(0, ld_layout))
        node_ld = r_ld // G
        q_ptr = (
            Q
            + b * sqb
            + gl.expand_dims(node_ld * sqn + (kvh * G + r_ld % G) * sqh, 1)
            + gl.expand_dims(d_ld, 0)
        )
        q_smem.store(gl.load(q_ptr, mask=gl.expand_dims(node_ld < N, 1), other=0.0))
        fence_async_shared()
        _barrier()

    @gluon.jit
    def _ws_consumer(Q, BITS, LSE, PART, OUT, q_smem, k_smem, v_smem, k_ready, v_ready, k_empty, v_empty,
                     scale, N, HKV, NSPLIT, NT, b, kvh, sp, lo, hi, committed, T, r0,
                     sqb, sqn, sqh, sbb, sbn, sob, son, soh,
                     G: gl.constexpr, D: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr,
                     DIRECT: gl.constexpr):  # fmt: skip
        """64 rows (r0 onward) over the split's tiles; writes their output or partials."""
        dtype: gl.constexpr = Q.dtype.element_ty
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_N, 16]
        )
        o_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, D, 16]
        )
        p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
        lanes_d: gl.constexpr = D // 8
        ld_layout: gl.constexpr = gl.BlockedLayout([1, 8], [32 // lanes_d, lanes_d], [4, 1], [1, 0])
        row_s: gl.constexpr = gl.SliceLayout(1, s_layout)
        row_o: gl.constexpr = gl.SliceLayout(1, o_layout)
        qk_scale = scale * 1.4426950408889634

        _stage_q(Q, q_smem, r0, b, kvh, N, sqb, sqn, sqh, G, D, ld_layout)

        r_s = r0 + gl.arange(0, 64, layout=row_s)
        node_s = r_s // G
        live_s = node_s < N
        limit = gl.minimum(hi, committed)  # tiles ending past it are masked
        m_i = gl.full([64], float("-inf"), gl.float32, row_s)
        l_i = gl.zeros([64], gl.float32, row_s)
        acc = gl.zeros([64, D], gl.float32, o_layout)
        s_zero = gl.zeros([64, BLOCK_N], gl.float32, s_layout)
        if T > 0:
            mbarrier.wait(k_ready.index(0), 0)
            s = warpgroup_mma(q_smem, k_smem.index(0).permute((1, 0)), s_zero, use_acc=False, is_async=True)
            s = warpgroup_mma_wait(0, deps=[s])
            mbarrier.arrive(k_empty.index(0))
            if lo + BLOCK_N > limit:
                s = _ws_mask(
                    s, lo, 0, hi, committed, NT, BITS, b, sbb, sbn, node_s, live_s, s_layout, BLOCK_N
                )
            m_i, l_i, p, alpha = _softmax_step(s, m_i, l_i, qk_scale)
            p_op = gl.convert_layout(p.to(dtype), p_layout)
            for t in range(1, T):
                st = t % STAGES
                mbarrier.wait(k_ready.index(st), (t // STAGES) & 1)
                s_tok = warpgroup_mma(
                    q_smem, k_smem.index(st).permute((1, 0)), s_zero, use_acc=False, is_async=True
                )
                pst = (t - 1) % STAGES
                mbarrier.wait(v_ready.index(pst), ((t - 1) // STAGES) & 1)
                acc_tok = warpgroup_mma(p_op, v_smem.index(pst), acc, is_async=True)
                s = warpgroup_mma_wait(1, deps=[s_tok])
                mbarrier.arrive(k_empty.index(st))
                if lo + (t + 1) * BLOCK_N > limit:
                    s = _ws_mask(
                        s, lo, t, hi, committed, NT, BITS, b, sbb, sbn, node_s, live_s, s_layout, BLOCK_N
                    )
                m_i, l_i, p, alpha = _softmax_step(s, m_i, l_i, qk_scale)
                acc, p_op = warpgroup_mma_wait(0, deps=[acc_tok, p_op])
                mbarrier.arrive(v_empty.index(pst))
                acc = acc * gl.expand_dims(gl.convert_layout(alpha, row_o), 1)
                p_op = gl.convert_layout(p.to(dtype), p_layout)
            pst = (T - 1) % STAGES
            mbarrier.wait(v_ready.index(pst), ((T - 1) // STAGES) & 1)
            acc_tok = warpgroup_mma(p_op, v_smem.index(pst), acc, is_async=True)
            acc, p_op = warpgroup_mma_wait(0, deps=[acc_tok, p_op])
            mbarrier.arrive(v_empty.index(pst))

        _write_rows(acc, m_i, l_i, r0, b, kvh, sp, N, HKV, NSPLIT, LSE, PART, OUT, sob, son, soh,
                    G, D, 64, DIRECT, s_layout, o_layout)  # fmt: skip

    @gluon.jit
    def _ws_tree_attention_kernel(
        Q, k_desc, v_desc, COMMITTED, BITS, LSE, PART, OUT, scale, N, NT, HKV, SLOTS, NSPLIT, SPLIT, OFFSET,
        sqb, sqn, sqh, sbb, sbn, sob, son, soh,
        G: gl.constexpr, D: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr, DIRECT: gl.constexpr,
        CONSUMER_REGS: gl.constexpr,
    ):  # fmt: skip
        """128 rows a program (two consumer warp groups); K/V through TMA descriptors over the cache
        viewed as [batch * slots, kv_heads * head_dim]."""
        dtype: gl.constexpr = Q.dtype.element_ty
        bh = gl.program_id(0)
        mb = gl.program_id(1)
        sp = gl.program_id(2)
        b = bh // HKV
        kvh = bh % HKV
        committed = gl.load(COMMITTED + b).to(gl.int32) + OFFSET
        if DIRECT:
            lo = 0
            hi = committed + NT
        else:
            lo = sp * SPLIT
            hi = gl.minimum(lo + SPLIT, committed)
            lo = gl.where(sp == NSPLIT, committed, lo)  # the last split takes the tree
            hi = gl.where(sp == NSPLIT, committed + NT, hi)
        hi = gl.maximum(hi, lo)
        T = gl.cdiv(hi - lo, BLOCK_N)

        q_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([64, D], dtype)
        q_smem = gl.allocate_shared_memory(dtype, [2, 64, D], q_sl)
        k_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, D], k_desc.layout)
        v_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, D], v_desc.layout)
        k_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        v_ready = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        k_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        v_empty = gl.allocate_shared_memory(gl.int64, [STAGES, 1], mbarrier.MBarrierLayout())
        for i in gl.static_range(STAGES):
            mbarrier.init(k_ready.index(i), count=1)
            mbarrier.init(v_ready.index(i), count=1)
            mbarrier.init(k_empty.index(i), count=2)  # one arrival from each consumer warp group
            mbarrier.init(v_empty.index(i), count=2)
        fence_async_shared()

        # (no * unpacking in Gluon: every partition's arguments spelled out)
        gl.warp_specialize(
            [
                (_ws_consumer, (Q, BITS, LSE, PART, OUT, q_smem.index(0), k_smem, v_smem, k_ready, v_ready, k_empty,
                                v_empty, scale, N, HKV, NSPLIT, NT, b, kvh, sp, lo, hi, committed, T, mb * 128,
                                sqb, sqn, sqh, sbb, sbn, sob, son, soh, G, D, BLOCK_N, STAGES, DIRECT)),
                (_ws_consumer, (Q, BITS, LSE, PART, OUT, q_smem.index(1), k_smem, v_smem, k_ready, v_ready, k_empty,
                                v_empty, scale, N, HKV, NSPLIT, NT, b, kvh, sp, lo, hi, committed, T, mb * 128 + 64,
                                sqb, sqn, sqh, sbb, sbn, sob, son, soh, G, D, BLOCK_N, STAGES, DIRECT)),
                (_ws_producer, (k_desc, v_desc, k_smem, v_smem, k_ready, v_ready, k_empty, v_empty, b * SLOTS + lo,
                                kvh * D, T, BLOCK_N, STAGES)),
            ],
            [4, 1],
            [CONSUMER_REGS, 24],
        )  # fmt: skip

    # ---- dynamic-tile form. Measured on the H100 (reports/h100-2026-11-27h): the static splits' programs
    # of a batch-1 call end up to 1.8 us apart (SMs stream at different rates, the same SMs every run),
    # and the call waits for the last. Claimed tile by tile, the programs of a row block end within
    # 0.7 us of their mean at N=1.
    #
    # The counter of a row block: program s starts on context tile s, its producer then claims tile
    # NPROG + c with c from an atomic add, until a claim fails (tile past the row block's context). Every
    # context program makes exactly one failing claim, so a launch makes max(tiles, NPROG) claims, and the
    # one that returns the last value zeroes the counter for the next launch or graph replay: no memset.

    @gluon.jit
    def _dyn_claim(CTR, CLAIMS):
        claim = gl.atomic_add(CTR, 1, sem="relaxed")
        if claim == CLAIMS - 1:  # the launch's last claim on this counter
            gl.atomic_xchg(CTR, 0, sem="relaxed")
        return claim

    @gluon.jit
    def _dyn_producer(k_desc, v_desc, k_smem, v_smem, k_ready, v_ready, k_empty, v_empty, idx_smem, CTR,
                      row0, col, sp, NPROG, TILES, lo, NT, CLAIMS,
                      BLOCK_N: gl.constexpr, STAGES: gl.constexpr):  # fmt: skip
        """Streams the program's tiles into the ring, each stage's first slot in idx_smem beside it; after
        the last, slot -1 in the next stage (arrived on without a copy) ends the consumer's loop."""
        one: gl.constexpr = gl.BlockedLayout([1], [32], [1], [0])
        if sp == NPROG:  # the tree's program: its own tiles in order, no claims
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
            mbarrier.expect(k_ready.index(st), k_desc.block_type.nbytes)  # releases the slot's store too
            _tma_load(k_desc, [row0 + lo + t * BLOCK_N, col], k_ready.index(st), k_smem.index(st))
            mbarrier.wait(v_empty.index(st), free)
            mbarrier.expect(v_ready.index(st), v_desc.block_type.nbytes)
            _tma_load(v_desc, [row0 + lo + t * BLOCK_N, col], v_ready.index(st), v_smem.index(st))
            if sp == NPROG:
                t += 1
            else:
                t = _dyn_claim(CTR, CLAIMS) + NPROG
            i += 1
        if (sp < NPROG) & (sp >= TILES):  # no tile of its own: its one failing claim still counts
            _dyn_claim(CTR, CLAIMS)
        st = i % STAGES
        mbarrier.wait(k_empty.index(st), ((i // STAGES) & 1) ^ 1)
        idx_smem.index(st).store(gl.zeros([1], gl.int32, one) - 1)
        mbarrier.arrive(k_ready.index(st))

    @gluon.jit
    def _dyn_write_rows(acc, m_i, l_i, r0, b, kvh, sp, N, HKV, NPROG, LSE, PART,
                        G: gl.constexpr, D: gl.constexpr, s_layout: gl.constexpr, o_layout: gl.constexpr,
                        ld_layout: gl.constexpr):  # fmt: skip
        """The program's partial output and log2-sum-exp (one split of NPROG + 1), stored from a blocked
        layout, 16 bytes a thread a store: from the wgmma layout (as _write_rows stores) it took 1.2 us."""
        l_o = gl.convert_layout(l_i, gl.SliceLayout(1, o_layout))
        out = acc / gl.expand_dims(gl.where(l_o == 0, 1.0, l_o), 1)  # l is 0 only where nothing was seen
        out = gl.convert_layout(out.to(PART.dtype.element_ty), ld_layout)
        r = r0 + gl.arange(0, 64, layout=gl.SliceLayout(1, ld_layout))
        d = gl.arange(0, D, layout=gl.SliceLayout(0, ld_layout))
        parts = ((b * N + r // G) * (HKV * G) + kvh * G + r % G) * (NPROG + 1) + sp
        gl.store(
            PART + gl.expand_dims(parts * D, 1) + gl.expand_dims(d, 0),
            out,
            mask=gl.expand_dims(r // G < N, 1),
        )
        r_s = r0 + gl.arange(0, 64, layout=gl.SliceLayout(1, s_layout))
        parts_s = ((b * N + r_s // G) * (HKV * G) + kvh * G + r_s % G) * (NPROG + 1) + sp
        lse = gl.where(l_i == 0, float("-inf"), m_i + gl.log2(gl.where(l_i == 0, 1.0, l_i)))
        gl.store(LSE + parts_s, lse, mask=r_s // G < N)

    @gluon.jit
    def _dyn_consumer(Q, BITS, LSE, PART, q_smem, k_smem, v_smem, k_ready, v_ready, k_empty, v_empty, idx_smem,
                      scale, N, HKV, NPROG, NT, b, kvh, sp, hi, committed, r0, sqb, sqn, sqh, sbb, sbn,
                      G: gl.constexpr, D: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr):  # fmt: skip
        """64 rows (r0 onward) over the tiles the producer hands over, one at a time (the softmax and the
        products in turn: the stream, not the tile, bounds these programs)."""
        dtype: gl.constexpr = Q.dtype.element_ty
        s_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, BLOCK_N, 16]
        )
        o_layout: gl.constexpr = gl.NVMMADistributedLayout(
            version=[3, 0], warps_per_cta=[4, 1], instr_shape=[16, D, 16]
        )
        p_layout: gl.constexpr = gl.DotOperandLayout(operand_index=0, parent=o_layout, k_width=2)
        lanes_d: gl.constexpr = D // 8
        ld_layout: gl.constexpr = gl.BlockedLayout([1, 8], [32 // lanes_d, lanes_d], [4, 1], [1, 0])
        row_s: gl.constexpr = gl.SliceLayout(1, s_layout)
        one: gl.constexpr = gl.BlockedLayout([1], [32], [4], [0])
        qk_scale = scale * 1.4426950408889634

        _stage_q(Q, q_smem, r0, b, kvh, N, sqb, sqn, sqh, G, D, ld_layout)

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
            s = warpgroup_mma(q_smem, k_smem.index(st).permute((1, 0)), s_zero, use_acc=False, is_async=True)
            s = warpgroup_mma_wait(0, deps=[s])
            mbarrier.arrive(k_empty.index(st))
            if slot + BLOCK_N > limit:
                s = _ws_mask(
                    s, slot, 0, hi, committed, NT, BITS, b, sbb, sbn, node_s, live_s, s_layout, BLOCK_N
                )
            m_i, l_i, p, alpha = _softmax_step(s, m_i, l_i, qk_scale)
            acc = acc * gl.expand_dims(gl.convert_layout(alpha, gl.SliceLayout(1, o_layout)), 1)
            p_op = gl.convert_layout(p.to(dtype), p_layout)
            mbarrier.wait(v_ready.index(st), (i // STAGES) & 1)
            acc = warpgroup_mma_wait(0, deps=[warpgroup_mma(p_op, v_smem.index(st), acc, is_async=True)])
            mbarrier.arrive(v_empty.index(st))
            i += 1
            mbarrier.wait(k_ready.index(i % STAGES), (i // STAGES) & 1)
            slot = gl.max(idx_smem.index(i % STAGES).load(one), 0)
        _dyn_write_rows(acc, m_i, l_i, r0, b, kvh, sp, N, HKV, NPROG, LSE, PART, G, D, s_layout, o_layout,
                        ld_layout)  # fmt: skip

    @gluon.jit
    def _dyn_tree_attention_kernel(
        Q, k_desc, v_desc, COMMITTED, BITS, LSE, PART, CTRS, scale, N, NT, HKV, SLOTS, NPROG, OFFSET,
        sqb, sqn, sqh, sbb, sbn,
        G: gl.constexpr, D: gl.constexpr, BLOCK_N: gl.constexpr, STAGES: gl.constexpr,
    ):  # fmt: skip
        """Grid (batch * KV heads, row blocks of 64, NPROG + 1): NPROG programs a row block over its context
        tiles (claimed), the last over the tree's slots; always partials, for the merge kernel."""
        dtype: gl.constexpr = Q.dtype.element_ty
        bh = gl.program_id(0)
        mb = gl.program_id(1)
        sp = gl.program_id(2)
        b = bh // HKV
        kvh = bh % HKV
        committed = gl.load(COMMITTED + b).to(gl.int32) + OFFSET
        tiles = gl.cdiv(committed, BLOCK_N)
        lo = gl.where(sp == NPROG, committed, 0)
        hi = gl.where(sp == NPROG, committed + NT, committed)
        ctr = CTRS + bh * gl.num_programs(1) + mb

        q_sl: gl.constexpr = gl.NVMMASharedLayout.get_default_for([64, D], dtype)
        q_smem = gl.allocate_shared_memory(dtype, [64, D], q_sl)
        k_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, D], k_desc.layout)
        v_smem = gl.allocate_shared_memory(dtype, [STAGES, BLOCK_N, D], v_desc.layout)
        idx_smem = gl.allocate_shared_memory(
            gl.int32, [STAGES, 1], gl.SwizzledSharedLayout(1, 1, 1, order=[0])
        )
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
                (_dyn_consumer, (Q, BITS, LSE, PART, q_smem, k_smem, v_smem, k_ready, v_ready, k_empty, v_empty,
                                 idx_smem, scale, N, HKV, NPROG, NT, b, kvh, sp, hi, committed, mb * 64,
                                 sqb, sqn, sqh, sbb, sbn, G, D, BLOCK_N, STAGES)),
                (_dyn_producer, (k_desc, v_desc, k_smem, v_smem, k_ready, v_ready, k_empty, v_empty, idx_smem,
                                 ctr, b * SLOTS, kvh * D, sp, NPROG, tiles, lo, NT, gl.maximum(tiles, NPROG),
                                 BLOCK_N, STAGES)),
            ],
            [1],
            [24],
        )  # fmt: skip


def kv_descriptors(cache_k, cache_v, block_n: int):
    """TMA descriptors of K and V viewed as [batch * slots, kv_heads * head_dim] (tiles of block_n slots
    of one head), or None where the caches are not laid out that way."""
    import torch

    b, s, hkv, d = cache_k.shape
    dtype = {torch.bfloat16: gl.bfloat16, torch.float16: gl.float16}[cache_k.dtype]
    layout = gl.NVMMASharedLayout.get_default_for([block_n, d], dtype)
    descs = []
    for t in (cache_k, cache_v):
        if t.stride() != (s * hkv * d, hkv * d, d, 1) or t.data_ptr() % 16:
            return None
        descs.append(TensorDescriptor.from_tensor(t.view(b * s, hkv * d), [block_n, d], layout))
    return descs
