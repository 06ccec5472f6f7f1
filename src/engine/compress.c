/* compress.c - zlib and zstd cluster compression (layer 0).
 *
 * qcow2 compression type 0 is a raw deflate stream (no zlib header, QEMU
 * uses a 4 KiB window); type 1 is a zstd stream with no length prefix. A
 * compressed cluster's stored span is rounded up to 512-byte sectors, so the
 * input may end with bytes that belong to the next cluster: decompression
 * stops as soon as exactly one cluster has been produced, and any stream
 * that ends earlier is corruption. qi_compressor (include/qi/compress.h)
 * compresses clusters for compressed writes as QEMU does, one context per
 * compressor so that threads compress in parallel. Calls: zlib, libzstd. */
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <stdlib.h>

#include "qi/compress.h"
#include "qi/error.h"
#include "compress.h"

static int inflate_zlib(const void *in, size_t inlen, void *out, size_t outlen)
{
    z_stream s = { 0 };
    int ret;
    if (inlen > UINT32_MAX || outlen > UINT32_MAX)
        return QI_EINVAL;
    if (inflateInit2(&s, -12) != Z_OK)
        return QI_ENOMEM;
    s.next_in = (Bytef *)(uintptr_t)in;
    s.avail_in = (uInt)inlen;
    s.next_out = out;
    s.avail_out = (uInt)outlen;
    ret = inflate(&s, Z_FINISH);
    inflateEnd(&s);
    /* Like QEMU: a full output buffer is success, whether or not the stream
     * ended exactly there. */
    if ((ret == Z_STREAM_END || ret == Z_BUF_ERROR || ret == Z_OK) && s.avail_out == 0)
        return 0;
    return QI_ECORRUPT;
}

static int inflate_zstd(const void *in, size_t inlen, void *out, size_t outlen)
{
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    ZSTD_inBuffer ib = { in, inlen, 0 };
    ZSTD_outBuffer ob = { out, outlen, 0 };
    int rc = QI_ECORRUPT;
    if (!dctx)
        return QI_ENOMEM;
    /* Several frames may follow each other; stop once the cluster is full. */
    while (ob.pos < ob.size) {
        size_t last_in = ib.pos, last_out = ob.pos;
        size_t r = ZSTD_decompressStream(dctx, &ob, &ib);
        if (ZSTD_isError(r))
            goto out;
        if (ib.pos == last_in && ob.pos == last_out)
            goto out; /* input exhausted before the cluster was complete */
    }
    rc = 0;
out:
    ZSTD_freeDCtx(dctx);
    return rc;
}

int qi_compress_inflate(int type, const void *in, size_t inlen, void *out,
                        size_t outlen)
{
    if (type == QI_COMP_ZLIB)
        return inflate_zlib(in, inlen, out, outlen);
    if (type == QI_COMP_ZSTD)
        return inflate_zstd(in, inlen, out, outlen);
    return QI_ENOTSUP;
}

long qi_compress_deflate(int type, const void *in, size_t inlen, void *out,
                         size_t outcap)
{
    if (type == QI_COMP_ZSTD) {
        size_t r = ZSTD_compress(out, outcap, in, inlen, 1);
        if (ZSTD_isError(r))
            return ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall ? 0 : QI_EINVAL;
        return r < outcap ? (long)r : 0;
    }
    if (type != QI_COMP_ZLIB)
        return QI_ENOTSUP;
    z_stream s = { 0 };
    long rc;
    if (inlen > UINT32_MAX || outcap > UINT32_MAX)
        return QI_EINVAL;
    if (deflateInit2(&s, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return QI_ENOMEM;
    s.next_in = (Bytef *)(uintptr_t)in;
    s.avail_in = (uInt)inlen;
    s.next_out = out;
    s.avail_out = (uInt)outcap;
    int ret = deflate(&s, Z_FINISH);
    rc = ret == Z_STREAM_END && s.total_out < outcap ? (long)s.total_out : 0;
    deflateEnd(&s);
    return rc;
}

/* ---- qi_compressor (include/qi/compress.h) ---- */

struct qi_compressor {
    int type;
    uint32_t cs;
    z_stream z;               /* zlib: initialized once, reset per cluster */
    ZSTD_CCtx *zc;            /* zstd */
};

int qi_compressor_new(qi_compressor **out, int type, uint32_t cluster_size)
{
    qi_compressor *c;
    *out = NULL;
    if (type != QI_COMPRESSION_ZLIB && type != QI_COMPRESSION_ZSTD)
        return QI_ENOTSUP;
    if (cluster_size < 512 || cluster_size > (2u << 20) || (cluster_size & (cluster_size - 1)))
        return QI_EINVAL;
    if (!(c = calloc(1, sizeof *c)))
        return QI_ENOMEM;
    c->type = type;
    c->cs = cluster_size;
    if (type == QI_COMPRESSION_ZSTD) {
        c->zc = ZSTD_createCCtx();
        if (!c->zc) {
            free(c);
            return QI_ENOMEM;
        }
    } else if (deflateInit2(&c->z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9,
                            Z_DEFAULT_STRATEGY) != Z_OK) {
        free(c);
        return QI_ENOMEM;
    }
    *out = c;
    return 0;
}

long qi_compressor_run(qi_compressor *c, const void *in, void *out)
{
    size_t cap = c->cs - 1;
    if (c->type == QI_COMPRESSION_ZSTD) {
        /* zstd's default level, as QEMU's ZSTD_compressStream2 uses */
        size_t r = ZSTD_compressCCtx(c->zc, out, cap, in, c->cs, ZSTD_CLEVEL_DEFAULT);
        if (ZSTD_isError(r))
            return ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall ? 0 : QI_EIO;
        return (long)r;
    }
    if (deflateReset(&c->z) != Z_OK)
        return QI_EIO;
    c->z.next_in = (Bytef *)(uintptr_t)in;
    c->z.avail_in = c->cs;
    c->z.next_out = out;
    c->z.avail_out = (uInt)cap;
    int ret = deflate(&c->z, Z_FINISH);
    if (ret == Z_STREAM_END)
        return (long)(cap - c->z.avail_out);
    return ret == Z_OK || ret == Z_BUF_ERROR ? 0 : QI_EIO;
}

void qi_compressor_free(qi_compressor *c)
{
    if (!c)
        return;
    if (c->type == QI_COMPRESSION_ZSTD)
        ZSTD_freeCCtx(c->zc);
    else
        deflateEnd(&c->z);
    free(c);
}
