/* The item matrix in two bf16 halves: a scan that reads half the bytes, and exact reads of rows.
 *
 * Layout (modelstore/item_matrix.py writes it): every float32 x of the [items, d] matrix is split
 * into its high 16 bits (x truncated to bfloat16) and its low 16 bits; each half is a plane of
 * uint16 in blocks of PB items, block b = [d, w_b] (dimension-major, w_b = min(PB, items - b*PB)),
 * the blocks one after the other. Both planes together hold exactly the float32 bits: the same
 * memory as the float32 matrix, and (hi << 16 | lo) is x again.
 *
 * A scan of the high plane alone gives logits u·hi(i) whose error scoring.py bounds (hi(i) is i
 * truncated toward zero: |i - hi(i)| < 2^-7 |hi(i)| per element, plus 2^-133 below float32's
 * normal range); the candidates are then re-ranked exactly from both planes. Summation runs
 * dimension by dimension for each item, in any vector width (a fused or unfused multiply-add per
 * step): float32's dot-product error bound gamma_d holds for every loop here.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_kernels.h"
#if defined(__x86_64__)
#include <immintrin.h>
#define X86 1
#elif defined(__aarch64__)
#include <arm_neon.h>
#define ARM64 1
#endif

#define PB 1024 /* items per block: modelstore/item_matrix.py's BLOCK_ITEMS */

static inline int64_t width_of(int64_t n, int64_t b) {
    const int64_t w = n - b * PB;
    return w < PB ? w : PB;
}

static inline float join(uint16_t high, uint16_t low) {
    const uint32_t bits = (uint32_t)high << 16 | low;
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

/* Where item i's dimension j is in a plane. */
static inline int64_t offset_of(int64_t n, int64_t d, int64_t i, int64_t j) {
    const int64_t b = i / PB;
    return b * PB * d + j * width_of(n, b) + (i - b * PB);
}

/* acc[0..w) = u · item for the w items of one block (hb, lb: the block in each plane; lb NULL:
 * the high halves only). */
typedef void (*ScanBlock)(const uint16_t *hb, const uint16_t *lb, int64_t w, int64_t d, const float *u,
                          float *acc);

static void scan_portable(const uint16_t *hb, const uint16_t *lb, int64_t w, int64_t d, const float *u,
                          float *acc) {
    for (int64_t t = 0; t < w; t++) acc[t] = 0.0f;
    for (int64_t j = 0; j < d; j++) {
        const uint16_t *h = hb + j * w, *l = lb ? lb + j * w : NULL;
        const float uj = u[j];
        if (l)
            for (int64_t t = 0; t < w; t++) acc[t] += uj * join(h[t], l[t]);
        else
            for (int64_t t = 0; t < w; t++) acc[t] += uj * join(h[t], 0);
    }
}

/* The vector loops: one dimension (one contiguous row of the block) at a time, added into the
 * block's sums (4 KB, in L1), so that the planes are read front to back in one stream. AVX-512
 * CPUs run the AVX2 loop: the scan is bound by memory, and on Zen 4 the 512-bit loop measured
 * slower (0.5-0.8x sgemv's time against AVX2's 0.43-0.48x); several rows per pass ran slower too. */
#ifdef X86
__attribute__((target("avx2,fma"), always_inline)) static inline __m256 widen8(const uint16_t *h,
                                                                               const uint16_t *l) {
    __m256i x = _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)h)), 16);
    if (l) x = _mm256_or_si256(x, _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)l)));
    return _mm256_castsi256_ps(x);
}

/* One row of a block into its sums (first: the sums start from zero); inlined with l NULL or not,
 * so that the high-half loop has no test of l in it. */
__attribute__((target("avx2,fma"), always_inline)) static inline void row_avx2(
    const uint16_t *h, const uint16_t *l, int64_t w, float uj, int first, float *acc) {
    const int64_t vector_end = w - w % 8;
    const __m256 u8 = _mm256_set1_ps(uj);
    for (int64_t t = 0; t < vector_end; t += 8) {
        const __m256 a = first ? _mm256_setzero_ps() : _mm256_loadu_ps(acc + t);
        _mm256_storeu_ps(acc + t, _mm256_fmadd_ps(u8, widen8(h + t, l ? l + t : NULL), a));
    }
    for (int64_t t = vector_end; t < w; t++) acc[t] = (first ? 0.0f : acc[t]) + uj * join(h[t], l ? l[t] : 0);
}

__attribute__((target("avx2,fma"))) static void scan_avx2(const uint16_t *hb, const uint16_t *lb, int64_t w,
                                                         int64_t d, const float *u, float *acc) {
    if (lb) {
        row_avx2(hb, lb, w, u[0], 1, acc);
        for (int64_t j = 1; j < d; j++) row_avx2(hb + j * w, lb + j * w, w, u[j], 0, acc);
    } else {
        row_avx2(hb, NULL, w, u[0], 1, acc);
        for (int64_t j = 1; j < d; j++) row_avx2(hb + j * w, NULL, w, u[j], 0, acc);
    }
}
#endif

#ifdef ARM64
static inline __attribute__((always_inline)) void row_neon(const uint16_t *h, const uint16_t *l, int64_t w,
                                                           float uj, int first, float *acc) {
    const int64_t vector_end = w - w % 8;
    const float32x4_t u4 = vdupq_n_f32(uj);
    for (int64_t t = 0; t < vector_end; t += 8) {
        const uint16x8_t x = vld1q_u16(h + t);
        uint32x4_t x0 = vshll_n_u16(vget_low_u16(x), 16), x1 = vshll_n_u16(vget_high_u16(x), 16);
        if (l) {
            const uint16x8_t y = vld1q_u16(l + t);
            x0 = vorrq_u32(x0, vmovl_u16(vget_low_u16(y)));
            x1 = vorrq_u32(x1, vmovl_u16(vget_high_u16(y)));
        }
        const float32x4_t a0 = first ? vdupq_n_f32(0.0f) : vld1q_f32(acc + t);
        const float32x4_t a1 = first ? vdupq_n_f32(0.0f) : vld1q_f32(acc + t + 4);
        vst1q_f32(acc + t, vfmaq_f32(a0, u4, vreinterpretq_f32_u32(x0)));
        vst1q_f32(acc + t + 4, vfmaq_f32(a1, u4, vreinterpretq_f32_u32(x1)));
    }
    for (int64_t t = vector_end; t < w; t++) acc[t] = (first ? 0.0f : acc[t]) + uj * join(h[t], l ? l[t] : 0);
}

static void scan_neon(const uint16_t *hb, const uint16_t *lb, int64_t w, int64_t d, const float *u, float *acc) {
    if (lb) {
        row_neon(hb, lb, w, u[0], 1, acc);
        for (int64_t j = 1; j < d; j++) row_neon(hb + j * w, lb + j * w, w, u[j], 0, acc);
    } else {
        row_neon(hb, NULL, w, u[0], 1, acc);
        for (int64_t j = 1; j < d; j++) row_neon(hb + j * w, NULL, w, u[j], 0, acc);
    }
}
#endif

static ScanBlock pick_scan(void) {
    switch (kernel_loop()) {
#ifdef X86
        case LOOP_AVX512:
        case LOOP_AVX2: return scan_avx2;
#endif
#ifdef ARM64
        case LOOP_NEON: return scan_neon;
#endif
        default: return scan_portable;
    }
}

/* One user's scan of all n items, block by block: u · hi(i) (lo NULL) or u · i (both planes).
 * out (optional): every item's logit. sel (optional, one row): each block's logits are fed to it
 * while they are in cache, as -inf where allowed (optional, a byte per item) is 0. */
int pl_scan(Selection *sel, const uint16_t *hi, const uint16_t *lo, int64_t n, int64_t d, const float *u,
            const uint8_t *allowed, float *out) {
    const ScanBlock scan = pick_scan();
    float block[PB], masked[PB];
    for (int64_t first = 0; first < n; first += PB) {
        const int64_t w = width_of(n, first / PB);
        float *acc = out ? out + first : block;
        scan(hi + first * d, lo ? lo + first * d : NULL, w, d, u, acc);
        if (!sel) continue;
        const float *values = acc;
        if (allowed) {
            for (int64_t t = 0; t < w; t++) masked[t] = allowed[first + t] ? acc[t] : -INFINITY;
            values = masked;
        }
        if (sel_feed_row(sel, 0, values, w, first)) return -1;
    }
    return 0;
}

/* out[m][d] = the float32 rows of items idx[0..m), exactly. */
void pl_rows(const uint16_t *hi, const uint16_t *lo, int64_t n, int64_t d, const int64_t *idx, int64_t m,
             float *out) {
    for (int64_t k = 0; k < m; k++) {
        const int64_t i = idx[k], b = i / PB, w = width_of(n, b), at = b * PB * d + (i - b * PB);
        for (int64_t j = 0; j < d; j++) out[k * d + j] = join(hi[at + j * w], lo[at + j * w]);
    }
}

/* out[k] = users[rows[k]] · item cols[k] in float64 (the exact re-rank of candidates). */
void pl_exact(const uint16_t *hi, const uint16_t *lo, int64_t n, int64_t d, const float *users,
              const int64_t *rows, const int64_t *cols, int64_t count, double *out) {
    for (int64_t k = 0; k < count; k++) {
        const int64_t i = cols[k], b = i / PB, w = width_of(n, b), at = b * PB * d + (i - b * PB);
        const float *user = users + rows[k] * d;
        double sum = 0.0;
        for (int64_t j = 0; j < d; j++) sum += (double)join(hi[at + j * w], lo[at + j * w]) * (double)user[j];
        out[k] = sum;
    }
}

/* Blocks first_block.. (count of them) as float32 [d][their items] at out (row stride out_stride):
 * a tile of the dimension-major matrix, for the batch scorer's matrix products. */
void pl_columns(const uint16_t *hi, const uint16_t *lo, int64_t n, int64_t d, int64_t first_block,
                int64_t count, float *out, int64_t out_stride) {
    for (int64_t c = 0; c < count; c++) {
        const int64_t b = first_block + c, w = width_of(n, b), base = b * PB * d;
        for (int64_t j = 0; j < d; j++) {
            const uint16_t *h = hi + base + j * w, *l = lo + base + j * w;
            float *row = out + j * out_stride + c * PB;
            for (int64_t t = 0; t < w; t++) row[t] = join(h[t], l[t]);
        }
    }
}

/* sq[i] = the squared norm of item i in float32 (of its high halves when lo is NULL): a
 * non-finite value (NaN, infinity, or too large to square) makes it non-finite. */
#ifdef X86
#define CLONED __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define CLONED
#endif
CLONED void pl_norms(
    const uint16_t *hi, const uint16_t *lo, int64_t n, int64_t d, float *sq) {
    for (int64_t first = 0; first < n; first += PB) {
        const int64_t w = width_of(n, first / PB), base = first * d;
        float *s = sq + first;
        for (int64_t t = 0; t < w; t++) s[t] = 0.0f;
        for (int64_t j = 0; j < d; j++) {
            const uint16_t *h = hi + base + j * w;
            if (lo) {
                const uint16_t *l = lo + base + j * w;
                for (int64_t t = 0; t < w; t++) {
                    const float x = join(h[t], l[t]);
                    s[t] += x * x;
                }
            } else {
                for (int64_t t = 0; t < w; t++) {
                    const float x = join(h[t], 0);
                    s[t] += x * x;
                }
            }
        }
    }
}

/* One user's top k, exactly (scoring.user_top_k's steps in one call): the scan (high halves, or
 * both planes when `exact_scan`) feeds a selection that keeps every item within `slack` of the
 * running k-th largest; the candidates are re-scored in float64 with u64 (the vector as given)
 * and the best k ranked, larger exact logit first, ties by smaller item. Writes at most k items
 * and exact logits (fewer when fewer items are allowed); out (optional) gets every scanned logit.
 * Returns how many, or -1 when out of memory. */
typedef struct {
    double exact;
    int64_t item;
} Scored;

static int better(const void *a, const void *b) {
    const Scored *x = a, *y = b;
    if (x->exact != y->exact) return x->exact > y->exact ? -1 : 1;
    return (x->item > y->item) - (x->item < y->item);
}

int64_t pl_top_k(const uint16_t *hi, const uint16_t *lo, int64_t n, int64_t d, const float *u32,
                 const double *u64, int64_t k, double slack, int exact_scan, const uint8_t *allowed, float *out,
                 int64_t *items, double *exact) {
    Selection *sel = sel_new(1, k, &slack);
    if (!sel) return -1;
    int64_t count = -1, *rows = NULL, *found = NULL;
    float *values = NULL;
    Scored *scored = NULL;
    if (pl_scan(sel, hi, exact_scan ? lo : NULL, n, d, u32, allowed, out)) goto done;
    const int64_t kept = sel_finish(sel);
    if (kept < 0) goto done;
    const size_t size = (size_t)(kept > 0 ? kept : 1);
    rows = malloc(size * sizeof *rows);
    found = malloc(size * sizeof *found);
    values = malloc(size * sizeof *values);
    scored = malloc(size * sizeof *scored);
    if (!rows || !found || !values || !scored) goto done;
    sel_export(sel, rows, found, values);
    for (int64_t c = 0; c < kept; c++) {
        const int64_t i = found[c], b = i / PB, w = width_of(n, b), at = b * PB * d + (i - b * PB);
        double sum = 0.0;
        for (int64_t j = 0; j < d; j++) sum += (double)join(hi[at + j * w], lo[at + j * w]) * u64[j];
        scored[c] = (Scored){sum, i};
    }
    qsort(scored, (size_t)kept, sizeof *scored, better);
    count = kept < k ? kept : k;
    for (int64_t c = 0; c < count; c++) {
        items[c] = scored[c].item;
        exact[c] = scored[c].exact;
    }
done:
    free(rows);
    free(found);
    free(values);
    free(scored);
    sel_free(sel);
    return count;
}

/* Where item i's dimension j is in a plane (for the tests' and the numpy path's agreement). */
int64_t pl_offset(int64_t n, int64_t d, int64_t i, int64_t j) { return offset_of(n, d, i, j); }
