/* qinspect public API: compressing clusters for compressed writes.
 *
 * A qi_compressor compresses one cluster at a time for one compression
 * type and cluster size, as QEMU compresses a cluster for a compressed
 * write (qcow2_co_compress): zlib is raw deflate with a 4 KiB window at the
 * default level, zstd a frame at zstd's default level. It holds its own
 * context and no shared state: threads each use their own compressor and
 * may run at the same time (qi_image_write_compressed then stores the
 * results, from one thread). */
#ifndef QI_COMPRESS_PUB_H
#define QI_COMPRESS_PUB_H

#include <stddef.h>
#include <stdint.h>

#include "qi/error.h"

/* Compression types (the header's compression_type byte). */
#define QI_COMPRESSION_ZLIB 0
#define QI_COMPRESSION_ZSTD 1

typedef struct qi_compressor qi_compressor;

/* A compressor for TYPE and clusters of CLUSTER_SIZE bytes (512 .. 2 MiB).
 * Returns 0, QI_ENOTSUP (unknown type), QI_EINVAL, QI_ENOMEM. */
int qi_compressor_new(qi_compressor **out, int type, uint32_t cluster_size);

/* Compress the cluster IN (cluster_size bytes; a last cluster cut at the
 * virtual size is zero padded by the caller, as QEMU does) into OUT, which
 * holds cluster_size - 1 bytes. Returns the compressed length (> 0); 0
 * when it does not fit in cluster_size - 1 bytes (QEMU then writes the
 * cluster uncompressed); QI_EIO when the library fails. */
long qi_compressor_run(qi_compressor *c, const void *in, void *out);

/* Free C; NULL is a no-op. */
void qi_compressor_free(qi_compressor *c);

#endif
