/* rebuild.h - rebuilding refcounts from the references (layer 4). */
#ifndef QI_REBUILD_H
#define QI_REBUILD_H
#include <stdint.h>
#include "image.h"

/* Largest count array a rebuild allocates: 4 bytes per host cluster of the
 * file, so 1 GiB counts 2^28 clusters (16 TiB of 64 KiB clusters, 128 GiB
 * of 512-byte clusters). A (sparse) file larger than that is refused. */
#define QI_REBUILD_MAX_BYTES ((size_t)1 << 30)

typedef struct qi_rebuild_stats {
    uint64_t clusters;      /* host clusters counted (the file, plus one) */
    uint64_t raised;        /* refcounts raised (were below the references) */
    uint64_t lowered;       /* refcounts lowered (leaks, freed clusters) */
    uint64_t blocks;        /* refcount blocks added for uncovered ranges */
    unsigned rounds;        /* reference walks (1, or more after adding blocks) */
} qi_rebuild_stats;

/* Make every host cluster's refcount equal to the number of references
 * the image holds to it (qi_refwalk: every reference qemu-img check counts),
 * as QEMU's check with fix-errors and fix-leaks does for the refcounts.
 * For a writable qcow2 image; deferred decrements are settled first.
 *
 * Nothing is written unless every reference is valid (cluster aligned where
 * it must be, inside the file: at most less than a cluster past its end,
 * as qemu-img check allows) and every count fits the refcount width: an
 * invalid reference is QI_ECORRUPT naming the structure and the offset of
 * the entry, and the image is left as it is (it needs a real repair).
 *
 * Order (a version 3 image carries the dirty bit throughout, so a crash
 * anywhere leaves it dirty, to be rebuilt again at the next read-write
 * open; for version 2 the order alone keeps each refcount >= its
 * references wherever it was already):
 *   1. header: dirty bit set, synced (unless set already)
 *   2. every refcount below its count raised, blocks synced
 *                                  crash: dirty, some refcounts still low
 *   3. a range with references but no refcount block gets one, placed past
 *      everything referenced (never on a cluster in use whose refcount
 *      reads 0), block then table entry, synced; the table grows when the
 *      range is beyond it; then walk again from 2
 *                                  crash: dirty, the new block leaked
 *   4. every refcount above its count lowered, blocks synced
 *                                  crash: dirty, leaks at most
 *   5. header: dirty bit cleared, synced   crash: consistent
 * Returns 0; QI_ECORRUPT (invalid reference, count beyond the width);
 * QI_ENOMEM (also: the count array would exceed QI_REBUILD_MAX_BYTES);
 * QI_ERDONLY, QI_EINVAL (raw), QI_ENOTSUP (no header commit), QI_EIO,
 * QI_ENOSPC. ST (may be NULL) says what changed. */
int qi_rebuild_refcounts(qi_image *img, qi_rebuild_stats *st);
#endif
