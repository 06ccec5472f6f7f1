/* compress.h - compressed cluster (de)compression (layer 0). */
#ifndef QI_COMPRESS_H
#define QI_COMPRESS_H
#include <stddef.h>

enum { QI_COMP_ZLIB = 0, QI_COMP_ZSTD = 1 };

/* Decompress IN (INLEN bytes, may carry trailing bytes of the next
 * compressed cluster) into exactly OUTLEN bytes at OUT. TYPE 0 is raw
 * deflate (window 12 bits, as QEMU writes it), 1 is one or more zstd frames
 * with no length prefix. Returns 0, or QI_ECORRUPT when the stream is
 * invalid or ends before OUTLEN bytes, QI_ENOMEM. */
int qi_compress_inflate(int type, const void *in, size_t inlen, void *out,
                        size_t outlen);

/* Compress IN into OUT (OUTCAP bytes). Returns the compressed length, 0 if
 * the result would not be smaller than OUTCAP, or a negative QI_E* code. */
long qi_compress_deflate(int type, const void *in, size_t inlen, void *out,
                         size_t outcap);

#endif
