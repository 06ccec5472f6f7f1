/* Unit tests for compress.c: round trips through zlib/zstd themselves, and
 * the failure cases a hostile image can produce. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "qi/compress.h"
#include "qi/error.h"
#include "compress.h"
#include "tap.h"

#define CS 65536

static void fill(uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 7) ^ (i >> 9));
}

/* qi_compressor: QEMU's bound (cluster - 1 bytes), both types round-trip
 * through the decompressor the reader uses, random data does not shrink. */
static void compressor_tests(uint8_t *in, uint8_t *out, uint8_t *c)
{
    qi_compressor *z = NULL, *zs = NULL, *bad = NULL;
    tap_is_u64((uint64_t)qi_compressor_new(&bad, 7, CS), (uint64_t)QI_ENOTSUP,
               "compressor: unknown type refused");
    tap_is_u64((uint64_t)qi_compressor_new(&bad, QI_COMPRESSION_ZLIB, 1000), (uint64_t)QI_EINVAL,
               "compressor: cluster size not a power of two refused");
    tap_ok(qi_compressor_new(&z, QI_COMPRESSION_ZLIB, CS) == 0 &&
           qi_compressor_new(&zs, QI_COMPRESSION_ZSTD, CS) == 0, "compressors made");
    for (int round = 0; round < 2; round++) {  /* a second use of each context */
        long n = qi_compressor_run(z, in, c);
        memset(out, 0, CS);
        tap_ok(n > 0 && n < CS && qi_compress_inflate(QI_COMP_ZLIB, c, (size_t)n, out, CS) == 0 &&
               !memcmp(in, out, CS), "compressor zlib round-trips (use %d)", round + 1);
        n = qi_compressor_run(zs, in, c);
        memset(out, 0, CS);
        tap_ok(n > 0 && n < CS && qi_compress_inflate(QI_COMP_ZSTD, c, (size_t)n, out, CS) == 0 &&
               !memcmp(in, out, CS), "compressor zstd round-trips (use %d)", round + 1);
    }
    srand(5);
    for (size_t i = 0; i < CS; i++)
        out[i] = (uint8_t)rand();
    tap_is_u64((uint64_t)qi_compressor_run(z, out, c), 0, "zlib: random cluster does not shrink (0)");
    tap_is_u64((uint64_t)qi_compressor_run(zs, out, c), 0, "zstd: random cluster does not shrink (0)");
    qi_compressor_free(z);
    qi_compressor_free(zs);
    qi_compressor_free(NULL);
}

int main(void)
{
    uint8_t *in = malloc(CS), *out = malloc(CS), *c = malloc(2 * CS);
    fill(in, CS);
    /* raw deflate with a 4 KiB window, made by zlib directly (QEMU's layout) */
    z_stream s = { 0 };
    deflateInit2(&s, 6, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY);
    s.next_in = in; s.avail_in = CS; s.next_out = c; s.avail_out = 2 * CS;
    deflate(&s, Z_FINISH);
    size_t zlen = s.total_out;
    deflateEnd(&s);
    memset(c + zlen, 0x5a, 600); /* the tail of the last sector: junk */
    tap_is_u64((uint64_t)qi_compress_inflate(QI_COMP_ZLIB, c, zlen + 600, out, CS), 0,
               "deflate stream with trailing bytes decompresses");
    tap_ok(!memcmp(in, out, CS), "deflate data intact");
    tap_is_u64((uint64_t)qi_compress_inflate(QI_COMP_ZLIB, c, zlen / 2, out, CS),
               (uint64_t)QI_ECORRUPT, "truncated deflate stream is corruption");
    memset(c, 0xff, 16);
    tap_is_u64((uint64_t)qi_compress_inflate(QI_COMP_ZLIB, c, zlen, out, CS),
               (uint64_t)QI_ECORRUPT, "garbage deflate stream is corruption");

    size_t zs = ZSTD_compress(c, 2 * CS, in, CS, 3);
    tap_is_u64((uint64_t)qi_compress_inflate(QI_COMP_ZSTD, c, zs + 100, out, CS), 0,
               "zstd frame decompresses");
    tap_ok(!memcmp(in, out, CS), "zstd data intact");
    /* two frames of half a cluster each: QEMU's reader loops over frames */
    size_t a = ZSTD_compress(c, 2 * CS, in, CS / 2, 3);
    size_t b = ZSTD_compress(c + a, 2 * CS - a, in + CS / 2, CS / 2, 3);
    memset(out, 0, CS);
    tap_is_u64((uint64_t)qi_compress_inflate(QI_COMP_ZSTD, c, a + b, out, CS), 0,
               "two zstd frames fill one cluster");
    tap_ok(!memcmp(in, out, CS), "two-frame data intact");
    tap_is_u64((uint64_t)qi_compress_inflate(QI_COMP_ZSTD, c, a, out, CS),
               (uint64_t)QI_ECORRUPT, "zstd input ending before a full cluster");
    memset(c, 0, 8);
    tap_is_u64((uint64_t)qi_compress_inflate(QI_COMP_ZSTD, c, zs, out, CS),
               (uint64_t)QI_ECORRUPT, "bad zstd magic");
    long n = qi_compress_deflate(QI_COMP_ZLIB, in, CS, c, CS);
    tap_ok(n > 0 && qi_compress_inflate(QI_COMP_ZLIB, c, (size_t)n, out, CS) == 0 &&
           !memcmp(in, out, CS), "our deflate round-trips");
    compressor_tests(in, out, c);
    free(in);
    free(out);
    free(c);
    return tap_done();
}
