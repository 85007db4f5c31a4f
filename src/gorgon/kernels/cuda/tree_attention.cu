// Tree attention and KV compaction in CUDA C++ (the `cuda` backend; Python side: gorgon/kernels/cuda_ops.py).
//
// The operation is the one gorgon/kernels/reference.py defines: N tree tokens attend to their row's
// committed cache slots (all of them) and, among the tree's own slots committed .. committed + N - 1,
// to their ancestors and themselves, read from packed ancestor bits (one int32 word per 32 nodes).
//
// Two kernels compute it. `tree_attention_mma` (bf16/fp16, head_dim 64 or 128) is FlashAttention-2
// shaped: a block owns 64 (node, head) rows that share one KV head, so grouped heads read each K/V tile
// once; it streams K/V tiles of 64 slots through shared memory, computes QK^T and PV on tensor cores
// (WMMA, fp32 accumulation) and keeps an online softmax in the log2 domain. Long contexts are split
// over blocks (the tree being one more split) and merged by `merge_splits`. `tree_attention_simple`
// (any dtype incl. float32, any head_dim <= 256) is a warp per row and exists for exactness, not speed.
// The file needs no torch headers, so it compiles (and is checked in CI) with nvcc alone.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>
#include <stdint.h>

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
  float* m_out;
  float* l_out;
  float* acc_out;
  void* out;
  float scale;
  int n, hkv, group, nsplit, split;
  int64_t sqb, sqn, sqh, skb, sks, skh, svb, svs, svh, sbb, sbn, sob, son, soh;
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

// ---------------------------------------------------------------------------------------------------
// Tensor-core kernel.

template <int D> struct MmaLayout {
  static constexpr int LD = D + 8;                      // halves per smem row (pad: fewer bank conflicts)
  static constexpr int WLD = (D > kBN ? D : kBN) + 4;   // floats per row of a warp's score/PV scratch
  static constexpr int PLD = kBN + 8;                   // halves per row of a warp's probabilities
  static constexpr int OPL = 16 * D / 32;               // output elements each lane keeps in registers
  static constexpr size_t bytes =
      sizeof(uint16_t) * (size_t)(kBM + 2 * kBN) * LD + sizeof(float) * (size_t)kWarps * 16 * WLD +
      sizeof(uint16_t) * (size_t)kWarps * 16 * PLD + sizeof(float) * kWarps * 16 * 3;
};

template <typename T, int D>
__global__ void __launch_bounds__(kWarps * 32) tree_attention_mma(TreeAttentionArgs a) {
  using L = MmaLayout<D>;
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
      const int64_t part = ((int64_t)(b * a.n + node) * (a.hkv * a.group) + head) * a.nsplit + split;
      a.acc_out[part * D + c] = o[i];
      if (c == 0) {
        a.m_out[part] = row_m[r];
        a.l_out[part] = row_l[r];
      }
    }
  }
}

// Combine the splits of each (row, node, head): weights 2^(m - max m), splits past the context weigh 0.
template <typename T>
__global__ void merge_splits(TreeAttentionArgs a, int d) {
  const int row = blockIdx.x;  // (b * n + node) * hq + head
  const int hq = a.hkv * a.group;
  const int b = row / (a.n * hq), node = (row / hq) % a.n, head = row % hq;
  const float* m = a.m_out + (int64_t)row * a.nsplit;
  const float* l = a.l_out + (int64_t)row * a.nsplit;
  float top = -INFINITY;
  for (int s = 0; s < a.nsplit; ++s) top = fmaxf(top, m[s]);
  for (int c = threadIdx.x; c < d; c += blockDim.x) {
    float num = 0.f, den = 0.f;
    for (int s = 0; s < a.nsplit; ++s) {
      const float w = m[s] == -INFINITY ? 0.f : exp2f(m[s] - top);
      num += w * a.acc_out[((int64_t)row * a.nsplit + s) * d + c];
      den += w * l[s];
    }
    static_cast<T*>(a.out)[b * a.sob + node * a.son + head * a.soh + c] = from_float<T>(num / den);
  }
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
static cudaError_t launch_mma(const TreeAttentionArgs& a, int batch, cudaStream_t stream) {
  const size_t bytes = MmaLayout<D>::bytes;
  cudaError_t err = cudaFuncSetAttribute(tree_attention_mma<T, D>,
                                         cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
  if (err != cudaSuccess) return err;
  dim3 grid(batch * a.hkv, (a.n * a.group + kBM - 1) / kBM, a.nsplit);
  tree_attention_mma<T, D><<<grid, kWarps * 32, bytes, stream>>>(a);
  if (a.nsplit > 1) merge_splits<T><<<batch * a.n * a.hkv * a.group, D, 0, stream>>>(a, D);
  return cudaGetLastError();
}

template <typename T>
static cudaError_t launch_mma_d(const TreeAttentionArgs& a, int batch, int d, cudaStream_t stream) {
  if (d == 64) return launch_mma<T, 64>(a, batch, stream);
  if (d == 128) return launch_mma<T, 128>(a, batch, stream);
  return cudaErrorInvalidValue;
}

cudaError_t tree_attention_fast(const TreeAttentionArgs& a, int batch, int d, int dtype, cudaStream_t stream) {
  if (dtype == 1) return launch_mma_d<__half>(a, batch, d, stream);
  if (dtype == 2) return launch_mma_d<__nv_bfloat16>(a, batch, d, stream);
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
