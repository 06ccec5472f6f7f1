/* layout.h - the clusters of a new image, placed as QEMU places them
 * (layer 2).
 *
 * `qemu-img create` builds an image by running QEMU's allocator on an
 * empty one: header, refcount table and block, then the L1 table, then
 * (with preallocation) L2 tables and data clusters, growing the refcount
 * structures on the way. The result depends on every step of that
 * allocator (where a refcount block lands, which clusters a grown refcount
 * table leaves free). qi_layout replays those steps in memory and records
 * every range QEMU writes, in QEMU's order, so that writing them out gives
 * the same bytes as qemu-img. Nothing here does I/O. L2 tables are kept as
 * the runs of mappings linked into them, not as tables (a preallocated
 * 64 GiB image has 8 MiB of them), and rendered one at a time when they
 * are written (qi_layout_render). */
#ifndef QI_LAYOUT_H
#define QI_LAYOUT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qi/error.h"

/* One range of the image file as QEMU last wrote it (later ranges are
 * written over earlier ones). */
typedef struct qi_layout_range {
    uint64_t off;
    size_t len;
    uint8_t *buf;              /* its bytes, or NULL for an L2 table */
    uint64_t l2;               /* the L1 index of that L2 table */
} qi_layout_range;

/* A run of guest clusters [G, G+N) mapped to host clusters from HOST on,
 * in one L2 table; NEXT: the table's next run (index + 1, 0 if none). */
typedef struct qi_layout_run {
    uint64_t g, n, host, next;
    bool suballoc;             /* subclusters marked allocated */
} qi_layout_run;

/* An L2 table: its range (index + 1, 0 while it has none) and its runs. */
typedef struct qi_layout_l2 {
    size_t range;
    uint64_t first, last;      /* run indices + 1, 0 if none */
} qi_layout_l2;

typedef struct qi_layout {
    uint32_t cbits, cs, order;
    uint32_t rb_bits;          /* log2 of the refcounts per refcount block */
    uint32_t l2_bits;          /* log2 of the entries per L2 table */
    uint32_t l2e_size;         /* 8, or 16 with extended L2 entries */
    bool data_file;            /* guest data lives in an external file */
    uint64_t refmax;

    uint8_t *rt;               /* refcount table (big endian, a range's buffer) */
    uint64_t rt_size;          /* entries */
    uint64_t rt_off;
    uint64_t max_rt_index;
    uint8_t **rb;              /* refcount block of each reftable index */
    uint64_t free_idx;         /* QEMU's free_cluster_index */

    uint8_t *l1;               /* L1 table (a range's buffer), NULL if none */
    uint64_t l1_size, l1_off;
    qi_layout_l2 *l2;          /* the L2 table of each L1 index */
    qi_layout_run *runs;
    uint64_t nruns, runs_cap;

    qi_layout_range *r;        /* what QEMU writes, in order */
    size_t n, cap;
    uint64_t file_end;         /* file length: end of the last range or
                                * truncation, whichever is further */
    uint64_t data_end;         /* length of the external data file */
    uint64_t held;             /* bytes held: range buffers, records and
                                * runs (capped: QI_LAYOUT_CAP) */
} qi_layout;

/* Most memory a layout holds (1 GiB); more is QI_ENOMEM. */
#define QI_LAYOUT_CAP ((uint64_t)1 << 30)

/* Start an image as qcow2_co_create leaves it before its size is set:
 * header (cluster 0), refcount table (1), refcount block (2), the three
 * clusters referenced. Returns 0 or QI_ENOMEM. */
int qi_layout_init(qi_layout *lo, uint32_t cluster_bits, uint32_t refcount_order,
                   bool extended_l2, bool data_file);

/* Free every buffer. */
void qi_layout_free(qi_layout *lo);

/* The bytes of range I: its buffer, or for an L2 table its entries
 * rendered into SCRATCH (LO->cs bytes, owned by the caller). */
const uint8_t *qi_layout_bytes(const qi_layout *lo, size_t i, uint8_t *scratch);

/* Grow the L1 table to ENTRIES (qcow2_grow_l1_table with an exact size).
 * Returns 0, QI_ENOSPC (QEMU's EFBIG), QI_ENOMEM. */
int qi_layout_grow_l1(qi_layout *lo, uint64_t entries);

/* preallocation=metadata of guest bytes [0, SIZE) (QEMU's preallocate_co):
 * L2 tables and data clusters allocated and mapped, the file (or the data
 * file) extended to the end of the last data run. */
int qi_layout_prealloc_metadata(qi_layout *lo, uint64_t size);

/* preallocation=falloc|full without a data file (qcow2_co_truncate): new
 * refcount structures covering the data at the end of the file, the data
 * clusters after them, then the L2 tables. *DATA_OFF and *DATA_LEN get the
 * data area that is to be fallocated or zeroed. */
int qi_layout_prealloc_full(qi_layout *lo, uint64_t size, bool subclusters_alloc,
                            uint64_t *data_off, uint64_t *data_len);

#endif
