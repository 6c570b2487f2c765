/* Shared by the compiled kernels (_select.c: candidate selection; _planes.c: the item matrix's
 * bf16-split scan). Built into one library, _select.so, loaded by native.py. */
#ifndef PERSONALIZE_KERNELS_H
#define PERSONALIZE_KERNELS_H
#include <stdint.h>

/* The vector loop in use, detected at run time (or forced by sel_use, for the tests). */
enum { LOOP_PORTABLE = 0, LOOP_AVX2 = 1, LOOP_AVX512 = 2, LOOP_NEON = 3 };
int kernel_loop(void);

typedef struct Row Row;
typedef struct Selection Selection;

Selection *sel_new(int64_t rows, int64_t k, const double *slack);
void sel_free(Selection *sel);
int64_t sel_finish(Selection *sel);
void sel_export(const Selection *sel, int64_t *rows, int64_t *items, float *values);

/* Feed width values (items first_item..) to row r of the selection; -inf values are never kept. */
int sel_feed_row(Selection *sel, int64_t r, const float *values, int64_t width, int64_t first_item);

#endif
