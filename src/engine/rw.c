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
 * lose one reference once that entry is on disk (qi_refcount_settle). Not
 * supported yet (QI_ENOTSUP, nothing written): extended L2 entries, an
 * external data file, persistent bitmaps. With lazy refcounts (compatible
 * bit 0) the first change of a session sets the dirty bit (lazy_begin).
 * Calls: cluster, refcount, compress, bio. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

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
    return qi_rw_read(img, &v, buf, off, len);
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
    if (off > limit || len > limit - off)
        return qi_fail(img, QI_EINVAL, "", QI_NO_OFFSET, "read of %zu bytes at %#"
                       PRIx64 " is beyond the snapshot's size %" PRIu64, len, off,
                       limit);
    return qi_rw_read(img, &v, buf, off, len);
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
    else if (img->g.extl2)
        why = "extended L2 entries (subclusters)";
    else if (img->data_file)
        why = "an external data file";
    else if (img->n_bitmaps)
        why = "persistent dirty bitmaps (they would go stale)";
    if (why)
        return qi_fail(img, QI_ENOTSUP, "", QI_NO_OFFSET, "writing to an image with "
                       "%s is not supported yet", why);
    if (img->corrupt_seen)
        return qi_fail(img, QI_ECORRUPT, "", QI_NO_OFFSET, "the image was found corrupt "
                       "earlier in this session; no further writes");
    return 0;
}

/* The host cluster(s) entry E referenced lose that reference (deferred until
 * the entry that replaced E is on disk), unless the new entry keeps
 * NEW_HOST, the same cluster. */
static int drop_old(qi_image *img, const qi_l2_entry *e, uint64_t new_host)
{
    if (e->type == QI_CLUSTER_COMPRESSED)
        return qi_refcount_free_later(img, e->host_offset, e->csize);
    if ((e->type == QI_CLUSTER_NORMAL || e->type == QI_CLUSTER_ZERO_ALLOC) &&
        e->host_offset != new_host)
        return qi_refcount_free_later(img, e->host_offset, img->g.cluster_size);
    return 0;
}

/* Write N bytes of DATA at byte IN of guest cluster CI.
 *
 * Crash table (an allocating write; the in-place case is one data write):
 *   1. allocate a host cluster (refcount 1, in the refcount cache)
 *   2. write the whole cluster: old contents around the new bytes
 *                                          crash: leak at most
 *   3. data barrier; L2 entry -> new | COPIED (L2 cache, written after the
 *      refcount blocks and the barrier)    crash: consistent, new data
 *   4. old host cluster(s) -1, deferred until the entry is on disk
 *                                          crash: leak */
static int write_cluster(qi_image *img, uint64_t ci, uint32_t in, const uint8_t *data,
                         uint32_t n, uint8_t *scratch)
{
    const qi_geom *g = &img->g;
    uint64_t cs = g->cluster_size, l2_off, host, old_raw, goff = ci << g->cluster_bits;
    uint32_t l2i = (uint32_t)(ci & (g->l2_entries - 1));
    qi_l2_entry e;
    qi_l1view v;
    int rc;
    if ((rc = qi_cluster_l2_for_write(img, ci >> g->l2_bits, &l2_off)) < 0 ||
        (rc = qi_cluster_l2_entry(img, l2_off, l2i, &e)) < 0)
        return rc;
    if (e.type == QI_CLUSTER_NORMAL && e.copied)
        return qi_bio_pwrite(img->data, data, n, e.host_offset + in, &img->err,
                             "data cluster");
    if (n < cs) {   /* copy-on-write: the cluster as it reads now, new bytes over it */
        uint64_t avail = img->size - goff < cs ? img->size - goff : cs;
        memset(scratch, 0, cs);
        if ((rc = qi_cluster_view_active(img, &v)) < 0 ||
            (rc = qi_rw_read(img, &v, scratch, goff, (size_t)avail)) < 0)
            return rc;
        memcpy(scratch + in, data, n);
    }
    if (e.type == QI_CLUSTER_ZERO_ALLOC && e.copied)
        host = e.host_offset;           /* ours alone: reuse it in place */
    else if ((rc = qi_refcount_alloc(img, 1, &host)) < 0)
        return rc;
    if ((rc = qi_bio_pwrite(img->data, n < cs ? scratch : data, cs, host, &img->err,
                            n < cs ? "COW cluster" : "data cluster")) < 0)
        return rc;
    qi_cache_barrier(img->l2_cache, img->data);
    if ((rc = qi_cluster_set_l2(img, l2_off, l2i, qi_format_encode_l2(host, true, false),
                                &old_raw)) < 0)
        return rc;
    img->cbuf_off = 0;
    return drop_old(img, &e, host);
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

int qi_image_write(qi_image *img, const void *buf, uint64_t off, size_t len)
{
    const uint8_t *p = buf;
    uint8_t *scratch = NULL;
    int rc;
    if ((rc = check_range(img, "write", off, len)) < 0)
        return rc;
    if (!(scratch = malloc(img->g.cluster_size)))
        return qi_fail(img, QI_ENOMEM, "", QI_NO_OFFSET, "out of memory");
    while (len && rc == 0) {
        uint64_t ci = off >> img->g.cluster_bits;
        uint32_t in = (uint32_t)(off & (img->g.cluster_size - 1));
        uint32_t n = img->g.cluster_size - in < len ? img->g.cluster_size - in : (uint32_t)len;
        rc = write_cluster(img, ci, in, p, n, scratch);
        p += n;
        off += n;
        len -= n;
    }
    free(scratch);
    return end_op(img, rc);
}

/* Set the L2 entry of guest cluster CI to NEW_RAW (a function of the old
 * entry: NEW_OF(img, old, arg)), the old host cluster(s) losing their
 * reference when the new entry drops them.
 * Crash table:
 *   1. the L2 entry changes (L2 cache, written after the refcount blocks)
 *                                          crash: consistent, old or new
 *   2. dropped host cluster(s) -1, deferred until the entry is on disk
 *                                          crash: leak */
typedef uint64_t (*entry_fn)(const qi_image *img, const qi_l2_entry *e, int arg);

static int change_entry(qi_image *img, uint64_t ci, entry_fn new_of, int arg)
{
    const qi_geom *g = &img->g;
    uint32_t l2i = (uint32_t)(ci & (g->l2_entries - 1));
    uint64_t l2_off, raw, old_raw;
    qi_l2_entry e;
    qi_l1view v;
    int rc;
    /* no L2 table and nothing to change: do not allocate one */
    if ((rc = qi_cluster_view_active(img, &v)) < 0 ||
        (rc = qi_cluster_l2_offset(img, &v, ci >> g->l2_bits, &l2_off)) < 0)
        return rc;
    if (!l2_off) {
        qi_format_decode_l2(g, false, 0, 0, &e);
        if (new_of(img, &e, arg) == 0)
            return 0;
    }
    if ((rc = qi_cluster_l2_for_write(img, ci >> g->l2_bits, &l2_off)) < 0 ||
        (rc = qi_cluster_l2_entry(img, l2_off, l2i, &e)) < 0)
        return rc;
    raw = new_of(img, &e, arg);
    if (raw == e.raw)
        return 0;
    if ((rc = qi_cluster_set_l2(img, l2_off, l2i, raw, &old_raw)) < 0)
        return rc;
    img->cbuf_off = 0;
    return drop_old(img, &e, raw & QI_L2E_OFFSET_MASK);
}

/* Zeroing a whole cluster, as QEMU does it on a version 3 image: without
 * unmap an allocated (normal or zero) cluster keeps its host cluster and
 * its COPIED flag and gets the zero flag; a compressed cluster, an
 * unallocated one, or any cluster with unmap becomes a plain zero entry.
 * A version 2 image without a backing file makes it unallocated (reads as
 * zeros); with one, zero bytes are written instead (not here). */
static uint64_t zeroed(const qi_image *img, const qi_l2_entry *e, int unmap)
{
    if (img->hdr.version < 3)   /* no zero flag; no backing file: unallocated */
        return 0;
    bool keep = !unmap && (e->type == QI_CLUSTER_NORMAL || e->type == QI_CLUSTER_ZERO_ALLOC);
    return keep ? (e->raw | QI_OFLAG_ZERO) : QI_OFLAG_ZERO;
}

/* Discarding a whole cluster, as QEMU does it (not a full discard): on a
 * version 3 image, where a backing file could show through or the cluster
 * was allocated, it reads as zeros afterwards (zero flag), else it becomes
 * unallocated. A version 2 image has no zero flag: without a backing file
 * the cluster becomes unallocated; with one, QEMU leaves it as it is. */
static uint64_t discarded(const qi_image *img, const qi_l2_entry *e, int unused)
{
    (void)unused;
    if (img->hdr.version < 3)
        return img->backing_name ? e->raw : 0;
    bool alloc = e->type == QI_CLUSTER_NORMAL || e->type == QI_CLUSTER_ZERO_ALLOC ||
                 e->type == QI_CLUSTER_COMPRESSED;
    return img->backing_name || alloc ? QI_OFLAG_ZERO : 0;
}

int qi_image_zero(qi_image *img, uint64_t off, uint64_t len, bool unmap)
{
    uint32_t cs = img->g.cluster_size;
    uint8_t *zeros = NULL;
    int rc;
    if ((rc = check_range(img, "zero", off, len)) < 0)
        return rc;
    while (len && rc == 0) {
        uint32_t in = (uint32_t)(off & (cs - 1));
        uint64_t n = cs - in < len ? cs - in : len;
        bool whole = in == 0 && (n == cs || off + n == img->size);
        if (whole && (img->hdr.version >= 3 || !img->backing_name)) {
            rc = change_entry(img, off >> img->g.cluster_bits, zeroed, unmap);
        } else if (!zeros && !(zeros = calloc(1, 2ull * cs))) {
            rc = qi_fail(img, QI_ENOMEM, "", QI_NO_OFFSET, "out of memory");
        } else {
            /* a piece of a cluster, or version 2 over a backing file: zero bytes */
            rc = write_cluster(img, off >> img->g.cluster_bits, in, zeros, (uint32_t)n,
                               zeros + cs);
        }
        off += n;
        len -= n;
    }
    free(zeros);
    return end_op(img, rc);
}

int qi_image_discard(qi_image *img, uint64_t off, uint64_t len)
{
    uint32_t cs = img->g.cluster_size;
    int rc;
    if ((rc = check_range(img, "discard", off, len)) < 0)
        return rc;
    /* only whole clusters (the last one may end at the virtual size) */
    uint64_t first = (off + cs - 1) / cs, end = off + len;
    for (uint64_t ci = first; rc == 0 && ci * (uint64_t)cs < end; ci++) {
        uint64_t cend = (ci + 1) * (uint64_t)cs;
        if (cend > end && end != img->size)
            break;
        rc = change_entry(img, ci, discarded, 0);
    }
    return end_op(img, rc);
}

int qi_image_flush(qi_image *img)
{
    int rc;
    if (!img->writable || img->raw)
        return 0;
    if ((rc = qi_refcount_settle(img)) < 0 || (rc = qi_bio_sync(img->data, &img->err)) < 0)
        return rc;
    if (img->lazy_dirty) {      /* lazy refcounts: all on disk, clean again */
        img->hdr_req.what = QI_HDR_CLEAN;
        if ((rc = img->commit_header(img)) < 0)
            return rc;
        img->lazy_dirty = false;
    }
    return 0;
}
