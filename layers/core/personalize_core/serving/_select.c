/* Candidate selection for exact top-k: one streaming pass over float32 logits per user.
 *
 * Loaded with ctypes by personalize_core/serving/native.py; the numpy path in scoring.py computes the
 * same candidates when this library is not built (no C compiler, or a cross-architecture build).
 *
 * Each user (row) keeps the (value, item) pairs at or above a running bound, where
 *     bound = (k-th largest value kept so far) - slack.
 * The k-th largest value of a prefix is at most the k-th largest of all values, so every value
 * within `slack` of the final k-th largest is kept: the kept set is a superset of what the exact
 * re-rank needs. The bound only rises; a block of 64 values is compared against it with SIMD and
 * only read one by one when one of them passes, which after the first few blocks is rare.
 *
 * -inf (an item a filter excluded) is never kept: the bound starts at -FLT_MAX.
 */
#include <float.h>
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
#include <sys/auxv.h>
#define ARM64 1
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#endif

#define BLOCK 64

struct Row {
    float bound;   /* values below it are not kept */
    double slack;  /* the float32 error allowance: bound = kth - slack, rounded down */
    int64_t count, capacity, trigger;
    float *values;
    int64_t *items;
};

struct Selection {
    int64_t rows, k;
    Row *row;
    float *scratch; /* quickselect's working copy */
    int64_t scratch_capacity;
    int (*feed)(struct Selection *, Row *, const float *, int64_t, int64_t);
};

typedef int (*FeedRow)(Selection *, Row *, const float *, int64_t, int64_t);
static FeedRow pick_feed(void);

void sel_free(Selection *sel) {
    if (!sel) return;
    if (sel->row) {
        for (int64_t r = 0; r < sel->rows; r++) {
            free(sel->row[r].values);
            free(sel->row[r].items);
        }
        free(sel->row);
    }
    free(sel->scratch);
    free(sel);
}

Selection *sel_new(int64_t rows, int64_t k, const double *slack) {
    if (rows < 0 || k < 1) return NULL;
    Selection *sel = calloc(1, sizeof(Selection));
    if (!sel) return NULL;
    sel->rows = rows;
    sel->k = k;
    sel->feed = pick_feed();
    sel->row = calloc(rows > 0 ? (size_t)rows : 1, sizeof(Row));
    if (!sel->row) {
        sel_free(sel);
        return NULL;
    }
    for (int64_t r = 0; r < rows; r++) {
        sel->row[r].bound = -FLT_MAX;
        sel->row[r].slack = slack[r];
        sel->row[r].trigger = 2 * k + BLOCK;
    }
    return sel;
}

static int reserve(Row *row, int64_t capacity) {
    if (capacity <= row->capacity) return 0;
    float *values = realloc(row->values, (size_t)capacity * sizeof(float));
    if (!values) return -1;
    row->values = values;
    int64_t *items = realloc(row->items, (size_t)capacity * sizeof(int64_t));
    if (!items) return -1;
    row->items = items;
    row->capacity = capacity;
    return 0;
}

/* The k-th largest (1-based) of a[0..n), n >= k; a is reordered. */
static float kth_largest(float *a, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1, target = k - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        /* median of three as the pivot, for sorted or reversed runs */
        float x = a[lo], y = a[mid], z = a[hi];
        float pivot = (x > y) ? ((y > z) ? y : ((x > z) ? z : x)) : ((x > z) ? x : ((y > z) ? z : y));
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] > pivot) i++;
            while (a[j] < pivot) j--;
            if (i <= j) {
                float t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (target <= j)
            hi = j;
        else if (target >= i)
            lo = i;
        else
            return a[target];
    }
    return a[target];
}

/* The largest float at most x (float rounding must never raise the bound). */
static float round_down(double x) {
    float f = (float)x;
    if ((double)f > x) f = nextafterf(f, -INFINITY);
    return f;
}

/* Raise the row's bound to its k-th largest kept value less slack; drop what falls below it. */
static int compact(Selection *sel, Row *row) {
    if (row->count >= sel->k) {
        if (row->count > sel->scratch_capacity) {
            float *scratch = realloc(sel->scratch, (size_t)row->count * sizeof(float));
            if (!scratch) return -1;
            sel->scratch = scratch;
            sel->scratch_capacity = row->count;
        }
        memcpy(sel->scratch, row->values, (size_t)row->count * sizeof(float));
        float kth = kth_largest(sel->scratch, row->count, sel->k);
        float bound = round_down((double)kth - row->slack);
        if (bound > row->bound) row->bound = bound;
        int64_t kept = 0;
        for (int64_t i = 0; i < row->count; i++) {
            if (row->values[i] >= row->bound) {
                row->values[kept] = row->values[i];
                row->items[kept] = row->items[i];
                kept++;
            }
        }
        row->count = kept;
    }
    /* Amortised: the next compaction comes after at least as many new values as are kept now. */
    int64_t trigger = 2 * row->count;
    if (trigger < 2 * sel->k + BLOCK) trigger = 2 * sel->k + BLOCK;
    row->trigger = trigger;
    return reserve(row, trigger + BLOCK);
}

static inline void push(Row *row, float value, int64_t item) {
    row->values[row->count] = value;
    row->items[row->count] = item;
    row->count++;
}

/* After a block of at most BLOCK values was pushed (capacity >= trigger + BLOCK holds). */
static inline int settle(Selection *sel, Row *row) {
    return row->count >= row->trigger ? compact(sel, row) : 0;
}

static int feed_tail(Selection *sel, Row *row, const float *v, int64_t n, int64_t first_item) {
    for (int64_t t = 0; t < n; t++)
        if (v[t] >= row->bound) push(row, v[t], first_item + t);
    return settle(sel, row);
}

#ifdef X86
/* Pushes the values of v[0..BLOCK) selected by mask (bit t: v[t] passed). */
static inline int push_mask(Selection *sel, Row *row, const float *v, uint64_t mask, int64_t first_item) {
    for (; mask; mask &= mask - 1) {
        const int t = __builtin_ctzll(mask);
        push(row, v[t], first_item + t);
    }
    return settle(sel, row);
}

/* Two versions of one loop: the maximum of BLOCK values is compared with the bound, and only a
 * block that passes is looked at value by value (which, after the first blocks, is rare). */
__attribute__((target("avx512f,avx512bw"))) static int feed_avx512(
    Selection *sel, Row *row, const float *v, int64_t width, int64_t first_item) {
    int64_t j = 0;
    for (; j + BLOCK <= width; j += BLOCK) {
        const float *b = v + j;
        const __m512 x0 = _mm512_loadu_ps(b), x1 = _mm512_loadu_ps(b + 16);
        const __m512 x2 = _mm512_loadu_ps(b + 32), x3 = _mm512_loadu_ps(b + 48);
        const __m512 bound = _mm512_set1_ps(row->bound);
        const __m512 peak = _mm512_max_ps(_mm512_max_ps(x0, x1), _mm512_max_ps(x2, x3));
        if (_mm512_cmp_ps_mask(peak, bound, _CMP_GE_OQ)) {
            const uint64_t mask = (uint64_t)_mm512_cmp_ps_mask(x0, bound, _CMP_GE_OQ) |
                                  (uint64_t)_mm512_cmp_ps_mask(x1, bound, _CMP_GE_OQ) << 16 |
                                  (uint64_t)_mm512_cmp_ps_mask(x2, bound, _CMP_GE_OQ) << 32 |
                                  (uint64_t)_mm512_cmp_ps_mask(x3, bound, _CMP_GE_OQ) << 48;
            if (push_mask(sel, row, b, mask, first_item + j)) return -1;
        }
    }
    return feed_tail(sel, row, v + j, width - j, first_item + j);
}

__attribute__((target("avx2,fma"))) static int feed_avx2(
    Selection *sel, Row *row, const float *v, int64_t width, int64_t first_item) {
    int64_t j = 0;
    for (; j + BLOCK <= width; j += BLOCK) {
        const float *b = v + j;
        const __m256 bound = _mm256_set1_ps(row->bound);
        __m256 peak = _mm256_loadu_ps(b);
        for (int r = 1; r < BLOCK / 8; r++) peak = _mm256_max_ps(peak, _mm256_loadu_ps(b + 8 * r));
        if (_mm256_movemask_ps(_mm256_cmp_ps(peak, bound, _CMP_GE_OQ))) {
            uint64_t mask = 0;
            for (int r = 0; r < BLOCK / 8; r++)
                mask |= (uint64_t)_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(b + 8 * r), bound, _CMP_GE_OQ))
                        << (8 * r);
            if (push_mask(sel, row, b, mask, first_item + j)) return -1;
        }
    }
    return feed_tail(sel, row, v + j, width - j, first_item + j);
}
#endif

#ifdef ARM64
/* The same loop with NEON: the maximum of BLOCK values against the bound, 4 lanes at a time. */
static int feed_neon(Selection *sel, Row *row, const float *v, int64_t width, int64_t first_item) {
    int64_t j = 0;
    for (; j + BLOCK <= width; j += BLOCK) {
        const float *b = v + j;
        float32x4_t peak = vld1q_f32(b);
        for (int r = 1; r < BLOCK / 4; r++) peak = vmaxq_f32(peak, vld1q_f32(b + 4 * r));
        if (vmaxvq_f32(peak) >= row->bound && feed_tail(sel, row, b, BLOCK, first_item + j)) return -1;
    }
    return feed_tail(sel, row, v + j, width - j, first_item + j);
}
#endif

static int feed_portable(Selection *sel, Row *row, const float *v, int64_t width, int64_t first_item) {
    int64_t j = 0;
    for (; j + BLOCK <= width; j += BLOCK) {
        const float bound = row->bound;
        int hits = 0;
        for (int t = 0; t < BLOCK; t++) hits += v[j + t] >= bound;
        if (hits && feed_tail(sel, row, v + j, BLOCK, first_item + j)) return -1;
    }
    return feed_tail(sel, row, v + j, width - j, first_item + j);
}

/* The best loop this CPU runs, unless sel_use chose another. */
static int detected_loop(void) {
#ifdef X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return LOOP_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return LOOP_AVX2;
#endif
#ifdef ARM64
    if (getauxval(AT_HWCAP) & HWCAP_ASIMD) return LOOP_NEON;
#endif
    return LOOP_PORTABLE;
}

static int forced_loop = -1;
static const char *const LOOP_NAMES[] = {"portable", "avx2", "avx512", "neon"};

int kernel_loop(void) { return forced_loop >= 0 ? forced_loop : detected_loop(); }

/* Run `name`'s loops from now on ("auto": the detected one). 0, or -1 when this CPU cannot. */
int sel_use(const char *name) {
    if (strcmp(name, "auto") == 0) {
        forced_loop = -1;
        return 0;
    }
    const int best = detected_loop();
    for (int loop = 0; loop < 4; loop++) {
        if (strcmp(name, LOOP_NAMES[loop]) != 0) continue;
        /* portable runs anywhere, avx2 wherever avx512 does, the rest only where detected */
        if (loop == LOOP_PORTABLE || loop == best || (loop == LOOP_AVX2 && best == LOOP_AVX512)) {
            forced_loop = loop;
            return 0;
        }
    }
    return -1;
}

static FeedRow pick_feed(void) {
    switch (kernel_loop()) {
#ifdef X86
        case LOOP_AVX512: return feed_avx512;
        case LOOP_AVX2: return feed_avx2;
#endif
#ifdef ARM64
        case LOOP_NEON: return feed_neon;
#endif
        default: return feed_portable;
    }
}

/* Which loop this CPU runs (for the logs and the tests). */
const char *sel_kernel(void) { return LOOP_NAMES[kernel_loop()]; }

/* Feed logits[rows][width] (row r at logits + r * row_stride) for items first_item.. of each row. */
int sel_feed_row(Selection *sel, int64_t r, const float *values, int64_t width, int64_t first_item) {
    Row *row = &sel->row[r];
    if (reserve(row, row->trigger + BLOCK)) return -1;
    return sel->feed(sel, row, values, width, first_item);
}

int sel_feed(Selection *sel, const float *logits, int64_t width, int64_t row_stride, int64_t first_item) {
    for (int64_t r = 0; r < sel->rows; r++)
        if (sel_feed_row(sel, r, logits + r * row_stride, width, first_item)) return -1;
    return 0;
}

/* The final compaction; returns how many (row, item, value) triples sel_export will write. */
int64_t sel_finish(Selection *sel) {
    int64_t total = 0;
    for (int64_t r = 0; r < sel->rows; r++) {
        if (compact(sel, &sel->row[r])) return -1;
        total += sel->row[r].count;
    }
    return total;
}

/* Row by row, in the order items were fed. */
void sel_export(const Selection *sel, int64_t *rows, int64_t *items, float *values) {
    int64_t at = 0;
    for (int64_t r = 0; r < sel->rows; r++) {
        const Row *row = &sel->row[r];
        for (int64_t i = 0; i < row->count; i++, at++) {
            rows[at] = r;
            items[at] = row->items[i];
            values[at] = row->values[i];
        }
    }
}

/* out[i] = users[rows[i]] . items[cols[i]] in float64, for the exact re-rank of candidates.
 * Element (item j, dimension t) is at items[j * item_stride + t * dim_stride] (either layout);
 * user r's vector is users[r * dims ..]. */
void sel_exact(const float *items, int64_t item_stride, int64_t dim_stride, const float *users, int64_t dims,
               const int64_t *rows, const int64_t *cols, int64_t count, double *out) {
    for (int64_t i = 0; i < count; i++) {
        const float *item = items + cols[i] * item_stride;
        const float *user = users + rows[i] * dims;
        double sum = 0.0;
        for (int64_t t = 0; t < dims; t++) sum += (double)item[t * dim_stride] * (double)user[t];
        out[i] = sum;
    }
}

/* The k best candidates of each row, as positions into the candidate arrays (grouped by row, as
 * sel_export writes them): larger exact logit first, ties by smaller item. Returns -1 when a row
 * has fewer than k candidates (the batch scorer never asks then). */
typedef struct {
    double exact;
    int64_t item, position;
} Ranked;

static int better_first(const void *a, const void *b) {
    const Ranked *x = a, *y = b;
    if (x->exact != y->exact) return x->exact > y->exact ? -1 : 1;
    return (x->item > y->item) - (x->item < y->item);
}

int sel_best(const int64_t *rows, const int64_t *items, const double *exact, int64_t count, int64_t num_rows,
             int64_t k, int64_t *positions) {
    Ranked *ranked = malloc((size_t)(count > 0 ? count : 1) * sizeof(Ranked));
    if (!ranked) return -2;
    int64_t start = 0;
    for (int64_t r = 0; r < num_rows; r++) {
        int64_t end = start;
        while (end < count && rows[end] == r) end++;
        if (end - start < k) {
            free(ranked);
            return -1;
        }
        for (int64_t i = start; i < end; i++) ranked[i - start] = (Ranked){exact[i], items[i], i};
        qsort(ranked, (size_t)(end - start), sizeof(Ranked), better_first);
        for (int64_t j = 0; j < k; j++) positions[r * k + j] = ranked[j].position;
        start = end;
    }
    free(ranked);
    return start == count ? 0 : -1;
}
