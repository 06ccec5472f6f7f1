/* rw.c - guest reads (layer 4).
 *
 * Reads guest data through an L1 view: runs of host-contiguous data are
 * merged into one pread (across L2 tables too), zero runs are memset,
 * unallocated runs come from the backing chain (zeros past a shorter backing
 * file or with no backing file) and compressed clusters are decompressed
 * once and kept while reads stay inside them. Data clusters that start past
 * the end of the image file are reported as corruption rather than read as
 * zeros. Writes (COW, dedup, ordering) come with write support.
 * Calls: cluster, compress, bio. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "compress.h"
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
