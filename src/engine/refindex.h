/* refindex.h - the owners index of an image (layer 4): qi_meta_owners
 * (include/qi/meta.h) answers from it. */
#ifndef QI_REFINDEX_H
#define QI_REFINDEX_H
#include "image.h"

/* Most references an index holds (about 64 bytes each: 1 GiB); an image
 * with more is answered by a walk per question. Below 2^31 (key flag). */
#define QI_REFINDEX_MAX_REFS ((uint32_t)1 << 24)

/* Free an index (NULL is a no-op); called by qi_image_close. */
void qi_refindex_free(qi_refindex *x);
#endif
