/* cluster.h - guest offset to host mapping (layer 3). */
#ifndef QI_CLUSTER_H
#define QI_CLUSTER_H
#include <stdbool.h>
#include <stdint.h>
#include "image.h"

/* An L1 table in memory, reference counted (the get/put discipline of the
 * L2 cache, STYLE convention 6, for L1 tables). The image holds one
 * reference to its active table (img->l1) and one to the snapshot table it
 * keeps (img->snap_l1); every view holds one more. When the image replaces
 * a table (L1 growth, the header read again, another snapshot viewed,
 * close) it drops only its own reference: a view still held keeps the old
 * table, unchanged, until it is put. qi_cluster_set_l1 changes the image's
 * current active table in place, which views of that table see. */
typedef struct qi_l1tab {
    uint64_t *e;          /* entries, host byte order (NULL when size is 0) */
    uint32_t size;        /* entries */
    uint64_t off;         /* file offset of the table */
    uint32_t refs;
} qi_l1tab;

/* An L1 table to map through: the active one or a snapshot's. */
typedef struct qi_l1view {
    qi_l1tab *tab;        /* one reference, until qi_cluster_view_put */
    uint32_t size;        /* entries (tab->size) */
    uint64_t l1_off;      /* file offset of the table (for errors) */
    uint64_t vsize;       /* guest size seen through this view */
} qi_l1view;

/* The active L1 (loaded on first use). Every successful view is put with
 * qi_cluster_view_put on every path; a failed one holds nothing. */
int qi_cluster_view_active(qi_image *img, qi_l1view *v);
/* Snapshot SNAP's L1 (loaded and kept until another snapshot is asked). */
int qi_cluster_view_snapshot(qi_image *img, uint32_t snap, qi_l1view *v);
/* Drop V's reference (V then holds nothing; putting it again is a bug). */
void qi_cluster_view_put(qi_image *img, qi_l1view *v);

/* Drop one reference to T (NULL: nothing); the last frees it. For image.c
 * and meta.c replacing the image's own tables. */
void qi_cluster_l1tab_drop(qi_l1tab *t);
/* At close: the image's own references dropped; no view may still be held
 * (asserted: a view leak is a bug, as a cache pin leak). */
void qi_cluster_l1_release(qi_image *img);
/* Debug accessor for tests: the references to the image's active table
 * (SNAPSHOT false) or kept snapshot table, 0 when none is loaded. */
uint32_t qi_cluster_l1_refs(const qi_image *img, bool snapshot);

/* Through a view of the active L1 taken and put inside: as
 * qi_cluster_l2_offset and qi_cluster_run. */
int qi_cluster_active_l2_offset(qi_image *img, uint64_t index, uint64_t *l2_off);

/* Validate L1 entry INDEX of V; *l2_off = L2 table offset or 0. */
int qi_cluster_l2_offset(qi_image *img, const qi_l1view *v, uint64_t index,
                         uint64_t *l2_off);

/* Decode entry INDEX of the L2 table at L2_OFF without judging it
 * (inspection shows invalid entries as they are). */
int qi_cluster_l2_decode(qi_image *img, uint64_t l2_off, uint32_t index,
                         qi_l2_entry *out);

/* Decode and validate entry INDEX of the L2 table at L2_OFF. */
int qi_cluster_l2_entry(qi_image *img, uint64_t l2_off, uint32_t index,
                        qi_l2_entry *out);

/* Kinds of a run of guest bytes in one image layer */
enum { QI_RUN_UNALLOC, QI_RUN_ZERO, QI_RUN_DATA, QI_RUN_COMPRESSED };

typedef struct qi_run {
    int kind;
    uint64_t len;         /* bytes from the start offset */
    uint64_t host;        /* DATA, or ZERO/UNALLOC with has_host: host offset */
    bool has_host;        /* zero-allocated or allocated-but-unused subcluster */
    qi_l2_entry entry;    /* COMPRESSED: the descriptor */
} qi_run;

/* The longest run starting at guest offset OFF (< v->vsize), at most MAXLEN
 * bytes, of one kind (and for DATA, contiguous on the host), never crossing
 * an L2 table. Validates every entry it looks at. */
int qi_cluster_run(qi_image *img, const qi_l1view *v, uint64_t off,
                   uint64_t maxlen, qi_run *run);
int qi_cluster_active_run(qi_image *img, uint64_t off, uint64_t maxlen, qi_run *run);
/* The L2 table of active L1 entry L1I, ready to be changed: if the entry
 * has COPIED, its table; otherwise a new table (empty, or a copy of the
 * shared one) linked in its place, in this order (crash table):
 *   1. allocate the table's cluster (refcount 1, refcount cache)
 *   2. flush the L2 cache: refcount blocks, then the new table, synced
 *                                                  crash: leaked cluster
 *   3. write the L1 entry (new | COPIED), synced   crash: consistent
 *   4. the old table loses the active L1's reference (refcount cache)
 *                                                  crash: leaked cluster
 * *l2_off = the table. Returns 0, QI_ECORRUPT, QI_EIO, QI_ENOSPC,
 * QI_ENOTSUP, QI_ENOMEM. */
int qi_cluster_l2_for_write(qi_image *img, uint64_t l1i, uint64_t *l2_off);

/* Grow the active L1 table so that it has at least MIN_ENTRIES entries:
 * exactly MIN_ENTRIES when EXACT (a resize, as QEMU's truncate), else
 * QEMU's growth for a write (x1.5 steps). No-op when it is large enough.
 * A new table (old entries + zeros) is written in newly allocated
 * clusters, then image.c switches l1_size and l1_table_offset in one
 * 12-byte header write (img->commit_header, QI_HDR_L1) and takes the new
 * in-memory table (dropping its reference to the old one), then the old table's clusters are freed (crash table at
 * the function). Returns 0; QI_ENOSPC (beyond QEMU's 32 MiB L1 limit,
 * nothing written, or no room below 2^56); QI_ENOTSUP (no header commit
 * installed, or the table needs as many clusters as one refcount block
 * covers: more than the allocator places contiguously; nothing written);
 * QI_EIO, QI_ECORRUPT, QI_ENOMEM. */
int qi_cluster_grow_l1(qi_image *img, uint64_t min_entries, bool exact);

/* Shrinking, as QEMU's qcow2_shrink_l1_table: the active L1 entries from
 * N on become 0 on disk (the table keeps its size, header untouched) and
 * in memory, their L2 tables lose that reference (freed ones discarded).
 * The caller emptied those tables first. No-op when N >= l1_size. Crash
 * table in cluster.c. Returns 0, QI_EIO, QI_ENOMEM, QI_ECORRUPT. */
int qi_cluster_shrink_l1(qi_image *img, uint64_t n);

/* Write active L1 entry I (< l1_size; the L1 table is loaded) to RAW, in
 * memory and on disk, and sync. Returns 0, QI_EIO, QI_ENOSPC. */
int qi_cluster_set_l1(qi_image *img, uint64_t i, uint64_t raw);

/* Set standard entry INDEX of the L2 table at L2_OFF to RAW, through the
 * L2 cache (written back after the refcount blocks and the data barrier).
 * *old = the entry before. Returns 0, QI_EIO, QI_ENOMEM. */
int qi_cluster_set_l2(qi_image *img, uint64_t l2_off, uint32_t index, uint64_t raw,
                      uint64_t *old);

/* Set entry INDEX to RAW and, with extended L2, its subcluster bitmap to
 * BITMAP (ignored otherwise), through the L2 cache as qi_cluster_set_l2. */
int qi_cluster_set_l2_ext(qi_image *img, uint64_t l2_off, uint32_t index, uint64_t raw,
                          uint64_t bitmap);
#endif
