/* check.c - the read-only consistency check (layer 5).
 *
 * qemu-img check's rules for qcow2 (QEMU block/qcow2-refcount.c,
 * qcow2_check_refcounts; facts learned from it and verified against
 * qemu-img 7.2), without writing anything:
 *   1. count every reference in memory, one counter per host cluster, in
 *      QEMU's order: header cluster, active L1 table and its L2 tables
 *      (with the fragmentation counts), every snapshot's L1/L2 tables,
 *      snapshot table, refcount table, bitmaps, refcount blocks. Entries
 *      are judged as they are met (reserved bits, alignment, compressed
 *      with COPIED, subcluster bitmaps); a reference past the end of the
 *      file grows the counter array as QEMU's does, so it shows up below as
 *      "refcount=0 reference=1";
 *   2. compare each counter with the on-disk refcount: lower on disk is a
 *      corruption ("ERROR cluster ..."), higher a leak ("Leaked cluster");
 *      the highest cluster in use gives the image end offset;
 *   3. the COPIED rule on the active L1 and L2 entries (refcount == 1 iff
 *      COPIED), checked during the walk of 1 but reported after 2, where
 *      QEMU prints it. On a dedup image (header extension 0x51494444,
 *      docs/dedup-design.md) COPIED missing with refcount 1 is a note only.
 * Each problem becomes a qi_finding carrying the line qemu-img prints.
 *
 * The dirty bit (lazy refcounts): QEMU repairs the refcounts of a dirty
 * image when it opens it writable, but qemu-img check opens with
 * BDRV_O_CHECK and never repairs at open; a read-only check therefore
 * reports the refcounts as they are on disk (typically leaks, or errors
 * for clusters whose refcount was never raised). We do the same: nothing
 * is settled or rebuilt before counting.
 *
 * On-disk refcounts are read straight from the file through the raw
 * refcount table (one block buffered at a time), not through refcount.c,
 * which refuses a damaged table: damage there is what we report.
 * Calls: refwalk (fixed structures), format, bio, mem, problem. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endian.h"
#include "mem.h"
#include "problem.h"
#include "refwalk.h"

#define DEDUP_EXT_MAGIC 0x51494444u

typedef struct ck {
    qi_image *img;
    qi_check_result *res;
    qi_finding *copied;         /* COPIED findings, reported after compare */
    size_t n_copied, cap_copied;
    uint32_t *count;            /* references per host cluster */
    uint64_t n;                 /* clusters in count (grows past EOF) */
    uint64_t rc_max;            /* largest refcount of the width */
    uint64_t *reftable;         /* raw, host order */
    uint64_t rt_entries;
    uint8_t *block;             /* the refcount block in the buffer */
    int64_t block_index;        /* its reftable index, -1 none */
    uint8_t *tab;               /* L1/L2 table buffer */
    bool dedup;
    unsigned told_unaligned;    /* unaligned refcount blocks met in compare */
    bool copied_rule;           /* this L2 table is judged by the COPIED rule */
    uint64_t next_contig;       /* fragmentation in this L2 table: the
                                 * offset that would be contiguous */
} ck;

/* Append a finding to V; QEMU_FMT (may be NULL) is the line qemu-img
 * prints. Returns the finding or NULL (out of memory: dropped). */
static qi_finding *push(qi_finding **v, size_t *n, size_t *cap)
{
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 16;
        qi_finding *p = realloc(*v, nc * sizeof *p);
        if (!p)
            return NULL;
        *v = p;
        *cap = nc;
    }
    qi_finding *f = &(*v)[(*n)++];
    memset(f, 0, sizeof *f);
    f->guest_offset = QI_NO_GUEST;
    return f;
}

static qi_finding *vfinding(ck *c, bool copied, qi_problem_code code, const char *st,
                            uint64_t off, const char *fmt, va_list ap)
{
    qi_finding *f = copied ? push(&c->copied, &c->n_copied, &c->cap_copied)
                           : push(&c->res->findings, &c->res->n_findings,
                                  &c->res->cap_findings);
    const qi_problem *p = qi_problem_lookup(code);
    qi_severity sev = p ? p->severity : QI_SEV_CORRUPTION;
    if (code == QI_PROB_READ_ERROR)
        ;   /* counted by the caller as a check error */
    else if (fmt && sev == QI_SEV_CORRUPTION)
        c->res->corruptions++;
    else if (fmt && sev == QI_SEV_LEAK)
        c->res->leaks++;
    if (!f)
        return NULL;
    f->code = code;
    f->severity = sev;
    f->structure = st;
    f->offset = off;
    if (fmt)
        vsnprintf(f->qemu, sizeof f->qemu, fmt, ap);
    return f;
}

/* A finding counted as qemu-img counts it, with qemu-img's line. */
__attribute__((format(printf, 5, 6)))
static qi_finding *finding(ck *c, qi_problem_code code, const char *st, uint64_t off,
                           const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    qi_finding *f = vfinding(c, false, code, st, off, fmt, ap);
    va_end(ap);
    return f;
}

/* Read LEN bytes at OFF; bytes past the end of the file read as zeros
 * (QEMU's file driver does the same). */
static int read_padded(ck *c, void *buf, uint64_t len, uint64_t off, const char *st)
{
    uint64_t fsize = c->img->file->size, have = 0;
    if (off < fsize)
        have = fsize - off < len ? fsize - off : len;
    memset((uint8_t *)buf + have, 0, len - have);
    return have ? qi_bio_pread(c->img->file, buf, have, off, &c->img->err, st) : 0;
}

static int grow(ck *c, uint64_t k)
{
    uint64_t nn = c->n, bytes;
    if (!nn)
        nn = k + 1;     /* the first call sizes the array to the file exactly */
    while (nn <= k)
        nn = nn < 1024 ? 1024 : nn * 2;
    if (__builtin_mul_overflow(nn, 4, &bytes) || bytes > QI_CHECK_MAX_BYTES)
        return qi_fail(c->img, QI_ENOMEM, "refcount", k << c->img->g.cluster_bits,
                       "the in-memory refcounts would need more than %zu bytes",
                       QI_CHECK_MAX_BYTES);
    uint32_t *p = realloc(c->count, bytes);
    if (!p)
        return qi_fail(c->img, QI_ENOMEM, "refcount", QI_NO_OFFSET, "out of memory");
    memset(p + c->n, 0, (nn - c->n) * 4);
    c->count = p;
    c->n = nn;
    return 0;
}

/* One more reference to every cluster of [OFF, OFF + SIZE). */
static int inc(ck *c, uint64_t off, uint64_t size)
{
    uint32_t cb = c->img->g.cluster_bits;
    int rc;
    uint64_t fsize = c->img->file->size, end;
    if (!size)
        return 0;
    /* the last cluster may be partly past the end of the file; a region
     * reaching a whole cluster or more past it is not counted (QEMU 7.2) */
    if (__builtin_add_overflow(off, size, &end) ||
        (end > fsize && end - fsize >= c->img->g.cluster_size)) {
        qi_finding *f = finding(c, QI_PROB_PAST_EOF, "reference", off, "ERROR: counting "
                                "reference for region exceeding the end of the file by one "
                                "cluster or more: offset 0x%" PRIx64 " size 0x%" PRIx64,
                                off, size);
        if (f)
            f->found = off;
        return 0;
    }
    uint64_t last = (off + size - 1) >> cb;
    for (uint64_t k = off >> cb; k <= last; k++) {
        if (k >= c->n && (rc = grow(c, k)) < 0)
            return rc;
        if (c->count[k] >= c->rc_max) {
            finding(c, QI_PROB_REFCOUNT_OVERFLOW, "refcount", k << cb,
                    "ERROR: overflow cluster offset=0x%" PRIx64 "\nUse qemu-img amend to "
                    "increase the refcount entry width or qemu-img convert to create a "
                    "clean copy if the image cannot be opened for writing", k << cb);
            continue;
        }
        c->count[k]++;
    }
    return 0;
}

static int inc_ref(void *payload, const qi_ref *r)
{
    return inc(payload, r->host_offset, r->length);
}

/* On-disk refcount of cluster K into *V. Returns 0, 1 when it cannot be
 * read (QEMU: an unaligned block is -EIO), or a negative I/O error. */
static int disk_refcount(ck *c, uint64_t k, uint64_t *v)
{
    const qi_geom *g = &c->img->g;
    uint64_t i = k / g->refblock_entries;
    *v = 0;
    if (i >= c->rt_entries)
        return 0;
    uint64_t off = c->reftable[i] & QI_REFT_OFFSET_MASK;
    if (!off)
        return 0;
    if (off & (g->cluster_size - 1))
        return 1;
    if ((int64_t)i != c->block_index) {
        int rc = read_padded(c, c->block, g->cluster_size, off, "refcount block");
        c->block_index = -1;
        if (rc < 0)
            return rc;
        c->block_index = (int64_t)i;
    }
    *v = qi_format_refcount_get(c->block, g->refcount_order, k % g->refblock_entries);
    return 0;
}

/* The COPIED rule for an entry pointing at host OFF (QEMU's
 * check_oflag_copied); found later in the order of qemu-img's lines. */
static void check_copied(ck *c, bool l1, uint32_t index, uint64_t site, uint64_t raw,
                         uint64_t off, uint64_t guest)
{
    uint64_t refcount = 1;
    bool copied = raw & QI_OFLAG_COPIED;
    if ((l1 || !c->img->data_file) && disk_refcount(c, off >> c->img->g.cluster_bits,
                                                    &refcount) != 0)
        return;     /* QEMU: no message, no count */
    if ((refcount == 1) == copied)
        return;
    qi_problem_code code = copied ? QI_PROB_COPIED_SHARED
                         : c->dedup ? QI_PROB_COPIED_MISSING_DEDUP : QI_PROB_COPIED_MISSING;
    qi_finding *f;
    char line[160];
    if (l1)
        snprintf(line, sizeof line, "ERROR OFLAG_COPIED L2 cluster: l1_index=%" PRIu32
                 " l1_entry=%" PRIx64 " refcount=%" PRIu64, index, raw, refcount);
    else
        snprintf(line, sizeof line, "ERROR OFLAG_COPIED data cluster: l2_entry=%" PRIx64
                 " refcount=%" PRIu64, raw, refcount);
    f = push(&c->copied, &c->n_copied, &c->cap_copied);
    if (code != QI_PROB_COPIED_MISSING_DEDUP)
        c->res->corruptions++;
    if (!f)
        return;
    f->code = code;
    f->severity = code == QI_PROB_COPIED_MISSING_DEDUP ? QI_SEV_NOTE : QI_SEV_CORRUPTION;
    f->structure = l1 ? "L1 entry" : "L2 entry";
    f->offset = site;
    f->guest_offset = guest;
    f->guest_length = l1 ? (uint64_t)c->img->g.l2_entries << c->img->g.cluster_bits
                         : c->img->g.cluster_size;
    f->expected = copied ? 1 : refcount;
    f->found = copied ? refcount : 1;
    if (code != QI_PROB_COPIED_MISSING_DEDUP)
        snprintf(f->qemu, sizeof f->qemu, "%s", line);
}

/* A normal or preallocated-zero entry (QEMU: QCOW2_CLUSTER_NORMAL and
 * QCOW2_CLUSTER_ZERO_ALLOC). */
static int l2_data(ck *c, const qi_l2_entry *e, uint64_t site, uint64_t guest, bool active)
{
    const qi_geom *g = &c->img->g;
    uint64_t off = e->raw & QI_L2E_OFFSET_MASK;
    qi_finding *f = NULL;
    if ((e->bitmap >> 32) & e->bitmap)
        f = finding(c, QI_PROB_SUBCLUSTER_BOTH, "L2 entry", site, "ERROR offset=%" PRIx64
                    ": Allocated cluster has corrupted subcluster allocation bitmap", off);
    if (off & (g->cluster_size - 1)) {
        bool data = g->extl2 ? (e->bitmap & 0xffffffffu) != 0 : !(e->raw & QI_OFLAG_ZERO);
        f = finding(c, QI_PROB_DATA_UNALIGNED, "L2 entry", site, data
                    ? "ERROR offset=%" PRIx64 ": Data cluster is not properly aligned; "
                      "L2 entry corrupted."
                    : "ERROR offset=%" PRIx64 ": Preallocated cluster is not properly "
                      "aligned; L2 entry corrupted.", off);
    }
    if (f) {
        f->guest_offset = guest;
        f->guest_length = g->cluster_size;
    }
    if (active) {
        c->res->allocated_clusters++;
        if (c->next_contig && off != c->next_contig)
            c->res->fragmented_clusters++;
        c->next_contig = off + g->cluster_size;
    }
    if (c->img->data_file)
        return 0;
    size_t before = c->res->n_findings;
    int rc = inc(c, off, g->cluster_size);
    if (c->res->n_findings > before) {   /* past EOF: name the entry */
        f = &c->res->findings[before];
        f->structure = "L2 entry";
        f->offset = site;
        f->guest_offset = guest;
        f->guest_length = g->cluster_size;
    }
    return rc;
}

static int l2_compressed(ck *c, const qi_l2_entry *e, uint64_t site, bool active)
{
    const qi_geom *g = &c->img->g;
    if (e->raw & QI_OFLAG_COPIED)
        finding(c, QI_PROB_COMPRESSED_COPIED, "L2 entry", site, "ERROR: coffset=0x%" PRIx64
                ": copied flag must never be set for compressed clusters",
                e->raw & g->coffset_mask);
    if (c->img->data_file) {
        finding(c, QI_PROB_COMPRESSED_DATA_FILE, "L2 entry", site, "ERROR compressed "
                "cluster %" PRIu64 " with data file, entry=0x%" PRIx64,
                (site % g->cluster_size) / g->l2_entry_size, (uint64_t)(e->raw & ~QI_OFLAG_COPIED));
        return 0;
    }
    if (e->bitmap) {
        finding(c, QI_PROB_COMPRESSED_BITMAP, "L2 entry", site, "ERROR compressed cluster "
                "%" PRIu64 " with non-zero subcluster allocation bitmap, entry=0x%" PRIx64,
                (site % g->cluster_size) / g->l2_entry_size, (uint64_t)(e->raw & ~QI_OFLAG_COPIED));
        return 0;
    }
    if (active) {
        c->res->allocated_clusters++;
        c->res->compressed_clusters++;
        c->res->fragmented_clusters++;    /* QEMU counts them all fragmented */
    }
    return inc(c, e->host_offset, e->csize);
}

static int walk_l2(ck *c, uint64_t l2_off, uint64_t guest0, bool active)
{
    const qi_geom *g = &c->img->g;
    uint64_t bytes = (uint64_t)g->l2_entries * g->l2_entry_size;
    int rc;
    if ((rc = read_padded(c, c->tab, bytes, l2_off, "L2 table")) < 0)
        return rc;
    c->next_contig = 0;     /* QEMU counts fragmentation per L2 table */
    for (uint32_t i = 0; i < g->l2_entries; i++) {
        const uint8_t *p = c->tab + (uint64_t)i * g->l2_entry_size;
        uint64_t raw = qi_be64(p), bm = g->extl2 ? qi_be64(p + 8) : 0;
        uint64_t site = l2_off + (uint64_t)i * g->l2_entry_size;
        uint64_t guest = guest0 + ((uint64_t)i << g->cluster_bits);
        qi_l2_entry e;
        qi_format_decode_l2(g, c->img->data_file != NULL, raw, bm, &e);
        if (e.type != QI_CLUSTER_COMPRESSED && (raw & QI_L2E_STD_RESERVED)) {
            qi_finding *f = finding(c, QI_PROB_L2_RESERVED, "L2 entry", site, "ERROR found "
                                    "l2 entry with reserved bits set: %" PRIx64, raw);
            if (f) {
                f->guest_offset = guest;
                f->guest_length = g->cluster_size;
            }
        }
        switch (e.type) {
        case QI_CLUSTER_COMPRESSED:
            rc = l2_compressed(c, &e, site, active);
            break;
        case QI_CLUSTER_NORMAL: case QI_CLUSTER_ZERO_ALLOC:
            rc = l2_data(c, &e, site, guest, active);
            if (c->copied_rule && rc == 0)
                check_copied(c, false, i, site, raw, raw & QI_L2E_OFFSET_MASK, guest);
            break;
        case QI_CLUSTER_UNALLOCATED:
            if (bm & 0xffffffffu)
                finding(c, QI_PROB_SUBCLUSTER_UNALLOC_ENTRY, "L2 entry", site, "ERROR: "
                        "Unallocated cluster has non-zero subcluster allocation map");
            break;
        default:
            break;
        }
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* An L1 table of SIZE entries at OFF (QEMU's check_refcounts_l1); ACTIVE:
 * the image's own table (fragmentation counts and the COPIED rule). */
static int walk_l1(ck *c, uint64_t off, uint32_t size, bool active)
{
    const qi_geom *g = &c->img->g;
    uint64_t *l1 = NULL;
    int rc;
    if ((rc = inc(c, off, 8ull * size)) < 0 || !size)
        return rc;
    if (!(l1 = qi_mem_alloc_capped(size, 8, QI_MEM_CAP)))
        return qi_fail(c->img, QI_ENOMEM, "L1 table", off, "out of memory");
    if ((rc = read_padded(c, l1, 8ull * size, off, "L1 table")) < 0) {
        finding(c, QI_PROB_READ_ERROR, "L1 table", off, NULL);
        c->res->check_errors++;
        goto out;
    }
    for (uint32_t i = 0; i < size && rc == 0; i++) {
        uint64_t raw = qi_be64((uint8_t *)&l1[i]), site = off + 8ull * i;
        uint64_t l2 = raw & QI_L1E_OFFSET_MASK, guest = (uint64_t)i << (g->l2_bits +
                                                                         g->cluster_bits);
        if (!raw)
            continue;
        if (raw & QI_L1E_RESERVED_MASK)
            finding(c, QI_PROB_L1_RESERVED, "L1 entry", site, "ERROR found L1 entry with "
                    "reserved bits set: %" PRIx64, raw);
        if ((rc = inc(c, l2, g->cluster_size)) < 0)
            break;
        if (l2 & (g->cluster_size - 1))
            finding(c, QI_PROB_L2_TABLE_UNALIGNED, "L1 entry", site, "ERROR l2_offset=%"
                    PRIx64 ": Table is not cluster aligned; L1 entry corrupted", l2);
        if (active && l2)
            check_copied(c, true, i, site, raw, l2, guest);
        /* QEMU walks the table of any nonzero entry, even at offset 0,
         * but its COPIED pass skips an entry without an offset */
        c->copied_rule = active && l2;
        if ((rc = walk_l2(c, l2, guest, active)) < 0) {
            finding(c, QI_PROB_READ_ERROR, "L2 table", l2, "ERROR: I/O error in "
                    "check_refcounts_l2");
            c->res->check_errors++;
        }
    }
out:
    free(l1);
    return rc;
}

/* The refcount table's entries (QEMU's check_refblocks): each block is one
 * reference, and must end up with exactly one. */
static int walk_refblocks(ck *c)
{
    const qi_geom *g = &c->img->g;
    uint64_t rt = c->img->hdr.refcount_table_offset;
    int rc;
    for (uint64_t i = 0; i < c->rt_entries; i++) {
        uint64_t raw = c->reftable[i], off = raw & QI_REFT_OFFSET_MASK;
        uint64_t k = off >> g->cluster_bits, site = rt + 8 * i;
        if (raw & QI_REFT_RESERVED_MASK) {
            finding(c, QI_PROB_REFTABLE_RESERVED, "refcount table entry", site, "ERROR "
                    "refcount table entry %" PRIu64 " has reserved bits set", i);
            continue;
        }
        if (off & (g->cluster_size - 1)) {
            finding(c, QI_PROB_REFBLOCK_UNALIGNED, "refcount table entry", site, "ERROR "
                    "refcount block %" PRIu64 " is not cluster aligned; refcount table "
                    "entry corrupted", i);
            continue;
        }
        if (k >= c->n) {
            finding(c, QI_PROB_REFBLOCK_PAST_EOF, "refcount table entry", site, "ERROR "
                    "refcount block %" PRIu64 " is outside image", i);
            continue;
        }
        if (!off)
            continue;
        if ((rc = inc(c, off, g->cluster_size)) < 0)
            return rc;
        if (c->count[k] != 1) {
            qi_finding *f = finding(c, QI_PROB_REFBLOCK_REFCOUNT, "refcount block", off,
                                    "ERROR refcount block %" PRIu64 " refcount=%" PRIu32,
                                    i, c->count[k]);
            if (f) {
                f->expected = 1;
                f->found = c->count[k];
            }
        }
    }
    return 0;
}

/* On-disk refcounts against the counted references (QEMU's
 * compare_refcounts); *HIGHEST: last cluster with either nonzero. */
static int compare(ck *c, uint64_t *highest)
{
    uint32_t cb = c->img->g.cluster_bits;
    int rc;
    *highest = 0;
    for (uint64_t k = 0; k < c->n; k++) {
        uint64_t disk, refs = c->count[k];
        if ((rc = disk_refcount(c, k, &disk)) < 0)
            return rc;
        if (rc == 1) {
            uint64_t i = k / c->img->g.refblock_entries;
            if (!c->told_unaligned++)   /* QEMU signals the corruption once */
                finding(c, QI_PROB_READ_ERROR, "refcount table entry",
                        c->img->hdr.refcount_table_offset + 8 * i, "qcow2: Image is "
                        "corrupt: Refblock offset %#" PRIx64 " unaligned (reftable index: "
                        "%#" PRIx64 "); further non-fatal corruption events will be "
                        "suppressed", (uint64_t)(c->reftable[i] & QI_REFT_OFFSET_MASK), i);
            finding(c, QI_PROB_READ_ERROR, "refcount block", k << cb, "Can't get refcount "
                    "for cluster %" PRIu64 ": Input/output error", k);
            c->res->check_errors++;
            continue;
        }
        if (disk || refs)
            *highest = k;
        if (disk == refs)
            continue;
        qi_problem_code code = disk > refs ? QI_PROB_REFCOUNT_HIGH
                             : disk ? QI_PROB_REFCOUNT_LOW : QI_PROB_REFCOUNT_ZERO;
        qi_finding *f = finding(c, code, "refcount", k << cb, "%s cluster %" PRIu64
                                " refcount=%" PRIu64 " reference=%" PRIu64,
                                disk > refs ? "Leaked" : "ERROR", k, disk, refs);
        if (f) {
            f->expected = refs;
            f->found = disk;
        }
    }
    return 0;
}

static int load_reftable(ck *c)
{
    qi_image *img = c->img;
    uint64_t bytes = (uint64_t)img->hdr.refcount_table_clusters << img->g.cluster_bits;
    int rc;
    c->rt_entries = bytes / 8;
    if (!(c->reftable = qi_mem_alloc_capped(c->rt_entries ? c->rt_entries : 1, 8,
                                            QI_MEM_CAP)))
        return qi_fail(img, QI_ENOMEM, "refcount table", img->hdr.refcount_table_offset,
                       "out of memory");
    if ((rc = read_padded(c, c->reftable, bytes, img->hdr.refcount_table_offset,
                          "refcount table")) < 0)
        return rc;
    for (uint64_t i = 0; i < c->rt_entries; i++)
        c->reftable[i] = qi_be64((uint8_t *)&c->reftable[i]);
    return 0;
}

static bool is_dedup(const qi_image *img)
{
    for (uint32_t i = 0; i < img->n_exts; i++)
        if (img->exts[i].type == DEDUP_EXT_MAGIC)
            return true;
    return false;
}

/* Steps 1 and 2 of the file comment. */
static int count_all(ck *c)
{
    qi_image *img = c->img;
    int rc;
    if ((rc = inc(c, 0, img->g.cluster_size)) < 0 ||
        (rc = walk_l1(c, img->hdr.l1_table_offset, img->hdr.l1_size, true)) < 0)
        return rc;
    for (uint32_t s = 0; s < img->n_snaps; s++)
        if ((rc = walk_l1(c, img->snaps[s].l1_table_offset, img->snaps[s].l1_size,
                          false)) < 0)
            return rc;
    if ((rc = qi_refwalk_fixed(img, inc_ref, c)) < 0 ||
        (rc = inc(c, img->hdr.refcount_table_offset, 8 * c->rt_entries)) < 0)
        return rc;
    return walk_refblocks(c);
}

static int run(ck *c)
{
    qi_image *img = c->img;
    const qi_geom *g = &img->g;
    uint64_t highest, bytes = (uint64_t)g->l2_entries * g->l2_entry_size;
    int rc;
    if (!(c->tab = malloc(bytes)) || !(c->block = malloc(g->cluster_size)))
        return qi_fail(img, QI_ENOMEM, "", QI_NO_OFFSET, "out of memory");
    if ((rc = load_reftable(c)) < 0 ||
        (rc = grow(c, ((img->file->size + g->cluster_size - 1) >> g->cluster_bits) - 1)) < 0)
        return rc;
    /* QEMU's array is exactly the file's clusters, and so is ours; a
     * reference past EOF grows it (doubling), and the on-disk refcounts of
     * the clusters it grew to are compared too, as QEMU compares them */
    if ((rc = count_all(c)) < 0 || (rc = compare(c, &highest)) < 0)
        return rc;
    for (size_t i = 0; i < c->n_copied; i++) {
        qi_finding *f = push(&c->res->findings, &c->res->n_findings,
                             &c->res->cap_findings);
        if (f)
            *f = c->copied[i];
    }
    c->res->image_end_offset = (highest + 1) << g->cluster_bits;
    return 0;
}

int qi_check(qi_image *img, const qi_check_opts *opts, qi_check_result *res)
{
    ck c = { .img = img, .res = res, .block_index = -1 };
    int rc;
    (void)opts;
    memset(res, 0, sizeof *res);
    if (img->raw)
        return qi_fail(img, QI_EINVAL, "", QI_NO_OFFSET, "a raw image has no qcow2 metadata");
    if (img->writable && (rc = qi_image_flush(img)) < 0)
        return rc;
    c.rc_max = qi_format_refcount_max(img->g.refcount_order);
    c.dedup = is_dedup(img);
    res->total_clusters = (img->size + img->g.cluster_size - 1) >> img->g.cluster_bits;
    if ((rc = run(&c)) < 0)
        res->check_errors++;
    free(c.copied);
    free(c.count);
    free(c.reftable);
    free(c.block);
    free(c.tab);
    return rc;
}

void qi_check_result_free(qi_check_result *res)
{
    if (!res)
        return;
    free(res->findings);
    res->findings = NULL;
    res->n_findings = res->cap_findings = 0;
}
