/* snapshot.c - internal snapshots: create, apply, delete (layer 5).
 *
 * The semantics are QEMU 7.2's (block/qcow2-snapshot.c and
 * qcow2_update_snapshot_refcount in block/qcow2-refcount.c), learned from
 * its behaviour, and the file bytes come out the same as qemu-img's: the
 * same clusters allocated in the same order, the same bytes written (a
 * snapshot L1 table of exactly l1_size * 8 bytes, snapshot table entries
 * at 8-aligned places with the padding left unwritten), the same COPIED
 * flags. The order of the writes is not QEMU's where QEMU's leaves a window
 * in which COPIED is set on a cluster whose refcount is above 1: here COPIED
 * is cleared before a refcount goes up and set only after a refcount that
 * went down to 1 is on disk (STYLE convention 7). qemu-img check counts a
 * missing COPIED as a corruption too (it repairs it with -r all), and no
 * order avoids a moment with one of the two kinds, since COPIED and the
 * refcount live in different clusters: create (COPIED cleared, then the
 * refcounts raised) and delete (refcounts down to 1, then COPIED set) take
 * the safe kind (tests/crash: copied-ok); apply has no such moment. Each
 * operation's crash table is at its function.
 *
 * A tree is every host cluster an L1 table reaches: its L2 tables, the
 * standard and zero-allocated data clusters they point at, and for a
 * compressed cluster each host cluster its bytes touch, once per
 * reference (QEMU's counting). Trees are collected into a sorted vector
 * first, so that every refcount is checked before anything changes (the
 * width of 1- and 2-bit refcounts) and the refcount blocks are then
 * visited in order.
 * Calls: layers 0-4 (cluster, refcount, cache, bio, format, image). */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster.h"
#include "endian.h"
#include "mem.h"
#include "refcount.h"
#include "qi/snapshot.h"

/* at most 64 Mi references collected for one tree (512 MiB of memory) */
#define REFS_CAP ((size_t)512 << 20)
#define ENTRY_FIXED 40u     /* fixed part of a snapshot table entry */
#define EXTRA_QEMU 24u      /* the extra data QEMU 7.2 writes */

typedef struct refs {
    uint64_t *v;            /* host cluster indexes, sorted after collect */
    size_t n, cap;
} refs;

static int push(qi_image *img, refs *r, uint64_t ci)
{
    if (r->n == r->cap) {
        size_t cap = r->cap ? 2 * r->cap : 1024;
        uint64_t *p = qi_mem_alloc_capped(cap, sizeof *p, REFS_CAP);
        if (!p)
            return qi_fail(img, QI_ENOMEM, "", QI_NO_OFFSET, "out of memory "
                           "(more than %zu cluster references)", r->n);
        if (r->n)
            memcpy(p, r->v, r->n * sizeof *p);
        free(r->v);
        r->v = p;
        r->cap = cap;
    }
    r->v[r->n++] = ci;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The data clusters of the L2 table at L2_OFF, pushed onto R. */
static int collect_l2(qi_image *img, uint64_t l2_off, refs *r)
{
    const qi_geom *g = &img->g;
    const uint8_t *t;
    int rc;
    if ((rc = qi_cache_get(img->l2_cache, l2_off, &t, &img->err)) < 0)
        return rc;
    for (uint32_t j = 0; j < g->l2_entries && rc == 0; j++) {
        const uint8_t *p = t + (size_t)g->l2_entry_size * j;
        qi_l2_entry e;
        qi_format_decode_l2(g, img->data_file != NULL, qi_be64(p),
                            g->extl2 ? qi_be64(p + 8) : 0, &e);
        if (e.type == QI_CLUSTER_COMPRESSED) {
            uint64_t last = (e.host_offset + e.csize - 1) >> g->cluster_bits;
            for (uint64_t c = e.host_offset >> g->cluster_bits; c <= last && rc == 0; c++)
                rc = push(img, r, c);
        } else if (e.type == QI_CLUSTER_NORMAL || e.type == QI_CLUSTER_ZERO_ALLOC) {
            if (e.host_offset & (g->cluster_size - 1))
                rc = qi_corrupt(img, "L2 table", l2_off + (uint64_t)g->l2_entry_size * j,
                                "data cluster offset %#" PRIx64 " is not cluster "
                                "aligned", e.host_offset);
            else
                rc = push(img, r, e.host_offset >> g->cluster_bits);
        }
    }
    qi_cache_put(img->l2_cache, t);
    return rc;
}

/* The tree of the L1 table of view V, sorted into R (validated: L1 entries,
 * L2 tables inside the file, data clusters aligned). */
static int collect(qi_image *img, const qi_l1view *v, refs *r)
{
    int rc;
    for (uint32_t i = 0; i < v->size; i++) {
        uint64_t l2;
        if ((rc = qi_cluster_l2_offset(img, v, i, &l2)) < 0)
            return rc;
        if (l2 && ((rc = push(img, r, l2 >> img->g.cluster_bits)) < 0 ||
                   (rc = collect_l2(img, l2, r)) < 0))
            return rc;
    }
    if (r->n)
        qsort(r->v, r->n, sizeof *r->v, cmp_u64);
    return 0;
}

/* Every distinct cluster of sorted R with its number of references. */
static size_t run_end(const refs *r, size_t i)
{
    size_t j = i;
    while (j < r->n && r->v[j] == r->v[i])
        j++;
    return j;
}

/* Before anything changes: each cluster of R is counted (a reference to a
 * cluster of refcount 0 is corruption) and has room for its new references
 * within the refcount width. */
static int check_room(qi_image *img, const refs *r)
{
    uint64_t max = qi_format_refcount_max(img->g.refcount_order), old;
    int rc;
    for (size_t i = 0, j; i < r->n; i = j) {
        uint64_t host = r->v[i] << img->g.cluster_bits;
        j = run_end(r, i);
        if ((rc = qi_refcount_get(img, r->v[i], &old)) < 0)
            return rc;
        if (old == 0)
            return qi_corrupt(img, "refcount block", host, "cluster %#" PRIx64 " is in "
                              "use but its refcount is 0 (qemu-img check -r all)", host);
        if (max - old < j - i)
            return qi_fail(img, QI_ENOSPC, "refcount block", host, "the refcount of "
                           "cluster %#" PRIx64 " is %" PRIu64 " and would need %zu more: "
                           "beyond the %u-bit refcount maximum of %" PRIu64 "; nothing "
                           "was changed (qemu-img amend -o refcount_bits=16 widens them)",
                           host, old, j - i, 1u << img->g.refcount_order, max);
    }
    return 0;
}

/* Take COUNT references from host cluster CI (refcount cache). At 0 the
 * cluster is free: the L2 cache forgets it (an L2 table only the dropped
 * tree used, never written again) and its bytes are discarded as QEMU's
 * pass-discard-snapshot (on by default) does, a hole punched in the file.
 * The caller has removed every reference on disk before. */
static int drop_refs(qi_image *img, uint64_t ci, uint64_t count)
{
    uint64_t now, off = ci << img->g.cluster_bits;
    int rc;
    if ((rc = qi_refcount_update(img, ci, -(int64_t)count)) < 0 ||
        (rc = qi_refcount_get(img, ci, &now)) < 0 || now)
        return rc;
    qi_cache_discard(img->l2_cache, off);
    return qi_bio_discard(img->file, off, img->g.cluster_size, &img->err, "freed cluster");
}

/* Add SIGN (+1/-1) per reference in R to each cluster's refcount (refcount
 * cache); a decrement frees at 0 (drop_refs). */
static int add_refs(qi_image *img, const refs *r, int sign)
{
    int rc;
    for (size_t i = 0, j; i < r->n; i = j) {
        j = run_end(r, i);
        rc = sign > 0 ? qi_refcount_update(img, r->v[i], (int64_t)(j - i))
                      : drop_refs(img, r->v[i], j - i);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Refcount blocks, then L2 tables, each written back and synced: a
 * refcount that went down to 1 is on disk before a COPIED flag that relies
 * on it, whatever the caches' declared order (lazy refcounts drop it). */
static int sync_tables(qi_image *img)
{
    int rc;
    if ((rc = qi_cache_flush(img->rb_cache, &img->err)) < 0)
        return rc;
    return qi_cache_flush(img->l2_cache, &img->err);
}

/* COPIED on the entries of the L2 table at L2_OFF as QEMU's refcount pass
 * leaves it: set on a standard or zero-allocated entry whose cluster has
 * refcount 1, cleared everywhere else; CLEAR_ALL: cleared everywhere.
 * Through the L2 cache (marked dirty only if an entry changed). */
static int fix_l2(qi_image *img, uint64_t l2_off, bool clear_all)
{
    const qi_geom *g = &img->g;
    uint8_t *t;
    bool dirty = false;
    int rc;
    if ((rc = qi_cache_get_mut(img->l2_cache, l2_off, &t, &img->err)) < 0)
        return rc;
    for (uint32_t j = 0; j < g->l2_entries && rc == 0; j++) {
        uint8_t *p = t + (size_t)g->l2_entry_size * j;
        uint64_t raw = qi_be64(p), refc = 0, nw;
        qi_l2_entry e;
        qi_format_decode_l2(g, img->data_file != NULL, raw,
                            g->extl2 ? qi_be64(p + 8) : 0, &e);
        if (!clear_all && (e.type == QI_CLUSTER_NORMAL || e.type == QI_CLUSTER_ZERO_ALLOC))
            rc = qi_refcount_get(img, e.host_offset >> g->cluster_bits, &refc);
        nw = (raw & ~QI_OFLAG_COPIED) | (refc == 1 ? QI_OFLAG_COPIED : 0);
        if (nw != raw) {
            qi_put_be64(p, nw);
            dirty = true;
        }
    }
    if (dirty)
        qi_cache_mark_dirty(img->l2_cache, t);
    qi_cache_put(img->l2_cache, t);
    return rc;
}

/* fix_l2 on every L2 table of view V; with SURVIVORS, only on tables whose
 * refcount is above 0 (the others were freed with their tree). */
static int fix_tree(qi_image *img, const qi_l1view *v, bool clear_all, bool survivors)
{
    int rc;
    for (uint32_t i = 0; i < v->size; i++) {
        uint64_t l2, refc = 1;
        if ((rc = qi_cluster_l2_offset(img, v, i, &l2)) < 0)
            return rc;
        if (!l2)
            continue;
        if (survivors && (rc = qi_refcount_get(img, l2 >> img->g.cluster_bits, &refc)) < 0)
            return rc;
        if (refc && (rc = fix_l2(img, l2, clear_all)) < 0)
            return rc;
    }
    return 0;
}

/* Write the L1 table TAB (the active one, or a snapshot's: QEMU's pass
 * with addend +1 rewrites the table it walks): entries ENT (N of them, the
 * rest of the table zeros), each reduced to its L2 offset plus COPIED where
 * the L2 table's refcount is 1 (never with CLEAR_ALL), as QEMU's refcount
 * pass writes it. Written whole (size * 8 bytes), and with SYNC synced,
 * only if it differs from the table in memory, which then changes in place
 * (views of it see the change, as with qi_cluster_set_l1). */
static int write_l1(qi_image *img, qi_l1tab *tab, const uint64_t *ent, uint32_t n,
                    bool clear_all, bool sync)
{
    uint8_t *buf = NULL;
    uint64_t *nw = NULL;
    bool changed = false;
    int rc = 0;
    assert(n <= tab->size);
    buf = qi_mem_alloc_capped(tab->size ? tab->size : 1, 8, QI_MAX_L1_ENTRIES * 8);
    nw = qi_mem_alloc_capped(tab->size ? tab->size : 1, 8, QI_MAX_L1_ENTRIES * 8);
    if (!buf || !nw) {
        rc = qi_fail(img, QI_ENOMEM, "L1 table", tab->off, "out of memory");
        goto out;
    }
    for (uint32_t i = 0; i < tab->size && rc == 0; i++) {
        uint64_t raw = i < n ? ent[i] : 0, refc = 0;
        nw[i] = raw & QI_L1E_OFFSET_MASK;
        if (nw[i] && !clear_all)
            rc = qi_refcount_get(img, nw[i] >> img->g.cluster_bits, &refc);
        if (raw && refc == 1)
            nw[i] |= QI_OFLAG_COPIED;
        changed |= nw[i] != tab->e[i];
        qi_put_be64(buf + 8ull * i, nw[i]);
    }
    if (rc < 0 || !changed)
        goto out;
    if ((rc = qi_bio_pwrite(img->file, buf, 8ull * tab->size, tab->off, &img->err,
                            "L1 table")) < 0 ||
        (sync && (rc = qi_bio_sync(img->file, &img->err)) < 0))
        goto out;
    memcpy(tab->e, nw, 8ull * tab->size);
out:
    free(buf);
    free(nw);
    return rc;
}

/* write_l1 on the active table. */
static int write_active_l1(qi_image *img, const uint64_t *ent, uint32_t n, bool clear_all)
{
    qi_l1view v;
    int rc;
    if ((rc = qi_cluster_view_active(img, &v)) < 0)
        return rc;
    rc = write_l1(img, v.tab, ent, n, clear_all, true);
    qi_cluster_view_put(img, &v);
    return rc;
}

/* QEMU's pass with addend 0 over the active tables: COPIED where a
 * refcount is 1, on disk after the refcounts it relies on. */
static int fix_active(qi_image *img)
{
    qi_l1view v;
    int rc;
    if ((rc = qi_cluster_view_active(img, &v)) < 0)
        return rc;
    if ((rc = fix_tree(img, &v, false, false)) == 0 && (rc = sync_tables(img)) == 0)
        rc = write_l1(img, v.tab, v.tab->e, v.size, false, true);
    qi_cluster_view_put(img, &v);
    return rc;
}

/* ---- the snapshot table ---- */

/* Entry S as QEMU 7.2's qcow2_write_snapshots writes it: the 32-bit VM
 * state size only if it fits, at least the 24 bytes of extra data (disk
 * size: the virtual size when the entry had none; icount: -1 when it had
 * none), unknown extra data kept (read from the old entry), id and name up
 * to their first NUL. *out (LEN bytes) is the caller's to free. */
static int entry_bytes(qi_image *img, const qi_snapshot *s, uint8_t **out, size_t *len)
{
    uint32_t ext = s->extra_data_size > EXTRA_QEMU ? s->extra_data_size : EXTRA_QEMU;
    size_t idl = strlen(s->id), nl = strlen(s->name), n = ENTRY_FIXED + ext + idl + nl;
    uint8_t *b;
    int rc = 0;
    *out = NULL;
    if (idl > UINT16_MAX || nl > UINT16_MAX)
        return qi_fail(img, QI_EINVAL, "snapshot table", QI_NO_OFFSET, "snapshot id or "
                       "name longer than 65535 bytes");
    if (!(b = calloc(1, n)))
        return qi_fail(img, QI_ENOMEM, "snapshot table", QI_NO_OFFSET, "out of memory");
    qi_put_be64(b, s->l1_table_offset);
    qi_put_be32(b + 8, s->l1_size);
    qi_put_be16(b + 12, (uint16_t)idl);
    qi_put_be16(b + 14, (uint16_t)nl);
    qi_put_be32(b + 16, s->date_sec);
    qi_put_be32(b + 20, s->date_nsec);
    qi_put_be64(b + 24, s->vm_clock_nsec);
    qi_put_be32(b + 32, s->vm_state_size <= UINT32_MAX ? (uint32_t)s->vm_state_size : 0);
    qi_put_be32(b + 36, ext);
    qi_put_be64(b + 40, s->vm_state_size);
    qi_put_be64(b + 48, s->has_disk_size ? s->disk_size : img->size);
    qi_put_be64(b + 56, s->has_icount ? s->icount : UINT64_MAX);
    if (s->extra_data_size > EXTRA_QEMU)
        rc = qi_bio_pread(img->file, b + ENTRY_FIXED + EXTRA_QEMU, ext - EXTRA_QEMU,
                          s->entry_offset + ENTRY_FIXED + EXTRA_QEMU, &img->err,
                          "snapshot table");
    memcpy(b + ENTRY_FIXED + ext, s->id, idl);
    memcpy(b + ENTRY_FIXED + ext + idl, s->name, nl);
    if (rc < 0) {
        free(b);
        return rc;
    }
    *out = b;
    *len = n;
    return 0;
}

/* Bytes of the table on disk without the last entry's padding (QEMU's
 * snapshots_size: what it frees), from the last entry's own lengths. */
static int old_table_len(qi_image *img, uint64_t *len)
{
    uint8_t h[ENTRY_FIXED];
    const qi_snapshot *last;
    int rc;
    *len = 0;
    if (!img->n_snaps)
        return 0;
    last = &img->snaps[img->n_snaps - 1];
    if ((rc = qi_bio_pread(img->file, h, sizeof h, last->entry_offset, &img->err,
                           "snapshot table")) < 0)
        return rc;
    *len = last->entry_offset - img->hdr.snapshots_offset + ENTRY_FIXED +
           qi_be32(h + 36) + qi_be16(h + 12) + qi_be16(h + 14);
    return 0;
}

typedef struct table {
    uint32_t n;
    uint8_t **e;            /* serialized entries */
    size_t *len;
    uint64_t *pos;          /* 8-aligned place in the table */
    uint64_t size;          /* end of the last entry */
} table;

static void table_free(table *t)
{
    for (uint32_t i = 0; t->e && i < t->n; i++)
        free(t->e[i]);
    free(t->e);
    free(t->len);
    free(t->pos);
}

/* The new table: every entry but SKIP (UINT32_MAX: none), then ADD (NULL:
 * none). */
static int table_make(qi_image *img, uint32_t skip, const qi_snapshot *add, table *t)
{
    uint32_t n = img->n_snaps - (skip < img->n_snaps) + (add != NULL), k = 0;
    int rc = 0;
    memset(t, 0, sizeof *t);
    t->e = calloc(n ? n : 1, sizeof *t->e);
    t->len = calloc(n ? n : 1, sizeof *t->len);
    t->pos = calloc(n ? n : 1, sizeof *t->pos);
    if (!t->e || !t->len || !t->pos)
        return qi_fail(img, QI_ENOMEM, "snapshot table", QI_NO_OFFSET, "out of memory");
    t->n = n;
    for (uint32_t i = 0; i <= img->n_snaps && rc == 0; i++) {
        const qi_snapshot *s = i < img->n_snaps ? &img->snaps[i] : add;
        if (i == skip || !s)
            continue;
        if ((rc = entry_bytes(img, s, &t->e[k], &t->len[k])) < 0)
            break;
        t->pos[k] = (t->size + 7) & ~7ull;
        t->size = t->pos[k] + t->len[k];
        k++;
    }
    if (rc == 0 && t->size > QI_MAX_SNAPSHOTS_SIZE)
        rc = qi_fail(img, QI_ENOSPC, "snapshot table", QI_NO_OFFSET, "a snapshot table "
                     "of %" PRIu64 " bytes is beyond QEMU's limit of 64 MiB", t->size);
    return rc;
}

/* Replace the snapshot table by one without entry SKIP and with ADD
 * appended (QEMU's qcow2_write_snapshots). Crash table:
 *   1. the new table's clusters allocated (refcount 1), refcount blocks
 *      written (with every refcount change the caller left in the cache)
 *   2. each entry written at its 8-aligned place (QEMU leaves the padding
 *      unwritten); 1 and 2 synced together: nothing points at the new
 *      clusters before step 3, so either order on disk is
 *                                               crash: leaked clusters
 *   3. header: nb_snapshots and snapshots_offset in one 12-byte synced
 *      write (image.c reads the new table into img->snaps)
 *                                               crash: consistent, the old
 *                                               table leaked
 *   4. the old table's clusters -1 (refcount cache; the caller syncs)
 *                                               crash: consistent
 * An empty table takes no cluster: its offset is where the allocator
 * would look next, as QEMU's allocation of 0 bytes answers. */
static int write_table(qi_image *img, uint32_t skip, const qi_snapshot *add)
{
    uint64_t cs = img->g.cluster_size, off = img->free_hint << img->g.cluster_bits;
    uint64_t old_off = img->hdr.snapshots_offset, old_len;
    table t;
    int rc;
    if ((rc = table_make(img, skip, add, &t)) < 0 || (rc = old_table_len(img, &old_len)) < 0)
        goto out;
    /* 1 */
    if (t.size && (rc = qi_refcount_alloc(img, (t.size + cs - 1) / cs, &off)) < 0)
        goto out;
    if ((rc = qi_cache_write(img->rb_cache, &img->err)) < 0)
        goto out;
    /* 2 */
    for (uint32_t i = 0; i < t.n; i++)
        if ((rc = qi_bio_pwrite(img->file, t.e[i], t.len[i], off + t.pos[i], &img->err,
                                "snapshot table")) < 0)
            goto out;
    if ((rc = qi_bio_sync(img->file, &img->err)) < 0)
        goto out;
    /* 3 */
    img->hdr_req.what = QI_HDR_SNAPSHOTS;
    img->hdr_req.nb_snapshots = t.n;
    img->hdr_req.snapshots_offset = off;
    if ((rc = img->commit_header(img)) < 0)
        goto out;
    /* 4 */
    for (uint64_t c = old_off >> img->g.cluster_bits;
         old_len && c <= (old_off + old_len - 1) >> img->g.cluster_bits && rc == 0; c++)
        rc = drop_refs(img, c, 1);
out:
    table_free(&t);
    return rc;
}

/* ---- checks shared by the operations ---- */

static int can_write(qi_image *img)
{
    int rc;
    if (img->raw)
        return qi_fail(img, QI_ENOTSUP, "", QI_NO_OFFSET, "a raw image has no internal "
                       "snapshots");
    if (!img->writable)
        return qi_fail(img, QI_ERDONLY, "", QI_NO_OFFSET, "image opened read-only; "
                       "reopen it with -w to write");
    if ((rc = qi_image_write_state(img)) < 0)
        return rc;
    if (img->hdr.incompatible_features & QI_INCOMPAT_DATA_FILE)
        return qi_fail(img, QI_ENOTSUP, "", QI_NO_OFFSET, "internal snapshots of an "
                       "image with an external data file are not supported (QEMU "
                       "refuses them too: Operation not supported)");
    if (img->corrupt_seen)
        return qi_fail(img, QI_ECORRUPT, "", QI_NO_OFFSET, "the image was found corrupt "
                       "earlier in this session; no further writes");
    if (!img->commit_header)
        return qi_fail(img, QI_ENOTSUP, "header", 60, "header changes are not possible");
    return qi_image_flush(img);
}

int qi_snapshot_find(qi_image *img, const char *key, unsigned how, uint32_t *index)
{
    for (int pass = 0; pass < 2; pass++) {
        if (!(how & (pass ? QI_SNAP_BY_NAME : QI_SNAP_BY_ID)))
            continue;
        for (uint32_t i = 0; i < img->n_snaps; i++)
            if (!strcmp(pass ? img->snaps[i].name : img->snaps[i].id, key)) {
                *index = i;
                return 0;
            }
    }
    return qi_fail(img, QI_ENOENT, "snapshot table", QI_NO_OFFSET, "snapshot '%s' not "
                   "found", key);
}

/* After an operation: the compressed scratch may name a freed cluster. */
static void forget_derived(qi_image *img)
{
    img->cbuf_off = 0;
}

/* ---- create ---- */

/* The new entry: QEMU's next id (one more than the largest id read as a
 * number), the date now in microseconds (qemu-img takes gettimeofday). */
static void new_entry(qi_image *img, const char *name, uint64_t l1_off, uint32_t l1_size,
                      qi_snapshot *s, char *id, size_t idn)
{
    unsigned long max = 0;
    struct timespec ts;
    for (uint32_t i = 0; i < img->n_snaps; i++) {
        unsigned long v = strtoul(img->snaps[i].id, NULL, 10);
        if (v > max)
            max = v;
    }
    snprintf(id, idn, "%lu", max + 1);
    clock_gettime(CLOCK_REALTIME, &ts);
    *s = (qi_snapshot){
        .l1_table_offset = l1_off, .l1_size = l1_size, .id = id, .name = (char *)name,
        .date_sec = (uint32_t)ts.tv_sec, .date_nsec = (uint32_t)(ts.tv_nsec / 1000 * 1000),
        .extra_data_size = EXTRA_QEMU, .has_disk_size = true, .disk_size = img->size,
        .has_icount = true, .icount = 0,
    };
}

/* The snapshot's copy of the active L1 as it is now (entries as they are,
 * COPIED included, as QEMU copies them): l1_size * 8 bytes in *BUF (the
 * caller frees it; NULL for an empty table). */
static int l1_image(qi_image *img, const qi_l1view *v, uint8_t **buf)
{
    *buf = NULL;
    if (!v->size)
        return 0;
    if (!(*buf = qi_mem_alloc_capped(v->size, 8, QI_MAX_L1_ENTRIES * 8)))
        return qi_fail(img, QI_ENOMEM, "L1 table", v->l1_off, "out of memory");
    for (uint32_t i = 0; i < v->size; i++)
        qi_put_be64(*buf + 8ull * i, v->tab->e[i]);
    return 0;
}

/* The copy BUF of an L1 table of SIZE entries: its clusters allocated (in
 * the refcount cache) and the copy written at *OFF, not synced (nothing
 * points at it yet: the sync of write_table's step 2 covers it). */
static int copy_l1(qi_image *img, const uint8_t *buf, uint32_t size, uint64_t *off)
{
    uint64_t cs = img->g.cluster_size, bytes = 8ull * size;
    int rc;
    *off = img->free_hint << img->g.cluster_bits;
    if (!bytes)
        return 0;
    if ((rc = qi_refcount_alloc(img, (bytes + cs - 1) / cs, off)) < 0)
        return rc;
    return qi_bio_pwrite(img->file, buf, bytes, *off, &img->err, "snapshot L1 table");
}

/* Step 1 of create: COPIED cleared on the active L2 tables and L1, all
 * written, one sync (the refcount cache is clean: can_write flushed it,
 * so the L2 tables do not wait for it). */
static int clear_copied(qi_image *img, qi_l1view *v)
{
    int rc;
    if ((rc = fix_tree(img, v, true, false)) < 0 ||
        (rc = qi_cache_write(img->l2_cache, &img->err)) < 0 ||
        (rc = write_l1(img, v->tab, v->tab->e, v->size, true, false)) < 0)
        return rc;
    return qi_bio_sync(img->file, &img->err);
}

/* Crash table (four syncs; qemu-img snapshot -c makes eight):
 *   0. the active tree collected, every refcount checked, the active L1
 *      copied in memory (nothing written)
 *   1. COPIED cleared in the active L2 tables and the active L1, written,
 *      one sync                                crash: consistent (COPIED
 *                                              missing is allowed)
 *   2. the snapshot's L1 copy: clusters allocated (refcount 1), the copy
 *      written; every cluster of the active tree +1 per reference (in the
 *      cache); both reach the disk with the new table's allocation and
 *      entries, under one sync (write_table steps 1-2), after step 1's
 *      sync: a refcount of 2 never meets a COPIED flag on disk
 *                                              crash: leaks (refcounts
 *                                              above the references)
 *   3. the header switch to the new table (write_table step 3)
 *                                              crash: consistent with the
 *                                              snapshot, old table leaked
 *   4. the old table -1, refcount blocks synced crash: consistent */
int qi_snapshot_create(qi_image *img, const char *name)
{
    qi_l1view v = { 0 };
    refs r = { 0 };
    qi_snapshot s;
    char id[24];
    uint64_t l1_off;
    uint8_t *copy = NULL;
    int rc;
    if ((rc = can_write(img)) < 0)
        return rc;
    if (strlen(name) > UINT16_MAX)
        return qi_fail(img, QI_EINVAL, "", QI_NO_OFFSET, "a snapshot name is at most "
                       "65535 bytes");
    if (img->n_snaps >= QI_MAX_SNAPSHOTS)
        return qi_fail(img, QI_ENOSPC, "snapshot table", img->hdr.snapshots_offset,
                       "the image has 65536 snapshots, QEMU's limit");
    if ((rc = qi_cluster_view_active(img, &v)) < 0)
        return rc;
    /* 0 */
    if ((rc = collect(img, &v, &r)) < 0 || (rc = check_room(img, &r)) < 0 ||
        (rc = l1_image(img, &v, &copy)) < 0)
        goto out;
    /* 1 */
    if ((rc = clear_copied(img, &v)) < 0)
        goto out;
    /* 2 (synced by write_table), 3 */
    if ((rc = copy_l1(img, copy, v.size, &l1_off)) < 0 || (rc = add_refs(img, &r, +1)) < 0)
        goto out;
    new_entry(img, name, l1_off, v.size, &s, id, sizeof id);
    if ((rc = write_table(img, UINT32_MAX, &s)) < 0)
        goto out;
    /* 4 */
    rc = sync_tables(img);
out:
    free(copy);
    free(r.v);
    qi_cluster_view_put(img, &v);
    forget_derived(img);
    return rc;
}

/* ---- apply ---- */

/* The virtual size and the active L1 made ready for snapshot SV of disk
 * size SIZE, as QEMU's qcow2_snapshot_goto: the image grows or shrinks to
 * SIZE (qi_image_resize, its own crash table; a shrink discards the active
 * clusters past SIZE first), the L1 grows to the snapshot's size
 * (qi_cluster_grow_l1). */
static int prepare_apply(qi_image *img, uint64_t size, uint32_t l1_size)
{
    int rc;
    if (size != img->size && (rc = qi_image_resize(img, size)) < 0)
        return rc;
    return qi_cluster_grow_l1(img, l1_size, true);
}

/* A copy of the entries of view AV in T (a table of its own, freed by
 * the caller with free(T->e)); AV is put and becomes a view of T. */
static int keep_entries(qi_image *img, qi_l1view *av, qi_l1tab *t)
{
    *t = (qi_l1tab){ .size = av->size, .off = av->l1_off, .refs = 1 };
    if (av->size && !(t->e = qi_mem_alloc_capped(av->size, 8, QI_MAX_L1_ENTRIES * 8)))
        return qi_fail(img, QI_ENOMEM, "L1 table", av->l1_off, "out of memory");
    if (av->size)
        memcpy(t->e, av->tab->e, 8ull * av->size);
    qi_cluster_view_put(img, av);
    *av = (qi_l1view){ .tab = t, .size = t->size, .l1_off = t->off };
    return 0;
}

/* Crash table (QEMU's qcow2_snapshot_goto, with COPIED set last):
 *   1. the image grown or shrunk to the snapshot's disk size, the active
 *      L1 grown to its L1 size (their own crash tables)  crash: consistent
 *   2. the snapshot's tree +1 per reference, refcount blocks synced
 *                                              crash: leaks
 *   3. COPIED fixed in the snapshot's L2 tables and L1 table (cleared:
 *      they are shared now), after the refcount blocks   crash: leaks
 *   4. the active L1 takes the snapshot's entries (COPIED clear), written
 *      whole and synced                        crash: consistent, new state,
 *                                              the old tree leaked
 *   5. the old active tree -1 per reference (freed at 0), refcount blocks
 *      synced; COPIED fixed on its surviving L2 tables (inactive now)
 *                                              crash: consistent
 *   6. COPIED set in the active L2 tables and L1 where a refcount is 1,
 *      after the refcount blocks               crash: consistent */
int qi_snapshot_apply(qi_image *img, const char *id_or_name)
{
    qi_l1view sv = { 0 }, av = { 0 };
    qi_l1tab old = { 0 };
    refs rs = { 0 }, ro = { 0 };
    uint32_t idx;
    uint64_t size;
    int rc;
    if ((rc = can_write(img)) < 0 ||
        (rc = qi_snapshot_find(img, id_or_name, QI_SNAP_BY_ID | QI_SNAP_BY_NAME, &idx)) < 0)
        return rc;
    /* QEMU's bdrv_snapshot_goto refuses while any bitmap is loaded */
    if (img->n_bitmaps)
        return qi_fail(img, QI_EBUSY, "", QI_NO_OFFSET, "Device has active dirty bitmaps "
                       "(QEMU refuses to apply a snapshot to an image with persistent "
                       "bitmaps: they would not match the reverted data)");
    size = img->snaps[idx].has_disk_size ? img->snaps[idx].disk_size : img->size;
    if ((rc = qi_cluster_view_snapshot(img, idx, &sv)) < 0)
        return rc;
    /* 1 */
    if ((rc = prepare_apply(img, size, sv.size)) < 0)
        goto out;
    if ((rc = collect(img, &sv, &rs)) < 0 || (rc = check_room(img, &rs)) < 0 ||
        (rc = qi_cluster_view_active(img, &av)) < 0 || (rc = collect(img, &av, &ro)) < 0)
        goto out;
    /* 2, 3 */
    if ((rc = add_refs(img, &rs, +1)) < 0 || (rc = fix_tree(img, &sv, false, false)) < 0 ||
        (rc = sync_tables(img)) < 0 ||
        (rc = write_l1(img, sv.tab, sv.tab->e, sv.size, false, true)) < 0)
        goto out;
    /* 4: the old active entries are kept in OLD (the table changes in place) */
    if ((rc = keep_entries(img, &av, &old)) < 0 ||
        (rc = write_active_l1(img, sv.tab->e, sv.size, true)) < 0)
        goto out;
    /* 5 */
    if ((rc = add_refs(img, &ro, -1)) < 0 ||
        (rc = qi_cache_flush(img->rb_cache, &img->err)) < 0 ||
        (rc = fix_tree(img, &av, false, true)) < 0)
        goto out;
    rc = fix_active(img);
out:
    if (av.tab == &old)
        av.tab = NULL;
    free(old.e);
    if (av.tab)
        qi_cluster_view_put(img, &av);
    if (sv.tab)
        qi_cluster_view_put(img, &sv);
    free(rs.v);
    free(ro.v);
    forget_derived(img);
    return rc;
}

/* ---- delete ---- */

/* Crash table (QEMU's qcow2_snapshot_delete, with COPIED set last):
 *   0. the snapshot's tree collected and validated (nothing written)
 *   1. the snapshot table without the entry (write_table: allocate, write,
 *      header switch, old table -1)            crash: leaks, or consistent
 *                                              without the snapshot (its
 *                                              tree leaked)
 *   2. the snapshot's tree -1 per reference (freed at 0), its L1 table's
 *      clusters -1, refcount blocks synced     crash: consistent
 *   3. COPIED fixed on the snapshot's surviving L2 tables and on the active
 *      tables (set where a refcount is now 1), after the refcount blocks
 *                                              crash: consistent */
int qi_snapshot_delete_at(qi_image *img, uint32_t index)
{
    qi_l1view sv = { 0 };
    refs rs = { 0 };
    uint64_t l1_off, l1_bytes, cb = img->g.cluster_bits;
    int rc;
    if ((rc = can_write(img)) < 0)
        return rc;
    if (index >= img->n_snaps)
        return qi_fail(img, QI_ENOENT, "snapshot table", QI_NO_OFFSET, "no snapshot with "
                       "index %" PRIu32, index);
    if ((rc = qi_cluster_view_snapshot(img, index, &sv)) < 0)
        return rc;
    l1_off = sv.l1_off;
    l1_bytes = 8ull * sv.size;
    /* 0, 1 */
    if ((rc = collect(img, &sv, &rs)) < 0 || (rc = write_table(img, index, NULL)) < 0)
        goto out;
    /* 2: SV keeps the snapshot's L1 entries in memory after its entry went */
    if ((rc = add_refs(img, &rs, -1)) < 0)
        goto out;
    for (uint64_t c = l1_off >> cb; l1_bytes && c <= (l1_off + l1_bytes - 1) >> cb; c++)
        if ((rc = drop_refs(img, c, 1)) < 0)
            goto out;
    if ((rc = qi_cache_flush(img->rb_cache, &img->err)) < 0)
        goto out;
    /* 3 */
    if ((rc = fix_tree(img, &sv, false, true)) < 0)
        goto out;
    rc = fix_active(img);
out:
    qi_cluster_view_put(img, &sv);
    free(rs.v);
    forget_derived(img);
    return rc;
}

int qi_snapshot_delete(qi_image *img, const char *id_or_name)
{
    uint32_t idx;
    int rc;
    if (img->raw)
        return can_write(img);
    if ((rc = qi_snapshot_find(img, id_or_name, QI_SNAP_BY_ID | QI_SNAP_BY_NAME, &idx)) < 0)
        return rc;
    return qi_snapshot_delete_at(img, idx);
}
