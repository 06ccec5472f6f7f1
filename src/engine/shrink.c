/* shrink.c - cutting a qcow2 image's virtual size (layer 4), in QEMU 7.2's
 * order (qcow2_co_truncate for a smaller size): qcow2_cluster_discard with
 * full discard, qcow2_shrink_l1_table, qcow2_shrink_reftable, the file
 * truncated after qcow2_get_last_cluster, the header's size. Calls:
 * cluster.h, refcount.h, bio.h, cache.h. */
#include <stdlib.h>
#include <string.h>

#include "bio.h"
#include "cache.h"
#include "cluster.h"
#include "mem.h"
#include "refcount.h"
#include "shrink.h"

/* The deferred decrements applied (qi_refcount_settle: L2 tables first),
 * and every cluster that reached refcount 0 discarded in the file, as
 * QEMU's discard passthrough does for a full discard. */
static int settle_discard(qi_image *img)
{
    size_t n = img->n_pending;
    uint64_t *c = NULL, r;
    int rc;
    if (n && !(c = qi_mem_alloc_capped(n, sizeof *c, QI_MEM_CAP)))
        return qi_fail(img, QI_ENOMEM, "refcount block", QI_NO_OFFSET, "out of memory");
    if (n)
        memcpy(c, img->pending_free, n * sizeof *c);
    rc = qi_refcount_settle(img);
    for (size_t i = 0; i < n && rc == 0; i++) {
        uint64_t off = c[i] << img->g.cluster_bits;
        if ((rc = qi_refcount_get(img, c[i], &r)) < 0 || r)
            continue;
        qi_cache_discard(img->l2_cache, off);
        rc = qi_bio_discard(img->file, off, img->g.cluster_size, &img->err, "freed cluster");
    }
    free(c);
    return rc;
}

/* Guest clusters [CI, STOP) of one L2 table made unallocated (entry and
 * bitmap 0), the host clusters they held losing a reference once the table
 * is on disk (settled at once, so that the next table's allocation may take
 * them, as QEMU's immediate decrement allows). The table is made writable
 * first (allocated empty when absent, a copy when shared), as QEMU's
 * get_cluster_table does; *L2_OFF is where it is. */
static int empty_range(qi_image *img, uint64_t ci, uint64_t stop, uint64_t *l2_off)
{
    const qi_geom *g = &img->g;
    int rc;
    if ((rc = qi_cluster_l2_for_write(img, ci >> g->l2_bits, l2_off)) < 0)
        return rc;
    for (; ci < stop; ci++) {
        uint32_t j = (uint32_t)(ci & (g->l2_entries - 1));
        qi_l2_entry e;
        if ((rc = qi_cluster_l2_entry(img, *l2_off, j, &e)) < 0)
            return rc;
        if (!e.raw && !e.bitmap)
            continue;
        if ((rc = qi_cluster_set_l2_ext(img, *l2_off, j, 0, 0)) < 0)
            return rc;
        if (e.type == QI_CLUSTER_COMPRESSED)
            rc = qi_refcount_free_later(img, e.host_offset, e.csize);
        else if (e.host_offset)
            rc = qi_refcount_free_later(img, e.host_offset, g->cluster_size);
        if (rc < 0)
            return rc;
    }
    return settle_discard(img);
}

/* QEMU's full discard of guest bytes [FROM, END) (FROM cluster aligned,
 * END the old size), one L2 table at a time. QEMU allocates an empty L2
 * table for every L1 entry of the range that has none, and the L1 shrink
 * frees those past KEEP again: what remains of them is the zeroed cluster
 * they took, which matters only inside the file (a free cluster that held
 * old bytes). Once one lands past the file's end, the later ones would too
 * (and go with the cut): they are skipped. */
static int full_discard(qi_image *img, uint64_t from, uint64_t end, uint64_t keep)
{
    const qi_geom *g = &img->g;
    uint64_t last = (end + g->cluster_size - 1) >> g->cluster_bits;
    uint64_t file_end = img->file->size;
    bool past_end = false;
    int rc = 0;
    for (uint64_t ci = from >> g->cluster_bits; ci < last && rc == 0;) {
        uint64_t l1i = ci >> g->l2_bits, l2_off = 0;
        uint64_t stop = (l1i + 1) << g->l2_bits;
        stop = stop < last ? stop : last;
        if (l1i >= keep && past_end &&
            (rc = qi_cluster_active_l2_offset(img, l1i, &l2_off)) == 0 && !l2_off) {
            ci = stop;
            continue;
        }
        if (rc == 0 && (rc = empty_range(img, ci, stop, &l2_off)) == 0 && l2_off >= file_end)
            past_end = true;
        ci = stop;
    }
    return rc;
}

/* Crash table (a crash leaves the old size or the new one, at most leaked
 * clusters, the guest bytes below the new size as they were):
 *   1. full discard from the new size rounded up to a cluster to the old
 *      end, per L2 table: the table made writable (qi_cluster_l2_for_write:
 *      allocated or copied, L1 entry synced), its entries zeroed and
 *      written, then the decrements (refcount blocks synced), freed
 *      clusters discarded
 *                              crash: old size, the bytes past the cut
 *                              read as zeros, leaks
 *   2. L1 entries past the new size zeroed on disk, their L2 tables
 *      freed (qi_cluster_shrink_l1)     crash: old size, leaks
 *   3. unused refcount blocks dropped from the table (qi_refcount_shrink_
 *      table)                           crash: old size, leaks
 *   4. the file cut after its last cluster with a nonzero refcount
 *                              crash: old size (nothing past the cut is used)
 *   5. header: size (8 bytes at 24), synced    crash: new size */
int qi_shrink(qi_image *img, uint64_t new_size)
{
    const qi_geom *g = &img->g;
    uint64_t cs = g->cluster_size, shift = g->cluster_bits + g->l2_bits;
    uint64_t from = (new_size + cs - 1) & ~(cs - 1), last;
    uint64_t keep = (new_size >> shift) + ((new_size & ((1ull << shift) - 1)) != 0);
    int rc;
    /* 1 */
    if (from < img->size && (rc = full_discard(img, from, img->size, keep)) < 0)
        return rc;
    /* 2, 3 */
    if ((rc = qi_cluster_shrink_l1(img, keep)) < 0 ||
        (rc = qi_cache_flush(img->rb_cache, &img->err)) < 0 ||
        (rc = qi_refcount_shrink_table(img)) < 0)
        return rc;
    /* 4 */
    if ((rc = qi_refcount_last_used(img, &last)) < 0)
        return rc;
    if (last * cs < img->file->size &&
        (rc = qi_bio_truncate(img->file, last * cs, &img->err)) < 0)
        return rc;
    /* 5 */
    img->hdr_req.what = QI_HDR_SIZE;
    img->hdr_req.size = new_size;
    return img->commit_header(img);
}
