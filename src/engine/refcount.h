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

/* Add DELTA (+1 or -1 in practice) to the refcount of host cluster
 * CLUSTER_INDEX, through the refcount block cache (written back on flush,
 * before any L2 table: the caches' declared order). The refcount block must
 * exist (an increment of an uncovered cluster goes through
 * qi_refcount_alloc). Returns 0; QI_ECORRUPT when the result would go below
 * 0 (the refcount was already wrong); QI_ENOSPC when it would exceed the
 * width (refcount_bits); QI_EIO, QI_ENOMEM. Writes: through the cache. */
int qi_refcount_update(qi_image *img, uint64_t cluster_index, int64_t delta);

/* Set the refcount of host cluster CLUSTER_INDEX to VALUE as it is (a raw
 * edit: no rule is checked but the width), through the cache; *old = the
 * value before. Returns 0; QI_EINVAL when VALUE does not fit the width or
 * no refcount block covers the cluster; QI_EIO, QI_ECORRUPT, QI_ENOMEM. */
int qi_refcount_set(qi_image *img, uint64_t cluster_index, uint64_t value, uint64_t *old);

/* Allocate N contiguous free host clusters (refcount 0) and set their
 * refcount to 1; *off = the first one's byte offset. Searches upward from
 * the lowest cluster that may be free; past the end of the file everything
 * is free. A refcount block needed on the way is placed at the first free
 * cluster of the range it covers and counts itself (self-describing), and
 * its refcount table entry is written at once, after the block (a run of a
 * refcount block's range or more is found over ranges without blocks, and
 * their blocks go right after it, QEMU's way: crash table at place_after
 * in refcount.c):
 *   1. write the new block (its own refcount 1) and sync  crash: unused space
 *   2. write the refcount table entry and sync             crash: consistent
 * When the refcount table has no entry for that range, it grows first: a
 * larger copy and the block that counts it are placed past everything in
 * use, then the header points at it (through img->commit_header), then the
 * old table is freed (crash table at grow_table in refcount.c).
 * The end of file (img->file->size) grows to cover what was allocated, so
 * tables placed there validate before they are written. Returns 0,
 * QI_ENOTSUP (the table must grow and no header commit is installed),
 * QI_ENOSPC (beyond 2^56 or the 8 MiB table limit), QI_EIO, QI_ECORRUPT,
 * QI_ENOMEM. */
int qi_refcount_alloc(qi_image *img, uint64_t n, uint64_t *off);

/* Make the refcount table long enough to have an entry TI (a no-op when it
 * has): the larger table and the block that counts it go past the end of
 * the file, then the header switches, then the old table is freed (crash
 * table at grow_table in refcount.c). Returns 0, QI_ENOTSUP, QI_ENOSPC,
 * QI_EIO, QI_ECORRUPT, QI_ENOMEM. */
int qi_refcount_grow(qi_image *img, uint64_t ti);

/* Give the empty refcount table entry TI (asserted) a refcount block at OFF,
 * a cluster the caller has allocated (counted) and that lies outside TI's
 * range or is not in use: the block, all refcounts 0 (as the range read
 * without it), then the entry:
 *   1. the block (zeros), synced             crash: OFF leaked
 *   2. the table entry -> OFF, synced        crash: consistent
 * Used by the refcount rebuild, where the first cluster of TI's range may
 * be in use. Returns 0, QI_EIO, QI_ENOSPC, QI_ENOMEM. */
int qi_refcount_attach_block(qi_image *img, uint64_t ti, uint64_t off);

/* Note that the host clusters touched by [OFF, OFF+LEN) lose one reference
 * once the L2 entries that dropped it are on disk. Until qi_refcount_settle
 * the refcount stays high (a crash leaves a leak, never a cluster counted
 * too low). Returns 0 or QI_ENOMEM. */
int qi_refcount_free_later(qi_image *img, uint64_t off, uint64_t len);

/* Make the image consistent on disk: write back the L2 tables (after the
 * refcount blocks and the data barrier, as the caches are ordered), then
 * apply the deferred decrements and write back the refcount blocks:
 *   1. refcount blocks (increments), synced      crash: leaks
 *   2. data barrier, L2 tables, synced           crash: leaks
 *   3. decrements, refcount blocks, synced       crash: consistent
 * Returns 0, QI_EIO, QI_ENOSPC, QI_ECORRUPT. */
int qi_refcount_settle(qi_image *img);

/* For shrinking, as QEMU's qcow2_shrink_reftable: refcount table entries
 * whose block counts nothing but itself become 0 (the table keeps its
 * size and place), those blocks are freed. Crash table in refcount.c.
 * Returns 0, QI_EIO, QI_ENOMEM, QI_ECORRUPT. */
int qi_refcount_shrink_table(qi_image *img);

/* *LAST = one past the last cluster of the image file with a nonzero
 * refcount (QEMU's qcow2_get_last_cluster + 1). Returns 0 or QI_E*. */
int qi_refcount_last_used(qi_image *img, uint64_t *last);
#endif
