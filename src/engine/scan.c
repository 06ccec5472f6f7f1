/* scan.c - classify every host cluster of the image file (layer 4).
 *
 * Two passes, read-only (include/qi/scan.h says what the caller sees):
 *   1. the reference walk (refwalk.c) marks each cluster with the kind of
 *      the first reference to it, one byte per cluster (a second kind sets
 *      a flag: overlapping metadata). If the walk stops at damage, the
 *      fixed structures are walked too and the rest is judged by content;
 *   2. the clusters in file order become runs. A cluster nothing references
 *      is "unreferenced" (refcount above 0) or "free", and its bytes are
 *      sniffed: zero (a hole of the file is zero without a read), a table of
 *      offsets, an L2 table, a refcount block, or data. Content is read in
 *      chunks of up to SCAN_CHUNK bytes, only for unreferenced clusters.
 * Calls: refwalk, refcount, bio, format, mem. */
#include <stdlib.h>
#include <string.h>

#include "qi/scan.h"
#include "endian.h"
#include "err.h"
#include "mem.h"
#include "refcount.h"
#include "refwalk.h"

#define SCAN_CHUNK ((uint64_t)1 << 20)
#define SHARED_KINDS 0x80u
#define CLASS_MASK 0x7fu

enum {
    C_NONE = 0, C_HEADER, C_L1, C_L2, C_REFTABLE, C_REFBLOCK, C_SNAPTABLE,
    C_BMDIR, C_BMTABLE, C_BMDATA, C_DATA, C_COMPRESSED, C_UNREF, C_FREE
};

static const char *const class_name[] = {
    "?", "header", "L1 table", "L2 table", "refcount table", "refcount block",
    "snapshot table", "bitmap directory", "bitmap table", "bitmap data", "data",
    "compressed", "unreferenced", "free"
};

typedef struct scan {
    qi_image *img;
    uint8_t *cls;       /* per cluster: class | SHARED_KINDS */
    uint64_t n;         /* clusters of the file */
    uint8_t *buf;       /* content chunk */
    uint64_t buf_off, buf_len;  /* what buf holds */
} scan;

static unsigned ref_class(const qi_ref *r)
{
    switch (r->kind) {
    case QI_REF_HEADER: return C_HEADER;
    case QI_REF_L1_TABLE: return C_L1;
    case QI_REF_L1_ENTRY: return C_L2;
    case QI_REF_L2_ENTRY: return (r->raw & QI_OFLAG_COMPRESSED) ? C_COMPRESSED : C_DATA;
    case QI_REF_REFTABLE: return C_REFTABLE;
    case QI_REF_REFBLOCK: return C_REFBLOCK;
    case QI_REF_SNAPTABLE: return C_SNAPTABLE;
    case QI_REF_BITMAP_DIR: return C_BMDIR;
    case QI_REF_BITMAP_TABLE: return C_BMTABLE;
    case QI_REF_BITMAP_DATA: return C_BMDATA;
    }
    return C_NONE;
}

/* Pass 1: mark the clusters [host_offset, host_offset + length) that lie
 * inside the file (references past its end have no cluster to mark). */
static int mark(void *payload, const qi_ref *r)
{
    scan *s = payload;
    unsigned c = ref_class(r), cb = s->img->g.cluster_bits;
    if (!r->length || c == C_NONE || r->host_offset >> cb >= s->n)
        return 0;
    uint64_t last = (r->host_offset + r->length - 1) >> cb;
    if (last >= s->n || last < r->host_offset >> cb)
        last = s->n - 1;
    for (uint64_t k = r->host_offset >> cb; k <= last; k++) {
        if (!(s->cls[k] & CLASS_MASK))
            s->cls[k] = (uint8_t)c;
        else if ((s->cls[k] & CLASS_MASK) != c)
            s->cls[k] |= SHARED_KINDS;
    }
    return 0;
}

/* ---- content of unreferenced clusters ---- */

static bool all_zero(const uint8_t *p, uint64_t len)
{
    for (uint64_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

/* An offset field OFF of a table entry: cluster aligned and inside the file. */
static bool plausible_offset(const scan *s, uint64_t off)
{
    return !(off & (s->img->g.cluster_size - 1)) && off < s->img->file->size && off;
}

/* Every word 0 or (COPIED and) a cluster-aligned offset in the file. */
static bool offsets_shape(const scan *s, const uint8_t *p)
{
    for (uint64_t i = 0; i < s->img->g.cluster_size; i += 8) {
        uint64_t w = qi_be64(p + i) & ~QI_OFLAG_COPIED;
        if (w && (w & ~QI_L2E_OFFSET_MASK || !plausible_offset(s, w)))
            return false;
    }
    return true;
}

/* Every entry a valid L2 entry of this image's geometry (standard entries
 * with the zero flag, or compressed entries starting inside the file). */
static bool l2_shape(const scan *s, const uint8_t *p)
{
    const qi_geom *g = &s->img->g;
    uint32_t step = g->l2_entry_size, cb = g->cluster_bits;
    for (uint64_t i = 0; i < g->cluster_size; i += step) {
        uint64_t w = qi_be64(p + i);
        if (w & QI_OFLAG_COMPRESSED) {
            uint64_t off = w & ((1ull << (62 - (cb - 8))) - 1);
            if (off >= s->img->file->size)
                return false;
        } else if (w & QI_L2E_STD_RESERVED ||
                   ((w & QI_L2E_OFFSET_MASK) && !plausible_offset(s, w & QI_L2E_OFFSET_MASK))) {
            return false;
        }
    }
    return true;
}

/* Refcounts of the image's width (8 bits or more), all small, one above 0. */
static bool refblock_shape(const scan *s, const uint8_t *p)
{
    uint32_t bits = 1u << s->img->g.refcount_order, bytes = bits / 8;
    uint64_t limit = bits == 8 ? 64 : 4096;
    bool any = false;
    if (bits < 8)
        return false;
    for (uint64_t i = 0; i < s->img->g.cluster_size; i += bytes) {
        uint64_t v = 0;
        for (uint32_t b = 0; b < bytes; b++)
            v = v << 8 | p[i + b];
        if (v > limit)
            return false;
        any |= v != 0;
    }
    return any;
}

/* The bytes of cluster K, read with the chunk around it; NULL for a hole
 * of the file (all zero) or on a read error (*RC set). */
static const uint8_t *cluster_bytes(scan *s, uint64_t k, uint64_t chunk_end, int *rc)
{
    qi_bio *f = s->img->file;
    uint64_t cs = s->img->g.cluster_size, off = k * cs;
    if (off >= s->buf_off && off + cs <= s->buf_off + s->buf_len)
        return s->buf + (off - s->buf_off);
    int64_t data = qi_bio_next_data(f, off);
    if (data >= 0 && (uint64_t)data >= off + cs)
        return NULL;
    uint64_t len = chunk_end * cs - off;
    if (len > SCAN_CHUNK)
        len = SCAN_CHUNK / cs * cs;
    if ((*rc = qi_bio_pread(f, s->buf, len, off, &s->img->err, "cluster")) < 0)
        return NULL;
    s->buf_off = off;
    s->buf_len = len;
    return s->buf + (off - s->buf_off);
}

static const char *sniff(scan *s, uint64_t k, uint64_t chunk_end, int *rc)
{
    const uint8_t *p = cluster_bytes(s, k, chunk_end, rc);
    if (*rc < 0)
        return "unreadable";
    if (!p || all_zero(p, s->img->g.cluster_size))
        return "zero";
    if (offsets_shape(s, p))
        return "offsets";
    if (l2_shape(s, p))
        return "l2";
    if (refblock_shape(s, p))
        return "refblock";
    return "data";
}

/* ---- pass 2: runs ---- */

static uint64_t refcount_of(scan *s, uint64_t k)
{
    uint64_t rc;
    if (qi_refcount_get(s->img, k, &rc) < 0) {
        qi_err_clear(&s->img->err);
        return QI_SCAN_NO_REFCOUNT;
    }
    return rc;
}

/* The class, shape and refcount of cluster K (the unreferenced run it
 * belongs to ends at UNREF_END, for the chunked read). */
static int classify(scan *s, uint64_t k, uint64_t unref_end, qi_scan_run *r)
{
    unsigned c = s->cls[k] & CLASS_MASK;
    int rc = 0;
    r->refcount = refcount_of(s, k);
    r->shared_kinds = (s->cls[k] & SHARED_KINDS) != 0;
    r->shape = NULL;
    if (c == C_NONE) {
        c = r->refcount == 0 ? C_FREE : C_UNREF;
        r->shape = sniff(s, k, unref_end, &rc);
        if (rc < 0)
            qi_err_clear(&s->img->err);
    }
    r->kind = class_name[c];
    return 0;
}

static bool same_run(const qi_scan_run *a, const qi_scan_run *b)
{
    bool a_free = a->refcount == 0, b_free = b->refcount == 0;
    return a->kind == b->kind && a->shape == b->shape && a->shared_kinds == b->shared_kinds &&
           (a->shape == NULL || a_free == b_free);
}

static int emit_runs(scan *s, qi_scan_cb cb, void *payload, qi_scan_stats *st)
{
    uint64_t cs = s->img->g.cluster_size, fsize = s->img->file->size, unref_end = 0;
    qi_scan_run cur = { 0 }, next;
    int rc;
    for (uint64_t k = 0; k < s->n; k++) {
        if (!(s->cls[k] & CLASS_MASK) && k >= unref_end)
            for (unref_end = k + 1; unref_end < s->n && !(s->cls[unref_end] & CLASS_MASK);)
                unref_end++;
        classify(s, k, unref_end, &next);
        next.offset = k * cs;
        next.length = (k + 1) * cs <= fsize ? cs : fsize - k * cs;
        if (k && same_run(&cur, &next)) {
            cur.length += next.length;
            continue;
        }
        if (k && (st->runs++, rc = cb(payload, &cur)) != 0)
            return rc;
        cur = next;
    }
    if (s->n) {
        st->runs++;
        return cb(payload, &cur);
    }
    return 0;
}

int qi_scan(qi_image *img, qi_scan_cb cb, void *payload, qi_scan_stats *st)
{
    qi_scan_stats local;
    scan s = { .img = img };
    int rc;
    if (!st)
        st = &local;
    memset(st, 0, sizeof *st);
    if (img->raw)
        return qi_fail(img, QI_EINVAL, "", QI_NO_OFFSET, "a raw image has no qcow2 metadata");
    s.n = (img->file->size + img->g.cluster_size - 1) >> img->g.cluster_bits;
    st->clusters = s.n;
    if (s.n > QI_SCAN_MAX_CLUSTERS)
        return qi_fail(img, QI_ENOMEM, "", QI_NO_OFFSET, "the file has %llu clusters, more "
                       "than a scan classifies (%llu)", (unsigned long long)s.n,
                       (unsigned long long)QI_SCAN_MAX_CLUSTERS);
    uint64_t chunk = img->g.cluster_size > SCAN_CHUNK ? img->g.cluster_size : SCAN_CHUNK;
    if (!(s.cls = calloc(s.n ? s.n : 1, 1)) || !(s.buf = malloc(chunk))) {
        free(s.cls);
        return qi_fail(img, QI_ENOMEM, "", QI_NO_OFFSET, "out of memory");
    }
    if (qi_refwalk(img, mark, &s) < 0) {
        st->refs_incomplete = true;
        qi_err_copy(&st->walk_error, &img->err);
        qi_err_clear(&img->err);
        if (qi_refwalk_fixed(img, mark, &s) < 0)
            qi_err_clear(&img->err);
    }
    rc = emit_runs(&s, cb, payload, st);
    free(s.cls);
    free(s.buf);
    return rc;
}
