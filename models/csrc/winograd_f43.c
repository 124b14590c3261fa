/* Winograd F(4x4, 3x3) convolution transforms, fp32, NCHW input and output (Lavin & Gray, arXiv 1509.09308).
 *
 * A 3x3 convolution over 4x4 output tiles is 36 independent matrix products in the transformed domain, with 36
 * multiplies per tile and channel pair instead of 144. The products are left to the caller (a batched GEMM);
 * these three passes move data in and out of that domain. Layouts are chosen so every pass streams through
 * contiguous memory and vectorises along its innermost loop:
 *   U (36, Kc, C)  transformed filters for output channels [k0, k1)
 *   V (36, C, T)   transformed input tiles for tile rows [r0, r1), T = (r1 - r0) * TW
 *   M (36, Kc, T)  = U @ V, turned back into output pixels.
 * Tile rows are numbered over the batch: r = n * TH + i.
 *
 * Height is zero-padded; width is zero-padded or, with `circular`, wrapped (a panorama's left and right edges
 * meet), so a width-circular convolution needs no padded copy of its input.
 */
#include <stdlib.h>
#include <string.h>

#define FILTER_BLOCK 64 /* input channels per filter-transform block: 36 x 64 floats stay in L1 */

/* B^T d for six values: the input transform along one axis. */
#define INPUT_1D(d0, d1, d2, d3, d4, d5, o0, o1, o2, o3, o4, o5) \
  do {                                                          \
    o0 = 4 * (d0) - 5 * (d2) + (d4);                            \
    o1 = -4 * (d1) - 4 * (d2) + (d3) + (d4);                    \
    o2 = 4 * (d1) - 4 * (d2) - (d3) + (d4);                     \
    o3 = -2 * (d1) - (d2) + 2 * (d3) + (d4);                    \
    o4 = 2 * (d1) - (d2) - 2 * (d3) + (d4);                     \
    o5 = 4 * (d1) - 5 * (d3) + (d5);                            \
  } while (0)

/* A^T m for six values: the output transform along one axis. */
#define OUTPUT_1D(m0, m1, m2, m3, m4, m5, o0, o1, o2, o3) \
  do {                                                    \
    o0 = (m0) + (m1) + (m2) + (m3) + (m4);                \
    o1 = (m1) - (m2) + 2 * (m3) - 2 * (m4);               \
    o2 = (m1) + (m2) + 4 * (m3) + 4 * (m4);               \
    o3 = (m1) - (m2) + 8 * (m3) - 8 * (m4) + (m5);        \
  } while (0)

/* G g for three values: the filter transform along one axis. */
#define FILTER_1D(g0, g1, g2, o0, o1, o2, o3, o4, o5)         \
  do {                                                        \
    o0 = 0.25f * (g0);                                        \
    o1 = -((g0) + (g1) + (g2)) * (1.f / 6);                   \
    o2 = -((g0) - (g1) + (g2)) * (1.f / 6);                   \
    o3 = (g0) * (1.f / 24) + (g1) * (1.f / 12) + (g2) * (1.f / 6); \
    o4 = (g0) * (1.f / 24) - (g1) * (1.f / 12) + (g2) * (1.f / 6); \
    o5 = (g2);                                                \
  } while (0)

/* w (K, C, 3, 3) -> U (36, k1 - k0, C) for output channels [k0, k1). */
void winograd_filter(const float *restrict w, float *restrict U, int C, int k0, int k1, int nthreads) {
  const long kc = k1 - k0, plane = kc * C;
#pragma omp parallel for collapse(2) num_threads(nthreads) schedule(static)
  for (int k = k0; k < k1; k++)
    for (int cb = 0; cb < C; cb += FILTER_BLOCK) {
      float block[36][FILTER_BLOCK];
      const int cn = C - cb < FILTER_BLOCK ? C - cb : FILTER_BLOCK;
      for (int cc = 0; cc < cn; cc++) {
        const float *g = w + ((long)k * C + cb + cc) * 9;
        float t[6][3];
        for (int col = 0; col < 3; col++)
          FILTER_1D(g[col], g[3 + col], g[6 + col], t[0][col], t[1][col], t[2][col], t[3][col], t[4][col],
                    t[5][col]);
        for (int a = 0; a < 6; a++)
          FILTER_1D(t[a][0], t[a][1], t[a][2], block[a * 6][cc], block[a * 6 + 1][cc], block[a * 6 + 2][cc],
                    block[a * 6 + 3][cc], block[a * 6 + 4][cc], block[a * 6 + 5][cc]);
      }
      float *dst = U + (long)(k - k0) * C + cb;
      for (int p = 0; p < 36; p++) memcpy(dst + p * plane, block[p], sizeof(float) * cn);
    }
}

/* x (N, C, H, W) -> V (36, C, (r1 - r0) * TW) for tile rows [r0, r1). Returns 0, or -1 if out of memory. */
int winograd_input(const float *restrict x, float *restrict V, int C, int H, int W, int pad_h, int pad_w,
                   int circular, int TH, int TW, int r0, int r1, int nthreads) {
  const long T = (long)(r1 - r0) * TW;
  const int J = TW + 1; /* tile j also reads the first two columns of tile j + 1 */
  const int width = 4 * J;
  int failed = 0;
#pragma omp parallel num_threads(nthreads) reduction(| : failed)
  {
    float *row = malloc(sizeof(float) * width);
    float *phases = malloc(sizeof(float) * 6 * 4 * J); /* [m][q][j]: padded row m at column 4j + q */
    float *rows = malloc(sizeof(float) * 6 * 4 * J);   /* [k][q][j]: after the transform along the height */
    failed = !row || !phases || !rows;
#pragma omp for collapse(2) schedule(static)
    for (int c = 0; c < C; c++)
      for (int r = r0; r < r1; r++) {
        if (failed) continue;
        const int n = r / TH, i = r % TH;
        for (int m = 0; m < 6; m++) {
          const int y = 4 * i - pad_h + m;
          float *dst = phases + m * 4 * J;
          if (y < 0 || y >= H) {
            memset(dst, 0, sizeof(float) * 4 * J);
            continue;
          }
          const float *src = x + (((long)n * C + c) * H + y) * W;
          /* row[q] is input column q - pad_w */
          const int lo = pad_w, hi = W + pad_w < width ? W + pad_w : width;
          for (int q = 0; q < lo; q++) row[q] = circular ? src[W - lo + q] : 0.f;
          memcpy(row + lo, src, sizeof(float) * (hi - lo));
          for (int q = hi; q < width; q++) row[q] = circular && q - lo - W < pad_w ? src[q - lo - W] : 0.f;
          for (int j = 0; j < J; j++)
            for (int q = 0; q < 4; q++) dst[q * J + j] = row[4 * j + q];
        }
        for (int q = 0; q < 4; q++) {
          const float *d[6];
          float *o[6];
          for (int m = 0; m < 6; m++) d[m] = phases + (m * 4 + q) * J, o[m] = rows + (m * 4 + q) * J;
          const float *d0 = d[0], *d1 = d[1], *d2 = d[2], *d3 = d[3], *d4 = d[4], *d5 = d[5];
          float *o0 = o[0], *o1 = o[1], *o2 = o[2], *o3 = o[3], *o4 = o[4], *o5 = o[5];
#pragma omp simd
          for (int j = 0; j < J; j++)
            INPUT_1D(d0[j], d1[j], d2[j], d3[j], d4[j], d5[j], o0[j], o1[j], o2[j], o3[j], o4[j], o5[j]);
        }
        const long t0 = (long)(r - r0) * TW;
        for (int k = 0; k < 6; k++) {
          const float *p0 = rows + (k * 4) * J, *p1 = p0 + J, *p2 = p1 + J, *p3 = p2 + J;
          float *o[6];
          for (int l = 0; l < 6; l++) o[l] = V + ((long)(k * 6 + l) * C + c) * T + t0;
          float *o0 = o[0], *o1 = o[1], *o2 = o[2], *o3 = o[3], *o4 = o[4], *o5 = o[5];
#pragma omp simd
          for (int j = 0; j < TW; j++)
            INPUT_1D(p0[j], p1[j], p2[j], p3[j], p0[j + 1], p1[j + 1], o0[j], o1[j], o2[j], o3[j], o4[j], o5[j]);
        }
      }
    free(row);
    free(phases);
    free(rows);
  }
  return failed ? -1 : 0;
}

/* M (36, k1 - k0, (r1 - r0) * TW) + bias -> y (N, K, Ho, Wo), output channels [k0, k1) of tile rows [r0, r1).
 * Returns 0, or -1 if out of memory. */
int winograd_output(const float *restrict M, const float *restrict bias, float *restrict y, int K, int Ho, int Wo,
                    int TH, int TW, int r0, int r1, int k0, int k1, int nthreads) {
  const long T = (long)(r1 - r0) * TW, kc = k1 - k0;
  int failed = 0;
#pragma omp parallel num_threads(nthreads) reduction(| : failed)
  {
    float *z = malloc(sizeof(float) * 6 * 4 * TW);   /* [a][l][j]: after the transform along the width */
    float *out = malloc(sizeof(float) * 4 * 4 * TW); /* [row][l][j]: output pixel (4i + row, 4j + l) */
    failed = !z || !out;
#pragma omp for collapse(2) schedule(static)
    for (int k = k0; k < k1; k++)
      for (int r = r0; r < r1; r++) {
        if (failed) continue;
        const int n = r / TH, i = r % TH;
        const long t0 = (long)(r - r0) * TW;
        for (int a = 0; a < 6; a++) {
          const float *m[6];
          for (int l = 0; l < 6; l++) m[l] = M + ((long)(a * 6 + l) * kc + (k - k0)) * T + t0;
          const float *m0 = m[0], *m1 = m[1], *m2 = m[2], *m3 = m[3], *m4 = m[4], *m5 = m[5];
          float *z0 = z + (a * 4) * TW, *z1 = z0 + TW, *z2 = z1 + TW, *z3 = z2 + TW;
#pragma omp simd
          for (int j = 0; j < TW; j++) OUTPUT_1D(m0[j], m1[j], m2[j], m3[j], m4[j], m5[j], z0[j], z1[j], z2[j], z3[j]);
        }
        const float b = bias ? bias[k] : 0.f;
        for (int l = 0; l < 4; l++) {
          const float *a0 = z + l * TW, *a1 = a0 + 4 * TW, *a2 = a1 + 4 * TW, *a3 = a2 + 4 * TW, *a4 = a3 + 4 * TW,
                      *a5 = a4 + 4 * TW;
          float *o0 = out + l * TW, *o1 = o0 + 4 * TW, *o2 = o1 + 4 * TW, *o3 = o2 + 4 * TW;
#pragma omp simd
          for (int j = 0; j < TW; j++) {
            OUTPUT_1D(a0[j], a1[j], a2[j], a3[j], a4[j], a5[j], o0[j], o1[j], o2[j], o3[j]);
            o0[j] += b, o1[j] += b, o2[j] += b, o3[j] += b;
          }
        }
        for (int row = 0; row < 4 && 4 * i + row < Ho; row++) {
          float *dst = y + (((long)n * K + k) * Ho + 4 * i + row) * Wo;
          const float *src = out + row * 4 * TW;
          for (int col = 0; col < Wo; col++) dst[col] = src[(col & 3) * TW + (col >> 2)];
        }
      }
    free(z);
    free(out);
  }
  return failed ? -1 : 0;
}
