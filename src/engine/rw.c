/* rw.c - guest reads (layer 4).
 *
 * Reads guest data through an L1 view: runs of host-contiguous data are
 * merged into one pread (across L2 tables too), zero runs are memset,
 * unallocated runs come from the backing chain (zeros past a shorter backing
 * file or with no backing file) and compressed clusters are decompressed
 * once and kept while reads stay inside them. Data clusters that start past
 * the end of the image file are reported as corruption rather than read as
 * zeros.
 *
 * Guest writes (qi_image_write): a cluster whose L2 entry is a data
 * cluster with COPIED (refcount 1) is written in place; any other cluster
 * (unallocated, zero, compressed, shared) gets a new host cluster holding
 * the whole cluster: its current contents (from the backing chain, the
 * shared or compressed cluster, or zeros) with the new bytes over them. The
 * L2 entry then points at it with COPIED set, and the old host cluster(s)
 * lose one reference once that entry is on disk (qi_refcount_settle).
 * Extended L2 entries are written per subcluster and an external data file
 * holds data at the guest offset, both as QEMU does (write_cluster,
 * zeroize). Persistent bitmaps that track writes get the bits of every
 * write, zero and discard (bitmap.c), saved at flush and close. With lazy
 * refcounts (compatible bit 0) the first change of a session sets the
 * dirty bit (lazy_begin); an image opened with the dirty bit had its
 * refcounts rebuilt at open (rebuild.c).
 * Calls: cluster, bitmap, refcount, compress, bio. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "bitmap.h"
#include "compress.h"
#include "refcount.h"
#include "rw.h"

/* A host-contiguous range waiting to be read with one preadv into guest
 * buffers that need not be contiguous (guest holes between host-adjacent
 * clusters are common after `convert -S`). */
#define MAX_IOV 512
typedef struct pending {
    uint64_t host;
    uint64_t len;
    int n;
    struct iovec iov[MAX_IOV];
} pending;

static int flush_pending(qi_image *img, pending *p)
{
    int rc = 0;
    if (p->n)
        rc = qi_bio_preadv(img->data, p->iov, p->n, p->host, &img->err,
                           "data cluster");
    p->n = 0;
    p->len = 0;
    return rc;
}

static int add_pending(qi_image *img, pending *p, uint8_t *buf, uint64_t host,
                       size_t n)
{
    int rc;
    if (p->n && p->host + p->len == host) {
        struct iovec *last = &p->iov[p->n - 1];
        if ((uint8_t *)last->iov_base + last->iov_len == buf) {
            last->iov_len += n;
            p->len += n;
            return 0;
        }
        if (p->n < MAX_IOV) {
            p->iov[p->n++] = (struct iovec){ buf, n };
            p->len += n;
            return 0;
        }
    }
    if ((rc = flush_pending(img, p)) < 0)
        return rc;
    p->host = host;
    p->len = n;
    p->iov[0] = (struct iovec){ buf, n };
    p->n = 1;
    return 0;
}

static int read_backing(qi_image *img, uint8_t *buf, uint64_t off, size_t n)
{
    qi_image *b = img->backing;
    if (!b) {
        if (img->backing_name)
            return qi_fail(img, QI_EINVAL, "backing file", QI_NO_OFFSET,
                           "image opened without its backing file '%s'",
                           img->backing_name);
        memset(buf, 0, n);
        return 0;
    }
    size_t k = off >= b->size ? 0 : (b->size - off < n ? (size_t)(b->size - off) : n);
    if (k && qi_image_read(b, buf, off, k) < 0)
        return qi_err_copy(&img->err, &b->err);
    memset(buf + k, 0, n - k);
    return 0;
}

static int read_compressed(qi_image *img, const qi_l2_entry *e, uint8_t *buf,
                           uint64_t in_cluster, size_t n)
{
    uint32_t cs = img->g.cluster_size;
    int rc;
    if (img->cbuf_off != e->raw) {
        if (!img->cbuf && !(img->cbuf = malloc(cs)))
            return qi_fail(img, QI_ENOMEM, "compressed cluster", e->host_offset,
                           "out of memory");
        if (!img->cin && !(img->cin = malloc(2ull * cs)))
            return qi_fail(img, QI_ENOMEM, "compressed cluster", e->host_offset,
                           "out of memory");
        if (e->host_offset >= img->file->size)
            return qi_corrupt(img, "compressed cluster", e->host_offset,
                              "compressed data (L2 entry %#018" PRIx64 ") starts past "
                              "the end of the file (%" PRIu64 " bytes)", e->raw,
                              img->file->size);
        img->cbuf_off = 0;
        if ((rc = qi_bio_pread(img->file, img->cin, e->csize, e->host_offset,
                               &img->err, "compressed cluster")) < 0)
            return rc;
        rc = qi_compress_inflate(img->hdr.compression_type, img->cin, e->csize,
                                 img->cbuf, cs);
        if (rc < 0)
            return qi_corrupt(img, "compressed cluster", e->host_offset,
                              "%s data of %" PRIu64 " bytes (L2 entry %#018" PRIx64
                              ") does not decompress to one %" PRIu32 "-byte cluster",
                              img->hdr.compression_type ? "zstd" : "deflate",
                              e->csize, e->raw, cs);
        img->cbuf_off = e->raw;
    }
    memcpy(buf, img->cbuf + in_cluster, n);
    return 0;
}

int qi_rw_read(qi_image *img, const qi_l1view *v, uint8_t *buf, uint64_t off,
               size_t len)
{
    pending p;
    int rc = 0;
    p.n = 0;
    p.len = 0;
    if (img->raw)
        return qi_bio_pread(img->file, buf, len, off, &img->err, "raw image");
    while (len) {
        qi_run r;
        if ((rc = qi_cluster_run(img, v, off, len, &r)) < 0)
            return rc;
        size_t n = (size_t)r.len;
        switch (r.kind) {
        case QI_RUN_DATA:
            if (!img->data_file && r.host >= img->file->size)
                return qi_corrupt(img, "data cluster", r.host, "guest offset %#" PRIx64
                                  " maps past the end of the file (%" PRIu64 " bytes)",
                                  off, img->file->size);
            rc = add_pending(img, &p, buf, r.host, n);
            break;
        case QI_RUN_ZERO:
            memset(buf, 0, n);
            break;
        case QI_RUN_UNALLOC:
            rc = read_backing(img, buf, off, n);
            break;
        default:
            rc = read_compressed(img, &r.entry, buf, off & (img->g.cluster_size - 1), n);
            break;
        }
        if (rc < 0)
            return rc;
        buf += n;
        off += n;
        len -= n;
    }
    return flush_pending(img, &p);
}

int qi_image_read(qi_image *img, void *buf, uint64_t off, size_t len)
{
    qi_l1view v = { 0 };
    int rc;
    if (off > img->size || len > img->size - off)
        return qi_fail(img, QI_EINVAL, "", QI_NO_OFFSET, "read of %zu bytes at %#"
                       PRIx64 " is beyond the virtual size %" PRIu64, len, off,
                       img->size);
    if (!img->raw && (rc = qi_cluster_view_active(img, &v)) < 0)
        return rc;
    rc = qi_rw_read(img, &v, buf, off, len);
    if (!img->raw)
        qi_cluster_view_put(img, &v);
    return rc;
}

int qi_image_read_snapshot(qi_image *img, uint32_t snap, void *buf, uint64_t off,
                           size_t len)
{
    qi_l1view v;
    int rc;
    if (img->raw)
        return qi_fail(img, QI_EINVAL, "", QI_NO_OFFSET, "a raw image has no snapshots");
    if ((rc = qi_cluster_view_snapshot(img, snap, &v)) < 0)
        return rc;
    /* Like QEMU, a snapshot taken before the image grew reads up to the
     * current size: past its own L1 table everything is unallocated. */
    uint64_t limit = v.vsize > img->size ? v.vsize : img->size;
    if (off > limit || len > limit - off) {
        qi_cluster_view_put(img, &v);
        return qi_fail(img, QI_EINVAL, "", QI_NO_OFFSET, "read of %zu bytes at %#"
                       PRIx64 " is beyond the snapshot's size %" PRIu64, len, off,
                       limit);
    }
    rc = qi_rw_read(img, &v, buf, off, len);
    qi_cluster_view_put(img, &v);
    return rc;
}

/* What writing needs that this version does not do: refuse before any
 * change. */
static int write_supported(qi_image *img)
{
    const char *why = NULL;
    if (!img->writable)
        return qi_fail(img, QI_ERDONLY, "", QI_NO_OFFSET, "image opened read-only; "
                       "reopen it with -w to write");
    if (img->raw)
        why = "a raw image";
    if (why)
        return qi_fail(img, QI_ENOTSUP, "", QI_NO_OFFSET, "writing to an image with "
                       "%s is not supported yet", why);
    if (img->corrupt_seen)
        return qi_fail(img, QI_ECORRUPT, "", QI_NO_OFFSET, "the image was found corrupt "
                       "earlier in this session; no further writes");
    return qi_image_write_state(img);
}

/* ---- allocation units ----
 * A cluster is written, copied and zeroed in units: its 32 subclusters with
 * extended L2 entries (each with an "allocated" bit, low word of the
 * bitmap, and a "reads as zero" bit, high word), otherwise the whole
 * cluster as one unit. */

static uint32_t unit_bits(const qi_image *img)
{
    return img->g.extl2 ? img->g.cluster_bits - 5 : img->g.cluster_bits;
}

/* Allocation bits of units A..B (inclusive, B < 32); << 32 for zero bits. */
static uint64_t units_mask(unsigned a, unsigned b)
{
    return (0xffffffffull >> (31 - b)) & ~((1ull << a) - 1);
}

/* Whether E keeps a host cluster (its data, or space for it). */
static bool has_host(const qi_l2_entry *e)
{
    return e->type == QI_CLUSTER_NORMAL || e->type == QI_CLUSTER_ZERO_ALLOC;
}

/* Whether unit U of E reads from E's host cluster. */
static bool unit_is_data(const qi_image *img, const qi_l2_entry *e, unsigned u)
{
    if (e->type != QI_CLUSTER_NORMAL)
        return false;
    return !img->g.extl2 || ((e->bitmap >> u) & 1);
}

/* The host cluster(s) entry E referenced lose that reference (deferred until
 * the entry that replaced E is on disk), unless the new entry keeps
 * NEW_HOST, the same cluster. Data clusters in an external data file have
 * no refcounts. */
static int drop_old(qi_image *img, const qi_l2_entry *e, uint64_t new_host)
{
    if (e->type == QI_CLUSTER_COMPRESSED)
        return qi_refcount_free_later(img, e->host_offset, e->csize);
    if (has_host(e) && !img->data_file && e->host_offset != new_host)
        return qi_refcount_free_later(img, e->host_offset, img->g.cluster_size);
    return 0;
}

/* A new host cluster for guest cluster GOFF: in an external data file the
 * cluster at the guest offset (not refcounted), else a free cluster of the
 * image file with refcount 1. */
static int alloc_data(qi_image *img, uint64_t goff, uint64_t *host)
{
    if (img->data_file) {
        *host = goff;
        return 0;
    }
    return qi_refcount_alloc(img, 1, host);
}

/* Bytes of guest cluster GOFF from IN to TO that lie inside the virtual
 * size (only the last cluster can be cut). */
static uint32_t inside(const qi_image *img, uint64_t goff, uint32_t in, uint32_t to)
{
    uint64_t end = img->size - goff;
    if (end <= in)
        return 0;
    return end < to ? (uint32_t)(end - in) : to - in;
}

/* With data_file_raw the data file must stay a valid raw image of the
 * guest disk: bytes that now read as zeros are zeroed there too, before the
 * entry that makes them read as zeros (a crash leaves either view old or
 * zero). ZEROS holds a zero-filled cluster. */
static int raw_file_zero(qi_image *img, uint64_t goff, uint32_t from, uint32_t to,
                         const uint8_t *zeros)
{
    uint32_t n = inside(img, goff, from, to);
    if (!img->data_file_raw || !n)
        return 0;
    int rc = qi_bio_pwrite(img->data, zeros, n, goff + from, &img->err, "data cluster");
    if (rc == 0)
        qi_cache_barrier(img->l2_cache, img->data);
    return rc;
}

/* Write N bytes of DATA at byte IN of guest cluster CI (N > 0).
 *
 * Which bytes reach the host cluster, as QEMU does it:
 *  - the entry owns its host cluster (COPIED): written in place; a unit
 *    the write covers only in part and that does not hold data yet
 *    (zero or unallocated subcluster, zero-allocated cluster) is filled
 *    around the new bytes with what it reads now;
 *  - otherwise a new host cluster: without extended L2 the whole cluster
 *    (its current contents around the new bytes); with extended L2 the
 *    units from the first to the last one that either the write covers or
 *    the old host cluster had allocated (all 32 for a compressed cluster).
 * With extended L2 the units written become "allocated" in the bitmap and
 * lose their zero bit; the others keep theirs.
 *
 * Crash table:
 *   1. allocate a host cluster (refcount 1, in the refcount cache; in a
 *      data file the cluster at the guest offset, not refcounted)
 *   2. write the new bytes and the copied ones  crash: leak at most (in
 *      place: only bytes the old entry did not map, or the new bytes)
 *   3. data barrier; L2 entry (and bitmap) -> new | COPIED (L2 cache,
 *      written after the refcount blocks and the barrier)
 *                                             crash: consistent, new data
 *   4. old host cluster(s) -1, deferred until the entry is on disk
 *                                             crash: leak */
static int write_cluster(qi_image *img, uint64_t ci, uint32_t in, const uint8_t *data,
                         uint32_t n, uint8_t *scratch)
{
    const qi_geom *g = &img->g;
    uint32_t ub = unit_bits(img), cs = g->cluster_size, from, to;
    uint64_t l2_off, host, goff = ci << g->cluster_bits, bitmap;
    uint32_t l2i = (uint32_t)(ci & (g->l2_entries - 1));
    unsigned a = in >> ub, b = (in + n - 1) >> ub;
    const uint8_t *src = data;
    qi_l2_entry e;
    qi_l1view v;
    int rc;
    if ((rc = qi_cluster_l2_for_write(img, ci >> g->l2_bits, &l2_off)) < 0 ||
        (rc = qi_cluster_l2_entry(img, l2_off, l2i, &e)) < 0)
        return rc;
    bool keep = has_host(&e) && e.copied;
    if (keep) {
        from = unit_is_data(img, &e, a) ? in : a << ub;
        to = unit_is_data(img, &e, b) ? in + n : (b + 1) << ub;
    } else if (!g->extl2 || e.type == QI_CLUSTER_COMPRESSED) {
        from = 0;
        to = cs;
    } else {
        uint32_t alloc = has_host(&e) ? (uint32_t)e.bitmap : 0;
        if (alloc) {
            unsigned lo = (unsigned)__builtin_ctz(alloc), hi = 31u - (unsigned)__builtin_clz(alloc);
            a = lo < a ? lo : a;
            b = hi > b ? hi : b;
        }
        from = a << ub;
        to = (b + 1) << ub;
    }
    if (from < in || to > in + n) {
        /* copy-on-write: [from, to) as it reads now, the new bytes over it */
        memset(scratch + from, 0, to - from);
        if ((rc = qi_cluster_view_active(img, &v)) < 0)
            return rc;
        rc = qi_rw_read(img, &v, scratch + from, goff + from, inside(img, goff, from, to));
        qi_cluster_view_put(img, &v);
        if (rc < 0)
            return rc;
        memcpy(scratch + in, data, n);
        src = scratch + from;
    }
    if (keep)
        host = e.host_offset;
    else if ((rc = alloc_data(img, goff, &host)) < 0)
        return rc;
    /* a data file ends at the virtual size; the image file holds whole clusters */
    uint32_t len = img->data_file ? inside(img, goff, from, to) : to - from;
    if ((rc = qi_bio_pwrite(img->data, src, len, host + from, &img->err,
                            src == data ? "data cluster" : "COW cluster")) < 0)
        return rc;
    uint64_t raw = qi_format_encode_l2(host, true, false);
    bitmap = e.type == QI_CLUSTER_COMPRESSED ? 0 : e.bitmap;
    if (g->extl2) {
        uint64_t m = units_mask(from >> ub, (to - 1) >> ub);
        bitmap = (bitmap | m) & ~(m << 32);
    }
    if (raw == e.raw && bitmap == e.bitmap)
        return 0;               /* in place over data: nothing to map */
    qi_cache_barrier(img->l2_cache, img->data);
    if ((rc = qi_cluster_set_l2_ext(img, l2_off, l2i, raw, bitmap)) < 0)
        return rc;
    img->cbuf_off = 0;
    return drop_old(img, &e, host);
}

#define RUN_MAX (256u << 20)   /* bytes of one write_run at most */

/* How many whole guest clusters from CI on (at most MAX, all in the L2
 * table at *L2_OFF) map no host cluster at all (unallocated or zero
 * without a host cluster): a write over them copies nothing and drops
 * nothing, so they can share one allocation and one write (write_run). */
static int fresh_run(qi_image *img, uint64_t ci, uint64_t max, uint64_t *l2_off, uint32_t *n)
{
    const qi_geom *g = &img->g;
    uint32_t l2i = (uint32_t)(ci & (g->l2_entries - 1));
    qi_l2_entry e;
    int rc;
    *n = 0;
    if (max > g->l2_entries - l2i)
        max = g->l2_entries - l2i;
    if ((rc = qi_cluster_l2_for_write(img, ci >> g->l2_bits, l2_off)) < 0)
        return rc;
    while (*n < max) {
        if ((rc = qi_cluster_l2_entry(img, *l2_off, l2i + *n, &e)) < 0)
            return rc;
        if (e.type != QI_CLUSTER_UNALLOCATED && e.type != QI_CLUSTER_ZERO_PLAIN)
            break;
        (*n)++;
    }
    return 0;
}

/* Write N whole clusters of DATA over guest clusters CI.. that fresh_run
 * found without host clusters: write_cluster's steps for each (its crash
 * table holds), on one contiguous run of host clusters:
 *   1. allocate the run (refcounts 1, in the refcount cache)
 *   2. one write of the N clusters             crash: leak at most
 *   3. data barrier; the N L2 entries -> run | COPIED (written after the
 *      refcount blocks and the barrier)          crash: consistent
 * Nothing was mapped before, so nothing is dropped. */
static int write_run(qi_image *img, uint64_t ci, const uint8_t *data, uint64_t l2_off,
                     uint32_t n)
{
    const qi_geom *g = &img->g;
    uint32_t l2i = (uint32_t)(ci & (g->l2_entries - 1));
    uint64_t host, bitmap = g->extl2 ? units_mask(0, 31) : 0;
    int rc;
    if ((rc = qi_refcount_alloc(img, n, &host)) < 0 ||
        (rc = qi_bio_pwrite(img->data, data, (size_t)n << g->cluster_bits, host, &img->err,
                            "data cluster")) < 0)
        return rc;
    /* Today the refcount blocks of the run (the cache's dependency) are
     * synced before any of these entries is written back, which orders the
     * data too; the barrier keeps the order where that dependency is off
     * (lazy refcounts) and an L2 table is evicted mid-session. */
    qi_cache_barrier(img->l2_cache, img->data);
    for (uint32_t k = 0; k < n; k++) {
        uint64_t raw = qi_format_encode_l2(host + ((uint64_t)k << g->cluster_bits), true, false);
        if ((rc = qi_cluster_set_l2_ext(img, l2_off, l2i + k, raw, bitmap)) < 0)
            return rc;
    }
    img->cbuf_off = 0;
    return 0;
}

/* Lazy refcounts (compatible bit 0; docs section 13 rule 8): before the
 * first change of a session, the dirty bit is set with a synchronous
 * header write; from then on (image.c drops the cache dependency) L2 tables
 * may reach the disk before the refcount blocks that count their clusters.
 * A clean flush or close writes everything, syncs, and clears the bit.
 * Crash table of a session of writes under lazy refcounts:
 *   1. header: dirty bit set, synced          crash: consistent (dirty; the
 *                                              next read-write open rebuilds)
 *   2. data, barrier, L2 tables, refcount blocks (any order between L2
 *      tables and refcount blocks)            crash: dirty, refcounts may be
 *                                              low: rebuilt at the next open
 *   3. flush: L2 tables, decrements, refcount blocks, synced
 *                                             crash: dirty, refcounts right
 *   4. header: dirty bit cleared, synced      crash: consistent */
static int lazy_begin(qi_image *img)
{
    int rc;
    if (!(img->hdr.compatible_features & QI_COMPAT_LAZY_REFCOUNTS) ||
        img->hdr.version < 3 || img->lazy_dirty || !img->commit_header)
        return 0;
    img->hdr_req.what = QI_HDR_DIRTY;
    if ((rc = img->commit_header(img)) < 0)
        return rc;
    img->lazy_dirty = true;
    return 0;
}

static int check_range(qi_image *img, const char *what, uint64_t off, uint64_t len)
{
    int rc;
    if ((rc = write_supported(img)) < 0)
        return rc;
    if (off > img->size || len > img->size - off)
        return qi_fail(img, QI_EINVAL, "", QI_NO_OFFSET, "%s of %" PRIu64 " bytes at %#"
                       PRIx64 " is beyond the virtual size %" PRIu64, what, len, off,
                       img->size);
    return lazy_begin(img);
}

/* After an operation: a long run of copy-on-writes settles now and then,
 * so the list of deferred decrements stays small. A write path that found
 * corruption (recorded in img->err by the detecting site) asks image.c to
 * set the corrupt bit, as QEMU does, so that no program writes the image
 * again before it is checked; the session refuses further writes already
 * (corrupt_seen). The corruption stays the error reported. */
static int end_op(qi_image *img, int rc)
{
    if (rc == 0 && img->n_pending > 4096)
        rc = qi_refcount_settle(img);
    if (rc == QI_ECORRUPT && img->commit_header &&
        !(img->hdr.incompatible_features & QI_INCOMPAT_CORRUPT)) {
        qi_err saved = img->err;
        img->hdr_req.what = QI_HDR_CORRUPT;
        (void)img->commit_header(img);
        img->err = saved;
    }
    return rc;
}

int qi_rw_write_begin(qi_image *img, const char *what, uint64_t off, uint64_t len)
{
    int rc = check_range(img, what, off, len);
    return rc < 0 ? rc : qi_bitmap_note_write(img, off, len);
}

int qi_rw_write_end(qi_image *img, int rc)
{
    return end_op(img, rc);
}

int qi_image_write(qi_image *img, const void *buf, uint64_t off, size_t len)
{
    const uint8_t *p = buf;
    uint8_t *scratch = NULL;
    int rc;
    if ((rc = check_range(img, "write", off, len)) < 0 ||
        (rc = qi_bitmap_note_write(img, off, len)) < 0)
        return rc;
    if (!(scratch = malloc(img->g.cluster_size)))
        return qi_fail(img, QI_ENOMEM, "", QI_NO_OFFSET, "out of memory");
    while (len && rc == 0) {
        uint64_t ci = off >> img->g.cluster_bits, l2_off;
        uint32_t in = (uint32_t)(off & (img->g.cluster_size - 1));
        uint32_t n = img->g.cluster_size - in < len ? img->g.cluster_size - in : (uint32_t)len;
        uint32_t run = 0;
        /* whole clusters without host clusters: one allocation, one write */
        if (!in && !img->data_file && len >> img->g.cluster_bits >= 2 &&
            (rc = fresh_run(img, ci, (len < RUN_MAX ? len : RUN_MAX) >> img->g.cluster_bits,
                            &l2_off, &run)) < 0)
            break;
        if (run >= 2) {
            n = run << img->g.cluster_bits;
            rc = write_run(img, ci, p, l2_off, run);
        } else {
            rc = write_cluster(img, ci, in, p, n, scratch);
        }
        p += n;
        off += n;
        len -= n;
    }
    free(scratch);
    return end_op(img, rc);
}

/* ---- zero and discard ---- */

/* A new entry and bitmap for guest cluster GOFF computed from the old one E
 * (ARG: the operation's flag). */
typedef void (*entry_fn)(const qi_image *img, const qi_l2_entry *e, int arg,
                         uint64_t *raw, uint64_t *bitmap);

/* Set the L2 entry of guest cluster CI (and with extended L2 its bitmap)
 * to what NEW_OF makes of the old one, the old host cluster(s) losing their
 * reference when the new entry drops them. ZEROS: a zero-filled cluster
 * (data_file_raw).
 * Crash table:
 *   0. data_file_raw: zeros over the guest range in the data file, barrier
 *                                          crash: the raw view reads zeros
 *                                          where the entry is still old
 *   1. the L2 entry changes (L2 cache, written after the refcount blocks)
 *                                          crash: consistent, old or new
 *   2. dropped host cluster(s) -1, deferred until the entry is on disk
 *                                          crash: leak */
static int change_entry(qi_image *img, uint64_t ci, entry_fn new_of, int arg,
                        const uint8_t *zeros)
{
    const qi_geom *g = &img->g;
    uint32_t l2i = (uint32_t)(ci & (g->l2_entries - 1));
    uint64_t l2_off, raw, bitmap;
    qi_l2_entry e;
    int rc;
    /* no L2 table and nothing to change: do not allocate one */
    if ((rc = qi_cluster_active_l2_offset(img, ci >> g->l2_bits, &l2_off)) < 0)
        return rc;
    if (!l2_off) {
        qi_format_decode_l2(g, img->data_file != NULL, 0, 0, &e);
        new_of(img, &e, arg, &raw, &bitmap);
        if (raw == 0 && bitmap == 0)
            return 0;
    }
    if ((rc = qi_cluster_l2_for_write(img, ci >> g->l2_bits, &l2_off)) < 0 ||
        (rc = qi_cluster_l2_entry(img, l2_off, l2i, &e)) < 0)
        return rc;
    new_of(img, &e, arg, &raw, &bitmap);
    if (raw == e.raw && bitmap == e.bitmap)
        return 0;
    if (zeros && has_host(&e) && !(raw & QI_L2E_OFFSET_MASK) &&
        (rc = raw_file_zero(img, ci << g->cluster_bits, 0, g->cluster_size, zeros)) < 0)
        return rc;
    if ((rc = qi_cluster_set_l2_ext(img, l2_off, l2i, raw, bitmap)) < 0)
        return rc;
    img->cbuf_off = 0;
    return drop_old(img, &e, raw & QI_L2E_OFFSET_MASK);
}

#define ALL_ZERO 0xffffffff00000000ull

/* Zeroing a whole cluster, as QEMU does it on a version 3 image: without
 * unmap an allocated (normal or zero) cluster keeps its host cluster and
 * its COPIED flag and gets the zero flag (extended L2: all 32 zero bits);
 * a compressed cluster, an unallocated one, or any cluster with unmap
 * becomes a plain zero entry. A version 2 image without a backing file
 * makes it unallocated (reads as zeros); with one, zero bytes are written
 * instead (not here). */
static void zeroed(const qi_image *img, const qi_l2_entry *e, int unmap,
                   uint64_t *raw, uint64_t *bitmap)
{
    bool keep = !unmap && has_host(e);
    *bitmap = img->g.extl2 ? ALL_ZERO : 0;
    if (img->hdr.version < 3)   /* no zero flag; no backing file: unallocated */
        *raw = 0;
    else if (img->g.extl2)
        *raw = keep ? e->raw : 0;
    else
        *raw = keep ? (e->raw | QI_OFLAG_ZERO) : QI_OFLAG_ZERO;
}

/* Discarding a whole cluster, as QEMU does it (not a full discard): where
 * a backing file could show through or the cluster was allocated, it reads
 * as zeros afterwards (version 3: zero flag; extended L2: no host cluster
 * and all 32 subclusters zero; version 2 without a backing file:
 * unallocated); any other entry stays as it is. A version 2 image over a
 * backing file cannot express it: QEMU leaves the cluster as it is. */
static void discarded(const qi_image *img, const qi_l2_entry *e, int unused,
                      uint64_t *raw, uint64_t *bitmap)
{
    (void)unused;
    bool zero = img->backing_name || has_host(e) || e->type == QI_CLUSTER_COMPRESSED;
    *raw = e->raw;
    *bitmap = e->bitmap;
    if (!zero || (img->hdr.version < 3 && img->backing_name))
        return;
    if (img->hdr.version < 3)
        *raw = 0;
    else if (img->g.extl2)
        *raw = 0, *bitmap = ALL_ZERO;
    else
        *raw = QI_OFLAG_ZERO;
}

/* Whether guest bytes [OFF, OFF+LEN) of IMG are known to read as zeros
 * without reading them (zero entries, unallocated with nothing below, holes
 * of a raw backing file), as QEMU's block status tells. */
static int reads_zero(qi_image *img, uint64_t off, uint64_t len, bool *zero)
{
    int rc;
    *zero = true;
    if (!len)
        return 0;
    if (img->raw) {
        *zero = off >= img->size || qi_bio_is_hole(img->file, off, len) == 1;
        return 0;
    }
    while (len && *zero) {
        qi_run r;
        if ((rc = qi_cluster_active_run(img, off, len, &r)) < 0)
            return rc;
        if (r.kind == QI_RUN_DATA || r.kind == QI_RUN_COMPRESSED) {
            *zero = false;
        } else if (r.kind == QI_RUN_UNALLOC && img->backing_name) {
            qi_image *b = img->backing;
            if (!b)
                *zero = false;
            else if (off < b->size &&
                     (rc = reads_zero(b, off, b->size - off < r.len ? b->size - off : r.len,
                                      zero)) < 0)
                return qi_err_copy(&img->err, &b->err);
        }
        off += r.len;
        len -= r.len;
    }
    return 0;
}

/* Make units A..B of guest cluster CI read as zeros in the L2 bitmap
 * (extended L2, part of a cluster), as QEMU does: zero bits set, allocated
 * bits cleared, the entry and its host cluster kept. A compressed cluster
 * cannot be zeroed in part: QI_ENOTSUP, nothing changed.
 * Crash table: the bitmap (L2 cache): consistent, old or new. */
static int zero_units(qi_image *img, uint64_t ci, unsigned a, unsigned b)
{
    const qi_geom *g = &img->g;
    uint32_t l2i = (uint32_t)(ci & (g->l2_entries - 1));
    uint64_t l2_off, m = units_mask(a, b);
    qi_l2_entry e;
    int rc;
    if ((rc = qi_cluster_l2_for_write(img, ci >> g->l2_bits, &l2_off)) < 0 ||
        (rc = qi_cluster_l2_entry(img, l2_off, l2i, &e)) < 0)
        return rc;
    if (e.type == QI_CLUSTER_COMPRESSED)
        return QI_ENOTSUP;
    uint64_t bitmap = (e.bitmap | (m << 32)) & ~m;
    if (bitmap == e.bitmap)
        return 0;
    if ((rc = qi_cluster_set_l2_ext(img, l2_off, l2i, e.raw, bitmap)) < 0)
        return rc;
    img->cbuf_off = 0;
    return 0;
}

/* Write zero bytes over [OFF, OFF+LEN): the fallback where the metadata
 * cannot say "reads as zeros". ZEROS: two zero-filled clusters. */
static int write_zeros(qi_image *img, uint64_t off, uint64_t len, uint8_t *zeros)
{
    uint32_t cs = img->g.cluster_size;
    int rc = 0;
    while (len && rc == 0) {
        uint32_t in = (uint32_t)(off & (cs - 1));
        uint32_t n = cs - in < len ? cs - in : (uint32_t)len;
        rc = write_cluster(img, off >> img->g.cluster_bits, in, zeros, n, zeros + cs);
        off += n;
        len -= n;
    }
    return rc;
}

/* Make [OFF, END) read as zeros through the metadata alone, as QEMU's
 * qcow2 driver does for an aligned request (units; the end may be the end
 * of the image): a version 2 image has no zero flag and only a discard
 * without a backing file; the part of a cluster before the first cluster
 * boundary and after the last one gets zero subclusters; whole clusters
 * (and a last cluster cut by the end of the image) get zero entries.
 * Returns QI_ENOTSUP (the caller writes zero bytes instead) for a version
 * 2 image over a backing file and for part of a compressed cluster.
 * Crash tables: change_entry, zero_units; with data_file_raw the data file
 * range is zeroed first, then a barrier (crash: the raw view reads zeros
 * where the qcow2 view is still old). */
static int zeroize(qi_image *img, uint64_t off, uint64_t end, bool unmap,
                   const uint8_t *zeros)
{
    const qi_geom *g = &img->g;
    uint64_t cs = g->cluster_size, ub = unit_bits(img);
    int rc = 0;
    if (img->hdr.version < 3) {
        if (img->backing_name)
            return QI_ENOTSUP;
        for (uint64_t ci = off / cs; rc == 0 && ci * cs < end; ci++)
            rc = change_entry(img, ci, discarded, 0, NULL);
        return rc;
    }
    if (img->data_file_raw) {
        uint64_t stop = end < img->size ? end : img->size;
        for (uint64_t o = off; rc == 0 && o < stop; o += cs - (o & (cs - 1))) {
            uint64_t k = cs - (o & (cs - 1));
            rc = qi_bio_pwrite(img->data, zeros, k < stop - o ? k : stop - o, o,
                               &img->err, "data cluster");
        }
        if (rc < 0)
            return rc;
        qi_cache_barrier(img->l2_cache, img->data);
    }
    uint64_t up = (off + cs - 1) & ~(cs - 1);
    uint64_t head = (end < up ? end : up) - off;
    if (head && (rc = zero_units(img, off / cs, (unsigned)((off & (cs - 1)) >> ub),
                                 (unsigned)(((off & (cs - 1)) + head - 1) >> ub))) < 0)
        return rc;
    off += head;
    uint64_t cstart = end & ~(cs - 1);
    uint64_t tail = end >= img->size ? 0 : end - (off > cstart ? off : cstart);
    end -= tail;
    for (; rc == 0 && off < end; off += cs)     /* OFF is cluster aligned here */
        rc = change_entry(img, off / cs, zeroed, unmap, NULL);
    if (rc == 0 && tail)
        rc = zero_units(img, end / cs, 0, (unsigned)((tail - 1) >> ub));
    return rc;
}

/* One request of the block layer's split (at most one partial unit at
 * each end): a piece inside one unit that does not cover it becomes a
 * whole zero unit when the rest of the unit already reads as zeros and
 * the unit holds no data; an aligned piece is zeroized; anything else, or
 * QI_ENOTSUP from zeroize, is written as zero bytes. */
static int zero_request(qi_image *img, uint64_t off, uint64_t len, bool unmap,
                        uint8_t *zeros)
{
    const qi_geom *g = &img->g;
    uint64_t us = 1ull << unit_bits(img), end = off + len, req_off = off;
    uint64_t head = off & (us - 1);
    uint64_t tail = end == img->size ? 0 : ((end + us - 1) & ~(us - 1)) - end;
    int rc;
    if (head || tail) {
        uint64_t ci = off >> g->cluster_bits, l2_off;
        bool z1, z2;
        qi_l2_entry e;
        if ((rc = qi_cluster_active_l2_offset(img, ci >> g->l2_bits, &l2_off)) < 0)
            return rc;
        if (l2_off &&
            (rc = qi_cluster_l2_entry(img, l2_off, (uint32_t)(ci & (g->l2_entries - 1)),
                                      &e)) < 0)
            return rc;
        if (!l2_off)
            qi_format_decode_l2(g, img->data_file != NULL, 0, 0, &e);
        if ((rc = reads_zero(img, off - head, head, &z1)) < 0 ||
            (rc = reads_zero(img, end, tail, &z2)) < 0)
            return rc;
        unsigned u = (unsigned)(((off - head) & (g->cluster_size - 1)) >> unit_bits(img));
        if (!z1 || !z2 || e.type == QI_CLUSTER_COMPRESSED || unit_is_data(img, &e, u))
            return write_zeros(img, off, len, zeros);
        off -= head;
        end = off + us;
    }
    rc = zeroize(img, off, end, unmap, zeros);
    if (rc == QI_ENOTSUP)       /* QEMU's fallback: the request as it came */
        rc = write_zeros(img, req_off, len, zeros);
    return rc;
}

/* Zeroing splits the range as QEMU's block layer does (alignment: the
 * unit): a partial unit at the start, the aligned bulk, a partial unit at
 * the end. */
int qi_image_zero(qi_image *img, uint64_t off, uint64_t len, bool unmap)
{
    uint64_t us = 1ull << unit_bits(img);
    uint8_t *zeros = NULL;
    int rc;
    if ((rc = check_range(img, "zero", off, len)) < 0 ||
        (rc = qi_bitmap_note_write(img, off, len)) < 0)
        return rc;
    if (len && !(zeros = calloc(1, 2ull * img->g.cluster_size)))
        return qi_fail(img, QI_ENOMEM, "", QI_NO_OFFSET, "out of memory");
    uint64_t head = off & (us - 1), tail = (off + len) & (us - 1);
    while (len && rc == 0) {
        uint64_t n = len;
        if (head) {
            n = us - head < len ? us - head : len;
            head = 0;
        } else if (tail && n > us) {
            n -= tail;
        }
        rc = zero_request(img, off, n, unmap, zeros);
        off += n;
        len -= n;
    }
    free(zeros);
    return end_op(img, rc);
}

int qi_image_discard(qi_image *img, uint64_t off, uint64_t len)
{
    uint32_t cs = img->g.cluster_size;
    uint8_t *zeros = NULL;
    int rc;
    if ((rc = check_range(img, "discard", off, len)) < 0 ||
        (rc = qi_bitmap_note_write(img, off, len)) < 0)
        return rc;
    if (img->data_file_raw && !(zeros = calloc(1, cs)))
        return qi_fail(img, QI_ENOMEM, "", QI_NO_OFFSET, "out of memory");
    /* only whole clusters (the last one may end at the virtual size) */
    uint64_t first = (off + cs - 1) / cs, end = off + len;
    for (uint64_t ci = first; rc == 0 && ci * (uint64_t)cs < end; ci++) {
        uint64_t cend = (ci + 1) * (uint64_t)cs;
        if (cend > end && end != img->size)
            break;
        rc = change_entry(img, ci, discarded, 0, zeros);
    }
    free(zeros);
    return end_op(img, rc);
}

int qi_image_flush(qi_image *img)
{
    int rc;
    if (!img->writable || img->raw)
        return 0;
    if ((rc = qi_refcount_settle(img)) < 0 || (rc = qi_bio_sync(img->data, &img->err)) < 0)
        return rc;
    if (img->data_file && (rc = qi_bio_sync(img->file, &img->err)) < 0)
        return rc;
    if ((rc = qi_bitmap_flush(img)) < 0)
        return rc;
    if (img->lazy_dirty) {      /* lazy refcounts: all on disk, clean again */
        img->hdr_req.what = QI_HDR_CLEAN;
        if ((rc = img->commit_header(img)) < 0)
            return rc;
        img->lazy_dirty = false;
    }
    return 0;
}
