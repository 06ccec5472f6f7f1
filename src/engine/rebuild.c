/* rebuild.c - refcounts rebuilt from the references (layer 4).
 *
 * Counts every reference the reference walk reports (refwalk.c: header,
 * active and snapshot L1/L2 tables and data clusters, refcount table and
 * blocks, snapshot table, bitmaps; a compressed span counts once in each
 * host cluster it touches) into an array of one 32-bit counter per host
 * cluster of the file, then makes the on-disk refcounts equal to it,
 * raising before lowering, under the dirty bit (crash table at
 * qi_rebuild_refcounts in rebuild.h). Used when a read-write open finds the
 * dirty bit (image.c), and by check/repair later.
 * Invariants: nothing is written before the whole walk has validated every
 * reference; a refcount block added here never lands on a cluster that is
 * referenced (allocation starts past the last referenced cluster, at a
 * range boundary when that range has no block); the dirty bit is cleared
 * only after every refcount block is written and synced.
 * Calls: refwalk, refcount, cache, format. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "rebuild.h"
#include "refcount.h"
#include "refwalk.h"

typedef struct counter {
    qi_image *img;
    uint32_t *count;        /* references per host cluster */
    uint64_t n;             /* clusters in count */
    uint64_t last;          /* highest referenced cluster + 1 */
} counter;

/* Where the reference R is stored, for error messages. */
static uint64_t ref_site(const qi_image *img, const qi_ref *r)
{
    switch (r->kind) {
    case QI_REF_L1_ENTRY: case QI_REF_REFBLOCK: case QI_REF_BITMAP_DATA:
        return r->table_offset + 8ull * r->index;
    case QI_REF_L2_ENTRY:
        return r->table_offset + (uint64_t)img->g.l2_entry_size * r->index;
    default:
        return r->host_offset;
    }
}

static int count_ref(void *payload, const qi_ref *r)
{
    counter *c = payload;
    qi_image *img = c->img;
    uint64_t cs = img->g.cluster_size, fsize = img->file->size, end;
    const char *st = qi_ref_kind_name(r->kind);
    bool byte_granular = r->kind == QI_REF_L2_ENTRY && (r->raw & QI_OFLAG_COMPRESSED);
    if (!r->length)
        return 0;
    if (r->kind == QI_REF_REFBLOCK && (r->raw & QI_REFT_RESERVED_MASK))
        return qi_corrupt(img, st, ref_site(img, r), "entry %#" PRIx64 " has reserved "
                          "bits set (a repair is needed first)",
                          r->raw);
    if (!byte_granular && (r->host_offset & (cs - 1)))
        return qi_corrupt(img, st, ref_site(img, r), "offset %#" PRIx64 " is not "
                          "cluster aligned (a repair is needed first)", r->host_offset);
    if (__builtin_add_overflow(r->host_offset, r->length, &end) ||
        (end > fsize && end - fsize >= cs))
        return qi_corrupt(img, st, ref_site(img, r), "%" PRIu64 " bytes at %#" PRIx64
                          " reach past the end of the file (%" PRIu64 " bytes; a repair "
                          "is needed first)", r->length,
                          r->host_offset, fsize);
    for (uint64_t k = r->host_offset >> img->g.cluster_bits;
         k <= (end - 1) >> img->g.cluster_bits; k++) {
        if (c->count[k] == UINT32_MAX)
            return qi_corrupt(img, st, ref_site(img, r), "host cluster %#" PRIx64
                              " has 2^32 references", k << img->g.cluster_bits);
        c->count[k]++;
        if (k + 1 > c->last)
            c->last = k + 1;
    }
    return 0;
}

/* Walk every reference into a new count array (freed by the caller), and
 * check that every count fits the refcount width. */
static int count_all(qi_image *img, counter *c)
{
    uint64_t cs = img->g.cluster_size, max = qi_format_refcount_max(img->g.refcount_order);
    int rc;
    free(c->count);
    c->last = 0;
    c->n = (img->file->size + cs - 1) / cs + 1;
    if (!(c->count = qi_mem_calloc_capped(c->n, sizeof *c->count, QI_REBUILD_MAX_BYTES)))
        return qi_fail(img, QI_ENOMEM, "refcount rebuild", QI_NO_OFFSET, "counting the "
                       "references of %" PRIu64 " host clusters (a %" PRIu64 "-byte file) "
                       "needs %" PRIu64 " MiB, more than the %zu MiB limit or the memory "
                       "available", c->n, img->file->size, (c->n * 4) >> 20,
                       QI_REBUILD_MAX_BYTES >> 20);
    if ((rc = qi_refwalk(img, count_ref, c)) != 0)
        return rc;
    for (uint64_t k = 0; k < c->last; k++)
        if (c->count[k] > max)
            return qi_corrupt(img, "refcount rebuild", k << img->g.cluster_bits,
                              "host cluster %#" PRIx64 " has %" PRIu32 " references, "
                              "more than %u-bit refcounts hold", k << img->g.cluster_bits,
                              c->count[k], 1u << img->g.refcount_order);
    return 0;
}

/* One pass over the existing refcount blocks: RAISE sets every refcount
 * below its count, else every refcount above it. Blocks change in the
 * cache; the caller flushes. */
static int fix_pass(qi_image *img, const counter *c, bool raise, qi_rebuild_stats *st)
{
    uint64_t e = img->g.refblock_entries;
    uint32_t order = img->g.refcount_order;
    int rc;
    for (uint64_t ti = 0; ti < img->reftable_entries; ti++) {
        uint64_t off = img->reftable[ti] & QI_REFT_OFFSET_MASK, base = ti * e;
        uint8_t *b;
        bool changed = false;
        if (!off || (raise && base >= c->last))
            continue;
        if ((rc = qi_cache_get_mut(img->rb_cache, off, &b, &img->err)) < 0)
            return rc;
        for (uint64_t i = 0; i < e; i++) {
            uint64_t want = base + i < c->n ? c->count[base + i] : 0;
            uint64_t have = qi_format_refcount_get(b, order, i);
            if (raise ? want > have : want < have) {
                qi_format_refcount_set(b, order, i, want);
                changed = true;
                if (raise)
                    st->raised++;
                else
                    st->lowered++;
            }
        }
        if (changed)
            qi_cache_mark_dirty(img->rb_cache, b);
        qi_cache_put(img->rb_cache, b);
    }
    return 0;
}

static bool has_block(const qi_image *img, uint64_t ti)
{
    return ti < img->reftable_entries && (img->reftable[ti] & QI_REFT_OFFSET_MASK);
}

/* Give every range that holds references but has no refcount block one.
 * *added: how many changes were made (0: every range is covered). */
static int add_blocks(qi_image *img, const counter *c, qi_rebuild_stats *st, unsigned *added)
{
    uint64_t e = img->g.refblock_entries, off;
    int rc;
    *added = 0;
    for (uint64_t ti = 0; ti * e < c->last; ti++) {
        uint64_t k = ti * e, end = k + e < c->last ? k + e : c->last;
        while (k < end && !c->count[k])
            k++;
        if (k == end || has_block(img, ti))
            continue;
        if (ti >= img->reftable_entries) {
            if ((rc = qi_refcount_grow(img, ti)) < 0)
                return rc;
            ++*added;
            if (has_block(img, ti))
                continue;
        }
        /* past everything referenced; where that range has no block, from
         * the next range, whose first cluster the allocator may give its
         * own block (a cluster nothing references) */
        uint64_t hint = c->last;
        if (!has_block(img, hint / e))
            hint = (hint / e + 1) * e;
        if (hint > img->free_hint)
            img->free_hint = hint;
        if ((rc = qi_refcount_alloc(img, 1, &off)) < 0)
            return rc;
        ++*added;
        if (has_block(img, ti))
            continue;       /* the allocation covered it; OFF is a leak, lowered later */
        if ((rc = qi_refcount_attach_block(img, ti, off)) < 0)
            return rc;
        st->blocks++;
    }
    return 0;
}

static int commit_dirty(qi_image *img, unsigned what)
{
    img->hdr_req.what = what;
    return img->commit_header(img);
}

int qi_rebuild_refcounts(qi_image *img, qi_rebuild_stats *st)
{
    qi_rebuild_stats dummy;
    counter c = { .img = img };
    unsigned added = 0;
    int rc;
    if (!st)
        st = &dummy;
    memset(st, 0, sizeof *st);
    if (!img->writable)
        return qi_fail(img, QI_ERDONLY, "", QI_NO_OFFSET, "image opened read-only; "
                       "reopen it with -w to rebuild refcounts");
    if (img->raw)
        return qi_fail(img, QI_EINVAL, "", QI_NO_OFFSET, "a raw image has no refcounts");
    if (!img->commit_header)
        return qi_fail(img, QI_ENOTSUP, "header", QI_NO_OFFSET, "no header commit");
    if ((rc = qi_refcount_settle(img)) < 0)
        return rc;
    do {
        if (st->rounds++ == 8) {
            rc = qi_fail(img, QI_EIO, "refcount rebuild", QI_NO_OFFSET, "refcount "
                         "blocks still missing after 8 rounds");
            goto out;
        }
        if ((rc = count_all(img, &c)) < 0)
            goto out;
        /* 1 */
        if (st->rounds == 1 && img->hdr.version >= 3 &&
            !(img->hdr.incompatible_features & QI_INCOMPAT_DIRTY) &&
            (rc = commit_dirty(img, QI_HDR_DIRTY)) < 0)
            goto out;
        /* 2, 3 */
        if ((rc = fix_pass(img, &c, true, st)) < 0 ||
            (rc = qi_cache_flush(img->rb_cache, &img->err)) < 0 ||
            (rc = add_blocks(img, &c, st, &added)) < 0)
            goto out;
    } while (added);
    st->clusters = c.n;
    /* 4, 5 */
    if ((rc = fix_pass(img, &c, false, st)) < 0 ||
        (rc = qi_cache_flush(img->rb_cache, &img->err)) < 0)
        goto out;
    if ((img->hdr.incompatible_features & QI_INCOMPAT_DIRTY) &&
        (rc = commit_dirty(img, QI_HDR_CLEAN)) < 0)
        goto out;
    img->lazy_dirty = false;
    img->free_hint = 0;     /* lowered refcounts freed clusters anywhere */
    img->free_byte_offset = 0;
out:
    free(c.count);
    return rc;
}
