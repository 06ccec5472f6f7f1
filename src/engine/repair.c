/* repair.c - qemu-img check -r leaks|all, in crash-safe order (layer 5).
 *
 * The facts are QEMU 7.2's (block/qcow2-refcount.c: qcow2_check_refcounts,
 * check_refcounts_l2's fix of unaligned preallocated entries,
 * compare_refcounts, rebuild_refcount_structure, check_oflag_copied, and
 * qcow2_co_check_locked's clearing of the dirty and corrupt bits); the
 * order of the writes is ours. The counting is check.c's (qi_check_count);
 * this file only decides from its findings and counts, and writes. Every
 * write goes straight to the file (bio), each step synced before the next;
 * the caches were written back before the first count and are dropped at
 * the end (qi_image_reload_header), so nothing stale survives.
 *
 * Order and crash table (every row: the image as qemu-img check sees it
 * after a crash at that step; "as before" = the damage being repaired,
 * nothing new):
 *   0. (all) unaligned preallocated-zero L2 entries -> zero clusters, L2
 *      entries past the end of the file -> zero clusters, synced
 *                                  crash: as before or fewer; the clusters
 *                                  they counted in are leaked
 *   1a. damaged refcount structures (all): new blocks and table written
 *      past everything referenced, synced
 *                                  crash: as before (an unused tail)
 *   1b. header: refcount table offset and size in one write, synced
 *                                  crash: consistent, exact refcounts
 *   1'. else: refcounts too low raised (all), synced
 *                                  crash: as before minus the raised ones
 *   2. COPIED cleared where the refcount will be above 1, synced
 *                                  crash: COPIED missing at refcount 1 at
 *                                  most (the safe direction: copy on write)
 *   3. refcounts too high lowered to the references (leaks, all), synced
 *                                  crash: leaks, COPIED missing at most
 *   4. COPIED set where the refcount is 1 (never on a dedup image), synced
 *                                  crash: consistent
 *   5. dirty and corrupt bits cleared when the check is clean, synced
 * COPIED and the refcount live in different clusters, so one moment with
 * COPIED missing at refcount 1 cannot be avoided where a repair lowers a
 * refcount to 1; it is the direction that never writes in place.
 * Calls: check (counting), format, bio, mem, image (header commit). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "endian.h"
#include "mem.h"

typedef struct rp {
    qi_image *img;
    const qi_geom *g;
    unsigned flags;
    qi_finding *v;              /* the repair pass's findings */
    size_t n, cap;
    int64_t cfix, lfix;
    uint32_t *count;            /* references per host cluster */
    uint64_t nc;
    uint8_t *buf;               /* one cluster */
    bool dedup, wrote;
    uint64_t keep[16][2];       /* -r leaks: host ranges read through an
                                 * entry QEMU does not count; not freed */
    size_t n_keep;
} rp;

static qi_finding *add(rp *p, const qi_finding *from)
{
    if (p->n == p->cap) {
        size_t nc = p->cap ? p->cap * 2 : 16;
        qi_finding *v = realloc(p->v, nc * sizeof *v);
        if (!v)
            return NULL;
        p->v = v;
        p->cap = nc;
    }
    qi_finding *f = &p->v[p->n++];
    if (from) {
        *f = *from;
    } else {
        memset(f, 0, sizeof *f);
        f->guest_offset = QI_NO_GUEST;
    }
    return f;
}

/* Mark F fixed, WHAT saying how (its qemu line stays the one of the check:
 * the CLI prints qemu-img's "Repairing" form of it). */
static void fixed(qi_finding *f, const char *what)
{
    if (!f)
        return;
    f->fixed = true;
    snprintf(f->fix, sizeof f->fix, "%s", what);
}

static uint64_t refs(const rp *p, uint64_t off)
{
    uint64_t k = off >> p->g->cluster_bits;
    return k < p->nc ? p->count[k] : 0;
}

static int put64(rp *p, uint64_t off, uint64_t v, const char *st)
{
    uint8_t b[8];
    qi_put_be64(b, v);
    p->wrote = true;
    return qi_bio_pwrite(p->img->file, b, 8, off, &p->img->err, st);
}

static int sync_file(rp *p)
{
    return p->wrote ? qi_bio_sync(p->img->file, &p->img->err) : 0;
}

static int recount(rp *p, qi_check_result *r, bool no_refstruct)
{
    free(p->count);
    p->count = NULL;
    qi_check_result_free(r);
    return qi_check_count(p->img, r, no_refstruct, &p->count, &p->nc);
}

/* ---- step 0: entries that cannot stay ---- */

/* The entry of finding F past the end of the file, made a zero cluster (it
 * reads as zeros, as QEMU reads past the end of the file). */
static int zero_past_eof(rp *p, const qi_finding *f)
{
    qi_image *img = p->img;
    qi_finding *n;
    int rc;
    if (img->hdr.version < 3 && img->backing_name)
        return 0;       /* unallocated would show the backing file: kept */
    if (p->g->extl2)
        rc = put64(p, f->offset + 8, 0xffffffff00000000ull, "L2 entry");
    else
        rc = 0;
    if (rc < 0 || (rc = put64(p, f->offset, img->hdr.version >= 3 && !p->g->extl2
                              ? QI_OFLAG_ZERO : 0, "L2 entry")) < 0)
        return rc;
    if ((n = add(p, f))) {
        char what[160];
        snprintf(what, sizeof what, "guest bytes %#" PRIx64 "+%#" PRIx64 " pointed past the "
                 "end of the file and read as zeros: their data was already lost; now a "
                 "zero cluster", f->guest_offset, f->guest_length);
        fixed(n, what);
    }
    p->cfix++;
    return 0;
}

static bool needs_rebuild(const qi_check_result *r);

/* May step 0 write into the L2 table holding the entry at SITE? Never in
 * the header cluster (an L1 entry with only reserved bits makes cluster 0
 * an "L2 table"), and only in a table nothing else references (an L1 entry
 * pointing at a data cluster or other metadata makes that an "L2 table"
 * too: writing into it destroys what is really there), unless the refcount
 * structures it overlaps are rebuilt anyway. Else the entry is left as
 * qemu-img leaves it. */
static bool may_write_table(const rp *p, const qi_check_result *r, uint64_t site)
{
    uint64_t k = site >> p->g->cluster_bits;
    if (!k)
        return false;
    return (p->count && k < p->nc && p->count[k] == 1) || needs_rebuild(r);
}

static int fix_entries(rp *p, const qi_check_result *r, bool *changed)
{
    int rc;
    *changed = false;
    for (size_t i = 0; i < r->n_findings; i++) {
        const qi_finding *f = &r->findings[i];
        if ((f->code == QI_PROB_DATA_UNALIGNED || f->code == QI_PROB_COMPRESSED_BITMAP ||
             f->code == QI_PROB_PAST_EOF) && !may_write_table(p, r, f->offset))
            continue;
        if (f->code == QI_PROB_DATA_UNALIGNED && strstr(f->qemu, "Preallocated")) {
            if ((rc = put64(p, f->offset, p->g->extl2 ? 0 : QI_OFLAG_ZERO, "L2 entry")) < 0)
                return rc;
            fixed(add(p, f), "now a zero cluster (reads as zeros, as before)");
            p->cfix++;
            *changed = true;
        } else if (f->code == QI_PROB_COMPRESSED_BITMAP) {
            /* QEMU reads the cluster and ignores the bitmap, but does not
             * count the reference: its -r all frees the cluster and the
             * next allocation overwrites the data. The bitmap of a
             * compressed entry must be 0: clearing it keeps the data. */
            if ((rc = put64(p, f->offset + 8, 0, "L2 entry")) < 0)
                return rc;
            fixed(add(p, f), "subcluster bitmap cleared: the compressed data is kept and "
                  "counted (qemu-img -r all frees its cluster, and the data is lost)");
            p->cfix++;
            *changed = true;
        } else if (f->code == QI_PROB_PAST_EOF && f->structure &&
                   !strcmp(f->structure, "L2 entry")) {
            if ((rc = zero_past_eof(p, f)) < 0)
                return rc;
            *changed = true;
        }
    }
    return sync_file(p);
}

/* ---- step 1: refcounts ---- */

static bool needs_rebuild(const qi_check_result *r)
{
    for (size_t i = 0; i < r->n_findings; i++)
        switch (r->findings[i].code) {
        case QI_PROB_REFTABLE_RESERVED: case QI_PROB_REFBLOCK_UNALIGNED:
        case QI_PROB_REFBLOCK_REFCOUNT: case QI_PROB_REFBLOCK_PAST_EOF:
        case QI_PROB_REFCOUNT_ZERO:
            return true;
        default:
            break;
        }
    return false;
}

/* -r leaks: the host ranges of compressed entries with a bitmap (readable,
 * not counted by QEMU) are noted so that their clusters are not freed. */
static int note_kept(rp *p, const qi_check_result *r)
{
    qi_image *img = p->img;
    int rc;
    for (size_t i = 0; i < r->n_findings && p->n_keep < 16; i++) {
        const qi_finding *f = &r->findings[i];
        uint8_t b[16];
        qi_l2_entry e;
        if (f->code != QI_PROB_COMPRESSED_BITMAP)
            continue;
        if ((rc = qi_bio_pread(img->file, b, 16, f->offset, &img->err, "L2 entry")) < 0)
            return rc;
        qi_format_decode_l2(p->g, false, qi_be64(b), 0, &e);
        p->keep[p->n_keep][0] = e.host_offset;
        p->keep[p->n_keep++][1] = e.host_offset + e.csize;
    }
    return 0;
}

static bool kept(const rp *p, uint64_t k)
{
    uint64_t a = k << p->g->cluster_bits, b = a + p->g->cluster_size;
    for (size_t i = 0; i < p->n_keep; i++)
        if (p->keep[i][0] < b && a < p->keep[i][1])
            return true;
    return false;
}

/* Set the refcounts of the REFCOUNT_LOW (RAISE) or REFCOUNT_HIGH findings
 * of R to their references, one write per refcount block (the table is
 * valid: no rebuild was needed). */
static int set_refcounts(rp *p, const qi_check_result *r, bool raise)
{
    const qi_geom *g = p->g;
    qi_image *img = p->img;
    int64_t cur = -1;
    uint64_t cur_off = 0;
    int rc = 0;
    for (size_t i = 0; i <= r->n_findings; i++) {
        const qi_finding *f = i < r->n_findings ? &r->findings[i] : NULL;
        if (f && f->code != (raise ? QI_PROB_REFCOUNT_LOW : QI_PROB_REFCOUNT_HIGH))
            continue;
        if (f && !raise && !f->expected && kept(p, f->offset >> g->cluster_bits)) {
            qi_finding *n = add(p, f);
            if (n)
                snprintf(n->fix, sizeof n->fix, "not freed: a compressed entry with a "
                         "subcluster bitmap still reads from it (qemu-img -r leaks frees "
                         "it; -r all clears the bitmap and keeps the data)");
            continue;
        }
        uint64_t k = f ? f->offset >> g->cluster_bits : 0, ti = k / g->refblock_entries;
        if (cur >= 0 && (!f || (int64_t)ti != cur)) {
            p->wrote = true;
            if ((rc = qi_bio_pwrite(img->file, p->buf, g->cluster_size, cur_off, &img->err,
                                    "refcount block")) < 0)
                return rc;
            cur = -1;
        }
        if (!f)
            break;
        if (cur < 0) {
            uint8_t e[8];
            if ((rc = qi_bio_pread(img->file, e, 8, img->hdr.refcount_table_offset + 8 * ti,
                                   &img->err, "refcount table")) < 0)
                return rc;
            cur_off = qi_be64(e) & QI_REFT_OFFSET_MASK;
            if ((rc = qi_bio_pread(img->file, p->buf, g->cluster_size, cur_off, &img->err,
                                   "refcount block")) < 0)
                return rc;
            cur = (int64_t)ti;
        }
        qi_format_refcount_set(p->buf, g->refcount_order, k % g->refblock_entries,
                               f->expected);
        fixed(add(p, f), raise ? "refcount raised to the references"
                               : "refcount lowered to the references");
        if (raise)
            p->cfix++;
        else
            p->lfix++;
    }
    return sync_file(p);
}

/* Where the new structure goes: E first cluster past everything, T table
 * clusters, then one block per range that has something to count. */
typedef struct layout {
    uint64_t e, t, b, total, ranges;
} layout;

static bool range_used(const rp *p, const layout *l, uint64_t r)
{
    uint64_t rbe = p->g->refblock_entries, k0 = r * rbe, k1 = k0 + rbe;
    if (k1 > l->e && k0 < l->total)
        return true;
    for (uint64_t k = k0; k < k1 && k < p->nc; k++)
        if (p->count[k])
            return true;
    return false;
}

static int plan(rp *p, layout *l)
{
    const qi_geom *g = p->g;
    uint64_t fsize = p->img->file->size;
    memset(l, 0, sizeof *l);
    l->e = (fsize + g->cluster_size - 1) >> g->cluster_bits;
    for (uint64_t k = 0; k < p->nc; k++)
        if (p->count[k] && k + 1 > l->e)
            l->e = k + 1;
    l->t = 1;
    for (int it = 0; it < 32; it++) {
        uint64_t b = 0, t;
        l->total = l->e + l->t + l->b;
        l->ranges = (l->total + g->refblock_entries - 1) / g->refblock_entries;
        for (uint64_t r = 0; r < l->ranges; r++)
            b += range_used(p, l, r);
        t = (l->ranges * 8 + g->cluster_size - 1) >> g->cluster_bits;
        if (b == l->b && t == l->t)
            return (t << g->cluster_bits) > QI_MAX_REFTABLE_BYTES
                ? qi_fail(p->img, QI_ENOSPC, "refcount table", QI_NO_OFFSET, "a rebuilt "
                          "refcount table would exceed %u bytes", QI_MAX_REFTABLE_BYTES)
                : 0;
        l->b = b;
        l->t = t;
    }
    return qi_fail(p->img, QI_EIO, "refcount table", QI_NO_OFFSET, "no stable layout "
                   "for a rebuilt refcount structure");
}

/* Step 1a: the blocks and the table at L, synced. */
static int write_structure(rp *p, const layout *l, uint8_t *table)
{
    const qi_geom *g = p->g;
    qi_image *img = p->img;
    uint64_t rbe = g->refblock_entries, max = qi_format_refcount_max(g->refcount_order);
    uint64_t bi = 0;
    int rc;
    for (uint64_t r = 0; r < l->ranges; r++) {
        if (!range_used(p, l, r))
            continue;
        uint64_t off = (l->e + l->t + bi++) << g->cluster_bits;
        memset(p->buf, 0, g->cluster_size);
        for (uint64_t i = 0; i < rbe; i++) {
            uint64_t k = r * rbe + i;
            uint64_t v = k >= l->e && k < l->total ? 1 : k < p->nc ? p->count[k] : 0;
            qi_format_refcount_set(p->buf, g->refcount_order, i, v > max ? max : v);
        }
        qi_put_be64(table + 8 * r, off);
        p->wrote = true;
        if ((rc = qi_bio_pwrite(img->file, p->buf, g->cluster_size, off, &img->err,
                                "refcount block")) < 0)
            return rc;
    }
    if ((rc = qi_bio_pwrite(img->file, table, l->t << g->cluster_bits,
                            l->e << g->cluster_bits, &img->err, "refcount table")) < 0)
        return rc;
    return qi_bio_sync(img->file, &img->err);
}

/* QEMU's rebuild_refcount_structure: the references counted without the
 * old refcount structures, a new table and blocks holding exactly them,
 * then the header switched (steps 1a, 1b). */
static int rebuild(rp *p, qi_check_result *scratch)
{
    qi_image *img = p->img;
    uint8_t *table = NULL;
    layout l;
    int rc;
    if ((rc = recount(p, scratch, true)) < 0 || (rc = plan(p, &l)) < 0)
        return rc;
    if (!(table = qi_mem_calloc_capped(l.t, p->g->cluster_size, QI_MAX_REFTABLE_BYTES)))
        return qi_fail(img, QI_ENOMEM, "refcount table", QI_NO_OFFSET, "out of memory");
    if ((rc = write_structure(p, &l, table)) == 0) {
        img->hdr_req.what = QI_HDR_REFTABLE;
        img->hdr_req.refcount_table_offset = l.e << p->g->cluster_bits;
        img->hdr_req.refcount_table_clusters = (uint32_t)l.t;
        rc = img->commit_header(img);
    }
    free(table);
    return rc;
}

static int64_t plain_corruptions(const qi_check_result *r)
{
    int64_t n = 0;
    for (size_t i = 0; i < r->n_findings; i++) {
        const qi_finding *f = &r->findings[i];
        if (f->qemu[0] && f->severity == QI_SEV_CORRUPTION && f->code != QI_PROB_COPIED_SHARED &&
            f->code != QI_PROB_COPIED_MISSING && f->code != QI_PROB_READ_ERROR)
            n++;
    }
    return n;
}

/* Step 1 by rebuilding: fixed counts as QEMU's (the corruptions and leaks
 * the new structure made go away); R becomes the count after it. */
/* QEMU's rebuilt structure counts the old table and blocks, and its
 * leak pass then frees them ("Repairing cluster K refcount=R reference=S"):
 * ours never counted them; the same lines are recorded (FULL: the counts
 * with them, p->count: without). */
static void freed_lines(rp *p, const uint32_t *full, uint64_t n_full)
{
    for (uint64_t k = 0; k < n_full && k < p->nc; k++) {
        qi_finding *f;
        if (full[k] <= p->count[k] || !(f = add(p, NULL)))
            continue;
        f->code = QI_PROB_REFCOUNT_HIGH;
        f->severity = QI_SEV_LEAK;
        f->structure = "refcount";
        f->offset = k << p->g->cluster_bits;
        f->expected = p->count[k];
        f->found = full[k];
        f->fixed = true;
        snprintf(f->fix, sizeof f->fix, "old refcount structure: free after the rebuild");
        snprintf(f->qemu, sizeof f->qemu, "Leaked cluster %" PRIu64 " refcount=%" PRIu32
                 " reference=%" PRIu32, k, full[k], p->count[k]);
    }
}

static int refcounts_rebuilt(rp *p, qi_check_result *r)
{
    qi_check_result scratch = { 0 };
    int64_t corr = plain_corruptions(r), leaks = r->leaks;
    uint32_t *full = p->count;
    uint64_t n_full = p->nc;
    int rc;
    for (size_t i = 0; i < r->n_findings; i++)
        if (r->findings[i].code != QI_PROB_COPIED_SHARED &&
            r->findings[i].code != QI_PROB_COPIED_MISSING && r->findings[i].qemu[0])
            add(p, &r->findings[i]);
    p->count = NULL;
    rc = rebuild(p, &scratch);
    qi_check_result_free(&scratch);
    if (rc == 0)
        freed_lines(p, full, n_full);
    free(full);
    if (rc < 0 || (rc = recount(p, r, false)) < 0)
        return rc;
    if (plain_corruptions(r) < corr)
        p->cfix += corr - plain_corruptions(r);
    if (r->leaks < leaks)
        p->lfix += leaks - r->leaks;
    for (size_t i = 0; i < p->n; i++)
        if (!p->v[i].fixed && (p->v[i].code == QI_PROB_REFCOUNT_ZERO ||
                               p->v[i].code == QI_PROB_REFCOUNT_LOW ||
                               p->v[i].code == QI_PROB_REFCOUNT_HIGH ||
                               p->v[i].code == QI_PROB_REFBLOCK_REFCOUNT ||
                               p->v[i].code == QI_PROB_REFBLOCK_UNALIGNED ||
                               p->v[i].code == QI_PROB_REFBLOCK_PAST_EOF ||
                               p->v[i].code == QI_PROB_REFTABLE_RESERVED))
            fixed(&p->v[i], "refcount structure rebuilt from the references");
    return 0;
}

/* ---- steps 2 and 4: COPIED, against the final refcounts (the counts) ---- */

static void copied_finding(rp *p, bool l1, uint64_t site, uint64_t raw, uint64_t rc,
                           bool fix, uint64_t guest)
{
    qi_finding *f = add(p, NULL);
    bool copied = raw & QI_OFLAG_COPIED;
    if (!f)
        return;
    f->guest_offset = guest;
    f->guest_length = l1 ? (uint64_t)p->g->l2_entries << p->g->cluster_bits
                         : p->g->cluster_size;
    f->code = copied ? QI_PROB_COPIED_SHARED
            : p->dedup ? QI_PROB_COPIED_MISSING_DEDUP : QI_PROB_COPIED_MISSING;
    f->severity = f->code == QI_PROB_COPIED_MISSING_DEDUP ? QI_SEV_NOTE : QI_SEV_CORRUPTION;
    f->structure = l1 ? "L1 entry" : "L2 entry";
    f->offset = site;
    f->expected = copied ? 1 : rc;
    f->found = copied ? rc : 1;
    if (f->code == QI_PROB_COPIED_MISSING_DEDUP) {
        snprintf(f->fix, sizeof f->fix, "left alone: COPIED may be missing at refcount 1 "
                 "on a dedup image");
        return;
    }
    if (l1)
        snprintf(f->qemu, sizeof f->qemu, "%s OFLAG_COPIED L2 cluster: l1_index=%" PRIu64
                 " l1_entry=%" PRIx64 " refcount=%" PRIu64, "ERROR",
                 (site - p->img->hdr.l1_table_offset) / 8, raw, rc);
    else
        snprintf(f->qemu, sizeof f->qemu, "%s OFLAG_COPIED data cluster: l2_entry=%" PRIx64
                 " refcount=%" PRIu64, "ERROR", raw, rc);
    if (fix) {
        f->fixed = true;
        snprintf(f->fix, sizeof f->fix, copied ? "COPIED cleared" : "COPIED set");
        p->cfix++;
    }
}

/* One entry against the COPIED rule; SET: fix only missing COPIED (step 4),
 * else only COPIED too many (step 2). *NEW: the entry to write, or RAW. */
static void judge(rp *p, bool l1, uint64_t site, uint64_t raw, uint64_t rc, bool set,
                  uint64_t guest, uint64_t *new)
{
    bool copied = raw & QI_OFLAG_COPIED;
    *new = raw;
    if ((rc == 1) == copied || copied == set)
        return;
    if (set && p->dedup) {
        copied_finding(p, l1, site, raw, rc, false, guest);
        return;
    }
    *new = copied ? raw & ~QI_OFLAG_COPIED : raw | QI_OFLAG_COPIED;
    copied_finding(p, l1, site, raw, rc, true, guest);
}

static int copied_l2(rp *p, uint64_t l2, uint64_t guest0, bool set)
{
    const qi_geom *g = p->g;
    qi_image *img = p->img;
    int rc;
    if ((rc = qi_bio_pread(img->file, p->buf, g->cluster_size, l2, &img->err,
                           "L2 table")) < 0)
        return rc;
    for (uint32_t j = 0; j < g->l2_entries; j++) {
        const uint8_t *e = p->buf + (uint64_t)j * g->l2_entry_size;
        uint64_t raw = qi_be64(e), nw, site = l2 + (uint64_t)j * g->l2_entry_size;
        qi_l2_entry d;
        qi_format_decode_l2(g, img->data_file != NULL, raw, g->extl2 ? qi_be64(e + 8) : 0, &d);
        if (d.type != QI_CLUSTER_NORMAL && d.type != QI_CLUSTER_ZERO_ALLOC)
            continue;
        judge(p, false, site, raw, img->data_file ? 1 : refs(p, raw & QI_L2E_OFFSET_MASK),
              set, guest0 + ((uint64_t)j << g->cluster_bits), &nw);
        if (nw != raw && (rc = put64(p, site, nw, "L2 entry")) < 0)
            return rc;
    }
    return 0;
}

static int copied_pass(rp *p, bool set)
{
    qi_image *img = p->img;
    uint64_t l1 = img->hdr.l1_table_offset;
    int rc = 0;
    for (uint32_t i = 0; i < img->hdr.l1_size && rc == 0; i++) {
        uint8_t b[8];
        uint64_t raw, nw, l2;
        if ((rc = qi_bio_pread(img->file, b, 8, l1 + 8ull * i, &img->err, "L1 table")) < 0)
            break;
        raw = qi_be64(b);
        l2 = raw & QI_L1E_OFFSET_MASK;
        if (!l2)
            continue;
        uint64_t guest0 = (uint64_t)i << (p->g->l2_bits + p->g->cluster_bits);
        judge(p, true, l1 + 8ull * i, raw, refs(p, l2), set, guest0, &nw);
        if (nw != raw && (rc = put64(p, l1 + 8ull * i, nw, "L1 entry")) < 0)
            break;
        if (!(l2 & (p->g->cluster_size - 1)) && l2 < img->file->size)
            rc = copied_l2(p, l2, guest0, set);
    }
    return rc < 0 ? rc : sync_file(p);
}

/* Anything left that QEMU's -r leaks would not repair COPIED over. */
static bool all_fixed(const rp *p, const qi_check_result *r)
{
    if (r->check_errors)
        return false;
    for (size_t i = 0; i < r->n_findings; i++) {
        const qi_finding *f = &r->findings[i];
        if (f->code == QI_PROB_COPIED_SHARED || f->code == QI_PROB_COPIED_MISSING ||
            !f->qemu[0] || f->severity == QI_SEV_NOTE)
            continue;
        if (f->code != QI_PROB_REFCOUNT_HIGH || !(p->flags & (QI_CHECK_REPAIR_LEAKS |
                                                             QI_CHECK_REPAIR_ALL)))
            return false;
    }
    return true;
}

static void keep_copied_findings(rp *p, const qi_check_result *r)
{
    for (size_t i = 0; i < r->n_findings; i++)
        if (r->findings[i].code == QI_PROB_COPIED_SHARED ||
            r->findings[i].code == QI_PROB_COPIED_MISSING ||
            r->findings[i].code == QI_PROB_COPIED_MISSING_DEDUP)
            add(p, &r->findings[i]);
}

/* Steps 1', 2, 3, 4 without a rebuild. */
static int refcounts_in_place(rp *p, const qi_check_result *r)
{
    bool all = p->flags & QI_CHECK_REPAIR_ALL, copied = all || all_fixed(p, r);
    int rc;
    for (size_t i = 0; i < r->n_findings; i++) {
        const qi_finding *f = &r->findings[i];
        bool mine = (all && f->code == QI_PROB_REFCOUNT_LOW) ||
                    f->code == QI_PROB_REFCOUNT_HIGH || f->code == QI_PROB_COPIED_SHARED ||
                    f->code == QI_PROB_COPIED_MISSING || f->code == QI_PROB_COPIED_MISSING_DEDUP;
        if (!mine && f->qemu[0])
            add(p, f);
    }
    if (!all && (rc = note_kept(p, r)) < 0)
        return rc;
    if (all && (rc = set_refcounts(p, r, true)) < 0)
        return rc;
    if (copied && (rc = copied_pass(p, false)) < 0)
        return rc;
    if ((rc = set_refcounts(p, r, false)) < 0)
        return rc;
    if (copied)
        return copied_pass(p, true);
    /* not repaired: named against the refcounts as they are now (QEMU's
     * COPIED pass runs after the leaks were fixed) */
    qi_check_result now = { 0 };
    if ((rc = qi_check_count(p->img, &now, false, NULL, NULL)) == 0)
        keep_copied_findings(p, &now);
    qi_check_result_free(&now);
    return rc;
}

/* ---- the whole repair ---- */

static int repair(rp *p, qi_check_result *r)
{
    qi_image *img = p->img;
    bool changed;
    int rc;
    if ((rc = recount(p, r, false)) < 0)
        return rc;
    if ((p->flags & QI_CHECK_REPAIR_ALL) &&
        ((rc = fix_entries(p, r, &changed)) < 0 || (changed && (rc = recount(p, r, false)) < 0)))
        return rc;
    if (needs_rebuild(r)) {
        if (!(p->flags & QI_CHECK_REPAIR_ALL)) {
            qi_finding *f;
            for (size_t i = 0; i < r->n_findings; i++)
                if (r->findings[i].qemu[0] && r->findings[i].code != QI_PROB_COPIED_SHARED &&
                    r->findings[i].code != QI_PROB_COPIED_MISSING)
                    add(p, &r->findings[i]);
            if ((f = add(p, NULL))) {
                f->code = QI_PROB_READ_ERROR;
                f->structure = "refcount table";
                f->offset = img->hdr.refcount_table_offset;
                snprintf(f->qemu, sizeof f->qemu, "ERROR need to rebuild refcount structures");
            }
            return qi_fail(img, QI_EIO, "refcount table", img->hdr.refcount_table_offset,
                           "the refcount structures must be rebuilt: check -r all");
        }
        if ((rc = refcounts_rebuilt(p, r)) < 0 || (rc = copied_pass(p, false)) < 0)
            return rc;
        return copied_pass(p, true);
    }
    return refcounts_in_place(p, r);
}

/* Step 5 and the check of the repaired image into RES. */
static int finish(rp *p, qi_check_result *res)
{
    qi_image *img = p->img;
    uint64_t bits = QI_INCOMPAT_DIRTY | QI_INCOMPAT_CORRUPT;
    int rc;
    if ((rc = qi_check_count(img, res, false, NULL, NULL)) < 0)
        return rc;
    if (!res->corruptions && !res->check_errors && (img->hdr.incompatible_features & bits)) {
        img->hdr_req.what = QI_HDR_CLEAN | QI_HDR_CONSISTENT;
        if ((rc = img->commit_header(img)) < 0)
            return rc;
    }
    return 0;
}

/* Order of qemu-img's lines within a group: the comparison by cluster,
 * COPIED by guest offset (an L1 entry before its L2 entries), the rest as
 * met. */
static int group(const qi_finding *f)
{
    switch (f->code) {
    case QI_PROB_REFCOUNT_LOW: case QI_PROB_REFCOUNT_HIGH: case QI_PROB_REFCOUNT_ZERO:
        return 1;
    case QI_PROB_COPIED_SHARED: case QI_PROB_COPIED_MISSING: case QI_PROB_COPIED_MISSING_DEDUP:
        return 2;
    default:
        return 0;
    }
}

static void sort_lines(qi_finding *v, size_t n)
{
    for (size_t i = 1; i < n; i++) {    /* insertion sort: stable, small n */
        qi_finding t = v[i];
        size_t j = i;
        while (j > 0) {
            const qi_finding *a = &v[j - 1];
            int ga = group(a), gt = group(&t);
            bool after = ga > gt ||
                (ga == gt && ga == 1 && a->offset > t.offset) ||
                (ga == gt && ga == 2 && (a->guest_offset > t.guest_offset ||
                 (a->guest_offset == t.guest_offset && a->structure && t.structure &&
                  !strcmp(a->structure, "L2 entry") && !strcmp(t.structure, "L1 entry"))));
            if (!after)
                break;
            v[j] = v[j - 1];
            j--;
        }
        v[j] = t;
    }
}

/* RES = the repair pass's findings, then the check's. */
static int merge(rp *p, qi_check_result *res)
{
    size_t total = p->n + res->n_findings;
    qi_finding *v;
    res->corruptions_fixed = p->cfix;
    res->leaks_fixed = p->lfix;
    if (!p->cfix && !p->lfix) {
        /* nothing repaired: qemu-img shows the repair pass only (its
         * counters are the check's: nothing changed) */
        if (p->n)
            sort_lines(p->v, p->n < 4096 ? p->n : 0);
        free(res->findings);
        res->findings = p->v;
        res->n_findings = res->cap_findings = res->n_repair = p->n;
        p->v = NULL;
        return 0;
    }
    if (!(v = qi_mem_alloc_capped(total ? total : 1, sizeof *v, (size_t)1 << 30)))
        return qi_fail(p->img, QI_ENOMEM, "", QI_NO_OFFSET, "out of memory");
    memcpy(v, p->v, p->n * sizeof *v);
    if (p->n < 4096)
        sort_lines(v, p->n);
    if (res->n_findings)
        memcpy(v + p->n, res->findings, res->n_findings * sizeof *v);
    free(res->findings);
    res->findings = v;
    res->n_findings = res->cap_findings = total;
    res->n_repair = p->n;
    return 0;
}

int qi_repair(qi_image *img, const qi_check_opts *opts, qi_check_result *res)
{
    rp p = { .img = img, .g = &img->g, .flags = opts ? opts->flags : 0 };
    qi_check_result r = { 0 };
    int rc;
    memset(res, 0, sizeof *res);
    if (img->raw)
        return qi_fail(img, QI_EINVAL, "", QI_NO_OFFSET, "a raw image has no qcow2 metadata");
    if (!img->writable)
        return qi_fail(img, QI_ERDONLY, "", QI_NO_OFFSET, "image opened read-only; "
                       "reopen it with -w to repair");
    if (!img->commit_header)
        return qi_fail(img, QI_ENOTSUP, "header", QI_NO_OFFSET, "no header commit");
    if ((rc = qi_image_flush(img)) < 0)
        return rc;
    p.dedup = qi_check_is_dedup(img);
    if (!(p.buf = malloc(img->g.cluster_size))) {
        rc = qi_fail(img, QI_ENOMEM, "", QI_NO_OFFSET, "out of memory");
        goto out;
    }
    rc = repair(&p, &r);
    /* what was written reaches the engine's state again, repaired or not */
    if (p.wrote || rc == 0) {
        int r2 = qi_image_reload_header(img);
        if (rc == 0)
            rc = r2;
    }
    img->free_hint = 0;
    img->free_byte_offset = 0;
    if (rc < 0) {
        *res = r;
        memset(&r, 0, sizeof r);
        if (p.n) {      /* the lines of the pass that stopped */
            free(res->findings);
            res->findings = p.v;
            res->n_findings = res->cap_findings = p.n;
            p.v = NULL;
        }
        res->check_errors++;
        res->corruptions_fixed = p.cfix;
        res->leaks_fixed = p.lfix;
        goto out;
    }
    if ((rc = finish(&p, res)) == 0 && (rc = qi_image_reload_header(img)) == 0)
        rc = merge(&p, res);
out:
    qi_check_result_free(&r);
    free(p.v);
    free(p.count);
    free(p.buf);
    return rc;
}
