// Tree attention and KV compaction in CUDA C++ (the `cuda` backend; Python side: gorgon/kernels/cuda_ops.py).
//
// The operation is the one gorgon/kernels/reference.py defines: N tree tokens attend to their row's
// committed cache slots (all of them) and, among the tree's own slots committed .. committed + N - 1,
// to their ancestors and themselves, read from packed ancestor bits (one int32 word per 32 nodes).
//
// Four kernels compute it. `fa2::tree_attention_mma` (bf16/fp16, head_dim 64 or 128; the default off
// Hopper) is FlashAttention-2 on raw mma.sync.m16n8k16 PTX: a block owns 64 (node, head) rows that share
// one KV head, so grouped heads read each K/V tile once; K/V tiles of 64 slots are double- or
// triple-buffered through shared memory with cp.async, Q stays in registers and the online softmax (log2
// domain) runs on the accumulator fragments in registers. On sm_90 its wgmma form (template flag G) runs
// both products on Hopper's asynchronous warp-group MMA instead, K/V tiles stored in the 128-byte-swizzled
// layout that wgmma reads from shared memory, Q and P fed from registers (see "wgmma" below).
// `fa2::tree_attention_ws` (sm_90, the default there) is the warp-specialized form: a TMA producer warp,
// an mbarrier ring of K/V stages and two consumer warp groups on wgmma (see "warp-specialized" below).
// `tree_attention_wmma` is the earlier WMMA kernel with the same
// contract (scores round-trip through shared memory, per-row softmax in a warp), kept for comparison.
// Long contexts are split over blocks (the tree being one more split) and merged by `merge_splits`, or,
// where asked (opt-in), by each row block's last split to finish (`merge_if_last`).
// `tree_attention_simple` (any dtype incl. float32, any head_dim <= 256) is a warp per row and exists for
// exactness, not speed.
// The file needs no torch headers, so it compiles (and is checked in CI) with nvcc alone.

#include <cuda.h>  // CUtensorMap (the warp-specialized form's TMA)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>
#include <stdint.h>

#include <type_traits>

using namespace nvcuda;

namespace gorgon {

constexpr int kWarps = 4;
constexpr int kBM = 16 * kWarps;  // query rows per block
constexpr int kBN = 64;           // KV slots per tile
constexpr float kLog2e = 1.4426950408889634f;

struct TreeAttentionArgs {
  const void* q;
  const void* k;
  const void* v;
  const int64_t* committed;
  const int32_t* bits;
  float* lse_out;  // per (row, split): log2 of the split's softmax sum, -inf where it saw nothing
  void* part_out;  // per (row, split): the split's normalized output, [D] of T
  void* out;
  float scale;
  int n, hkv, group, nsplit, split;
  int pdl;  // launch the merge with programmatic stream serialization (sm_90 and up)
  // the row block's last split to finish merges it (merge_if_last), no merge kernel; the binding sets it
  // only where nsplit > 1
  int fuse;
  int* counters;  // fuse: a zeroed counter a row block (blockIdx.x * gridDim.y + blockIdx.y), left zero
  int64_t sqb, sqn, sqh, skb, sks, skh, svb, svs, svh, sbb, sbn, sob, son, soh;
  int64_t slots;  // the caches' slots a row (the warp-specialized form's TMA bounds)
};

__device__ __forceinline__ float warp_max(float x) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

__device__ __forceinline__ float warp_sum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16(x);
}
__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

// Whether tree node `j` is visible to tree node `node` (both < n).
__device__ __forceinline__ bool visible(const TreeAttentionArgs& a, int b, int node, int j) {
  const int32_t word = a.bits[b * a.sbb + node * a.sbn + (j >> 5)];
  return (word >> (j & 31)) & 1;
}

// Where split `split` of (batch b, tree node nd, query head) keeps its partial: the index into lse_out, and
// the row (of D values) of part_out.
__device__ __forceinline__ int64_t part_index(const TreeAttentionArgs& a, int b, int nd, int head, int split) {
  return ((int64_t)(b * a.n + nd) * (a.hkv * a.group) + head) * a.nsplit + split;
}

// ---------------------------------------------------------------------------------------------------
// WMMA kernel (the first tensor-core kernel; GORGON_CUDA_KERNEL=wmma selects it).

template <int D> struct WmmaLayout {
  static constexpr int LD = D + 8;                      // halves per smem row (pad: fewer bank conflicts)
  static constexpr int WLD = (D > kBN ? D : kBN) + 4;   // floats per row of a warp's score/PV scratch
  static constexpr int PLD = kBN + 8;                   // halves per row of a warp's probabilities
  static constexpr int OPL = 16 * D / 32;               // output elements each lane keeps in registers
  static constexpr size_t bytes =
      sizeof(uint16_t) * (size_t)(kBM + 2 * kBN) * LD + sizeof(float) * (size_t)kWarps * 16 * WLD +
      sizeof(uint16_t) * (size_t)kWarps * 16 * PLD + sizeof(float) * kWarps * 16 * 3;
};

template <typename T, int D>
__global__ void __launch_bounds__(kWarps * 32) tree_attention_wmma(TreeAttentionArgs a) {
  using L = WmmaLayout<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  T* sq = reinterpret_cast<T*>(smem);
  T* sk = sq + kBM * L::LD;
  T* sv = sk + kBN * L::LD;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  float* sw = reinterpret_cast<float*>(sv + kBN * L::LD) + warp * 16 * L::WLD;
  T* sp = reinterpret_cast<T*>(reinterpret_cast<float*>(sv + kBN * L::LD) + kWarps * 16 * L::WLD) +
          warp * 16 * L::PLD;
  float* srow = reinterpret_cast<float*>(reinterpret_cast<T*>(reinterpret_cast<float*>(sv + kBN * L::LD) +
                                                              kWarps * 16 * L::WLD) +
                                         kWarps * 16 * L::PLD) +
                warp * 48;
  float* row_m = srow;
  float* row_l = srow + 16;
  float* row_alpha = srow + 32;

  const int b = blockIdx.x / a.hkv, kvh = blockIdx.x % a.hkv, split = blockIdx.z;
  const int row0 = blockIdx.y * kBM;
  const int64_t committed = a.committed[b];
  const bool direct = a.nsplit == 1;
  constexpr int V8 = D / 8;  // 16-byte vectors per row

  // Q tile: row r is (node r / group, head kvh * group + r % group); rows past the tree are zeros.
  for (int i = threadIdx.x; i < kBM * V8; i += blockDim.x) {
    const int r = i / V8, c = (i % V8) * 8, row = row0 + r, node = row / a.group;
    uint4 val = make_uint4(0, 0, 0, 0);
    if (node < a.n) {
      const T* src = static_cast<const T*>(a.q) + b * a.sqb + node * a.sqn +
                     (int64_t)(kvh * a.group + row % a.group) * a.sqh + c;
      val = *reinterpret_cast<const uint4*>(src);
    }
    *reinterpret_cast<uint4*>(sq + r * L::LD + c) = val;
  }
  if (lane < 16) {
    row_m[lane] = -INFINITY;
    row_l[lane] = 0.f;
  }
  float o[L::OPL];
#pragma unroll
  for (int i = 0; i < L::OPL; ++i) o[i] = 0.f;

  const T* kbase = static_cast<const T*>(a.k) + b * a.skb + kvh * a.skh;
  const T* vbase = static_cast<const T*>(a.v) + b * a.svb + kvh * a.svh;
  const float scale = a.scale * kLog2e;

  // One tile of kBN slots starting at `slot0`; `tree` tiles mask by ancestry, others by `limit`.
  auto tile = [&](int64_t slot0, int64_t limit, bool tree, int t0) {
    // All of a thread's loads are issued before any is stored: one memory latency per tile, not one
    // per vector (a rolled loop left this kernel latency-bound at 60 us per layer).
    constexpr int kLoads = kBN * V8 / (kWarps * 32);
    uint4 kv[kLoads], vv[kLoads];
#pragma unroll
    for (int it = 0; it < kLoads; ++it) {
      const int i = threadIdx.x + it * kWarps * 32, r = i / V8, c = (i % V8) * 8;
      const bool ok = tree ? (t0 + r < a.n) : (slot0 + r < limit);
      kv[it] = vv[it] = make_uint4(0, 0, 0, 0);
      if (ok) {
        kv[it] = __ldg(reinterpret_cast<const uint4*>(kbase + (slot0 + r) * a.sks + c));
        vv[it] = __ldg(reinterpret_cast<const uint4*>(vbase + (slot0 + r) * a.svs + c));
      }
    }
    __syncthreads();  // the previous tile's K/V are no longer read
#pragma unroll
    for (int it = 0; it < kLoads; ++it) {
      const int i = threadIdx.x + it * kWarps * 32, r = i / V8, c = (i % V8) * 8;
      *reinterpret_cast<uint4*>(sk + r * L::LD + c) = kv[it];
      *reinterpret_cast<uint4*>(sv + r * L::LD + c) = vv[it];
    }
    __syncthreads();

    // S = Q K^T for this warp's 16 rows.
#pragma unroll
    for (int j = 0; j < kBN / 16; ++j) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> s;
      wmma::fill_fragment(s, 0.f);
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> qa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> kb;
        wmma::load_matrix_sync(qa, sq + warp * 16 * L::LD + kk * 16, L::LD);
        wmma::load_matrix_sync(kb, sk + j * 16 * L::LD + kk * 16, L::LD);
        wmma::mma_sync(s, qa, kb, s);
      }
      wmma::store_matrix_sync(sw + j * 16, s, L::WLD, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax, one row at a time: each lane holds two of the tile's 64 columns.
    for (int i = 0; i < 16; ++i) {
      const int node = (row0 + warp * 16 + i) / a.group;
      float s[2];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int c = lane + 32 * h;
        bool ok;
        if (tree) ok = node < a.n && t0 + c < a.n && visible(a, b, node, t0 + c);
        else ok = slot0 + c < limit;
        s[h] = ok ? sw[i * L::WLD + c] * scale : -INFINITY;
      }
      const float m_old = row_m[i];
      const float m_new = fmaxf(m_old, warp_max(fmaxf(s[0], s[1])));
      const float m_safe = m_new == -INFINITY ? 0.f : m_new;  // a row that has seen nothing stays empty
      const float p0 = exp2f(s[0] - m_safe), p1 = exp2f(s[1] - m_safe);
      const float total = warp_sum(p0 + p1);
      sp[i * L::PLD + lane] = from_float<T>(p0);
      sp[i * L::PLD + lane + 32] = from_float<T>(p1);
      __syncwarp();
      if (lane == 0) {
        const float alpha = exp2f(m_old - m_safe);
        row_m[i] = m_new;
        row_l[i] = row_l[i] * alpha + total;
        row_alpha[i] = alpha;
      }
    }
    __syncwarp();

    // O = O * alpha + P V; the product lands in the score scratch, then in each lane's registers.
#pragma unroll
    for (int jd = 0; jd < D / 16; ++jd) {
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> pv;
      wmma::fill_fragment(pv, 0.f);
#pragma unroll
      for (int kk = 0; kk < kBN / 16; ++kk) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> pa;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major> vb;
        wmma::load_matrix_sync(pa, sp + kk * 16, L::PLD);
        wmma::load_matrix_sync(vb, sv + kk * 16 * L::LD + jd * 16, L::LD);
        wmma::mma_sync(pv, pa, vb, pv);
      }
      wmma::store_matrix_sync(sw + jd * 16, pv, L::WLD, wmma::mem_row_major);
    }
    __syncwarp();
#pragma unroll
    for (int i = 0; i < L::OPL; ++i) {
      const int e = lane + 32 * i, r = e / D, c = e % D;
      o[i] = o[i] * row_alpha[r] + sw[r * L::WLD + c];
    }
    __syncwarp();
  };

  // This block's share: all committed slots (direct), one split of them, or (the last split) the tree.
  int64_t lo = 0, hi = committed;
  const bool do_tree = direct || split == a.nsplit - 1;
  if (!direct) {
    lo = (int64_t)split * a.split;
    hi = do_tree ? lo : (lo + a.split < committed ? lo + a.split : committed);
  }
  for (int64_t s0 = lo; s0 < hi; s0 += kBN) tile(s0, hi, false, 0);
  if (do_tree)
    for (int t0 = 0; t0 < a.n; t0 += kBN) tile(committed + t0, 0, true, t0);

#pragma unroll
  for (int i = 0; i < L::OPL; ++i) {
    const int e = lane + 32 * i, r = e / D, c = e % D;
    const int row = row0 + warp * 16 + r, node = row / a.group;
    if (node >= a.n) continue;
    const int head = kvh * a.group + row % a.group;
    if (direct) {
      const float l = row_l[r];
      T* dst = static_cast<T*>(a.out) + b * a.sob + node * a.son + head * a.soh + c;
      *dst = from_float<T>(l > 0.f ? o[i] / l : 0.f);
    } else {
      const int64_t part = part_index(a, b, node, head, split);
      const float l = row_l[r];
      static_cast<T*>(a.part_out)[part * D + c] = from_float<T>(l > 0.f ? o[i] / l : 0.f);
      if (c == 0) a.lse_out[part] = l > 0.f ? row_m[r] + log2f(l) : -INFINITY;
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// mma.sync kernel (the default for bf16/fp16): FlashAttention-2 on raw m16n8k16 PTX.
//
// A block of W warps owns kBM = 16 W rows (row r: node r / group, head kvh * group + r % group), each
// warp 16 of them. Q fragments are loaded once (ldmatrix) and stay in registers. K/V tiles of kBN slots are
// multi-buffered in shared memory with cp.async (Layout::kStages - 1 tiles in flight while one is computed).
// S = Q K^T accumulates in f32 mma fragments; the online softmax (log2 domain) runs on those fragments in
// registers: a thread owns rows g = lane / 4 and g + 8 of its warp's 16, columns 2 (lane % 4) + {0, 1} of
// every 8-column block, so a row's max and sum are reductions over the 4 threads of a quad. The C
// fragments of two adjacent 8-column blocks are, element for element, the A fragment of one 16-wide k
// step, so P feeds O += P V from registers (packed to bf16/fp16); V's B fragments come from ldmatrix.trans.
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16 with floating point type"), with
// g = lane >> 2 and t = lane & 3:
//   A 16x16 (4 x b32): a[0] = (g, 2t..2t+1), a[1] = (g+8, 2t..), a[2] = (g, 2t+8..), a[3] = (g+8, 2t+8..)
//   B 16x8  (2 x b32): b[0] = (k 2t..2t+1, n g), b[1] = (k 2t+8..2t+9, n g)
//   C 16x8  (4 x f32): c[0], c[1] = (g, 2t), (g, 2t+1); c[2], c[3] = (g+8, 2t), (g+8, 2t+1)
// ldmatrix .x4: lanes 8i..8i+7 give the row addresses of matrix i, which lands in register i; each lane
// receives (row lane / 4, columns 2 (lane % 4) + {0, 1}) of every matrix, transposed with .trans.

// The output offset of merge row (b * n + node) * hq + head.
__device__ __forceinline__ int64_t out_offset(const TreeAttentionArgs& a, int row) {
  const int hq = a.hkv * a.group;
  const int b = row / (a.n * hq), node = (row / hq) % a.n, head = row % hq;
  return b * a.sob + node * a.son + head * a.soh;
}

// How a warp reads a row's partials: 16-byte vectors, kVecs to a split, kStride splits one warp-wide
// load (merge_row's kLoads: vectors a lane in flight).
template <typename T, int D> struct MergeShape {
  static constexpr int kPer = 16 / sizeof(T);  // values in a 16-byte vector
  static constexpr int kVecs = D / kPer;       // vectors in a split's row
  static constexpr int kStride = 32 / kVecs;   // splits one warp-wide load covers
  static_assert(32 % kVecs == 0, "a split's row tiles the warp");
};

// Combine the `nsplit` splits of merge row `row`: weights 2^(lse - max lse), empty splits weigh 0. W
// warps a row, this one its `part_of_row`-th. A lane's kLoads loads are all issued before the weights are
// worked out: one memory latency for up to 2 W kLoads splits at head_dim 128 in half precision (4 W kLoads
// at 64), a pass; more splits take more passes. Returns the row's
// softmax sum (every lane has it); `acc` gets this warp's weighted sum of columns (lane % kVecs) * kPer ..
// + kPer - 1, added up over the lanes that hold them.
// kFused (merge_if_last): other blocks of the same grid wrote the partials, so the loads skip L1 (.cg),
// and the weights come by shuffle from the lanes that loaded the log-sum-exps, as reading them again would
// wait on L2 once more. The merge kernel reads through L1 and reads them again (there from L1): its
// shuffling form took 0.7 us longer at batch 1, N=1 and 3 us at SmolLM2 heads, N=64
// (reports/h100-2026-11-27i/old_new).
template <typename T, int D, int W, bool kFused, int kLoads = 16>
__device__ __forceinline__ float merge_row(const TreeAttentionArgs& a, int row, int nsplit, int lane, int part_of_row,
                                           float (&acc)[MergeShape<T, D>::kPer]) {
  using M = MergeShape<T, D>;
  constexpr int kPer = M::kPer, kVecs = M::kVecs;
  constexpr int kStep = W * M::kStride;
  const int first = part_of_row * M::kStride + lane / kVecs;  // this lane's first split; then every kStep
  const float* lse = a.lse_out + (int64_t)row * a.nsplit;
  const uint4* part =
      reinterpret_cast<const uint4*>(static_cast<const T*>(a.part_out) + (int64_t)row * a.nsplit * D) + lane % kVecs;
  uint4 raw[kLoads];
  auto issue = [&](int s0) {  // this lane's vectors of splits s0 + first, + kStep, ...
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      const int s = s0 + first + i * kStep;
      if (s < nsplit) raw[i] = kFused ? __ldcg(part + (int64_t)s * kVecs) : part[(int64_t)s * kVecs];
    }
  };
  issue(0);  // in flight while the weights are worked out
  // The row's log-sum-exps, kLse a lane loaded at once (a loop that loaded one at a time would wait
  // a memory latency each: 1-2 us where a row merges 34-90 splits)
  constexpr int kLse = 4;
  float top = -INFINITY, den = 0.f, l[kLse];
  for (int s0 = 0; s0 < nsplit; s0 += 32 * kLse) {
#pragma unroll
    for (int j = 0; j < kLse; ++j) {
      const int s = s0 + lane + 32 * j;
      l[j] = s < nsplit ? (kFused ? __ldcg(lse + s) : lse[s]) : -INFINITY;
    }
    const float old_top = top;
#pragma unroll
    for (int j = 0; j < kLse; ++j) top = fmaxf(top, l[j]);
    const float m = top == -INFINITY ? 0.f : top;
    den *= old_top == -INFINITY ? 0.f : exp2f(old_top - m);  // rescaled to the new maximum
#pragma unroll
    for (int j = 0; j < kLse; ++j) den += l[j] == -INFINITY ? 0.f : exp2f(l[j] - m);
  }
  const float lane_top = top;
  top = warp_max(top);
  if (top == -INFINITY) top = 0.f;  // a row that saw nothing: every weight 0, and so its output
  den = warp_sum(lane_top == -INFINITY ? 0.f : den * exp2f(lane_top - top));
#pragma unroll
  for (int e = 0; e < kPer; ++e) acc[e] = 0.f;
  const bool held = kFused && nsplit <= 32 * kLse;  // then lanes hold every log-sum-exp (one pass above)
  for (int s0 = 0; s0 < nsplit; s0 += kLoads * kStep) {
    if (s0 > 0) issue(s0);
#pragma unroll
    for (int i = 0; i < kLoads; ++i) {
      const int s = s0 + first + i * kStep;
      float ls = -INFINITY;
      if (held) {  // every lane shuffles (s may pass nsplit: its weight is not used)
#pragma unroll
        for (int j = 0; j < kLse; ++j) {
          const float x = __shfl_sync(0xffffffffu, l[j], s & 31);
          if ((s >> 5) == j) ls = x;
        }
      } else if (s < nsplit) {
        ls = kFused ? __ldcg(lse + s) : lse[s];
      }
      if (s >= nsplit) continue;
      const float w = ls == -INFINITY ? 0.f : exp2f(ls - top);
      const T* x = reinterpret_cast<const T*>(&raw[i]);
#pragma unroll
      for (int e = 0; e < kPer; ++e) acc[e] += w * to_float(x[e]);
    }
  }
#pragma unroll
  for (int o = kVecs; o < 32; o <<= 1) {
#pragma unroll
    for (int e = 0; e < kPer; ++e) acc[e] += __shfl_xor_sync(0xffffffffu, acc[e], o);
  }
  return den;
}

// A merged row (merge_row's sum and softmax sum) into out: the lanes below kVecs hold all its columns.
template <typename T, int D>
__device__ __forceinline__ void store_merged(const TreeAttentionArgs& a, int row, int lane,
                                             const float (&acc)[MergeShape<T, D>::kPer], float den) {
  using M = MergeShape<T, D>;
  if (lane >= M::kVecs) return;
  const float inv = den > 0.f ? 1.f / den : 0.f;
  T* out = static_cast<T*>(a.out) + out_offset(a, row) + lane * M::kPer;
#pragma unroll
  for (int e = 0; e < M::kPer; ++e) out[e] = from_float<T>(acc[e] * inv);
}

// The fused merge (TreeAttentionArgs.fuse), called by the `threads` threads of a split block that meet at
// named barrier `bar` (this one the `tid`-th) once they have written the block's partials of rows
// first .. end - 1 of its KV head. One thread counts the block's arrival on the row block's counter after
// a barrier (CUTLASS's semaphore: the barrier orders every thread's partial stores before the count,
// whose release publishes them at GPU scope; its acquire, in the last block, and the barrier after it
// make the other blocks' partials visible to all threads there). The last split to arrive zeroes the
// counter for the next launch or graph replay and merges the rows, a warp a row, as the merge kernel's
// one-warp form does. Opt-in (cuda_ops.fuse_merge): on the H100 it tied the merge kernel at N=1, where
// every row has a warp of its own, and lost where a warp merges several rows.
template <typename T, int D>
__device__ __forceinline__ void merge_if_last(const TreeAttentionArgs& a, int b, int kvh, int first, int end, int bar,
                                              int threads, int tid) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(bar), "r"(threads) : "memory");
  int last = 0;
  if (tid == 0) {
    int* counter = a.counters + blockIdx.x * gridDim.y + blockIdx.y;
    int ticket;
    asm volatile("atom.acq_rel.gpu.global.add.s32 %0, [%1], 1;\n" : "=r"(ticket) : "l"(counter) : "memory");
    last = ticket == a.nsplit - 1;
    if (last) asm volatile("st.relaxed.gpu.global.s32 [%0], %1;\n" ::"l"(counter), "r"(0) : "memory");
  }
  asm volatile(
      "{\n.reg .pred p, q;\nsetp.ne.s32 p, %1, 0;\nbar.red.or.pred q, %2, %3, p;\nselp.s32 %0, 1, 0, q;\n}\n"
      : "=r"(last)
      : "r"(last), "r"(bar), "r"(threads)
      : "memory");
  if (!last) return;
  const int warp = tid >> 5, lane = tid & 31, hq = a.hkv * a.group;
  for (int r = first + warp; r < end; r += threads >> 5) {
    const int row = (b * a.n + r / a.group) * hq + kvh * a.group + r % a.group;
    float acc[MergeShape<T, D>::kPer];
    const float den = merge_row<T, D, 1, true>(a, row, a.nsplit, lane, 0, acc);
    store_merged<T, D>(a, row, lane, acc, den);
  }
}

namespace fa2 {

constexpr int kBN = 64;  // KV slots per tile (two words of ancestor bits on tree tiles)

// A block is W warps of 16 rows each: W = 4 (64 rows) or 8 (128 rows). Every row block of a KV head
// streams all of its K/V from L2, so with the 256 rows of a 64-token tree under Llama-3-8B's 4:1 grouping
// 64-row blocks pull each tile into the SMs four times and 128-row blocks twice.
//
// Shared memory: kStages K buffers, then kStages V buffers in reverse order, so that the last K buffer
// and the last V buffer are adjacent: Q (up to 128 rows) passes through those two on its way to
// registers, before any tile is loaded there. Stages, as measured on the H100 (same run, P=8192), for
// 4 warps: at head_dim 64 three (four blocks an SM; SmolLM2 heads batch 8, N=64: 79 -> 66 us); at
// head_dim 128 two (three were 1-3% slower in every case: the registers hold the blocks to two an SM
// either way, and the extra tile in flight bought nothing). 8 warps at head_dim 128 are one block an SM
// (231 registers a thread), which then needs more tiles in flight of its own: three.
template <int D, int W, bool G = false> struct Layout {
  static constexpr int kBM = 16 * W;  // rows per block
  static constexpr int kStages = D <= 64 || W == 8 ? 3 : 2;
  // Blocks an SM that the registers must allow (the split plan in cuda_ops.py counts on it): 64 K
  // registers over W * 32 threads, 128 a thread at head_dim 64, all that one block may use at 128.
  static constexpr int kMinBlocks = (D <= 64 ? 4 : 2) * 4 / W;
  // halves per smem row: 16 bytes of pad so that ldmatrix rows hit distinct banks; the wgmma form's
  // swizzled tiles need none (its Q staging, read once, takes the bank conflicts)
  static constexpr int LD = G ? D : D + 8;
  static constexpr int KV = kBN * LD;
  static constexpr size_t bytes = sizeof(uint16_t) * (size_t)(2 * kStages * KV) + (G ? 1024 : 0);  // + align
  static_assert(kBM <= 2 * kBN, "the Q tile must fit the last K and V buffers");
  static_assert(!G || (W * 32 / (D / 8)) % 8 == 0, "a thread's tile rows must keep one swizzle phase");
};

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, bypassing L1; `full` false writes 16 zero bytes and reads nothing. (The ws
// kernel's evict-first L2 hint, here as createpolicy + cp.async .L2::cache_hint, stopped the wgmma4 kernel
// with an illegal instruction on the H100: reports/h100-2026-11-28 round 3. Not used.)
__device__ __forceinline__ void cp_async16(uint32_t dst, const void* src, bool full) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(full ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// d += a b for one m16n8k16 (f32 accumulation).
template <typename T>
__device__ __forceinline__ void mma16816(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);
template <>
__device__ __forceinline__ void mma16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                                        uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma16816<__half>(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats as one b32 of two 16-bit values, `lo` in the low half (the lower column index).
template <typename T> __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return (uint32_t)__bfloat16_as_ushort(v.x) | ((uint32_t)__bfloat16_as_ushort(v.y) << 16);
}
template <> __device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  const __half2 v = __floats2half2_rn(lo, hi);
  return (uint32_t)__half_as_ushort(v.x) | ((uint32_t)__half_as_ushort(v.y) << 16);
}
// A thread's two columns of output block j in row h of its two (an mma/wgmma accumulator), scaled by inv
// (1 / the row's softmax sum) and packed: what write_row and the ws kernel's staged rows store.
template <typename T, int DB>
__device__ __forceinline__ uint32_t out_pair(const float (&o)[DB][4], int j, int h, float inv) {
  return pack2<T>(o[j][2 * h] * inv, o[j][2 * h + 1] * inv);
}

// 2^x in one MUFU op (ex2.approx.ftz, any architecture): exp2f adds a denormal range check and two multiplies
__device__ __forceinline__ float ex2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// The online softmax of one tile on a thread's score fragments s[j][e] (rows g and g + 8: e >> 1; raw,
// masked scores, -inf where masked): folds them into the rows' running max m and sum l (base 2, the scale
// applied in the exponent's FFMA), turns them into probabilities, and returns in alpha what O must be
// rescaled by. Four independent max and sum chains a row (one chain of 64 dependent operations was the
// critical path), exponents in ex2_ftz.
// A row that has seen only masked slots keeps m = -inf and uses 0 as its reference, so exp2(-inf - 0) = 0
// everywhere and nothing becomes NaN.
template <int NB>
__device__ __forceinline__ void online_softmax(float (&s)[NB][4], float (&m)[2], float (&l)[2], float (&alpha)[2],
                                               float scale) {
  float ref[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float mx[4] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY};
#pragma unroll
    for (int j = 0; j < NB; j += 2)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        mx[e] = fmaxf(mx[e], s[j][2 * h + e]);
        mx[2 + e] = fmaxf(mx[2 + e], s[j + 1][2 * h + e]);
      }
    const float m_new = fmaxf(m[h], quad_max(fmaxf(fmaxf(mx[0], mx[1]), fmaxf(mx[2], mx[3]))) * scale);
    ref[h] = m_new == -INFINITY ? 0.f : m_new;
    alpha[h] = ex2_ftz(m[h] - ref[h]);
    m[h] = m_new;
  }
  float sum[2][4] = {};
#pragma unroll
  for (int j = 0; j < NB; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      s[j][e] = ex2_ftz(fmaf(s[j][e], scale, -ref[e >> 1]));
      sum[e >> 1][(j & 1) * 2 + (e & 1)] += s[j][e];
    }
#pragma unroll
  for (int h = 0; h < 2; ++h) l[h] = l[h] * alpha[h] + ((sum[h][0] + sum[h][1]) + (sum[h][2] + sum[h][3]));
}

// ---------------------------------------------------------------------------------------------------
// wgmma (sm_90a only): Hopper's asynchronous warp-group MMA, for the kernel's wgmma form (G). A warp
// group (4 warps) multiplies a 64-row A from registers, in the same per-warp fragments as mma.m16n8k16's
// A (so Q and P feed it unchanged), by a B tile in shared memory that a 64-bit descriptor describes; the
// f32 accumulator of m64nN is, per warp, m16n8's C fragment repeated over the N / 8 column blocks (d[4j + e]
// = s[j][e]), so the softmax code runs on it unchanged.
//
// K and V tiles are stored in the canonical 128-byte-swizzle layout (PTX ISA, "Shared Memory Matrix
// Layout"): a tile of kBN slots is D / 64 regions of kBN rows x 128 bytes (64 head dims), 1024-byte
// aligned, and the 16-byte chunk c of row r lies at chunk c ^ (r % 8). K is then B of S = Q K^T in
// K-major form (head dims contiguous): a k16 step starts 32 bytes further in the row, and rows go in
// groups of 8 at 1024 bytes (SBO). V is B of O = P V in N-major form (transposed, head dims contiguous):
// a k16 step is 16 rows (2048 bytes) further, 8-row groups at 1024 bytes (SBO), and the second 64-dim
// region at kBN x 128 bytes (LBO).
template <typename T, int N> struct Tag {};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
template <int TNSP>
__device__ __forceinline__ void wgmma_rs(Tag<__nv_bfloat16, 32>, float (&d)[16], const uint32_t (&a)[4],
                                         uint64_t desc, int accumulate = 1) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
      "}, {%16, %17, %18, %19}, %20, p, 1, 1, %22;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate), "n"(TNSP));
}

template <int TNSP>
__device__ __forceinline__ void wgmma_rs(Tag<__half, 32>, float (&d)[16], const uint32_t (&a)[4],
                                         uint64_t desc, int accumulate = 1) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %21, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.f16.f16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15"
      "}, {%16, %17, %18, %19}, %20, p, 1, 1, %22;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate), "n"(TNSP));
}

template <int TNSP>
__device__ __forceinline__ void wgmma_rs(Tag<__nv_bfloat16, 64>, float (&d)[32], const uint32_t (&a)[4],
                                         uint64_t desc, int accumulate = 1) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
      "}, {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate), "n"(TNSP));
}

template <int TNSP>
__device__ __forceinline__ void wgmma_rs(Tag<__half, 64>, float (&d)[32], const uint32_t (&a)[4],
                                         uint64_t desc, int accumulate = 1) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31"
      "}, {%32, %33, %34, %35}, %36, p, 1, 1, %38;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate), "n"(TNSP));
}

template <int TNSP>
__device__ __forceinline__ void wgmma_rs(Tag<__nv_bfloat16, 128>, float (&d)[64], const uint32_t (&a)[4],
                                         uint64_t desc, int accumulate = 1) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,"
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,"
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
      "}, {%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate), "n"(TNSP));
}

template <int TNSP>
__device__ __forceinline__ void wgmma_rs(Tag<__half, 128>, float (&d)[64], const uint32_t (&a)[4],
                                         uint64_t desc, int accumulate = 1) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,"
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,"
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
      "}, {%64, %65, %66, %67}, %68, p, 1, 1, %70;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc), "r"(accumulate), "n"(TNSP));
}


__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
// cp.async wrote the tiles through the generic proxy; wgmma reads them through the async proxy
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }
#else
// no sm_90a code in this build: the binding launches the wgmma form only on sm_90 builds of sm_90a
template <int TNSP, typename T, int N, int R>
__device__ __forceinline__ void wgmma_rs(Tag<T, N>, float (&)[R], const uint32_t (&)[4], uint64_t, int = 1) {
  __trap();
}
__device__ __forceinline__ void wgmma_fence() {}
__device__ __forceinline__ void wgmma_commit() {}
__device__ __forceinline__ void wgmma_wait() {}
__device__ __forceinline__ void fence_proxy_async() {}
#endif

// Keeps the compiler from moving accumulator reads or writes across the asynchronous MMA, and from
// reusing an A operand's registers before the MMA that reads them has completed (CUTLASS's
// warpgroup_fence_operand): the asm's inputs are read at issue as far as the compiler knows.
template <int R> __device__ __forceinline__ void fence_regs(float (&r)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+f"(r[i])::"memory");
}
template <int R> __device__ __forceinline__ void fence_regs(uint32_t (&r)[R]) {
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+r"(r[i])::"memory");
}

// A shared-memory matrix descriptor: start address, leading and stride byte offsets, 128-byte swizzle.
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return (uint64_t)((addr & 0x3FFFF) >> 4) | ((uint64_t)(lbo >> 4) << 16) | ((uint64_t)(sbo >> 4) << 32) |
         (1ull << 62);
}

// A block's Q rows into registers: vector tid + it kThreads of rows row0 .. (row r is node r / group, head
// kvh * group + r % group; D / 8 vectors a row) into v[it], zero past the tree. Every load is issued before
// any is used, and a thread's rows step by kThreads / (D / 8) with one division for all of them. On the
// H100 (reports/h100-2026-11-27j/timeline): the loop it replaced stored each vector to shared memory
// before loading the next (the ws kernel's st.shared asm orders memory), one memory latency a vector, and
// its first tile waited 8.0 us after the block started at N=16 against 2.3 us at N=1; with the loads
// batched but a division a vector, 5.3 us.
template <typename T, int D, int kThreads, int kLoads>
__device__ __forceinline__ void load_q(const TreeAttentionArgs& a, uint4 (&v)[kLoads], int b, int kvh, int row0,
                                       int rows, int tid) {
  constexpr int V8 = D / 8, kStep = kThreads / V8;  // rows a step
  static_assert(kThreads % V8 == 0, "a step is whole rows");
  int row = row0 + tid / V8, node = row / a.group, head = row % a.group;
  const int dn = kStep / a.group, dh = kStep % a.group;
  const T* base = static_cast<const T*>(a.q) + b * a.sqb + (int64_t)kvh * a.group * a.sqh + (tid % V8) * 8;
#pragma unroll
  for (int it = 0; it < kLoads; ++it) {
    v[it] = make_uint4(0, 0, 0, 0);
    if (row < rows) v[it] = *reinterpret_cast<const uint4*>(base + node * a.sqn + head * a.sqh);
    row += kStep;
    node += dn;
    head += dh;
    if (head >= a.group) {
      head -= a.group;
      ++node;
    }
  }
}

// Where row `row` of KV head kvh's rows (node row / group, head kvh * group + row % group) goes: its output
// row where the block did all slots (nsplit 1), else split `split`'s partial row.
template <typename T, int D>
__device__ __forceinline__ T* row_dst(const TreeAttentionArgs& a, int b, int kvh, int row, int split) {
  const int nd = row / a.group, head = kvh * a.group + row % a.group;
  return a.nsplit == 1 ? static_cast<T*>(a.out) + b * a.sob + nd * a.son + head * a.soh
                       : static_cast<T*>(a.part_out) + part_index(a, b, nd, head, split) * D;
}

// That row's log2-sum-exp for the merge (base-2 max m, sum lsum), where the block did one split of several.
__device__ __forceinline__ void store_lse(const TreeAttentionArgs& a, int b, int kvh, int row, int split, float m,
                                          float lsum) {
  if (a.nsplit == 1) return;
  const int64_t part = part_index(a, b, row / a.group, kvh * a.group + row % a.group, split);
  a.lse_out[part] = lsum > 0.f ? m + log2f(lsum) : -INFINITY;
}

// A thread's half of one row of the tensor-core kernels' output (row h of its two: columns 8 j + 2 tq + {0, 1}
// of o's blocks): the output itself where the block did all slots, else the split's normalized partial and
// log2-sum-exp for the merge. Half-precision partials: half the bytes of float32 m/l/acc (at N=16, P=8192
// those were a quarter of the K/V bytes the kernel exists to read).
// kQuad: 16-byte stores instead of 4-byte ones (a warp-wide store then writes 8 rows x 64 whole bytes, not
// 8 x 16). The ws kernel takes them at 17-64 rows (launch_ws). On the H100, Llama-3-8B heads, batch 1,
// P=8192 (reports/h100-2026-11-28, same runs): N=16 19.60 -> 19.00 us (round 2), 19.81 -> 19.20 (round 4);
// its partial stores had taken 1.45 of the 2.16 us from the loop's end to the block's. N=1 (4 rows): 0.1 us
// slower.
template <typename T, int D, bool kQuad = false>
__device__ __forceinline__ void write_row(const TreeAttentionArgs& a, const float (&o)[D / 8][4], int h, float m,
                                          float lsum, int b, int kvh, int row, int split, int tq) {
  if (row >= a.n * a.group) return;
  const float inv = lsum > 0.f ? 1.f / lsum : 0.f;
  if (tq == 0) store_lse(a, b, kvh, row, split, m, lsum);
  if constexpr (kQuad) {
    // A quad's four lanes hold 2 columns each of every 8-column block: a 4 x 4 transpose over blocks
    // 4q .. 4q + 3 (two shuffle rounds) leaves lane tq all 8 columns of block 4q + tq.
    T* const dst = row_dst<T, D>(a, b, kvh, row, split) + 8 * tq;
    const bool hi2 = tq & 2, hi1 = tq & 1;
    const unsigned quad = 0xfu << (threadIdx.x & 28);  // the row's lanes (rows past the tree returned above)
#pragma unroll
    for (int q = 0; q < D / 32; ++q) {
      uint32_t v[4];
#pragma unroll
      for (int k = 0; k < 4; ++k) v[k] = out_pair<T>(o, 4 * q + k, h, inv);
      uint32_t x = __shfl_xor_sync(quad, hi2 ? v[0] : v[2], 2);
      uint32_t y = __shfl_xor_sync(quad, hi2 ? v[1] : v[3], 2);
      if (hi2) v[0] = x, v[1] = y;
      else v[2] = x, v[3] = y;
      x = __shfl_xor_sync(quad, hi1 ? v[0] : v[1], 1);
      y = __shfl_xor_sync(quad, hi1 ? v[2] : v[3], 1);
      if (hi1) v[0] = x, v[2] = y;
      else v[1] = x, v[3] = y;
      *reinterpret_cast<uint4*>(dst + 32 * q) = make_uint4(v[0], v[1], v[2], v[3]);
    }
  } else {
    T* const dst = row_dst<T, D>(a, b, kvh, row, split) + 2 * tq;
#pragma unroll
    for (int j = 0; j < D / 8; ++j)
      *reinterpret_cast<uint32_t*>(dst + 8 * j) = out_pair<T>(o, j, h, inv);
  }
}

template <typename T, int D, int W, bool G>
__global__ void __launch_bounds__(W * 32, Layout<D, W, G>::kMinBlocks)
    tree_attention_mma(TreeAttentionArgs a) {
  using L = Layout<D, W, G>;
  constexpr int kStages = L::kStages;
  constexpr int kBM = L::kBM;
  constexpr int KD = D / 16;    // k steps of QK^T (over head_dim)
  constexpr int NB = kBN / 8;   // 8-slot score blocks per tile
  constexpr int DB = D / 8;     // 8-wide output blocks
  constexpr int V8 = D / 8;     // 16-byte vectors per K/V/Q row
  constexpr int kLoads = kBN * V8 / (W * 32);  // cp.async per thread per tile, for K and for V
  static_assert(kBN * V8 % (W * 32) == 0, "tile loads must divide evenly");

  extern __shared__ __align__(128) unsigned char smem[];
  // the wgmma form's swizzle is a function of the address: its tiles start on 1024-byte boundaries
  const uint32_t pad = G ? (1024u - (smem_u32(smem) & 1023u)) & 1023u : 0u;
  T* const sk = reinterpret_cast<T*>(smem + pad);  // K buffer i at i KV, V buffer i at (2 kStages - 1 - i) KV
  auto kbuf = [&](int i) { return sk + i * L::KV; };
  auto vbuf = [&](int i) { return sk + (2 * kStages - 1 - i) * L::KV; };
  T* sq = kbuf(kStages - 1);  // Q's way to registers: the last K and V buffers, free until tile kStages - 1

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, tq = lane & 3;
  const int b = blockIdx.x / a.hkv, kvh = blockIdx.x % a.hkv, split = blockIdx.z;
  const int row0 = blockIdx.y * kBM;
  const int rows = a.n * a.group;
  // warp-uniform (warp-group-uniform in the wgmma form): a warp of padding rows only loads tiles
  const bool live = row0 + (G ? warp & ~3 : warp) * 16 < rows;
  const int64_t committed = a.committed[b];
  const bool direct = a.nsplit == 1;

  // This block's share: all committed slots (direct), one split of them, or (the last split) the tree.
  int64_t lo = 0, hi = committed;
  const bool do_tree = direct || split == a.nsplit - 1;
  if (!direct) {
    lo = (int64_t)split * a.split;
    hi = do_tree ? lo : (lo + a.split < committed ? lo + a.split : committed);
  }
  const int n_ctx = hi > lo ? (int)((hi - lo + kBN - 1) / kBN) : 0;
  const int n_tiles = n_ctx + (do_tree ? (a.n + kBN - 1) / kBN : 0);

  const T* kbase = static_cast<const T*>(a.k) + b * a.skb + kvh * a.skh;
  const T* vbase = static_cast<const T*>(a.v) + b * a.svb + kvh * a.svh;

  // Tile t: committed slots lo + t kBN .. (< hi), then tree slots committed + t0 .. (< committed + n).
  auto tile_range = [&](int t, int64_t& slot0, int64_t& limit) {
    if (t < n_ctx) {
      slot0 = lo + (int64_t)t * kBN;
      limit = hi;
    } else {
      slot0 = committed + (int64_t)(t - n_ctx) * kBN;
      limit = committed + a.n;
    }
  };
  // Slots past the limit are zero-filled (never read): masked scores then multiply zeros, not garbage.
  // A thread copies the same 16-byte column c0 of rows r0, r0 + kRowStep, ... of every tile, so its
  // addresses are a tile base plus steps fixed for the whole loop (the first version recomputed a 64-bit
  // slot times stride product per copy: a quarter of the loop's instructions at head_dim 128).
  constexpr int kRowStep = W * 32 / V8;
  const int r0 = tid / V8, c0 = (tid % V8) * 8;
  // 32-bit: a slot stride times 64 fits (the binding checks), and 64-bit ones spilled at head_dim 64
  const int k_r0 = r0 * (int)a.sks, v_r0 = r0 * (int)a.svs;
  const int k_step = kRowStep * (int)a.sks, v_step = kRowStep * (int)a.svs;
  // the wgmma form: 64-dim region, 128-byte row, swizzled chunk (rows step by multiples of 8: one phase)
  const uint32_t s_r0 = G ? (uint32_t)((c0 / 64) * kBN * 128 + r0 * 128 + ((((c0 % 64) / 8) ^ (r0 & 7)) << 4))
                          : (uint32_t)(r0 * L::LD + c0) * sizeof(T);
  constexpr uint32_t kRowBytes = G ? 128 : L::LD * sizeof(T);
  auto load_tile = [&](int t, int buf) {
    int64_t slot0, limit;
    tile_range(t, slot0, limit);
    const int64_t left = limit - slot0 - r0;  // this thread's rows it * kRowStep < left exist
    const T* k0 = kbase + slot0 * a.sks + c0;  // the tile's first slot: a valid address when nothing is read
    const T* v0 = vbase + slot0 * a.svs + c0;
    const T* kp = k0 + k_r0;
    const T* vp = v0 + v_r0;
    const uint32_t dk = smem_u32(kbuf(buf)) + s_r0, dv = smem_u32(vbuf(buf)) + s_r0;
#pragma unroll
    for (int it = 0; it < kLoads; ++it) {
      const bool ok = it * kRowStep < left;
      const uint32_t off = (uint32_t)(it * kRowStep) * kRowBytes;
      cp_async16(dk + off, ok ? kp : k0, ok);
      cp_async16(dv + off, ok ? vp : v0, ok);
      kp += k_step;
      vp += v_step;
    }
  };

  // Tiles 0 .. kStages - 2 in flight while Q is read; one commit group per tile, empty ones included, so
  // that tile t is always group t.
#pragma unroll
  for (int st = 0; st < kStages - 1; ++st) {
    if (st < n_tiles) load_tile(st, st);
    cp_async_commit();
  }

  // Q tile, rows past the tree zero (every load issued before the first store: load_q); then each warp
  // takes its 16 rows into A fragments.
  uint4 qv[kBM * V8 / (W * 32)];
  load_q<T, D, W * 32>(a, qv, b, kvh, row0, rows, tid);
#pragma unroll
  for (int it = 0; it < kBM * V8 / (W * 32); ++it) {
    const int i = tid + it * W * 32;
    *reinterpret_cast<uint4*>(sq + (i / V8) * L::LD + (i % V8) * 8) = qv[it];
  }
  __syncthreads();
  uint32_t qf[KD][4];
  if (live) {
    // Matrices 0..3 = (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15).
    const T* base = sq + (warp * 16 + (lane & 15)) * L::LD + (lane >> 4) * 8;
#pragma unroll
    for (int kd = 0; kd < KD; ++kd) ldsm_x4(qf[kd], smem_u32(base + kd * 16));
  }
  __syncthreads();  // Q is in registers: its buffer may take tile kStages - 1

  // This thread's rows: g and g + 8 of the warp's 16; their nodes for the ancestor bits.
  int node[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = row0 + warp * 16 + g + 8 * h;
    node[h] = row < rows ? row / a.group : a.n;  // a.n: padding, sees nothing in the tree
  }
  float o[DB][4];
#pragma unroll
  for (int j = 0; j < DB; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};  // l: this thread's columns only, summed at the end
  const float scale = a.scale * kLog2e;

  int buf = 0, next = kStages - 1;  // tile t's buffer, and tile t + kStages - 1's
  for (int t = 0; t < n_tiles; ++t) {
    // next's last reader (tile t - 1) passed the barrier at the end of the previous iteration
    if (t + kStages - 1 < n_tiles) load_tile(t + kStages - 1, next);
    cp_async_commit();
    cp_async_wait<kStages - 1>();  // all but the newest kStages - 1 groups: tile t has landed (this thread's)
    if (G) fence_proxy_async();    // visible to wgmma's reads
    __syncthreads();               // ... and every thread's

    if (live) {
      // S = Q K^T. K rows are slots: B[k][n] = K[n][k] is K's smem row n, so no transpose. Matrices
      // 0..3 = (slots 0-7, d 0-7), (slots 0-7, d 8-15), (slots 8-15, d 0-7), (slots 8-15, d 8-15).
      float s[NB][4];
#pragma unroll
      for (int j = 0; j < NB; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
      if constexpr (G) {
        float(&acc)[NB * 4] = reinterpret_cast<float(&)[NB * 4]>(s);
        const uint32_t kaddr = smem_u32(kbuf(buf));
        fence_regs(acc);
#pragma unroll
        for (int kd = 0; kd < KD; ++kd) fence_regs(qf[kd]);
        wgmma_fence();
#pragma unroll
        for (int kd = 0; kd < KD; ++kd)
          wgmma_rs<0>(Tag<T, kBN>{}, acc, qf[kd], smem_desc(kaddr + (kd / 4) * kBN * 128 + (kd % 4) * 32, 16, 1024));
        wgmma_commit();
        wgmma_wait();
        fence_regs(acc);
#pragma unroll
        for (int kd = 0; kd < KD; ++kd) fence_regs(qf[kd]);
      } else {
        const T* kt = kbuf(buf) + ((lane & 7) + (lane >> 4) * 8) * L::LD + ((lane >> 3) & 1) * 8;
#pragma unroll
        for (int kd = 0; kd < KD; ++kd) {
#pragma unroll
          for (int np = 0; np < NB / 2; ++np) {
            uint32_t kb[4];
            ldsm_x4(kb, smem_u32(kt + np * 16 * L::LD + kd * 16));
            mma16816<T>(s[2 * np], qf[kd], kb[0], kb[1]);
            mma16816<T>(s[2 * np + 1], qf[kd], kb[2], kb[3]);
          }
        }
      }

      // Mask the raw scores (the scale goes into the exponent's multiply-add below). Element e of block
      // j: row g + 8 (e >> 1), column 8 j + 2 tq + (e & 1) of the tile.
      int64_t slot0, limit;
      tile_range(t, slot0, limit);
      if (t >= n_ctx) {
        const int t0 = (int)(slot0 - committed);  // tree node index of the tile's first column
        const int words = (a.n + 31) >> 5;
        uint32_t word[2][2];  // [row half][32-column half of the tile]
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
          for (int w = 0; w < 2; ++w) {
            const int wi = (t0 >> 5) + w;
            word[h][w] = node[h] < a.n && wi < words
                             ? (uint32_t)a.bits[b * a.sbb + (int64_t)node[h] * a.sbn + wi]
                             : 0u;
          }
#pragma unroll
        for (int j = 0; j < NB; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int c = 8 * j + 2 * tq + (e & 1);
            const bool ok = t0 + c < a.n && ((word[e >> 1][c >> 5] >> (c & 31)) & 1u);
            s[j][e] = ok ? s[j][e] : -INFINITY;
          }
      } else if (slot0 + kBN > limit) {  // the context's (or split's) last, partial tile
        const int valid = (int)(limit - slot0);
#pragma unroll
        for (int j = 0; j < NB; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int c = 8 * j + 2 * tq + (e & 1);
            s[j][e] = c < valid ? s[j][e] : -INFINITY;
          }
      }

      // Online softmax on the fragments, shared with the ws kernel (before it, a scaling multiply and exp2f
      // a score made this kernel 2-4% slower at the default model's verify shapes, reports/h100-2026-11-27g).
      float alpha[2];
      online_softmax(s, m, l, alpha, scale);
#pragma unroll
      for (int j = 0; j < DB; ++j) {
        o[j][0] *= alpha[0];
        o[j][1] *= alpha[0];
        o[j][2] *= alpha[1];
        o[j][3] *= alpha[1];
      }

      // O += P V. P's A fragment for slots 16 kk .. 16 kk + 15 is the C fragments of score blocks 2 kk
      // (a[0], a[1]) and 2 kk + 1 (a[2], a[3]). V rows are slots (k) and B[k][n] = V[k][n] is column n
      // of the smem tile: ldmatrix.trans. Matrices 0..3 = (slots 0-7, d 0-7), (slots 8-15, d 0-7),
      // (slots 0-7, d 8-15), (slots 8-15, d 8-15): b0, b1 of output block 2 dp, then of 2 dp + 1.
      auto p_frag = [&](int kk, uint32_t(&pa)[4]) {
        pa[0] = pack2<T>(s[2 * kk][0], s[2 * kk][1]);
        pa[1] = pack2<T>(s[2 * kk][2], s[2 * kk][3]);
        pa[2] = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        pa[3] = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
      };
      if constexpr (G) {
        uint32_t pa[kBN / 16][4];  // all of P before the MMAs: they read their registers asynchronously
#pragma unroll
        for (int kk = 0; kk < kBN / 16; ++kk) p_frag(kk, pa[kk]);
        float(&acc)[DB * 4] = reinterpret_cast<float(&)[DB * 4]>(o);
        const uint32_t vaddr = smem_u32(vbuf(buf));
        fence_regs(acc);
#pragma unroll
        for (int kk = 0; kk < kBN / 16; ++kk) fence_regs(pa[kk]);
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < kBN / 16; ++kk) {
          const uint64_t desc = smem_desc(vaddr + kk * 16 * 128, kBN * 128, 1024);
          if constexpr (D == kBN) {
            // Two m64n32 halves (head dims 0-31, then 32-63: 64 bytes on in the swizzled row): with
            // m64n64 for O as for S, the two products' accumulators went wrong from the second tile on
            // (H100, every case with more than one tile), while either product alone on wgmma was exact.
            // So did m64n128 for both in 128-slot tiles at head_dim 128 (reports/h100-2026-11-27g/wide).
            float(&lo)[D / 4] = reinterpret_cast<float(&)[D / 4]>(o[0]);
            float(&hi)[D / 4] = reinterpret_cast<float(&)[D / 4]>(o[D / 16]);
            wgmma_rs<1>(Tag<T, D / 2>{}, lo, pa[kk], desc);
            wgmma_rs<1>(Tag<T, D / 2>{}, hi, pa[kk], desc + (64 >> 4));
          } else {
            wgmma_rs<1>(Tag<T, D>{}, acc, pa[kk], desc);
          }
        }
        wgmma_commit();
        wgmma_wait();
        fence_regs(acc);
#pragma unroll
        for (int kk = 0; kk < kBN / 16; ++kk) fence_regs(pa[kk]);
      } else {
        const T* vt = vbuf(buf) + ((lane & 7) + ((lane >> 3) & 1) * 8) * L::LD + (lane >> 4) * 8;
#pragma unroll
        for (int kk = 0; kk < kBN / 16; ++kk) {
          uint32_t pa[4];
          p_frag(kk, pa);
#pragma unroll
          for (int dp = 0; dp < D / 16; ++dp) {
            uint32_t vb[4];
            ldsm_x4_trans(vb, smem_u32(vt + kk * 16 * L::LD + dp * 16));
            mma16816<T>(o[2 * dp], pa, vb[0], vb[1]);
            mma16816<T>(o[2 * dp + 1], pa, vb[2], vb[3]);
          }
        }
      }
    }
    __syncthreads();  // buffer `buf` is free for tile t + kStages
    buf = buf + 1 == kStages ? 0 : buf + 1;
    next = next + 1 == kStages ? 0 : next + 1;
  }
  cp_async_wait<0>();  // nothing in flight at exit (the last group is empty)
#if __CUDA_ARCH__ >= 900
  // With GORGON_PDL=1 the merge (launched with programmatic stream serialization) may be scheduled once
  // every block has come this far; it waits for this grid's end before reading anything. Triggered at
  // the start instead, its blocks took SM slots that attention blocks still needed (b1 N16: 10% slower).
  asm volatile("griddepcontrol.launch_dependents;");
#endif

  if (live) {
#pragma unroll
    for (int h = 0; h < 2; ++h)
      write_row<T, D>(a, o, h, m[h], quad_sum(l[h]), b, kvh, row0 + warp * 16 + g + 8 * h, split, tq);
  }
  if (a.fuse) merge_if_last<T, D>(a, b, kvh, row0, min(row0 + kBM, rows), 0, W * 32, tid);
}

// ---------------------------------------------------------------------------------------------------
// The warp-specialized form (sm_90a; GORGON_CUDA_KERNEL=ws): FlashAttention-3's structure, the CUDA
// counterpart of tree_attention_wgmma._ws_tree_attention_kernel. A block owns 128 (node, head) rows of
// one KV head: one producer warp streams K and V tiles of kWsBN slots by TMA into a ring of shared-memory
// stages, each guarded by a "full" mbarrier (the TMA's bytes landed) and an "empty" one (every consumer
// warp group is done with it); two consumer warp groups of 64 rows each run both products on wgmma, Q K^T
// from shared memory (Q staged once, swizzled) and P V from registers, with the intra-warpgroup overlap:
// tile t's Q K^T and tile t - 1's P V are issued together and tile t's softmax runs while P V t - 1 is still
// on the tensor cores. The consumers never wait on a block-wide barrier, so the two groups drift apart
// and take turns on the tensor cores (the mma form's K/V loads and __syncthreads serialised them).
//
// Tiles cover the block's slots as one run: lo .. hi of the context for a context split, committed ..
// committed + n for the tree's split, 0 .. committed + n unsplit. A tile reaching past the context is
// masked by position and ancestor bits. The TMA reads whole tiles: rows past the cache's slots come back
// zero, rows past a split's or the tree's end are real slots of the cache (masked out of the scores, so
// they must be finite, as kv_cache's zero-initialised buffer and any written slot are).

// Study knobs (nvcc -D...; scripts/cuda_variants.py builds and times them side by side). Measured on the
// H100 with a cold L2 (reports/h100-2026-11-27e/ws_variants*, us at Llama-3-8B heads, P=8192):
// - PINGPONG: 2 (head_dim 64 only) as shipped; SmolLM2 heads batch 8, N=128 85.2 -> 75.6 and N=64
//   58.8 -> 49.7 with it, and at head_dim 128 within 2.1% either way.
// - STAGES=3 at head_dim 128 (fits 227 KB): 2% faster at batch 8, N=64, 17% slower at batch 8, N=1.
// - L2 (the TMA's L2 promotion) 128 instead of 256: within 2%.
// Measured and removed (their code is in commit ea04c74): exp2f and one max/sum chain a row instead of
// online_softmax (batch 8, N=64 147.6 -> 163.3 us, batch 1, N=128 50.3 -> 57.1); 64-slot tiles in
// twice the stages (6-22% slower); Q K^T with Q in registers (up to 7% slower at batch 1, N=64, within
// 2% elsewhere); skipping O *= alpha where no row's max rose (slower in 13 of 14 cases).
// Measured and removed on 2026-11-27f (reports/h100-2026-11-27f, batch 8, N=64): FlashAttention-3's
// 176-slot tiles (148.9 -> 151.6 us) and its O rescale between Q K^T and P V (-> 169.9), code in bedc767;
// L2 prefetch of tiles ahead (-> 176-207), d2c3400; 2-block clusters sharing tiles by TMA multicast
// (147.1 -> 185.8), ac1d3f2; keeping the softmax ahead of the wait for P V t - 1 (147.8 -> 168.2), 3a297d2.
#ifndef GORGON_WS_PINGPONG  // 0 never, 1 always, 2 at head_dim 64 only
#define GORGON_WS_PINGPONG 2
#endif
#ifndef GORGON_WS_STAGES  // 0: the layout's own count
#define GORGON_WS_STAGES 0
#endif
#ifndef GORGON_WS_EARLY_Q  // Q's loads issued before the producer starts (1: where both groups compute) or after
#define GORGON_WS_EARLY_Q 1
#endif
#ifndef GORGON_WS_L2  // the TMA's L2 promotion: 0, 128 or 256 bytes
#define GORGON_WS_L2 256
#endif
// The K/V tiles go into L2 evict-first (GORGON_WS_EVICT=1): a call reads each tile once, and with the
// normal policy its K/V (33 MB at Llama-3-8B heads, batch 1, P=8192) pushed the rest out of L2: the kernels'
// code, the TMA maps, Q, the partials and log-sum-exps the merge reads next. On the H100 (Llama-3-8B heads,
// P=8192, cold L2, same run, reports/h100-2026-11-28): batch 1, N=1 17.63 -> 16.98 us, N=16 20.50 -> 19.60,
// N=64 27.25 -> 26.08; batch 8, N=64 142.4 -> 138.2, N=1 93.7 -> 92.9. Blocks started 0.1-0.4 us sooner after
// the call before.
#ifndef GORGON_WS_PDL_AT  // where the ws kernel lets its merge launch: 2 after its main loop, 3 after its stores
#define GORGON_WS_PDL_AT 2
#endif
#ifndef GORGON_WS_EVICT
#define GORGON_WS_EVICT 1
#endif
constexpr int kWsBN = 128;  // slots per tile
constexpr int kWsThreads = 3 * 128;  // two consumer warp groups, then the producer's (one thread copies)
template <int D> struct WsLayout {
  // 128 KB of K/V tiles, 16 or 32 KB of Q
  static constexpr int kStages = GORGON_WS_STAGES ? GORGON_WS_STAGES : D <= 64 ? 4 : 2;
  static constexpr int kRegion = kWsBN * 128;                 // bytes of a tile's 64-dim region
  static constexpr int kTile = (D / 64) * kRegion;            // bytes of a K or V tile
  static constexpr int kQ = (D / 64) * 64 * 128;              // bytes of a warp group's Q (64 rows)
  static constexpr size_t bytes = 1024 + 2 * kStages * kTile + 2 * kQ + 4 * kStages * 8 + 8;  // + align, full Q
};

// The K and V caches as TMA tensors [batch, slots, kv_heads, D] (innermost last), tiles of 64 dims x
// kWsBN slots of one head in the 128-byte-swizzled layout that wgmma reads.
struct KvMaps {
  CUtensorMap k, v;
  CUtensorMap q;  // kTmaQ: Q as [batch, nodes, kv heads, group, D], boxes of 64 rows x 64 dims (q_map)
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ void wgmma_ss(Tag<__nv_bfloat16, 128>, float (&d)[64], uint64_t da, uint64_t db,
                                         int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,"
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,"
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
      "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(da), "l"(db), "r"(accumulate));
}

__device__ __forceinline__ void wgmma_ss(Tag<__half, 128>, float (&d)[64], uint64_t da, uint64_t db,
                                         int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 {"
      "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15,"
      "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31,"
      "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47,"
      "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
      "}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
        "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
        "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
        "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
        "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
        "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
        "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(da), "l"(db), "r"(accumulate));
}

__device__ __forceinline__ void wgmma_wait1() { asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory"); }

__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count));
}
// One arrival that also expects `bytes` from the TMA (the phase completes when both are in).
__device__ __forceinline__ void mbar_expect(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Wait for the phase of parity `parity` to complete (a fresh barrier's phase "1" counts as complete).
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  asm volatile(
      "{\n.reg .pred p;\nWAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      "@p bra.uni DONE;\nbra.uni WAIT;\nDONE:\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}
// A tile box (64 dims x kWsBN slots of one head) at (dim c, head h, slot s, batch b) into `dst`.
__device__ __forceinline__ void tma_load(uint32_t dst, const CUtensorMap* map, uint32_t bar, int c, int h, int s,
                                         int b, uint64_t policy) {
#if GORGON_WS_EVICT
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.L2::cache_hint [%0], [%1, "
      "{%3, %4, %5, %6}], [%2], %7;\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(c), "r"(h), "r"(s), "r"(b), "l"(policy)
      : "memory");
#else
  asm volatile(
      "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5, "
      "%6}], [%2];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(c), "r"(h), "r"(s), "r"(b)
      : "memory");
#endif
}
// A Q box (64 dims x group heads x 64 / group nodes: 64 rows) at (dim c, kv head h, node nd, batch b).
__device__ __forceinline__ void tma_load_q(uint32_t dst, const CUtensorMap* map, uint32_t bar, int c, int h, int nd,
                                           int b) {
  asm volatile(
      "cp.async.bulk.tensor.5d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4, %5, "
      "%6, %7}], [%2];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(bar), "r"(c), "r"(0), "r"(h), "r"(nd), "r"(b)
      : "memory");
}
// The K/V tiles' L2 policy (GORGON_WS_EVICT).
__device__ __forceinline__ uint64_t kv_policy() {
  uint64_t policy = 0;
#if GORGON_WS_EVICT
  asm volatile("createpolicy.fractional.L2::evict_first.b64 %0, 1.0;\n" : "=l"(policy));
#endif
  return policy;
}
// The consumers' barrier (named barrier 1 + group, 128 threads): Q staged before its wgmma reads it.
__device__ __forceinline__ void group_sync(int group) {
  asm volatile("bar.sync %0, 128;\n" ::"r"(1 + group) : "memory");
}
// Named barriers 3 and 4 over both consumer groups (256 threads): the groups' turns on the tensor cores.
__device__ __forceinline__ void turn_wait(int group) {
  asm volatile("bar.sync %0, 256;\n" ::"r"(3 + group) : "memory");
}
__device__ __forceinline__ void turn_pass(int group) {
  asm volatile("bar.arrive %0, 256;\n" ::"r"(4 - group) : "memory");
}
#endif

template <typename T, int D, bool kEarlyQ, bool kQuad, bool kTmaQ>
__global__ void __launch_bounds__(kWsThreads, 1) tree_attention_ws(TreeAttentionArgs a, const __grid_constant__ KvMaps maps) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using L = WsLayout<D>;
  constexpr int kStages = L::kStages;
  constexpr int KD = D / 16;      // k steps of Q K^T
  constexpr int NB = kWsBN / 8;   // 8-slot score blocks per tile
  constexpr int DB = D / 8;       // 8-wide output blocks
  constexpr int V8 = D / 8;       // 16-byte vectors per Q row

  extern __shared__ __align__(128) unsigned char smem[];
  const uint32_t base = (smem_u32(smem) + 1023u) & ~1023u;  // the swizzle is a function of the address
  auto kbuf = [&](int i) { return base + i * L::kTile; };
  auto vbuf = [&](int i) { return base + (kStages + i) * L::kTile; };
  const uint32_t qbase = base + 2 * kStages * L::kTile;
  const uint32_t bars = qbase + 2 * L::kQ;  // full K, full V, empty K, empty V: kStages each
  auto full_k = [&](int i) { return bars + 8 * i; };
  auto full_v = [&](int i) { return bars + 8 * (kStages + i); };
  auto empty_k = [&](int i) { return bars + 8 * (2 * kStages + i); };
  auto empty_v = [&](int i) { return bars + 8 * (3 * kStages + i); };
  const uint32_t full_q = bars + 8 * 4 * kStages;  // kTmaQ: group 0's Q landed (one group computes)

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int b = blockIdx.x / a.hkv, kvh = blockIdx.x % a.hkv, split = blockIdx.z;
  const int rows = a.n * a.group;
  const int groups = rows - (int)blockIdx.y * 128 > 64 ? 2 : 1;  // consumer groups with rows to compute
  const int64_t committed = a.committed[b];
  const bool direct = a.nsplit == 1;
  const bool do_tree = direct || split == a.nsplit - 1;
  int64_t lo = 0, hi = committed + a.n;  // this block's run of slots
  if (!direct) {
    lo = do_tree ? committed : (int64_t)split * a.split;
    hi = do_tree ? committed + a.n : (lo + a.split < committed ? lo + a.split : committed);
  }
  const int n_tiles = hi > lo ? (int)((hi - lo + kWsBN - 1) / kWsBN) : 0;

  // kEarlyQ (launch_ws: where the first row block has both groups computing): in blocks where both do, Q's
  // loads go out first, before the barrier that releases the producer's copies; issued after them, they
  // queue behind the block's K/V stages while the consumers wait on Q. On the H100, Llama-3-8B heads,
  // P=8192 (reports/h100-2026-11-27j/timeline, round 5, us): batch 1, N=64 29.07 -> 27.49, N=128 46.19 ->
  // 45.16, batch 8, N=64 145.31 -> 142.26. With one group, N=16 was the same and N=1 17.69 -> 18.25; and
  // with the early path compiled in but not taken, one group still ran 0.5-0.7 us slower than a build
  // without it (round 6: N=1 17.54 -> 18.18, N=16 21.02 -> 21.69; why is not known), hence a template.
  const int group = warp >> 2, gwarp = warp & 3, gtid = tid & 127;
  const int row0 = (int)blockIdx.y * 128 + group * 64;
  const bool early_q = kEarlyQ && GORGON_WS_EARLY_Q && groups == 2;
  uint4 qv[64 * V8 / 128];
  if (early_q && group < groups) load_q<T, D, 128>(a, qv, b, kvh, row0, rows, gtid);

  if (tid == 0) {
    for (int i = 0; i < kStages; ++i) {
      mbar_init(full_k(i), 1);
      mbar_init(full_v(i), 1);
      mbar_init(empty_k(i), groups);  // one arrival from each consumer group
      mbar_init(empty_v(i), groups);
    }
    if constexpr (kTmaQ) mbar_init(full_q, 1);
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();  // the last block-wide barrier: the roles part here

  // Registers move from the producer's warp group to the consumers' (ptxas sizes a wgmma kernel for whole
  // warp groups: 168 a thread here, which spilled the consumers' accumulators).
  if (warp >= 8) {  // the producer: one thread issues every copy
    asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n");
    if (warp == 8 && lane == 0) {
      // the maps into the descriptor cache before the first copy needs them, as CUTLASS's kernels do: on the
      // H100 from within noise to 0.5 us faster at batch 1, N=1-128 (reports/h100-2026-11-27j, rounds 3-4)
      asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(&maps.k)) : "memory");
      asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(&maps.v)) : "memory");
      if constexpr (kTmaQ) {  // the one row block's 64 rows (from node 0), ahead of the first K/V tiles
        mbar_expect(full_q, L::kQ);
#pragma unroll
        for (int r = 0; r < D / 64; ++r) tma_load_q(qbase + r * 64 * 128, &maps.q, full_q, r * 64, kvh, 0, b);
      }
      const uint64_t policy = kv_policy();
      for (int t = 0; t < n_tiles; ++t) {
        const int st = t % kStages;
        const uint32_t free = ((t / kStages) & 1) ^ 1;
        const int slot = (int)(lo + (int64_t)t * kWsBN);
        mbar_wait(empty_k(st), free);
        mbar_expect(full_k(st), L::kTile);
#pragma unroll
        for (int r = 0; r < D / 64; ++r)
          tma_load(kbuf(st) + r * L::kRegion, &maps.k, full_k(st), r * 64, kvh, slot, b, policy);
        mbar_wait(empty_v(st), free);
        mbar_expect(full_v(st), L::kTile);
#pragma unroll
        for (int r = 0; r < D / 64; ++r)
          tma_load(vbuf(st) + r * L::kRegion, &maps.v, full_v(st), r * 64, kvh, slot, b, policy);
      }
    }
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 240;\n");
  if (group >= groups) return;  // all padding: the empty barriers count only the groups that compute
  const int g = lane >> 2, tq = lane & 3;

  // Q: this group's 64 rows into the swizzled K-major layout (64-dim regions of 64 rows x 128 bytes),
  // rows past the tree zero: landed by the producer's TMA (kTmaQ), else loaded here, every load issued
  // before the first store (load_q).
  const uint32_t qs = qbase + group * L::kQ;
  if constexpr (kTmaQ) {
    mbar_wait(full_q, 0);
  } else {
    if (!early_q) load_q<T, D, 128>(a, qv, b, kvh, row0, rows, gtid);
#pragma unroll
    for (int it = 0; it < 64 * V8 / 128; ++it) {
      const int i = gtid + it * 128, r = i / V8, c = (i % V8) * 8;
      const uint32_t dst = qs + (c / 64) * 64 * 128 + r * 128 + ((((c % 64) / 8) ^ (r & 7)) << 4);
      asm volatile("st.shared.v4.b32 [%0], {%1, %2, %3, %4};\n" ::"r"(dst), "r"(qv[it].x), "r"(qv[it].y),
                   "r"(qv[it].z), "r"(qv[it].w)
                   : "memory");
    }
    fence_proxy_async();  // the generic stores, visible to wgmma's reads
    group_sync(group);
  }

  int node[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int row = row0 + gwarp * 16 + g + 8 * h;
    node[h] = row < rows ? row / a.group : a.n;  // a.n: padding, sees nothing in the tree
  }
  const float scale = a.scale * kLog2e;
  const int64_t limit = hi < committed ? hi : committed;  // tiles reaching past it are masked
  const int32_t* bits_row[2] = {a.bits + b * a.sbb + (int64_t)(node[0] < a.n ? node[0] : 0) * a.sbn,
                                a.bits + b * a.sbb + (int64_t)(node[1] < a.n ? node[1] : 0) * a.sbn};

  float s[NB][4], o[DB][4];
  uint32_t pa[kWsBN / 16][4];
  float(&sacc)[NB * 4] = reinterpret_cast<float(&)[NB * 4]>(s);
  float(&oacc)[DB * 4] = reinterpret_cast<float(&)[DB * 4]>(o);
#pragma unroll
  for (int j = 0; j < DB; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};  // l: this thread's columns only

  // A descriptor's address field is the byte address / 16 (shared memory is under 256 KB, so adding an
  // offset / 16 to a descriptor never carries out of it): the three bases are made once here. Rebuilding
  // each of the loop's 24 descriptors a tile (masks and shifts, 42 of its ~605 instructions a tile) made
  // batch 8, N=64, P=8192 158.2 us against 143.0 (reports/h100-2026-11-27f/desc_once, same run).
  const uint64_t qdesc = smem_desc(qs, 16, 1024), kdesc = smem_desc(kbuf(0), 16, 1024);
  const uint64_t vdesc = smem_desc(vbuf(0), L::kRegion, 1024);
  auto issue_s = [&](int st) {
    fence_regs(sacc);
    wgmma_fence();
#pragma unroll
    for (int kd = 0; kd < KD; ++kd) {
      const uint32_t qoff = (kd / 4) * 64 * 128 + (kd % 4) * 32, koff = (kd / 4) * L::kRegion + (kd % 4) * 32;
      const uint64_t da = qdesc + (qoff >> 4), db = kdesc + ((st * L::kTile + koff) >> 4);
      wgmma_ss(Tag<T, kWsBN>{}, sacc, da, db, kd > 0);
    }
    wgmma_commit();
  };
  auto issue_pv = [&](int st) {
    fence_regs(oacc);
#pragma unroll
    for (int kk = 0; kk < kWsBN / 16; ++kk) fence_regs(pa[kk]);
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kWsBN / 16; ++kk) {
      const uint64_t desc = vdesc + ((st * L::kTile + kk * 16 * 128) >> 4);
      if constexpr (D == 64) {  // two m64n32 halves, as the mma form found exact (see above)
        float(&olo)[16] = reinterpret_cast<float(&)[16]>(o[0]);
        float(&ohi)[16] = reinterpret_cast<float(&)[16]>(o[4]);
        wgmma_rs<1>(Tag<T, 32>{}, olo, pa[kk], desc);
        wgmma_rs<1>(Tag<T, 32>{}, ohi, pa[kk], desc + (64 >> 4));
      } else {
        wgmma_rs<1>(Tag<T, D>{}, oacc, pa[kk], desc);
      }
    }
    wgmma_commit();
  };
  auto pv_done = [&]() {
    fence_regs(oacc);
#pragma unroll
    for (int kk = 0; kk < kWsBN / 16; ++kk) fence_regs(pa[kk]);
  };
  // Tile t's scores (in s) masked, folded into (m, l), turned into probabilities; alpha rescales O.
  auto softmax = [&](int t, float (&alpha)[2]) {
    const int64_t slot0 = lo + (int64_t)t * kWsBN;
    if (slot0 + kWsBN > limit) {
#pragma unroll
      for (int j = 0; j < NB; ++j)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int64_t slot = slot0 + 8 * j + 2 * tq + (e & 1), rel = slot - committed;
          const int h = e >> 1;
          bool ok = slot < hi && rel < 0;
          if (slot < hi && rel >= 0 && node[h] < a.n)  // then rel < n: within the row's words
            ok = (bits_row[h][rel >> 5] >> (rel & 31)) & 1;
          if (!ok) s[j][e] = -INFINITY;
        }
    }
    online_softmax(s, m, l, alpha, scale);
  };
  auto pack_p = [&]() {
#pragma unroll
    for (int kk = 0; kk < kWsBN / 16; ++kk) {
      pa[kk][0] = pack2<T>(s[2 * kk][0], s[2 * kk][1]);
      pa[kk][1] = pack2<T>(s[2 * kk][2], s[2 * kk][3]);
      pa[kk][2] = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
      pa[kk][3] = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
    }
  };
  const bool leader = gtid == 0;  // arrives on the empty barriers for its group
  // With GORGON_WS_PINGPONG the two groups take turns issuing their products (FlashAttention-3's
  // ping-pong: one group's softmax runs while the other's products hold the tensor cores). Group 0 goes
  // first; group 1 passes the turn after each of its issues but the last, so every wait is matched.
  const bool pingpong = (GORGON_WS_PINGPONG == 1 || (GORGON_WS_PINGPONG == 2 && D == 64)) && groups == 2;
  const int phases = n_tiles + 1;  // Q K^T 0, then (Q K^T t, P V t - 1), then P V of the last tile
  int phase = 0;
  auto take_turn = [&]() {
    if (pingpong) turn_wait(group);
  };
  auto pass_turn = [&]() {
    if (pingpong && !(group == 1 && phase == phases - 1)) turn_pass(group);
    ++phase;
  };
  if (pingpong && group == 1 && n_tiles > 0) turn_pass(group);

  if (n_tiles > 0) {
    float alpha[2];
    mbar_wait(full_k(0), 0);
    take_turn();
    issue_s(0);
    pass_turn();
    wgmma_wait();
    fence_regs(sacc);
    if (leader) mbar_arrive(empty_k(0));
    softmax(0, alpha);  // O is still zero: no rescale
    pack_p();
    for (int t = 1; t < n_tiles; ++t) {
      const int st = t % kStages, pst = (t - 1) % kStages;
      mbar_wait(full_k(st), (t / kStages) & 1);
      if (pingpong) mbar_wait(full_v(pst), ((t - 1) / kStages) & 1);  // both in before taking the turn
      take_turn();
      issue_s(st);
      if (!pingpong) mbar_wait(full_v(pst), ((t - 1) / kStages) & 1);
      issue_pv(pst);
      pass_turn();
      wgmma_wait1();  // Q K^T of tile t is done; P V of tile t - 1 may still run
      fence_regs(sacc);
      if (leader) mbar_arrive(empty_k(st));
      softmax(t, alpha);
      wgmma_wait();
      pv_done();
      if (leader) mbar_arrive(empty_v(pst));
#pragma unroll
      for (int j = 0; j < DB; ++j) {
        o[j][0] *= alpha[0];
        o[j][1] *= alpha[0];
        o[j][2] *= alpha[1];
        o[j][3] *= alpha[1];
      }
      pack_p();
    }
    const int pst = (n_tiles - 1) % kStages;
    mbar_wait(full_v(pst), ((n_tiles - 1) / kStages) & 1);
    take_turn();
    issue_pv(pst);
    pass_turn();
    wgmma_wait();
    pv_done();
    if (leader) mbar_arrive(empty_v(pst));
  }

  // The merge, launched with programmatic stream serialization (cuda_ops.pdl), may be scheduled once every
  // block has come this far: its blocks take the SMs as this grid's leave them, and its griddepcontrol.wait
  // still waits for this grid's end and stores. On the H100, Llama-3-8B heads, P=8192, same run
  // (reports/h100-2026-11-28d, round 3, us): batch 1, N=16 18.31 -> 17.86 and 18.79 -> 18.20, N=8 18.33
  // -> 17.56, N=1 17.05 -> 16.65, batch 2, N=16 30.68 -> 29.88; triggered at the block's start instead,
  // N=16 was 0.6 us slower, and the merge launched this way without a trigger (at the grid's end) 0.1-0.2.
#if GORGON_WS_PDL_AT == 2
  if (gtid == 0) asm volatile("griddepcontrol.launch_dependents;");
#endif

  // Where both groups compute at head_dim 128, the group's rows go out through its Q buffer (the last
  // Q K^T that read it has completed): the fragments' 4-byte pieces there (16-byte chunk c of row r at
  // c ^ (r % 8): no bank conflicts either way), then whole rows in 16-byte stores, instead of the
  // fragments' own stores (write_row: 8 rows of 16 bytes a warp-wide store). On the H100, Llama-3-8B
  // heads, P=8192 (reports/h100-2026-11-27j/timeline, round 4, us): batch 1, N=64 28.52 -> 27.00, N=128
  // 47.36 -> 45.47, batch 8, N=64 145.86 -> 141.56; but batch 1, N=1 17.64 -> 18.30 (one group, 4 rows),
  // N=16 the same, SmolLM2 heads (head_dim 64) the same or 0.35 slower.
  if (D == 128 && groups == 2) {
    const bool live_warp = row0 + gwarp * 16 < rows;  // warps of padding rows skip the first half
    float lsum[2];
#pragma unroll
    for (int h = 0; h < 2 && live_warp; ++h) {
      lsum[h] = quad_sum(l[h]);
      const int r = gwarp * 16 + g + 8 * h, row = row0 + r;
      const float inv = lsum[h] > 0.f ? 1.f / lsum[h] : 0.f;
#pragma unroll
      for (int j = 0; j < DB; ++j) {
        const uint32_t dst = qs + r * (D * 2) + ((j ^ (r & 7)) << 4) + tq * 4;
        const uint32_t val = out_pair<T>(o, j, h, inv);
        asm volatile("st.shared.b32 [%0], %1;\n" ::"r"(dst), "r"(val) : "memory");
      }
      if (tq == 0 && row < rows) store_lse(a, b, kvh, row, split, m[h], lsum[h]);
    }
    group_sync(group);
#pragma unroll
    for (int it = 0; it < 64 * V8 / 128; ++it) {
      const int i = gtid + it * 128, r = i / V8, c = i % V8, row = row0 + r;
      if (row >= rows) continue;
      uint4 val;
      asm volatile("ld.shared.v4.b32 {%0, %1, %2, %3}, [%4];\n"
                   : "=r"(val.x), "=r"(val.y), "=r"(val.z), "=r"(val.w)
                   : "r"(qs + r * (D * 2) + ((c ^ (r & 7)) << 4))
                   : "memory");
      *reinterpret_cast<uint4*>(row_dst<T, D>(a, b, kvh, row, split) + c * 8) = val;
    }
  } else {
#pragma unroll
    for (int h = 0; h < 2; ++h)
      write_row<T, D, kQuad>(a, o, h, m[h], quad_sum(l[h]), b, kvh, row0 + gwarp * 16 + g + 8 * h, split, tq);
  }
#if GORGON_WS_PDL_AT == 3
  if (gtid == 0) asm volatile("griddepcontrol.launch_dependents;");
#endif
  // the computing consumer groups (warps 0 .. 4 groups - 1) meet at named barrier 5 (1-4 are taken)
  if (a.fuse) {
    const int first = (int)blockIdx.y * 128;
    merge_if_last<T, D>(a, b, kvh, first, min(first + 128, rows), 5, groups * 128, tid);
  }
#else
  __trap();  // launched on sm_90a builds only (the binding checks the GPU)
#endif
}

}  // namespace fa2

// The merge kernel: merge_row for each (row, node, head), W warps a row (a block of kMergeWarps holds
// kMergeWarps / W rows), a row's warps adding up their sums through shared memory. The launcher takes
// W = 4 where rows are few (a batch-1 decode or small tree: the loads of a row spread over more warps),
// 2 where the merge is a PDL launch of at most 1024 rows (launch_merge), else 1. Two earlier forms were
// latency bound: a block of 128 threads a row with two block-wide reductions (1.5-3 us slower than this
// form at batch 1 with 64-128 tree tokens on the H100), and a warp a row for every shape (1-1.6 us slower
// than the block where a few dozen rows merge 34-90 splits).
// reports/h100-2026-11-27 has the A/Bs.
constexpr int kMergeWarps = 4;

template <typename T, int D, int W, int kLoads>
__global__ void __launch_bounds__(32 * kMergeWarps) merge_splits(TreeAttentionArgs a, int rows) {
  constexpr int kPer = MergeShape<T, D>::kPer;
  static_assert(kMergeWarps % W == 0, "rows tile the block");
  __shared__ float sums[kMergeWarps][32][kPer];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, part_of_row = warp % W;
  const int row = blockIdx.x * (kMergeWarps / W) + warp / W;  // (b * n + node) * hq + head
#if __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");  // the attention grid has ended, its writes visible
#endif
  const bool live = row < rows;  // no early return: W > 1 meets at a barrier
  float acc[kPer];
  const float den =
      merge_row<T, D, W, false, kLoads>(a, live ? row : 0, live ? a.nsplit : 0, lane, part_of_row, acc);
  if constexpr (W > 1) {  // the row's other warps hand their sums to its first
#pragma unroll
    for (int e = 0; e < kPer; ++e) sums[warp][lane][e] = acc[e];
    __syncthreads();
    if (part_of_row != 0) return;
    for (int w = 1; w < W; ++w) {
#pragma unroll
      for (int e = 0; e < kPer; ++e) acc[e] += sums[warp + w][lane][e];
    }
  }
  if (live) store_merged<T, D>(a, row, lane, acc, den);
}

// ---------------------------------------------------------------------------------------------------
// Simple kernel: a warp per (row, node, head), one slot at a time; any dtype, head_dim <= 256.

template <typename T>
__global__ void tree_attention_simple(TreeAttentionArgs a, int d) {
  const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
  const int hq = a.hkv * a.group;
  const int b = warp / (a.n * hq), node = (warp / hq) % a.n, head = warp % hq;
  if (warp >= a.nsplit) return;  // the launcher passes the row count in nsplit
  const int kvh = head / a.group;
  const T* q = static_cast<const T*>(a.q) + b * a.sqb + node * a.sqn + head * a.sqh;
  float qr[8], o[8];
  for (int i = 0; i < 8; ++i) {
    const int c = lane + 32 * i;
    qr[i] = c < d ? to_float(q[c]) * a.scale * kLog2e : 0.f;
    o[i] = 0.f;
  }
  const int64_t committed = a.committed[b];
  float m = -INFINITY, l = 0.f;
  for (int64_t j = 0; j < committed + a.n; ++j) {
    if (j >= committed && !visible(a, b, node, (int)(j - committed))) continue;
    const T* kr = static_cast<const T*>(a.k) + b * a.skb + j * a.sks + kvh * a.skh;
    const T* vr = static_cast<const T*>(a.v) + b * a.svb + j * a.svs + kvh * a.svh;
    float part = 0.f;
    for (int i = 0; i < 8; ++i) {
      const int c = lane + 32 * i;
      if (c < d) part += qr[i] * to_float(kr[c]);
    }
    const float s = warp_sum(part);
    const float m_new = fmaxf(m, s), alpha = exp2f(m - m_new), p = exp2f(s - m_new);
    l = l * alpha + p;
    for (int i = 0; i < 8; ++i) {
      const int c = lane + 32 * i;
      if (c < d) o[i] = o[i] * alpha + p * to_float(vr[c]);
    }
    m = m_new;
  }
  T* out = static_cast<T*>(a.out) + b * a.sob + node * a.son + head * a.soh;
  for (int i = 0; i < 8; ++i) {
    const int c = lane + 32 * i;
    if (c < d) out[c] = from_float<T>(o[i] / l);
  }
}

// ---------------------------------------------------------------------------------------------------
// KV compaction: a block per (plane, row) copies the accepted path's slots to committed + 1 + j, in path
// order (a node's source slot lies at or past every destination written before it: no read-after-write).

template <typename T>
__global__ void keep_path_kernel(T* data, const int64_t* committed, const int64_t* path, const int64_t* n_acc,
                                 int rows, int depth, int64_t plane_stride, int64_t row_stride,
                                 int64_t slot_stride, int64_t width) {
  const int plane = blockIdx.x / rows, b = blockIdx.x % rows;
  T* base = data + plane * plane_stride + b * row_stride;
  const int64_t c0 = committed[b];
  const int64_t accepted = n_acc[b];
  for (int j = 0; j < depth && j < accepted; ++j) {
    const T* src = base + (c0 + path[b * depth + j]) * slot_stride;
    T* dst = base + (c0 + 1 + j) * slot_stride;
    for (int64_t w = threadIdx.x; w < width; w += blockDim.x) dst[w] = src[w];
    __syncthreads();  // this slot is complete before a later one may read it
  }
}

}  // namespace gorgon

// ---------------------------------------------------------------------------------------------------
// Launchers (C linkage-free, called from the torch binding). dtype: 0 float32, 1 float16, 2 bfloat16.

namespace gorgon {

template <typename T, int D>
static cudaError_t launch_merge(const TreeAttentionArgs& a, int batch, cudaStream_t stream) {
  cudaError_t err = cudaGetLastError();  // the attention kernel's launch
  if (err != cudaSuccess) return err;
  const int rows = batch * a.n * a.hkv * a.group;
  // Four warps a row below 1024 rows (on the H100 a warp a row was 0.7-1.6 us slower than the old block
  // merge at N=1 and 16, batch 1, and 1.5-2.6 us faster from 2048 rows)
  // (again with evict-first K/V, 2026-11-28: a warp a row, N=1 16.98 -> 17.50 us, N=16 19.60 -> 19.89)
  // With PDL (the merge's blocks already waiting on the SMs), two warps a row up to 1024 rows: on the H100,
  // Llama-3-8B heads, P=8192, same run (reports/h100-2026-11-28d, round 6, us): batch 1, N=16 17.89 ->
  // 17.73 and 18.02 -> 17.85, N=8 17.49 -> 17.40, N=1 16.67 -> 16.60, batch 2, N=16 (1024 rows) 30.08 -> 29.85;
  // on the H200 (reports/h200-2026-11-28e, rounds 1-2): N=16 15.70 -> 15.25, 15.64 -> 15.21, 15.61 -> 15.05,
  // N=1 14.21 -> 13.70, N=8 15.28 -> 14.56, batch 2, N=16 26.02 -> 24.28, P=4096, N=16 12.32 -> 11.72
  const int w = a.pdl && rows <= 1024 ? 2 : rows < 1024 ? 4 : 1;
  const int per_block = kMergeWarps / w;
  // Programmatic dependent launch (sm_90+): the merge's launch overlaps the attention grid's tail.
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3((rows + per_block - 1) / per_block);
  config.blockDim = dim3(32 * kMergeWarps);
  config.stream = stream;
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr[0].val.programmaticStreamSerializationAllowed = a.pdl;
  config.attrs = attr;
  config.numAttrs = 1;
  // Four loads a lane where one pass of them covers the splits, else sixteen. With sixteen everywhere the
  // ws kernel's call took 0.6-0.75 us longer at batch 1 (Llama-3-8B heads, P=8192, N=1 18.52 against
  // 17.77 us, N=16 21.90 against 21.33; reports/h100-2026-11-27j/timeline, round 2), though one pass of
  // either covers those splits; a guess at why: the larger code is fetched cold, the attention kernel having
  // streamed the L2 full.
  const bool few = a.nsplit <= 4 * w * MergeShape<T, D>::kStride;
  if (w == 4) return cudaLaunchKernelEx(&config, few ? merge_splits<T, D, 4, 4> : merge_splits<T, D, 4, 16>, a, rows);
  if (w == 2) return cudaLaunchKernelEx(&config, few ? merge_splits<T, D, 2, 4> : merge_splits<T, D, 2, 16>, a, rows);
  return cudaLaunchKernelEx(&config, few ? merge_splits<T, D, 1, 4> : merge_splits<T, D, 1, 16>, a, rows);
}

template <typename T, int D>
static cudaError_t launch_wmma(const TreeAttentionArgs& a, int batch, cudaStream_t stream) {
  const size_t bytes = WmmaLayout<D>::bytes;
  cudaError_t err = cudaFuncSetAttribute(tree_attention_wmma<T, D>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
  if (err != cudaSuccess) return err;
  dim3 grid(batch * a.hkv, (a.n * a.group + kBM - 1) / kBM, a.nsplit);
  tree_attention_wmma<T, D><<<grid, kWarps * 32, bytes, stream>>>(a);
  return a.nsplit > 1 ? launch_merge<T, D>(a, batch, stream) : cudaGetLastError();  // never fused
}

template <typename T, int D, int W, bool G = false>
static cudaError_t launch_mma(const TreeAttentionArgs& a, int batch, cudaStream_t stream) {
  using L = fa2::Layout<D, W, G>;
  cudaError_t err = cudaFuncSetAttribute(fa2::tree_attention_mma<T, D, W, G>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, (int)L::bytes);
  if (err != cudaSuccess) return err;
  dim3 grid(batch * a.hkv, (a.n * a.group + L::kBM - 1) / L::kBM, a.nsplit);
  fa2::tree_attention_mma<T, D, W, G><<<grid, W * 32, L::bytes, stream>>>(a);
  return a.nsplit > 1 && !a.fuse ? launch_merge<T, D>(a, batch, stream) : cudaGetLastError();
}

// cuTensorMapEncodeTiled from the driver, through the runtime (no -lcuda at link time); null without it.
using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                 const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                 CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
static EncodeTiled encode_tiled() {
  static const EncodeTiled fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult found;
    const cudaError_t err =
        cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &found);
    return err == cudaSuccess && found == cudaDriverEntryPointSuccess ? reinterpret_cast<EncodeTiled>(p) : nullptr;
  }();
  return fn;
}

// A tensor of T with `rank` dims (innermost first; `strides`: bytes, dims 1 .. rank - 1) as TMA boxes of
// `box`, 128-byte swizzled as wgmma reads them; what lies past its bounds reads as zeros. False without
// the driver's encoder or where it refuses.
template <typename T>
static bool swizzled_map(CUtensorMap* map, int rank, const void* data, const cuuint64_t* dims,
                         const cuuint64_t* strides, const cuuint32_t* box, CUtensorMapL2promotion l2) {
  const EncodeTiled encode = encode_tiled();
  if (encode == nullptr) return false;
  const cuuint32_t step[5] = {1, 1, 1, 1, 1};
  const CUtensorMapDataType type =
      std::is_same<T, __half>::value ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  return encode(map, type, rank, const_cast<void*>(data), dims, strides, box, step, CU_TENSOR_MAP_INTERLEAVE_NONE,
                CU_TENSOR_MAP_SWIZZLE_128B, l2, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// A cache [batch, slots, kv_heads, D] (element strides sb, ss, sh; head_dim contiguous) as a TMA tensor of
// boxes of 64 dims x kWsBN slots of one head; slots past the end read as zeros.
template <typename T, int D>
static bool kv_map(CUtensorMap* map, const void* data, int batch, int64_t slots, int hkv, int64_t sb, int64_t ss,
                   int64_t sh) {
  const cuuint64_t dims[4] = {(cuuint64_t)D, (cuuint64_t)hkv, (cuuint64_t)slots, (cuuint64_t)batch};
  const cuuint64_t strides[3] = {sh * sizeof(T), ss * sizeof(T), sb * sizeof(T)};
  const cuuint32_t box[4] = {64, 1, (cuuint32_t)fa2::kWsBN, 1};
  return swizzled_map<T>(map, 4, data, dims, strides, box,
                         GORGON_WS_L2 == 256   ? CU_TENSOR_MAP_L2_PROMOTION_L2_256B
                         : GORGON_WS_L2 == 128 ? CU_TENSOR_MAP_L2_PROMOTION_L2_128B
                                               : CU_TENSOR_MAP_L2_PROMOTION_NONE);
}

// q [batch, n, hq, D] as a TMA tensor [batch, n, hkv, group, D] (innermost last) of boxes of 64 dims x group
// heads x 64 / group nodes of one KV head (64 rows, numbered as the ws kernel numbers them); nodes past the
// tree read as zeros. False where the group does not divide 64 or a stride or the base is not 16-byte
// aligned.
template <typename T, int D>
static bool q_map(CUtensorMap* map, const TreeAttentionArgs& a, int batch) {
  if (64 % a.group != 0 || a.sqh % 8 || a.sqn % 8 || a.sqb % 8 || reinterpret_cast<uintptr_t>(a.q) % 16)
    return false;
  const cuuint64_t dims[5] = {(cuuint64_t)D, (cuuint64_t)a.group, (cuuint64_t)a.hkv, (cuuint64_t)a.n,
                              (cuuint64_t)batch};
  const cuuint64_t strides[4] = {a.sqh * sizeof(T), a.group * a.sqh * sizeof(T), a.sqn * sizeof(T),
                                 a.sqb * sizeof(T)};
  const cuuint32_t box[5] = {64, (cuuint32_t)a.group, 1, (cuuint32_t)(64 / a.group), 1};
  return swizzled_map<T>(map, 5, a.q, dims, strides, box, CU_TENSOR_MAP_L2_PROMOTION_L2_256B);
}

template <typename T, int D>
static cudaError_t launch_ws(const TreeAttentionArgs& a, int batch, cudaStream_t stream) {
  using L = fa2::WsLayout<D>;
  fa2::KvMaps maps;
  if (!kv_map<T, D>(&maps.k, a.k, batch, a.slots, a.hkv, a.skb, a.sks, a.skh) ||
      !kv_map<T, D>(&maps.v, a.v, batch, a.slots, a.hkv, a.svb, a.svs, a.svh))
    return cudaErrorInvalidValue;  // the binding checked what TMA needs; a driver without it lands here
  // kEarlyQ where both groups of the first row block compute; kQuad (write_row's 16-byte stores) at 17-64
  // rows and head_dim 128, where one group computes (with two it stages its rows through shared memory). At
  // head_dim 64 they lost: SmolLM2 heads, batch 8, N=16, P=8192 25.07 -> 25.54 us (2026-11-28 round 4).
  // kTmaQ (Q by the producer's TMA, ahead of the K/V tiles) where kQuad is and the group divides 64: the
  // consumers' own loads of a 64-row Q waited behind the K/V stream (their first tile 2.4 us later than at
  // 4 rows). On the H100, Llama-3-8B heads, P=8192, same run (reports/h100-2026-11-28b round 4, us): batch 1
  // N=16 19.01 -> 18.78 and 18.92 -> 18.84, N=8 18.13 -> 17.99, N=5 18.20 -> 18.23, batch 2 N=16 30.93 ->
  // 30.82, batch 8 N=16 94.50 -> 94.11. Not at 4 rows (N=1 17.33 -> 17.73) nor with two groups (N=64
  // 26.21 -> 28.18: their early loads already overlap), round 3.
  constexpr bool kQuad = D == 128;
  const int rows = a.n * a.group;
  const bool tma_q = kQuad && rows > 16 && rows <= 64 && q_map<T, D>(&maps.q, a, batch);
  const auto kernel = rows > 64   ? fa2::tree_attention_ws<T, D, true, false, false>
                      : tma_q     ? fa2::tree_attention_ws<T, D, false, kQuad, kQuad>
                      : rows > 16 ? fa2::tree_attention_ws<T, D, false, kQuad, false>
                                  : fa2::tree_attention_ws<T, D, false, false, false>;
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)L::bytes);
  if (err != cudaSuccess) return err;
  dim3 grid(batch * a.hkv, (rows + 127) / 128, a.nsplit);
  kernel<<<grid, fa2::kWsThreads, L::bytes, stream>>>(a, maps);
  return a.nsplit > 1 && !a.fuse ? launch_merge<T, D>(a, batch, stream) : cudaGetLastError();
}

template <typename T>
static cudaError_t launch_tc(const TreeAttentionArgs& a, int batch, int d, int variant, cudaStream_t stream) {
  if (variant == 0 && d == 64) return launch_mma<T, 64, 4>(a, batch, stream);
  if (variant == 0 && d == 128) return launch_mma<T, 128, 4>(a, batch, stream);
  if (variant == 2 && d == 64) return launch_mma<T, 64, 8>(a, batch, stream);
  if (variant == 2 && d == 128) return launch_mma<T, 128, 8>(a, batch, stream);
  if (variant == 1 && d == 64) return launch_wmma<T, 64>(a, batch, stream);
  if (variant == 1 && d == 128) return launch_wmma<T, 128>(a, batch, stream);
  if (variant == 3 && d == 64) return launch_mma<T, 64, 4, true>(a, batch, stream);
  if (variant == 3 && d == 128) return launch_mma<T, 128, 4, true>(a, batch, stream);
  if (variant == 4 && d == 64) return launch_mma<T, 64, 8, true>(a, batch, stream);
  if (variant == 4 && d == 128) return launch_mma<T, 128, 8, true>(a, batch, stream);
  if (variant == 5 && d == 64) return launch_ws<T, 64>(a, batch, stream);
  if (variant == 5 && d == 128) return launch_ws<T, 128>(a, batch, stream);
  return cudaErrorInvalidValue;
}

// variant 0: the mma.sync kernel (tree_attention_mma) with 4 warps; 1: the WMMA kernel
// (tree_attention_wmma); 2: the mma.sync kernel with 8 warps; 3 and 4: its wgmma form with 4 and 8 warps;
// 5: the warp-specialized form (tree_attention_ws). 3-5 run on sm_90a builds only (the binding checks).
cudaError_t tree_attention_fast(const TreeAttentionArgs& a, int batch, int d, int dtype, int variant,
                                cudaStream_t stream) {
  if (dtype == 1) return launch_tc<__half>(a, batch, d, variant, stream);
  if (dtype == 2) return launch_tc<__nv_bfloat16>(a, batch, d, variant, stream);
  return cudaErrorInvalidValue;
}

cudaError_t tree_attention_exact(TreeAttentionArgs a, int batch, int d, int dtype, cudaStream_t stream) {
  const int rows = batch * a.n * a.hkv * a.group;
  a.nsplit = rows;  // the simple kernel reuses the field as its row count
  const int blocks = (rows + 3) / 4;
  if (dtype == 0) tree_attention_simple<float><<<blocks, 128, 0, stream>>>(a, d);
  else if (dtype == 1) tree_attention_simple<__half><<<blocks, 128, 0, stream>>>(a, d);
  else tree_attention_simple<__nv_bfloat16><<<blocks, 128, 0, stream>>>(a, d);
  return cudaGetLastError();
}

cudaError_t keep_path(void* data, int elem_size, const int64_t* committed, const int64_t* path,
                      const int64_t* n_acc, int rows, int depth, int planes, int64_t plane_stride,
                      int64_t row_stride, int64_t slot_stride, int64_t width, cudaStream_t stream) {
  const int blocks = planes * rows;
  if (elem_size == 4)
    keep_path_kernel<float><<<blocks, 256, 0, stream>>>(static_cast<float*>(data), committed, path, n_acc, rows,
                                                        depth, plane_stride, row_stride, slot_stride, width);
  else if (elem_size == 2)
    keep_path_kernel<uint16_t><<<blocks, 256, 0, stream>>>(static_cast<uint16_t*>(data), committed, path, n_acc,
                                                           rows, depth, plane_stride, row_stride, slot_stride,
                                                           width);
  else return cudaErrorInvalidValue;
  return cudaGetLastError();
}

}  // namespace gorgon
