// Cluster co-residency probe: how many clusters of C blocks (384 threads, ~166 KB smem) fit at once.
#include <cstdio>
#include <cuda_runtime.h>
__global__ void dummy(int* out) {
  extern __shared__ unsigned char s[];
  unsigned r; asm volatile("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
  unsigned sm; asm volatile("mov.u32 %0, %%smid;" : "=r"(sm));
  if (threadIdx.x == 0) out[blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z)] = sm * 100 + r;
  s[threadIdx.x] = 1;
}
int main() {
  int dev = 0; cudaDeviceProp p; cudaGetDeviceProperties(&p, dev);
  printf("%s SMs %d\n", p.name, p.multiProcessorCount);
  const int smem = 166 * 1024;
  cudaFuncSetAttribute(dummy, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
  cudaFuncSetAttribute(dummy, cudaFuncAttributeNonPortableClusterSizeAllowed, 1);
  int* out; cudaMalloc(&out, 4096 * 4);
  for (int c = 1; c <= 16; ++c) {
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(8, 1, c); cfg.blockDim = dim3(384); cfg.dynamicSmemBytes = smem;
    cudaLaunchAttribute at[1]; at[0].id = cudaLaunchAttributeClusterDimension;
    at[0].val.clusterDim.x = 1; at[0].val.clusterDim.y = 1; at[0].val.clusterDim.z = c;
    cfg.attrs = at; cfg.numAttrs = 1;
    int n = -1; cudaError_t e = cudaOccupancyMaxActiveClusters(&n, dummy, &cfg);
    cudaError_t e2 = cudaLaunchKernelEx(&cfg, dummy, out);
    cudaError_t e3 = cudaDeviceSynchronize();
    printf("cluster %2d: max active %3d (%s) launch %s %s\n", c, n, cudaGetErrorString(e), cudaGetErrorString(e2), cudaGetErrorString(e3));
    cudaGetLastError();
  }
  return 0;
}
