/* cwrite.c - compressed cluster writes (layer 4).
 *
 * qi_image_write_compressed stores one guest cluster the way QEMU's
 * qcow2_co_pwritev_compressed does it:
 *  - only a whole cluster at a cluster-aligned offset (or the last cluster
 *    of the image, cut at the virtual size, compressed zero padded);
 *  - compressed data goes only where the guest cluster has no host cluster
 *    (unallocated, or a zero cluster without one): QEMU never overwrites
 *    anything with compressed data (it fails with EIO; here QI_EINVAL);
 *  - the data is byte-packed right after the previous compressed cluster of
 *    this session when it fits in that host cluster, or runs on into the
 *    next host cluster when the allocator gives the cluster right after it;
 *    otherwise it starts a new host cluster (qcow2_alloc_bytes). Every host
 *    cluster the bytes touch gets one reference more;
 *  - the L2 entry is the compressed descriptor (offset, sectors touched - 1)
 *    without COPIED (a compressed cluster is never written in place), with
 *    extended L2 a zero bitmap;
 *  - when compression does not make the cluster smaller than a cluster
 *    minus one byte, it is written uncompressed (qi_image_write);
 *  - images with an external data file refuse it (QI_ENOTSUP), as QEMU.
 * The file is kept a multiple of 512 bytes long: the data is followed by
 * zeros up to the next sector (QEMU truncates to the sector at the end of
 * qemu-img convert), so that a read of the descriptor's whole sectors stays
 * inside the file.
 * Calls: cluster, refcount, rw (write begin/end), bio, format. */
#include <inttypes.h>
#include <string.h>

#include "cluster.h"
#include "refcount.h"
#include "rw.h"

/* LEN bytes for compressed data (qcow2_alloc_bytes): *HOST = where they go.
 * The host clusters touched gain one reference (refcount cache). */
static int alloc_bytes(qi_image *img, uint64_t len, uint64_t *host)
{
    uint32_t cs = img->g.cluster_size, bits = img->g.cluster_bits;
    uint64_t off = img->free_byte_offset, refs, fresh;
    int rc;
    if (off) {
        if ((rc = qi_refcount_get(img, off >> bits, &refs)) < 0)
            return rc;
        if (refs == 0 || refs >= qi_format_refcount_max(img->g.refcount_order))
            off = 0;
    }
    if (off && cs - (off & (cs - 1)) >= len) {
        rc = qi_refcount_update(img, off >> bits, 1);
    } else {
        if ((rc = qi_refcount_alloc(img, 1, &fresh)) < 0)
            return rc;
        /* the next cluster right after the current one: run on into it */
        if (off && fresh == (off | (cs - 1)) + 1)
            rc = qi_refcount_update(img, off >> bits, 1);
        else
            off = fresh;
    }
    if (rc < 0)
        return rc;
    *host = off;
    img->free_byte_offset = ((off + len) & (cs - 1)) ? off + len : 0;
    return 0;
}

/* Write CLEN bytes of CDATA at HOST and zeros after them up to the next
 * sector: those bytes are free (the rest of the cluster is this session's
 * to pack into, and is overwritten by the next compressed cluster), and a
 * file that ends there stays a multiple of 512 bytes long. */
static int put_data(qi_image *img, const void *cdata, size_t clen, uint64_t host)
{
    static const uint8_t zeros[512];
    uint64_t end = host + clen;
    int rc = qi_bio_pwrite(img->file, cdata, clen, host, &img->err, "compressed cluster");
    if (rc == 0 && (end & 511))
        rc = qi_bio_pwrite(img->file, zeros, 512 - (end & 511), end, &img->err,
                           "compressed cluster");
    return rc;
}

/* Crash table:
 *   1. allocate bytes: the host cluster(s) touched +1 (refcount cache;
 *      written back before any L2 table)
 *   2. write the compressed data (and zeros up to the end of its sector)
 *                                            crash: leak at most
 *   3. data barrier; L2 entry -> compressed descriptor (L2 cache, written
 *      after the refcount blocks and the barrier)
 *                                            crash: consistent, new data
 * Nothing loses a reference: the entry had no host cluster. */
static int store(qi_image *img, uint64_t off, const void *cdata, size_t clen)
{
    const qi_geom *g = &img->g;
    uint64_t ci = off >> g->cluster_bits, l2_off, host;
    uint32_t l2i = (uint32_t)(ci & (g->l2_entries - 1));
    qi_l2_entry e;
    int rc;
    if ((rc = qi_cluster_l2_for_write(img, ci >> g->l2_bits, &l2_off)) < 0 ||
        (rc = qi_cluster_l2_entry(img, l2_off, l2i, &e)) < 0)
        return rc;
    if (e.type == QI_CLUSTER_COMPRESSED || e.host_offset)
        return qi_fail(img, QI_EINVAL, "L2 table", l2_off + (uint64_t)l2i * g->l2_entry_size,
                       "guest cluster %#" PRIx64 " is allocated (L2 entry %#018" PRIx64
                       "): compressed data is written only to unallocated clusters",
                       off, e.raw);
    if ((rc = alloc_bytes(img, clen, &host)) < 0 ||
        (rc = put_data(img, cdata, clen, host)) < 0)
        return rc;
    qi_cache_barrier(img->l2_cache, img->file);
    rc = qi_cluster_set_l2_ext(img, l2_off, l2i, qi_format_encode_compressed(g, host, clen), 0);
    img->cbuf_off = 0;
    return rc;
}

int qi_image_write_compressed(qi_image *img, uint64_t off, const void *data, size_t len,
                              const void *cdata, size_t clen)
{
    uint32_t cs = img->g.cluster_size;
    int rc;
    if (img->raw || !img->writable || clen == 0)
        return qi_image_write(img, data, off, len);
    if ((off & (cs - 1)) || !len || len > cs || (len < cs && off + len != img->size))
        return qi_fail(img, QI_EINVAL, "", QI_NO_OFFSET, "compressed write of %zu bytes at %#"
                       PRIx64 ": only whole clusters (or the last one, up to the "
                       "virtual size) at cluster-aligned offsets", len, off);
    if (clen >= cs)
        return qi_fail(img, QI_EINVAL, "", QI_NO_OFFSET, "compressed data of %zu bytes "
                       "is not smaller than a cluster", clen);
    if (img->data_file)
        return qi_fail(img, QI_ENOTSUP, "", QI_NO_OFFSET, "compressed writes to an image "
                       "with an external data file are not supported (as in QEMU)");
    if ((rc = qi_rw_write_begin(img, "compressed write", off, len)) < 0)
        return rc;
    return qi_rw_write_end(img, store(img, off, cdata, clen));
}
