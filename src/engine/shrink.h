/* shrink.h - cutting a qcow2 image's virtual size, as QEMU does (layer 4). */
#ifndef QI_SHRINK_H
#define QI_SHRINK_H
#include "image.h"

/* Shrink IMG (writable qcow2, no external data file; the caller checked
 * what qi_image_resize refuses) to NEW_SIZE < its size, as QEMU 7.2's
 * qcow2_co_truncate: full discard of the clusters from NEW_SIZE rounded up
 * to a cluster to the old end, the L1 entries past the new size zeroed,
 * unused refcount blocks dropped from the refcount table, the file cut
 * after its last used cluster, the size in the header. Crash table in
 * shrink.c. Returns 0 or a recorded QI_E*. */
int qi_shrink(qi_image *img, uint64_t new_size);
#endif
