// Matrix products for decoding on the CPU: y[M, N] = x[M, K] @ W^T, W given as [N, K] (a Linear's
// weight) packed into panels of 16 output columns: panel p holds W[16p .. 16p + 15, :] as [K][16].
//
// Decoding multiplies a handful of rows (1 for plain decoding, the tree's nodes for verification) by
// every weight once: the cost is reading the weights. The BLAS libraries at hand (MKL, OpenBLAS) run
// 2 to 6 rows at a third of the memory bandwidth on the machines measured (notes/cpu.md); this kernel
// reads each panel once per 6 rows, keeping a 6 x 16 block of y in 12 AVX registers.
//
// Built at run time with gcc -O3 -mavx2 -mfma -fopenmp (gorgon/kernels/host_blas.py).

#include <immintrin.h>
#include <stddef.h>

#define NR 16
#define MR 6
// Prefetch distance in k steps (32 x 64 bytes ahead). It speeds 4-row blocks by ~20% and slows the
// single-row case by ~15% (measured, notes/cpu.md), so only multi-row blocks prefetch.
#define PF 32

// One panel (16 columns of y) for rows m0 .. m0 + mr - 1 of x.
static inline void block(const float* x, const float* panel, float* y, int mr, int K, int ldy) {
  __m256 a00 = _mm256_setzero_ps(), a01 = _mm256_setzero_ps(), a10 = _mm256_setzero_ps(),
         a11 = _mm256_setzero_ps(), a20 = _mm256_setzero_ps(), a21 = _mm256_setzero_ps(),
         a30 = _mm256_setzero_ps(), a31 = _mm256_setzero_ps(), a40 = _mm256_setzero_ps(),
         a41 = _mm256_setzero_ps(), a50 = _mm256_setzero_ps(), a51 = _mm256_setzero_ps();
  const float* x0 = x;
  const float* x1 = x + (size_t)K;
  const float* x2 = x + 2 * (size_t)K;
  const float* x3 = x + 3 * (size_t)K;
  const float* x4 = x + 4 * (size_t)K;
  const float* x5 = x + 5 * (size_t)K;
  for (int k = 0; k < K; k++) {
    if (mr > 1) _mm_prefetch((const char*)(panel + (size_t)(k + PF) * NR), _MM_HINT_T0);
    const __m256 w0 = _mm256_loadu_ps(panel + (size_t)k * NR);
    const __m256 w1 = _mm256_loadu_ps(panel + (size_t)k * NR + 8);
    __m256 b;
    // The row count is fixed for the whole loop, so these branches predict perfectly.
    b = _mm256_broadcast_ss(x0 + k); a00 = _mm256_fmadd_ps(b, w0, a00); a01 = _mm256_fmadd_ps(b, w1, a01);
    if (mr > 1) { b = _mm256_broadcast_ss(x1 + k); a10 = _mm256_fmadd_ps(b, w0, a10); a11 = _mm256_fmadd_ps(b, w1, a11); }
    if (mr > 2) { b = _mm256_broadcast_ss(x2 + k); a20 = _mm256_fmadd_ps(b, w0, a20); a21 = _mm256_fmadd_ps(b, w1, a21); }
    if (mr > 3) { b = _mm256_broadcast_ss(x3 + k); a30 = _mm256_fmadd_ps(b, w0, a30); a31 = _mm256_fmadd_ps(b, w1, a31); }
    if (mr > 4) { b = _mm256_broadcast_ss(x4 + k); a40 = _mm256_fmadd_ps(b, w0, a40); a41 = _mm256_fmadd_ps(b, w1, a41); }
    if (mr > 5) { b = _mm256_broadcast_ss(x5 + k); a50 = _mm256_fmadd_ps(b, w0, a50); a51 = _mm256_fmadd_ps(b, w1, a51); }
  }
  _mm256_storeu_ps(y, a00); _mm256_storeu_ps(y + 8, a01);
  if (mr > 1) { _mm256_storeu_ps(y + (size_t)ldy, a10); _mm256_storeu_ps(y + (size_t)ldy + 8, a11); }
  if (mr > 2) { _mm256_storeu_ps(y + 2 * (size_t)ldy, a20); _mm256_storeu_ps(y + 2 * (size_t)ldy + 8, a21); }
  if (mr > 3) { _mm256_storeu_ps(y + 3 * (size_t)ldy, a30); _mm256_storeu_ps(y + 3 * (size_t)ldy + 8, a31); }
  if (mr > 4) { _mm256_storeu_ps(y + 4 * (size_t)ldy, a40); _mm256_storeu_ps(y + 4 * (size_t)ldy + 8, a41); }
  if (mr > 5) { _mm256_storeu_ps(y + 5 * (size_t)ldy, a50); _mm256_storeu_ps(y + 5 * (size_t)ldy + 8, a51); }
}

// x [M, K] row-major; packed [P, K, 16] with P = ceil(N / 16); y [M, 16 P] row-major.
void gorgon_packed_gemm(const float* x, const float* packed, float* y, int M, int K, int panels) {
  const int ldy = panels * NR;
  #pragma omp parallel for schedule(static)
  for (int p = 0; p < panels; p++) {
    const float* panel = packed + (size_t)p * K * NR;
    for (int m0 = 0; m0 < M; m0 += MR) {
      const int mr = M - m0 < MR ? M - m0 : MR;
      block(x + (size_t)m0 * K, panel, y + (size_t)m0 * ldy + (size_t)p * NR, mr, K, ldy);
    }
  }
}
