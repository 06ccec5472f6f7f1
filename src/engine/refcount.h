/* refcount.h - refcounts of any width (layer 2). */
#ifndef QI_REFCOUNT_H
#define QI_REFCOUNT_H
#include <stdint.h>
#include "image.h"

/* Load and validate the refcount table (once). Returns 0, QI_EIO,
 * QI_ECORRUPT, QI_ENOMEM. */
int qi_refcount_load_table(qi_image *img);

/* Refcount of host cluster CLUSTER_INDEX into *rc (0 when its refcount
 * block is not allocated or beyond the table). Validates the refcount table
 * entry (alignment, reserved bits, inside the file). */
int qi_refcount_get(qi_image *img, uint64_t cluster_index, uint64_t *rc);
#endif
