/* qinspect public API: the host-cluster scan (forensics and teaching).
 *
 * qi_scan classifies every cluster of the image file: by the references the
 * metadata holds to it (header, L1 table, L2 table, refcount table or block,
 * snapshot table, bitmap structures, data, compressed data), and the
 * clusters nothing references by their on-disk refcount (leaked when above
 * 0, free at 0) and by what their bytes look like (all zero, a table of
 * cluster offsets, an L2 table, a refcount block, or data). Consecutive
 * clusters of one class are reported as one run, in file order.
 * Read-only. A damaged image is scanned as far as its metadata can be read:
 * when the reference walk stops at damage, the scan still classifies every
 * cluster (what was not reached is judged by its content) and says so. */
#ifndef QI_SCAN_H
#define QI_SCAN_H

#include <stdbool.h>
#include <stdint.h>

#include "qi/error.h"

typedef struct qi_image qi_image;

#define QI_SCAN_NO_REFCOUNT UINT64_MAX  /* refcount could not be read */

typedef struct qi_scan_run {
    uint64_t offset, length;    /* host bytes, cluster aligned (the last run
                                 * ends at the end of the file) */
    const char *kind;           /* static: "header", "L1 table", "L2 table",
                                 * "refcount table", "refcount block",
                                 * "snapshot table", "bitmap directory",
                                 * "bitmap table", "bitmap data", "data",
                                 * "compressed", "unreferenced" (refcount
                                 * above 0: leaked), "free" (refcount 0) */
    const char *shape;          /* static, for unreferenced and free clusters
                                 * only (else NULL): "zero", "offsets" (every
                                 * 8-byte word 0 or a cluster-aligned offset
                                 * inside the file: L1, L2 or refcount-table
                                 * shaped), "l2" (valid L2 entries, some with
                                 * flags), "refblock" (small refcounts of the
                                 * image's width, 8 bits or more), "data" */
    uint64_t refcount;          /* on-disk refcount of the first cluster,
                                 * or QI_SCAN_NO_REFCOUNT */
    bool shared_kinds;          /* some cluster is referenced as two kinds
                                 * (overlapping metadata): KIND is the first */
} qi_scan_run;

typedef struct qi_scan_stats {
    uint64_t clusters;          /* clusters of the file */
    uint64_t runs;
    bool refs_incomplete;       /* the reference walk stopped at damage */
    qi_err walk_error;          /* ... and where (structure, offset) */
} qi_scan_stats;

/* Return nonzero to stop the scan (that value is returned). */
typedef int (*qi_scan_cb)(void *payload, const qi_scan_run *run);

/* Largest per-cluster class array: one byte per cluster of the file. */
#define QI_SCAN_MAX_CLUSTERS ((uint64_t)1 << 30)

/* Scan IMG (qcow2; a raw image is QI_EINVAL). Returns 0, the callback's
 * nonzero value, QI_ENOMEM (a file of more than QI_SCAN_MAX_CLUSTERS
 * clusters), or QI_EIO. ST may be NULL. */
int qi_scan(qi_image *img, qi_scan_cb cb, void *payload, qi_scan_stats *st);

#endif
