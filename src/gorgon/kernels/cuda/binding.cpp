// Torch binding of the CUDA kernels in tree_attention.cu: shape checks, strides, the current stream.
#include <ATen/cuda/CUDAContext.h>
#include <torch/extension.h>

#include <cuda_runtime.h>

namespace gorgon {
struct TreeAttentionArgs {
  const void* q;
  const void* k;
  const void* v;
  const int64_t* committed;
  const int32_t* bits;
  float* lse_out;
  void* part_out;
  void* out;
  float scale;
  int n, hkv, group, nsplit, split;
  int pdl;
  int fuse;
  int* counters;
  int64_t sqb, sqn, sqh, skb, sks, skh, svb, svs, svh, sbb, sbn, sob, son, soh;
  int64_t slots;
};
cudaError_t tree_attention_fast(const TreeAttentionArgs& a, int batch, int d, int dtype, int variant,
                                cudaStream_t stream);
cudaError_t tree_attention_exact(TreeAttentionArgs a, int batch, int d, int dtype, cudaStream_t stream);
cudaError_t keep_path(void* data, int elem_size, const int64_t* committed, const int64_t* path,
                      const int64_t* n_acc, int rows, int depth, int planes, int64_t plane_stride,
                      int64_t row_stride, int64_t slot_stride, int64_t width, cudaStream_t stream);
}  // namespace gorgon

static int dtype_code(const torch::Tensor& t) {
  if (t.scalar_type() == torch::kFloat32) return 0;
  if (t.scalar_type() == torch::kFloat16) return 1;
  if (t.scalar_type() == torch::kBFloat16) return 2;
  TORCH_CHECK(false, "tree attention: unsupported dtype ", t.scalar_type());
}

// q [B, N, Hq, D]; cache_k/v [B, S, Hkv, D]; committed [B] int64; bits [B, N, W] int32; out like q.
// kernel: 0 the exact warp-per-row kernel, 1 the mma.sync tensor-core kernel (4 warps), 2 the WMMA one, 3 the
// mma.sync one with 8 warps, 4 and 5 its wgmma form with 4 and 8 warps, 6 the warp-specialized form (sm_90:
// cuda_ops builds sm_90a code there). The tensor-core
// kernels run `nsplit` blocks per row block, of `split` committed slots each, the last one taking the tree
// (nsplit 1: one block does all); when nsplit > 1, lse [rows * nsplit] float32 and part
// [rows * nsplit, D] of q's dtype hold each split's log2-sum-exp and normalized output for the merge.
// pdl: launch the merge with programmatic dependent launch where the GPU has it (sm_90 and up).
// fuse (the mma, wgmma and ws kernels, nsplit > 1): no merge kernel; the last split of each row block to finish
// merges it, counting arrivals on counters (int32, zero, one a row block; left zero).
void tree_attention(torch::Tensor q, torch::Tensor k, torch::Tensor v, torch::Tensor committed,
                    torch::Tensor bits, torch::Tensor out, torch::Tensor lse, torch::Tensor part,
                    double scale, int64_t nsplit, int64_t split, int64_t kernel, bool pdl, bool fuse,
                    torch::Tensor counters) {
  TORCH_CHECK(q.is_cuda() && q.dim() == 4 && k.dim() == 4 && v.dim() == 4, "tree attention: bad inputs");
  TORCH_CHECK(q.stride(3) == 1 && k.stride(3) == 1 && v.stride(3) == 1 && out.stride(3) == 1,
              "tree attention: head_dim must be contiguous");
  // the tensor-core kernels step through a tile's 64 slots with 32-bit offsets
  TORCH_CHECK(k.stride(1) < (1LL << 25) && v.stride(1) < (1LL << 25),
              "tree attention: slot stride too large");
  TORCH_CHECK(committed.scalar_type() == torch::kInt64 && bits.scalar_type() == torch::kInt32,
              "tree attention: committed int64, bits int32");
  gorgon::TreeAttentionArgs a;
  a.q = q.data_ptr();
  a.k = k.data_ptr();
  a.v = v.data_ptr();
  a.committed = committed.data_ptr<int64_t>();
  a.bits = bits.data_ptr<int32_t>();
  TORCH_CHECK(lse.scalar_type() == torch::kFloat32 && part.scalar_type() == q.scalar_type(),
              "tree attention: lse float32, partials of q's dtype");
  TORCH_CHECK(nsplit == 1 || (lse.numel() >= q.size(0) * q.size(1) * q.size(2) * nsplit &&
                              part.numel() >= lse.numel() * q.size(3)),
              "tree attention: split scratch too small");
  a.lse_out = lse.data_ptr<float>();
  a.part_out = part.data_ptr();
  a.out = out.data_ptr();
  a.scale = (float)scale;
  a.n = (int)q.size(1);
  a.hkv = (int)k.size(2);
  a.group = (int)(q.size(2) / k.size(2));
  a.nsplit = (int)nsplit;
  a.split = (int)split;
  const auto* props = at::cuda::getCurrentDeviceProperties();
  a.pdl = pdl && props->major >= 9;
  a.sqb = q.stride(0), a.sqn = q.stride(1), a.sqh = q.stride(2);
  a.skb = k.stride(0), a.sks = k.stride(1), a.skh = k.stride(2);
  a.svb = v.stride(0), a.svs = v.stride(1), a.svh = v.stride(2);
  a.sbb = bits.stride(0), a.sbn = bits.stride(1);
  a.sob = out.stride(0), a.son = out.stride(1), a.soh = out.stride(2);
  const int batch = (int)q.size(0), d = (int)q.size(3);
  auto stream = at::cuda::getCurrentCUDAStream().stream();
  TORCH_CHECK(kernel >= 0 && kernel <= 6, "tree attention: unknown kernel ", kernel);
  TORCH_CHECK(kernel < 4 || (props->major == 9 && props->minor == 0),
              "tree attention: the wgmma kernels need an sm_90 GPU (H100/H200)");
  // the warp-specialized form reads K/V by TMA: 16-byte aligned base and strides, the same shape for both
  TORCH_CHECK(kernel != 6 || (k.sizes() == v.sizes() &&
                              (uintptr_t)k.data_ptr() % 16 == 0 && (uintptr_t)v.data_ptr() % 16 == 0 &&
                              k.stride(0) % 8 == 0 && k.stride(1) % 8 == 0 && k.stride(2) % 8 == 0 &&
                              v.stride(0) % 8 == 0 && v.stride(1) % 8 == 0 && v.stride(2) % 8 == 0 &&
                              (uintptr_t)out.data_ptr() % 16 == 0 && out.stride(0) % 8 == 0 &&
                              out.stride(1) % 8 == 0 && out.stride(2) % 8 == 0),
              "tree attention: the ws kernel needs K, V and out with 16-byte aligned rows, K and V of one shape");
  a.slots = k.size(1);
  // row blocks of the grid (the tensor-core kernels: 64 rows a block, fewer blocks for 128)
  const int64_t row_blocks = q.size(0) * k.size(2) * ((q.size(1) * (q.size(2) / k.size(2)) + 63) / 64);
  a.fuse = fuse && nsplit > 1 && kernel != 0 && kernel != 2;  // the mma, wgmma and ws forms merge their own
  TORCH_CHECK(!a.fuse || (counters.is_cuda() && counters.scalar_type() == torch::kInt32 &&
                          counters.is_contiguous() && counters.numel() >= row_blocks),
              "tree attention: the fused merge needs an int32 counter a row block");
  a.counters = a.fuse ? counters.data_ptr<int32_t>() : nullptr;
  cudaError_t err = kernel == 0 ? gorgon::tree_attention_exact(a, batch, d, dtype_code(q), stream)
                                : gorgon::tree_attention_fast(a, batch, d, dtype_code(q), (int)kernel - 1, stream);
  TORCH_CHECK(err == cudaSuccess, "tree attention launch: ", cudaGetErrorString(err));
}

// data [2, L, B, S, ...] with contiguous trailing dims; path [B, depth], n_accepted [B], committed [B] int64.
void keep_path(torch::Tensor data, torch::Tensor committed, torch::Tensor path, torch::Tensor n_accepted) {
  TORCH_CHECK(data.is_contiguous(), "keep_path: the cache must be contiguous");
  const int64_t width = data.stride(3);  // elements per slot: the trailing dims, contiguous
  auto stream = at::cuda::getCurrentCUDAStream().stream();
  cudaError_t err = gorgon::keep_path(
      data.data_ptr(), (int)data.element_size(), committed.data_ptr<int64_t>(), path.data_ptr<int64_t>(),
      n_accepted.data_ptr<int64_t>(), (int)path.size(0), (int)path.size(1), (int)(data.size(0) * data.size(1)),
      data.stride(1), data.stride(2), data.stride(3), width, stream);
  TORCH_CHECK(err == cudaSuccess, "keep_path launch: ", cudaGetErrorString(err));
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("tree_attention", &tree_attention, "tree attention (see tree_attention.cu)");
  m.def("keep_path", &keep_path, "compact accepted KV slots in place");
}
