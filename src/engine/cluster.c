/* cluster.c - mapping guest offsets through L1 and L2 tables (layer 3).
 *
 * Validates each L1 entry (reserved bits, alignment, L2 table inside the
 * file) and each L2 entry (reserved bits, alignment of data clusters,
 * extended-L2 bitmap rules, compressed clusters not allowed with an
 * external data file) as it is used, and groups consecutive clusters into
 * runs of one kind for the read and map paths. For writing it links L2
 * tables into the active L1 (new or copied from a shared table, COPIED set
 * as the table's refcount is 1) and updates L2 entries through the cache.
 * Calls: refcount, cache, format. */
#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "endian.h"
#include "mem.h"
#include "refcount.h"

/* A table of N entries at OFF with one reference; *OUT = NULL on failure. */
static int new_tab(qi_image *img, uint32_t n, uint64_t off, const char *structure,
                   qi_l1tab **out)
{
    qi_l1tab *t = calloc(1, sizeof *t);
    *out = NULL;
    if (t && n && !(t->e = qi_mem_alloc_capped(n, 8, QI_MAX_L1_ENTRIES * 8))) {
        free(t);
        t = NULL;
    }
    if (!t)
        return qi_fail(img, QI_ENOMEM, structure, off, "out of memory");
    t->size = n;
    t->off = off;
    t->refs = 1;
    *out = t;
    return 0;
}

void qi_cluster_l1tab_drop(qi_l1tab *t)
{
    if (!t)
        return;
    assert(t->refs > 0);
    if (--t->refs)
        return;
    free(t->e);
    free(t);
}

void qi_cluster_l1_release(qi_image *img)
{
    /* a view not put at close is a leak (a get without its put) */
    assert(!img->l1 || img->l1->refs == 1);
    assert(!img->snap_l1 || img->snap_l1->refs == 1);
    qi_cluster_l1tab_drop(img->l1);
    qi_cluster_l1tab_drop(img->snap_l1);
    img->l1 = img->snap_l1 = NULL;
}

uint32_t qi_cluster_l1_refs(const qi_image *img, bool snapshot)
{
    const qi_l1tab *t = snapshot ? img->snap_l1 : img->l1;
    return t ? t->refs : 0;
}

static int load_l1(qi_image *img, uint64_t off, uint32_t n, qi_l1tab **out,
                   const char *structure)
{
    uint8_t *raw = NULL;
    qi_l1tab *t = NULL;
    int rc;
    *out = NULL;
    /* past the end of the file the table reads as zeros, as in QEMU */
    if (n && (rc = qi_format_check_table(&img->g, off, 8ull * n, true, UINT64_MAX,
                                         img->path, structure, off, &img->err)) < 0) {
        img->corrupt_seen = true;
        return rc;
    }
    if ((rc = new_tab(img, n, off, structure, &t)) < 0)
        return rc;
    if (n && !(raw = qi_mem_alloc_capped(n, 8, QI_MAX_L1_ENTRIES * 8))) {
        rc = qi_fail(img, QI_ENOMEM, structure, off, "out of memory");
        goto out;
    }
    if (n && (rc = qi_bio_pread(img->file, raw, 8ull * n, off, &img->err, structure)) < 0)
        goto out;
    for (uint32_t i = 0; i < n; i++)
        t->e[i] = qi_be64(raw + 8 * i);
    *out = t;
    t = NULL;
out:
    free(raw);
    qi_cluster_l1tab_drop(t);
    return rc;
}

static void take(qi_l1view *v, qi_l1tab *t)
{
    t->refs++;
    v->tab = t;
    v->size = t->size;
    v->l1_off = t->off;
}

int qi_cluster_view_active(qi_image *img, qi_l1view *v)
{
    int rc;
    v->tab = NULL;
    if (img->broken)    /* a raw edit left the header invalid (image.c) */
        return qi_err_copy(&img->err, &img->broken_err);
    if (img->l1_bad)    /* a forensic open found its header fields invalid */
        return qi_err_copy(&img->err, &img->l1_err);
    if (img->info_only)
        return qi_fail(img, QI_ENOTSUP, "", QI_NO_OFFSET, "opened for information only "
                       "(QI_OPEN_INFO): no guest data access");
    if (!img->l1 && (rc = load_l1(img, img->hdr.l1_table_offset, img->hdr.l1_size,
                                  &img->l1, "L1 table")) < 0)
        return rc;
    take(v, img->l1);
    v->vsize = img->size;
    return 0;
}

int qi_cluster_view_snapshot(qi_image *img, uint32_t snap, qi_l1view *v)
{
    const qi_snapshot *s;
    int rc;
    v->tab = NULL;
    if (img->broken)
        return qi_err_copy(&img->err, &img->broken_err);
    if (img->info_only)
        return qi_fail(img, QI_ENOTSUP, "", QI_NO_OFFSET, "opened for information only "
                       "(QI_OPEN_INFO): no guest data access");
    if (snap >= img->n_snaps)
        return qi_fail(img, QI_ENOENT, "snapshot table", QI_NO_OFFSET,
                       "no snapshot with index %" PRIu32, snap);
    s = &img->snaps[snap];
    if (!img->snap_l1 || img->snap_l1_index != snap) {
        /* a view of the one kept before keeps it alive */
        qi_cluster_l1tab_drop(img->snap_l1);
        img->snap_l1 = NULL;
        if ((rc = load_l1(img, s->l1_table_offset, s->l1_size, &img->snap_l1,
                          "snapshot L1 table")) < 0)
            return rc;
        img->snap_l1_index = snap;
    }
    take(v, img->snap_l1);
    v->vsize = s->has_disk_size ? s->disk_size : img->size;
    return 0;
}

void qi_cluster_view_put(qi_image *img, qi_l1view *v)
{
    (void)img;
    assert(v->tab);     /* a put without its view */
    qi_cluster_l1tab_drop(v->tab);
    v->tab = NULL;
}

int qi_cluster_active_l2_offset(qi_image *img, uint64_t index, uint64_t *l2_off)
{
    qi_l1view v;
    int rc;
    *l2_off = 0;
    if ((rc = qi_cluster_view_active(img, &v)) < 0)
        return rc;
    rc = qi_cluster_l2_offset(img, &v, index, l2_off);
    qi_cluster_view_put(img, &v);
    return rc;
}

int qi_cluster_active_run(qi_image *img, uint64_t off, uint64_t maxlen, qi_run *run)
{
    qi_l1view v;
    int rc;
    if ((rc = qi_cluster_view_active(img, &v)) < 0)
        return rc;
    rc = qi_cluster_run(img, &v, off, maxlen, run);
    qi_cluster_view_put(img, &v);
    return rc;
}

int qi_cluster_l2_offset(qi_image *img, const qi_l1view *v, uint64_t index,
                         uint64_t *l2_off)
{
    qi_l1_entry e;
    uint64_t where = v->l1_off + 8 * index;
    int rc;
    *l2_off = 0;
    if (index >= v->size)
        return 0;
    qi_format_decode_l1(v->tab->e[index], &e);
    if (e.reserved)
        return qi_corrupt(img, "L1 table", where, "entry %" PRIu64 " (%#018" PRIx64
                          ") has reserved bits set", index, e.raw);
    if (!e.l2_offset)
        return 0;
    /* an L2 table past the end of the file reads as zeros, as in QEMU */
    if ((rc = qi_format_check_table(&img->g, e.l2_offset, img->g.cluster_size, true,
                                    UINT64_MAX, img->path, "L1 table", where,
                                    &img->err)) < 0) {
        img->corrupt_seen = true;
        return rc;
    }
    *l2_off = e.l2_offset;
    return 0;
}

static int validate_l2(qi_image *img, const qi_l2_entry *e, uint64_t where)
{
    if (e->reserved)
        return qi_corrupt(img, "L2 table", where, "entry %#018" PRIx64
                          " has reserved bits set (%#" PRIx64 ")", e->raw, e->reserved);
    if (e->type == QI_CLUSTER_COMPRESSED) {
        if (img->data_file)
            return qi_corrupt(img, "L2 table", where, "compressed cluster "
                              "%#018" PRIx64 " in an image with an external data file",
                              e->raw);
        /* the subcluster bitmap of a compressed entry is unused: QEMU
         * reads the cluster whatever it holds (its check reports it) */
        return 0;
    }
    if ((e->type == QI_CLUSTER_NORMAL || e->type == QI_CLUSTER_ZERO_ALLOC) &&
        (e->host_offset & (img->g.cluster_size - 1)))
        return qi_corrupt(img, "L2 table", where, "data cluster offset %#" PRIx64
                          " is not cluster aligned", e->host_offset);
    if (img->g.extl2) {
        uint32_t alloc = (uint32_t)e->bitmap, zero = (uint32_t)(e->bitmap >> 32);
        if (alloc & zero)
            return qi_corrupt(img, "L2 table", where, "subclusters both allocated "
                              "and zero (bitmap %#018" PRIx64 ")", e->bitmap);
        if (alloc && e->type == QI_CLUSTER_UNALLOCATED)
            return qi_corrupt(img, "L2 table", where, "unallocated cluster with "
                              "allocated subclusters (bitmap %#018" PRIx64 ")", e->bitmap);
    }
    return 0;
}

int qi_cluster_l2_decode(qi_image *img, uint64_t l2_off, uint32_t index,
                         qi_l2_entry *out)
{
    const uint8_t *t;
    int rc;
    uint32_t esz = img->g.l2_entry_size;
    if ((rc = qi_cache_get(img->l2_cache, l2_off, &t, &img->err)) < 0)
        return rc;
    qi_format_decode_l2(&img->g, img->data_file != NULL, qi_be64(t + esz * index),
                        esz == 16 ? qi_be64(t + esz * index + 8) : 0, out);
    qi_cache_put(img->l2_cache, t);
    return 0;
}

int qi_cluster_l2_entry(qi_image *img, uint64_t l2_off, uint32_t index,
                        qi_l2_entry *out)
{
    int rc = qi_cluster_l2_decode(img, l2_off, index, out);
    if (rc < 0)
        return rc;
    return validate_l2(img, out, l2_off + (uint64_t)img->g.l2_entry_size * index);
}

/* State of allocation unit SC (a subcluster with extended L2, else the
 * whole cluster, SC = 0) of entry E. */
static void unit_state(const qi_image *img, const qi_l2_entry *e, unsigned sc,
                       qi_run *u)
{
    u->has_host = false;
    u->host = 0;
    switch (e->type) {
    case QI_CLUSTER_COMPRESSED:
        u->kind = QI_RUN_COMPRESSED;
        return;
    case QI_CLUSTER_ZERO_PLAIN:
        u->kind = QI_RUN_ZERO;
        return;
    case QI_CLUSTER_ZERO_ALLOC:
        u->kind = QI_RUN_ZERO;
        u->has_host = true;
        u->host = e->host_offset;
        return;
    default:
        break;
    }
    u->host = e->host_offset + (uint64_t)sc * img->g.subcluster_size;
    u->has_host = e->type == QI_CLUSTER_NORMAL;
    if (!img->g.extl2)
        u->kind = e->type == QI_CLUSTER_NORMAL ? QI_RUN_DATA : QI_RUN_UNALLOC;
    else if (e->bitmap & (1ull << sc))
        u->kind = QI_RUN_DATA;
    else if (e->bitmap & (1ull << (32 + sc)))
        u->kind = QI_RUN_ZERO;
    else
        u->kind = QI_RUN_UNALLOC;
}

static bool same_run(const qi_run *run, const qi_run *u)
{
    if (u->kind != run->kind || u->has_host != run->has_host ||
        run->kind == QI_RUN_COMPRESSED)
        return false;
    return !u->has_host || u->host == run->host + run->len;
}

int qi_cluster_run(qi_image *img, const qi_l1view *v, uint64_t off,
                   uint64_t maxlen, qi_run *run)
{
    const qi_geom *g = &img->g;
    uint64_t ci = off >> g->cluster_bits, l2_off;
    uint32_t l2i = (uint32_t)(ci & (g->l2_entries - 1));
    uint32_t ubits = g->extl2 ? g->cluster_bits - 5 : g->cluster_bits;
    uint64_t unit = 1ull << ubits, table_end;
    const uint8_t *t;
    int rc;

    table_end = ((ci >> g->l2_bits) + 1) << (g->l2_bits + g->cluster_bits);
    if (maxlen > table_end - off)
        maxlen = table_end - off;
    if ((rc = qi_cluster_l2_offset(img, v, ci >> g->l2_bits, &l2_off)) < 0)
        return rc;
    if (!l2_off) {
        *run = (qi_run){ .kind = QI_RUN_UNALLOC, .len = maxlen };
        return 0;
    }
    if ((rc = qi_cache_get(img->l2_cache, l2_off, &t, &img->err)) < 0)
        return rc;
    uint64_t pos = off;
    bool first = true;
    while (first || run->len < maxlen) {
        uint64_t where = l2_off + (uint64_t)g->l2_entry_size * l2i;
        qi_l2_entry e;
        qi_format_decode_l2(g, img->data_file != NULL, qi_be64(t + where - l2_off),
                            g->extl2 ? qi_be64(t + where - l2_off + 8) : 0, &e);
        if ((rc = validate_l2(img, &e, where)) < 0)
            break;
        unsigned nunits = g->extl2 ? 32 : 1;
        unsigned sc = (unsigned)((pos >> ubits) & (nunits - 1));
        for (; sc < nunits; sc++) {
            qi_run u;
            uint64_t delta = pos & (unit - 1);
            unit_state(img, &e, sc, &u);
            if (first) {
                *run = u;
                run->host = u.host + (u.has_host ? delta : 0);
                run->entry = e;
                run->len = 0;
                first = false;
            } else if (!same_run(run, &u)) {
                goto done;
            }
            if (u.kind == QI_RUN_COMPRESSED) /* whole cluster, any L2 kind */
                delta = pos & (g->cluster_size - 1), unit = g->cluster_size;
            run->len += unit - delta;
            pos += unit - delta;
            if (run->len >= maxlen || run->kind == QI_RUN_COMPRESSED)
                goto done;
        }
        if (++l2i == g->l2_entries)
            break;
    }
done:
    qi_cache_put(img->l2_cache, t);
    if (rc < 0)
        return rc;
    if (run->len > maxlen)
        run->len = maxlen;
    return 0;
}

int qi_cluster_set_l1(qi_image *img, uint64_t i, uint64_t raw)
{
    uint8_t be[8];
    int rc;
    qi_put_be64(be, raw);
    if ((rc = qi_bio_pwrite(img->file, be, 8, img->hdr.l1_table_offset + 8 * i,
                            &img->err, "L1 table")) < 0 ||
        (rc = qi_bio_sync(img->file, &img->err)) < 0)
        return rc;
    assert(img->l1 && i < img->l1->size);
    img->l1->e[i] = raw;    /* in place: views of this table see it */
    return 0;
}

/* The size QEMU picks for an L1 table that must hold MIN entries: exactly
 * MIN, or (not EXACT) the current size times 1.5 (rounded up) until it is
 * large enough, from 1 when the table is empty (qcow2_grow_l1_table). */
static uint64_t l1_grown_size(uint64_t cur, uint64_t min, bool exact)
{
    uint64_t n = cur ? cur : 1;
    if (exact)
        return min;
    while (n < min)
        n = (n * 3 + 1) / 2;
    return n;
}

/* The grown table of N entries: *NT in host order (one reference, its
 * offset set once known), *RAW its BYTES on disk (big endian, zeros to the
 * end of the last cluster); OLD's entries first. The caller drops and
 * frees both, also on failure. */
static int new_table(qi_image *img, const qi_l1tab *old, uint64_t n,
                     uint64_t bytes, qi_l1tab **nt, uint8_t **raw)
{
    int rc;
    *raw = NULL;
    if ((rc = new_tab(img, (uint32_t)n, 0, "L1 table", nt)) < 0)
        return rc;
    *raw = qi_mem_alloc_capped(bytes, 1, QI_MAX_L1_ENTRIES * 8 + img->g.cluster_size);
    if (!*raw)
        return qi_fail(img, QI_ENOMEM, "L1 table", img->hdr.l1_table_offset,
                       "out of memory");
    memset((*nt)->e, 0, 8 * n);
    memset(*raw, 0, bytes);
    for (uint64_t i = 0; i < old->size; i++) {
        (*nt)->e[i] = old->e[i];
        qi_put_be64(*raw + 8 * i, old->e[i]);
    }
    return 0;
}

/* Crash table (QEMU's order, docs/qcow2-format.md section 13 rule 5):
 *   1. allocate the new table's clusters (refcount 1), refcount blocks
 *      flushed and synced                  crash: leaked clusters
 *   2. the new table (old entries, zeros after), synced
 *                                          crash: leaked clusters
 *   3. header: l1_size and l1_table_offset in one 12-byte write at offset
 *      36, synced (image.c's commit)       crash: consistent, old table leaked
 *   4. the old table's clusters -1 (refcount cache)
 *                                          crash: consistent */
int qi_cluster_grow_l1(qi_image *img, uint64_t min_entries, bool exact)
{
    uint64_t cs = img->g.cluster_size, old_off = img->hdr.l1_table_offset;
    uint64_t old_n = img->hdr.l1_size, n, bytes, clusters, off;
    qi_l1tab *nt = NULL;
    uint8_t *raw = NULL;
    qi_l1view v;
    int rc;
    if (min_entries <= old_n)
        return 0;
    n = min_entries > QI_MAX_L1_ENTRIES ? min_entries : l1_grown_size(old_n, min_entries, exact);
    if (n > QI_MAX_L1_ENTRIES)
        return qi_fail(img, QI_ENOSPC, "L1 table", old_off, "an L1 table of %" PRIu64
                       " entries is beyond the limit of %u entries (32 MiB, as QEMU's)",
                       n, QI_MAX_L1_ENTRIES);
    if (!img->commit_header)
        return qi_fail(img, QI_ENOTSUP, "L1 table", old_off, "the L1 table would have "
                       "to grow to %" PRIu64 " entries", n);
    clusters = (8 * n + cs - 1) / cs;
    if ((rc = qi_cluster_view_active(img, &v)) < 0)
        return rc;
    bytes = clusters * cs;
    rc = new_table(img, v.tab, n, bytes, &nt, &raw);
    qi_cluster_view_put(img, &v);
    if (rc < 0)
        goto out;
    /* 1 */
    if ((rc = qi_refcount_alloc(img, clusters, &off)) < 0 ||
        (rc = qi_cache_flush(img->rb_cache, &img->err)) < 0)
        goto out;
    nt->off = off;
    /* 2 */
    if ((rc = qi_bio_pwrite(img->file, raw, bytes, off, &img->err, "L1 table")) < 0 ||
        (rc = qi_bio_sync(img->file, &img->err)) < 0)
        goto out;
    /* 3: image.c takes NT as the in-memory L1 when the header is on disk */
    img->hdr_req.what = QI_HDR_L1;
    img->hdr_req.l1_size = (uint32_t)n;
    img->hdr_req.l1_table_offset = off;
    img->hdr_req.l1 = nt;
    nt = NULL;
    rc = img->commit_header(img);
    nt = img->hdr_req.l1;       /* still ours if the commit failed */
    img->hdr_req.l1 = NULL;
    if (rc < 0)
        goto out;
    /* 4 (an empty table has no clusters: QEMU frees 0 bytes) */
    for (uint64_t i = 0; old_n && i < (8 * old_n + cs - 1) / cs && rc == 0; i++)
        rc = qi_refcount_update(img, (old_off >> img->g.cluster_bits) + i, -1);
out:
    qi_cluster_l1tab_drop(nt);
    free(raw);
    return rc;
}

int qi_cluster_l2_for_write(qi_image *img, uint64_t l1i, uint64_t *l2_off)
{
    qi_l1view v;
    uint64_t old, nw;
    uint8_t *t = NULL;
    const uint8_t *src;
    int rc;
    bool copied;
    if ((rc = qi_cluster_view_active(img, &v)) < 0)
        return rc;
    /* an index past the table (a size larger than the L1 maps): grow it as
     * QEMU does for a write, not to the exact size; growth replaces the
     * table, so the view is put first and taken again */
    if (l1i >= v.size) {
        qi_cluster_view_put(img, &v);
        if ((rc = qi_cluster_grow_l1(img, l1i + 1, false)) < 0 ||
            (rc = qi_cluster_view_active(img, &v)) < 0)
            return rc;
    }
    rc = qi_cluster_l2_offset(img, &v, l1i, &old);
    copied = rc == 0 && old && (v.tab->e[l1i] & QI_OFLAG_COPIED);
    qi_cluster_view_put(img, &v);
    if (rc < 0)
        return rc;
    if (copied) {
        *l2_off = old;
        return 0;
    }
    if ((rc = qi_refcount_alloc(img, 1, &nw)) < 0 ||
        (rc = qi_cache_get_empty(img->l2_cache, nw, &t, &img->err)) < 0)
        return rc;
    if (old) {
        if ((rc = qi_cache_get(img->l2_cache, old, &src, &img->err)) < 0) {
            qi_cache_put(img->l2_cache, t);
            return rc;
        }
        memcpy(t, src, img->g.cluster_size);
        qi_cache_put(img->l2_cache, src);
    }
    qi_cache_put(img->l2_cache, t);
    if ((rc = qi_cache_flush(img->l2_cache, &img->err)) < 0 ||
        (rc = qi_cluster_set_l1(img, l1i, qi_format_encode_l1(nw, true))) < 0)
        return rc;
    if (old && (rc = qi_refcount_update(img, old >> img->g.cluster_bits, -1)) < 0)
        return rc;
    *l2_off = nw;
    return 0;
}

static int set_entry(qi_image *img, uint64_t l2_off, uint32_t index, uint64_t raw,
                     const uint64_t *bitmap, uint64_t *old)
{
    uint8_t *t;
    int rc;
    if ((rc = qi_cache_get_mut(img->l2_cache, l2_off, &t, &img->err)) < 0)
        return rc;
    uint8_t *p = t + (size_t)img->g.l2_entry_size * index;
    *old = qi_be64(p);
    qi_put_be64(p, raw);
    if (bitmap) {
        assert(img->g.extl2);
        qi_put_be64(p + 8, *bitmap);
    }
    qi_cache_mark_dirty(img->l2_cache, t);
    qi_cache_put(img->l2_cache, t);
    return 0;
}

int qi_cluster_set_l2(qi_image *img, uint64_t l2_off, uint32_t index, uint64_t raw,
                      uint64_t *old)
{
    return set_entry(img, l2_off, index, raw, NULL, old);
}

int qi_cluster_set_l2_ext(qi_image *img, uint64_t l2_off, uint32_t index, uint64_t raw,
                          uint64_t bitmap)
{
    uint64_t old;
    return set_entry(img, l2_off, index, raw, img->g.extl2 ? &bitmap : NULL, &old);
}

/* Crash table (QEMU's qcow2_shrink_l1_table; l1_size in the header stays):
 *   1. entries N.. of the table on disk zeroed, synced
 *                                      crash: consistent, their L2 tables
 *                                      leaked
 *   2. those L2 tables -1 (refcount cache), freed ones discarded
 *                                      crash: consistent */
int qi_cluster_shrink_l1(qi_image *img, uint64_t n)
{
    uint64_t size = img->hdr.l1_size;
    uint8_t *zeros;
    qi_l1view v;
    int rc;
    if (n >= size)
        return 0;
    if ((rc = qi_cluster_view_active(img, &v)) < 0)
        return rc;
    if (!(zeros = calloc(size - n, 8))) {
        qi_cluster_view_put(img, &v);
        return qi_fail(img, QI_ENOMEM, "L1 table", img->hdr.l1_table_offset, "out of memory");
    }
    rc = qi_bio_pwrite(img->file, zeros, 8 * (size - n), img->hdr.l1_table_offset + 8 * n,
                       &img->err, "L1 table");
    free(zeros);
    if (rc == 0)
        rc = qi_bio_sync(img->file, &img->err);
    for (uint64_t i = size; i-- > n && rc == 0 && i < v.size;) {
        uint64_t l2 = v.tab->e[i] & QI_L1E_OFFSET_MASK, now;
        v.tab->e[i] = 0;
        if (!l2)
            continue;
        if ((rc = qi_refcount_update(img, l2 >> img->g.cluster_bits, -1)) < 0 ||
            (rc = qi_refcount_get(img, l2 >> img->g.cluster_bits, &now)) < 0 || now)
            continue;
        qi_cache_discard(img->l2_cache, l2);
        rc = qi_bio_discard(img->file, l2, img->g.cluster_size, &img->err, "freed L2 table");
    }
    qi_cluster_view_put(img, &v);
    return rc;
}
