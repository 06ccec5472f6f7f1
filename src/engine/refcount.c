/* refcount.c - refcounts (layer 2).
 *
 * Reads refcounts of every width (1..64 bits) through the refcount block
 * cache. The refcount table is loaded once, on first use, and each entry is
 * validated when it is used: reserved bits clear, block cluster aligned and
 * inside the file.
 *
 * Writing: refcounts change in the refcount block cache and reach the disk
 * on flush, before any L2 table (cache dependency set at open), so a
 * cluster is always counted before anything on disk points at it; lowering
 * a refcount is the caller's last step, after the reference is gone on
 * disk. Invariants: a refcount never goes below 0 or above the width's
 * maximum (either is refused before anything changes); a new refcount block
 * reaches the disk before the refcount table entry that points at it.
 * The refcount table grows when a cluster past its coverage is needed; the
 * header change goes through img->commit_header (image.c commits it).
 * Calls: cache, format, bio. */
#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "endian.h"
#include "mem.h"
#include "refcount.h"

int qi_refcount_load_table(qi_image *img)
{
    uint64_t bytes = (uint64_t)img->hdr.refcount_table_clusters << img->g.cluster_bits;
    uint64_t n = bytes / 8;
    uint8_t *raw = NULL;
    int rc;
    if (img->reftable)
        return 0;
    if (img->reftable_bad)  /* a forensic open found its header fields invalid */
        return qi_err_copy(&img->err, &img->reftable_err);
    /* the header check bounded bytes by 8 MiB; past the end of the file the
     * table reads as zeros, as in QEMU */
    raw = qi_mem_alloc_capped(n, 8, QI_MAX_REFTABLE_BYTES);
    img->reftable = qi_mem_alloc_capped(n, 8, QI_MAX_REFTABLE_BYTES);
    if (!raw || !img->reftable) {
        rc = qi_fail(img, QI_ENOMEM, "refcount table", img->hdr.refcount_table_offset,
                     "out of memory");
        goto out;
    }
    if ((rc = qi_bio_pread(img->file, raw, bytes, img->hdr.refcount_table_offset,
                           &img->err, "refcount table")) < 0)
        goto out;
    for (uint64_t i = 0; i < n; i++)
        img->reftable[i] = qi_be64(raw + 8 * i);
    img->reftable_entries = n;
out:
    free(raw);
    if (rc < 0) {
        free(img->reftable);
        img->reftable = NULL;
    }
    return rc;
}

/* Offset of the refcount block of table entry TI (0: none, or TI beyond
 * the table), validated. */
static int block_offset(qi_image *img, uint64_t ti, uint64_t *off)
{
    int rc;
    *off = 0;
    if ((rc = qi_refcount_load_table(img)) < 0)
        return rc;
    if (ti >= img->reftable_entries)
        return 0;
    uint64_t e = img->reftable[ti];
    uint64_t where = img->hdr.refcount_table_offset + 8 * ti;
    if (e & QI_REFT_RESERVED_MASK)
        return qi_corrupt(img, "refcount table", where, "entry %" PRIu64
                          " (%#" PRIx64 ") has reserved bits set", ti, e);
    if (!(e & QI_REFT_OFFSET_MASK))
        return 0;
    if ((rc = qi_format_check_table(&img->g, e & QI_REFT_OFFSET_MASK,
                                    img->g.cluster_size, true, img->file->size,
                                    img->path, "refcount table", where, &img->err)) < 0) {
        img->corrupt_seen = true;
        return rc;
    }
    *off = e & QI_REFT_OFFSET_MASK;
    return 0;
}

int qi_refcount_get(qi_image *img, uint64_t cluster_index, uint64_t *rc_out)
{
    uint64_t bi = cluster_index % img->g.refblock_entries, off;
    const uint8_t *block;
    int rc;
    *rc_out = 0;
    if ((rc = block_offset(img, cluster_index / img->g.refblock_entries, &off)) < 0 ||
        !off)
        return rc;
    if ((rc = qi_cache_get(img->rb_cache, off, &block, &img->err)) < 0)
        return rc;
    *rc_out = qi_format_refcount_get(block, img->g.refcount_order, bi);
    qi_cache_put(img->rb_cache, block);
    return 0;
}

/* The end of file covers [off, off + len): tables placed there by the
 * allocator validate before they are written. */
static void cover(qi_image *img, uint64_t off, uint64_t len)
{
    if (off + len > img->file->size)
        img->file->size = off + len;
}

/* Create the refcount block of table entry TI at the first cluster of the
 * range it covers (every cluster there has refcount 0: no block counted
 * them), counting itself. Order: block written and synced, then the table
 * entry written and synced. */
/* Grow the refcount table so that it has an entry TI. The new table and
 * the one refcount block that counts it go to a range of clusters past
 * everything in use (that block's own range, starting at its first cluster),
 * so nothing the old table describes moves. Crash table:
 *   1. the new block (counting itself and the new table), synced
 *                                       crash: unused space past the end
 *   2. the new table (old entries + the new block's), synced
 *                                       crash: unused space past the end
 *   3. header: table offset and size in one 12-byte write, synced
 *                                       crash: consistent, old table leaked
 *   4. the old table's clusters -1      crash: consistent */
static int grow_table(qi_image *img, uint64_t ti)
{
    uint64_t e = img->g.refblock_entries, cs = img->g.cluster_size;
    uint64_t end = (img->file->size + cs - 1) >> img->g.cluster_bits;
    uint64_t t = ti > (end + e - 1) / e ? ti : (end + e - 1) / e;   /* block's range */
    uint64_t n = ((t + 1) * 8 + cs - 1) / cs;                        /* table clusters */
    uint64_t boff = (t * e) << img->g.cluster_bits, toff = boff + cs;
    uint64_t old_off = img->hdr.refcount_table_offset;
    uint64_t old_n = img->hdr.refcount_table_clusters, *nt = NULL;
    uint8_t *block, *raw = NULL;
    int rc;
    if (!img->commit_header)
        return qi_fail(img, QI_ENOTSUP, "refcount table", old_off, "the refcount table "
                       "would have to grow to count cluster %" PRIu64, ti * e);
    if (n + 1 > e || n * cs > QI_MAX_REFTABLE_BYTES || toff + n * cs > QI_MAX_OFFSET)
        return qi_fail(img, QI_ENOSPC, "refcount table", old_off, "a refcount table of "
                       "%" PRIu64 " clusters is beyond the limits", n);
    if (!(nt = calloc(n * cs / 8, 8)) || !(raw = calloc(n, cs))) {
        rc = qi_fail(img, QI_ENOMEM, "refcount table", old_off, "out of memory");
        goto out;
    }
    /* 1 */
    if ((rc = qi_cache_get_empty(img->rb_cache, boff, &block, &img->err)) < 0)
        goto out;
    for (uint64_t i = 0; i <= n; i++)
        qi_format_refcount_set(block, img->g.refcount_order, i, 1);
    qi_cache_put(img->rb_cache, block);
    cover(img, boff, (n + 1) * cs);
    if ((rc = qi_cache_flush(img->rb_cache, &img->err)) < 0)
        goto out;
    /* 2 */
    memcpy(nt, img->reftable, img->reftable_entries * 8);
    nt[t] = qi_format_encode_reftable(boff);
    for (uint64_t i = 0; i < n * cs / 8; i++)
        qi_put_be64(raw + 8 * i, nt[i]);
    if ((rc = qi_bio_pwrite(img->file, raw, n * cs, toff, &img->err, "refcount table")) < 0 ||
        (rc = qi_bio_sync(img->file, &img->err)) < 0)
        goto out;
    /* 3 */
    img->hdr_req.what = QI_HDR_REFTABLE;
    img->hdr_req.refcount_table_offset = toff;
    img->hdr_req.refcount_table_clusters = (uint32_t)n;
    if ((rc = img->commit_header(img)) < 0)
        goto out;
    free(img->reftable);
    img->reftable = nt;
    img->reftable_entries = n * cs / 8;
    nt = NULL;
    /* 4 */
    for (uint64_t i = 0; i < old_n && rc == 0; i++)
        rc = qi_refcount_update(img, (old_off >> img->g.cluster_bits) + i, -1);
out:
    free(nt);
    free(raw);
    return rc;
}

/* Write a refcount block at BOFF for table entry TI (counting itself when
 * SELF: BOFF lies in its own range), then point the entry
 * at it. Order: block written and synced, then the entry written and
 * synced. */
static int place_block(qi_image *img, uint64_t ti, uint64_t boff, bool self)
{
    uint8_t *block, be[8];
    int rc;
    if ((rc = qi_cache_get_empty(img->rb_cache, boff, &block, &img->err)) < 0)
        return rc;
    if (self)
        qi_format_refcount_set(block, img->g.refcount_order,
                               (boff >> img->g.cluster_bits) % img->g.refblock_entries, 1);
    qi_cache_put(img->rb_cache, block);
    cover(img, boff, img->g.cluster_size);
    if ((rc = qi_cache_flush(img->rb_cache, &img->err)) < 0)
        return rc;
    qi_put_be64(be, qi_format_encode_reftable(boff));
    if ((rc = qi_bio_pwrite(img->file, be, 8, img->hdr.refcount_table_offset + 8 * ti,
                            &img->err, "refcount table")) < 0 ||
        (rc = qi_bio_sync(img->file, &img->err)) < 0)
        return rc;
    img->reftable[ti] = boff;
    return 0;
}

static int new_block(qi_image *img, uint64_t ti)
{
    uint64_t e = img->g.refblock_entries;
    int rc;
    if (ti >= img->reftable_entries) {
        if ((rc = grow_table(img, ti)) < 0)
            return rc;
        if (img->reftable[ti])      /* the grown table's own block covers TI */
            return 0;
    }
    if (ti > (QI_MAX_OFFSET >> img->g.cluster_bits) / e)
        return qi_fail(img, QI_ENOSPC, "refcount table", QI_NO_OFFSET,
                       "no free cluster below 2^56");
    if (ti == 0)
        return qi_corrupt(img, "refcount table", img->hdr.refcount_table_offset,
                          "entry 0 is empty, so the header cluster is not counted");
    return place_block(img, ti, (ti * e) << img->g.cluster_bits, true);
}

int qi_refcount_grow(qi_image *img, uint64_t ti)
{
    int rc;
    if ((rc = qi_refcount_load_table(img)) < 0 || ti < img->reftable_entries)
        return rc;
    return grow_table(img, ti);
}

int qi_refcount_attach_block(qi_image *img, uint64_t ti, uint64_t off)
{
    int rc;
    if ((rc = qi_refcount_load_table(img)) < 0)
        return rc;
    assert(ti < img->reftable_entries && !img->reftable[ti]);
    assert(!(off & (img->g.cluster_size - 1)));
    return place_block(img, ti, off, false);
}

/* Cluster CLUSTER_INDEX is free now: the allocator may take it, and
 * compressed writes no longer pack data into it. */
static void freed(qi_image *img, uint64_t cluster_index)
{
    if (cluster_index < img->free_hint)
        img->free_hint = cluster_index;
    if (img->free_byte_offset >> img->g.cluster_bits == cluster_index)
        img->free_byte_offset = 0;
}

int qi_refcount_update(qi_image *img, uint64_t cluster_index, int64_t delta)
{
    uint64_t ti = cluster_index / img->g.refblock_entries;
    uint64_t bi = cluster_index % img->g.refblock_entries, off, old, max;
    uint64_t host = cluster_index << img->g.cluster_bits;
    uint8_t *block;
    int rc;
    if ((rc = block_offset(img, ti, &off)) < 0)
        return rc;
    if (!off && delta < 0)
        return qi_corrupt(img, "refcount block", host, "cluster %#" PRIx64 " loses a "
                          "reference but has no refcount block (refcount 0)", host);
    if (!off) {
        if ((rc = new_block(img, ti)) < 0)
            return rc;
        off = img->reftable[ti];
    }
    if ((rc = qi_cache_get_mut(img->rb_cache, off, &block, &img->err)) < 0)
        return rc;
    old = qi_format_refcount_get(block, img->g.refcount_order, bi);
    max = qi_format_refcount_max(img->g.refcount_order);
    if (delta < 0 && old < (uint64_t)-delta)
        rc = qi_corrupt(img, "refcount block", off, "refcount of cluster %#" PRIx64
                        " is %" PRIu64 " and would go below 0", host, old);
    else if (delta > 0 && max - old < (uint64_t)delta)
        rc = qi_fail(img, QI_ENOSPC, "refcount block", off, "refcount of cluster %#"
                     PRIx64 " is %" PRIu64 ", the most %u-bit refcounts hold", host,
                     old, 1u << img->g.refcount_order);
    if (rc == 0) {
        qi_format_refcount_set(block, img->g.refcount_order, bi, old + (uint64_t)delta);
        qi_cache_mark_dirty(img->rb_cache, block);
        if (old + (uint64_t)delta == 0)
            freed(img, cluster_index);
    }
    qi_cache_put(img->rb_cache, block);
    return rc;
}

int qi_refcount_set(qi_image *img, uint64_t cluster_index, uint64_t value, uint64_t *old)
{
    uint64_t ti = cluster_index / img->g.refblock_entries, off;
    uint64_t host = cluster_index << img->g.cluster_bits;
    uint8_t *block;
    int rc;
    if (value > qi_format_refcount_max(img->g.refcount_order))
        return qi_fail(img, QI_EINVAL, "refcount block", QI_NO_OFFSET, "%" PRIu64 " does "
                       "not fit in a %u-bit refcount", value, 1u << img->g.refcount_order);
    if ((rc = block_offset(img, ti, &off)) < 0)
        return rc;
    if (!off)
        return qi_fail(img, QI_EINVAL, "refcount table", img->hdr.refcount_table_offset + 8 * ti,
                       "no refcount block covers cluster %#" PRIx64 " (table entry %" PRIu64
                       " is empty)", host, ti);
    if ((rc = qi_cache_get_mut(img->rb_cache, off, &block, &img->err)) < 0)
        return rc;
    *old = qi_format_refcount_get(block, img->g.refcount_order,
                                  cluster_index % img->g.refblock_entries);
    qi_format_refcount_set(block, img->g.refcount_order,
                           cluster_index % img->g.refblock_entries, value);
    qi_cache_mark_dirty(img->rb_cache, block);
    qi_cache_put(img->rb_cache, block);
    if (value == 0)
        freed(img, cluster_index);
    return 0;
}

/* Set the refcounts of the free run [FIRST, FIRST+N) to 1; *OFF = its
 * byte offset; the end of file covers it. */
static int take_run(qi_image *img, uint64_t first, uint64_t n, uint64_t *off)
{
    int rc;
    for (uint64_t i = 0; i < n; i++)
        if ((rc = qi_refcount_update(img, first + i, 1)) < 0)
            return rc;
    if (first == img->free_hint)
        img->free_hint = first + n;
    *off = first << img->g.cluster_bits;
    cover(img, *off, n << img->g.cluster_bits);
    return 0;
}

/* ---- runs longer than a refcount block's range (QEMU's way) ---- */

/* The first run of N clusters with refcount 0 from FROM on; clusters of a
 * range without a refcount block count as free (nothing counts them). */
static int scan_run(qi_image *img, uint64_t from, uint64_t n, uint64_t *first)
{
    uint64_t ci = from, run = 0, limit = QI_MAX_OFFSET >> img->g.cluster_bits, r;
    int rc;
    while (run < n) {
        if (ci >= limit)
            return qi_fail(img, QI_ENOSPC, "refcount block", QI_NO_OFFSET,
                           "no %" PRIu64 " free clusters below 2^56", n);
        if ((rc = qi_refcount_get(img, ci, &r)) < 0)
            return rc;
        if (r)
            run = 0;
        else if (run++ == 0)
            *first = ci;
        ci++;
    }
    return 0;
}

/* Give range TI (no block yet) a refcount block at the first free cluster
 * from *C on, as QEMU's alloc_refcount_block does: a block that lies in its
 * own range counts itself; else its cluster is counted in the block of the
 * range it lies in, and that count is on disk before the block. A free
 * cluster in a range that has no block yet gives that range its block
 * first. *C ends past the clusters used. Crash table (each block):
 *   1. the count of the block's cluster, flushed (when not its own range)
 *                                          crash: leaked cluster
 *   2. the block, synced                   crash: unused space (or leak)
 *   3. the table entry, synced             crash: consistent */
static int place_after(qi_image *img, uint64_t ti, uint64_t *c)
{
    uint64_t e = img->g.refblock_entries, r, rb;
    int rc;
    for (;; (*c)++) {
        uint64_t rt = *c / e;
        if ((rc = qi_refcount_get(img, *c, &r)) < 0)
            return rc;
        if (r)
            continue;
        if (rt >= img->reftable_entries)
            return qi_fail(img, QI_ENOSPC, "refcount table", QI_NO_OFFSET, "no table "
                           "entry for the refcount block of cluster %" PRIu64, *c);
        if ((rc = block_offset(img, rt, &rb)) < 0)
            return rc;
        if (!rb) {
            if ((rc = place_block(img, rt, *c << img->g.cluster_bits, true)) < 0)
                return rc;
            if (rt == ti)
                return (*c)++, 0;
            continue;
        }
        if ((rc = qi_refcount_update(img, *c, 1)) < 0 ||
            (rc = qi_cache_flush(img->rb_cache, &img->err)) < 0)
            return rc;
        cover(img, *c << img->g.cluster_bits, img->g.cluster_size);
        rc = place_block(img, ti, *c << img->g.cluster_bits, false);
        (*c)++;
        return rc;
    }
}

/* N contiguous clusters where N is at least a refcount block's range: the
 * run is searched over ranges without blocks too, the table grows first if
 * the blocks (placed just after the run) would need entries it lacks, then
 * the missing blocks are placed after the run (place_after), then the
 * run's refcounts are set. */
static int alloc_long(qi_image *img, uint64_t n, uint64_t *off)
{
    uint64_t e = img->g.refblock_entries, first = 0, last_t, boff, c;
    int rc;
    for (;;) {
        if ((rc = scan_run(img, img->free_hint, n, &first)) < 0)
            return rc;
        last_t = (first + n - 1) / e;
        if (last_t + 1 < img->reftable_entries)
            break;
        /* the grown table goes past what is in use: maybe where the run
         * was, so the run is searched again */
        if ((rc = grow_table(img, last_t + 1)) < 0)
            return rc;
    }
    c = first + n;
    for (uint64_t ti = first / e; ti <= last_t; ti++) {
        if ((rc = block_offset(img, ti, &boff)) < 0)
            return rc;
        if (!boff && (rc = place_after(img, ti, &c)) < 0)
            return rc;
    }
    return take_run(img, first, n, off);
}

int qi_refcount_alloc(qi_image *img, uint64_t n, uint64_t *off)
{
    uint64_t ci = img->free_hint, first = 0, run = 0, limit = QI_MAX_OFFSET >> img->g.cluster_bits;
    uint64_t lowest_free = UINT64_MAX;  /* first free cluster the scan met */
    int rc;
    *off = 0;
    if ((rc = qi_refcount_load_table(img)) < 0)
        return rc;
    if (n >= img->g.refblock_entries)
        return alloc_long(img, n, off);
    while (run < n) {
        uint64_t r, boff;
        if (ci >= limit)
            return qi_fail(img, QI_ENOSPC, "refcount block", QI_NO_OFFSET,
                           "no %" PRIu64 " free clusters below 2^56", n);
        if ((rc = block_offset(img, ci / img->g.refblock_entries, &boff)) < 0)
            return rc;
        /* a range without a block gets one at its first cluster; then look again */
        if (!boff && (rc = new_block(img, ci / img->g.refblock_entries)) < 0)
            return rc;
        if ((rc = qi_refcount_get(img, ci, &r)) < 0)
            return rc;
        if (r) {
            run = 0;
        } else if (run++ == 0) {
            first = ci;
            if (lowest_free == UINT64_MAX)
                lowest_free = ci;
        }
        ci++;
    }
    if ((rc = take_run(img, first, n, off)) < 0)
        return rc;
    /* everything the scan passed before LOWEST_FREE is in use (a refcount
     * block placed on the way, say): the next scan starts after it */
    img->free_hint = lowest_free == first ? first + n : lowest_free;
    return 0;
}

int qi_refcount_free_later(qi_image *img, uint64_t off, uint64_t len)
{
    uint64_t first = off >> img->g.cluster_bits;
    uint64_t last = (off + len - 1) >> img->g.cluster_bits;
    for (uint64_t c = first; c <= last; c++) {
        if (img->n_pending == img->cap_pending) {
            size_t cap = img->cap_pending ? 2 * img->cap_pending : 64;
            uint64_t *p = qi_mem_alloc_capped(cap, sizeof *p, QI_MEM_CAP);
            if (!p)
                return qi_fail(img, QI_ENOMEM, "refcount block", off, "out of memory");
            if (img->n_pending)
                memcpy(p, img->pending_free, img->n_pending * sizeof *p);
            free(img->pending_free);
            img->pending_free = p;
            img->cap_pending = cap;
        }
        img->pending_free[img->n_pending++] = c;
    }
    return 0;
}

int qi_refcount_settle(qi_image *img)
{
    int rc;
    if ((rc = qi_cache_flush(img->l2_cache, &img->err)) < 0)
        return rc;
    while (img->n_pending) {
        if ((rc = qi_refcount_update(img, img->pending_free[img->n_pending - 1], -1)) < 0)
            return rc;
        img->n_pending--;
    }
    return qi_cache_flush(img->rb_cache, &img->err);
}

/* ---- shrinking ---- */

/* Whether the refcount block of table entry TI at OFF counts nothing but
 * (when it lies in its own range) itself. */
static int block_unused(qi_image *img, uint64_t ti, uint64_t off, bool *unused)
{
    uint64_t n = img->g.refblock_entries, self = UINT64_MAX;
    const uint8_t *block;
    int rc;
    if ((off >> img->g.cluster_bits) / n == ti)
        self = (off >> img->g.cluster_bits) % n;
    if ((rc = qi_cache_get(img->rb_cache, off, &block, &img->err)) < 0)
        return rc;
    *unused = true;
    for (uint64_t i = 0; i < n && *unused; i++)
        *unused = i == self || !qi_format_refcount_get(block, img->g.refcount_order, i);
    qi_cache_put(img->rb_cache, block);
    return 0;
}

/* A dropped refcount block's cluster is free: counted in another block
 * (-1), or in its own range (no longer described: refcount 0); the cache
 * forgets it and its bytes are discarded, as QEMU's free does. */
static int drop_block(qi_image *img, uint64_t ti, uint64_t off)
{
    uint64_t c = off >> img->g.cluster_bits;
    int rc;
    qi_cache_discard(img->rb_cache, off);
    img->reftable[ti] = 0;
    if (c / img->g.refblock_entries != ti) {
        if ((rc = qi_refcount_update(img, c, -1)) < 0)
            return rc;
    } else {
        freed(img, c);
    }
    return qi_bio_discard(img->file, off, img->g.cluster_size, &img->err, "refcount block");
}

/* Crash table (the effect of QEMU's qcow2_shrink_reftable):
 *   1. refcount blocks flushed and synced (the zeros judged are on disk)
 *   2. the whole table, entries of unused blocks zeroed, synced
 *                          crash: consistent; a dropped block outside its
 *                          own range leaks
 *   3. dropped blocks outside their own range -1 (refcount cache), every
 *      dropped block's cluster discarded        crash: consistent */
int qi_refcount_shrink_table(qi_image *img)
{
    uint64_t n, *keep = NULL;
    uint8_t *raw = NULL;
    int rc;
    if ((rc = qi_refcount_load_table(img)) < 0 ||
        (rc = qi_cache_flush(img->rb_cache, &img->err)) < 0)    /* 1 */
        return rc;
    n = img->reftable_entries;
    keep = qi_mem_alloc_capped(n ? n : 1, 8, QI_MEM_CAP);
    raw = qi_mem_alloc_capped(n ? n : 1, 8, QI_MEM_CAP);
    if (!keep || !raw) {
        rc = qi_fail(img, QI_ENOMEM, "refcount table", img->hdr.refcount_table_offset,
                     "out of memory");
        goto out;
    }
    for (uint64_t ti = 0; ti < n && rc == 0; ti++) {
        uint64_t off;
        bool unused = false;
        if ((rc = block_offset(img, ti, &off)) == 0 && off)
            rc = block_unused(img, ti, off, &unused);
        keep[ti] = off && unused ? 0 : img->reftable[ti];
        qi_put_be64(raw + 8 * ti, keep[ti]);
    }
    if (rc < 0)
        goto out;
    /* 2 */
    if ((rc = qi_bio_pwrite(img->file, raw, 8 * n, img->hdr.refcount_table_offset,
                            &img->err, "refcount table")) < 0 ||
        (rc = qi_bio_sync(img->file, &img->err)) < 0)
        goto out;
    /* 3 */
    for (uint64_t ti = 0; ti < n && rc == 0; ti++)
        if (img->reftable[ti] && !keep[ti])
            rc = drop_block(img, ti, img->reftable[ti] & QI_REFT_OFFSET_MASK);
    if (rc == 0)
        rc = qi_cache_flush(img->rb_cache, &img->err);
out:
    free(keep);
    free(raw);
    return rc;
}

int qi_refcount_last_used(qi_image *img, uint64_t *last)
{
    uint64_t cs = img->g.cluster_size;
    uint64_t c = (img->file->size + cs - 1) / cs, r = 0;
    int rc;
    while (c > 0) {
        if ((rc = qi_refcount_get(img, c - 1, &r)) < 0)
            return rc;
        if (r)
            break;
        c--;
    }
    *last = c;
    return 0;
}
