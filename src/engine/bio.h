/* bio.h - file handles: full positional I/O and QEMU-compatible locks
 * (layer 0). */
#ifndef QI_BIO_H
#define QI_BIO_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "qi/error.h"

typedef struct qi_bio {
    int fd;
    char *path;
    uint64_t size;      /* file length at open */
    dev_t dev;
    ino_t ino;
    uint64_t blocks512; /* st_blocks at open */
    bool writable;
} qi_bio;

/* Lock modes for qi_bio_open */
enum { QI_LOCK_NONE = 0, QI_LOCK_READ, QI_LOCK_SHARED_READ, QI_LOCK_WRITE };

/* Open PATH (read-only unless WRITABLE) and apply LOCK the way QEMU's
 * file-posix does (shared OFD read locks on bytes 100.. and 200..; test for
 * conflicts). *out owns the handle. Returns 0, QI_ENOENT, QI_EIO, QI_EBUSY,
 * QI_ENOMEM; ERR names the file. */
int qi_bio_open(qi_bio **out, const char *path, bool writable, int lock,
                qi_err *err);

/* Close and free; NULL is a no-op. Locks go away with the descriptor. */
void qi_bio_close(qi_bio *b);

/* Read LEN bytes at OFF. Bytes past the end of the file read as zeros (as
 * QEMU's file layer does). Returns 0 or QI_EIO (recorded in ERR with
 * STRUCTURE). */
int qi_bio_pread(qi_bio *b, void *buf, size_t len, uint64_t off, qi_err *err,
                 const char *structure);

/* Read the contiguous file range at OFF into the IOVCNT buffers of IOV
 * (scatter read, zeros past the end of the file). Returns 0 or QI_EIO. */
struct iovec;
int qi_bio_preadv(qi_bio *b, const struct iovec *iov, int iovcnt, uint64_t off,
                  qi_err *err, const char *structure);

/* Current file length (fstat). */
int qi_bio_stat_size(qi_bio *b, uint64_t *size);

/* Data/hole probe: is [off, off+len) entirely a hole of the host file?
 * Returns 1 (hole), 0 (has data or unknown). */
int qi_bio_is_hole(qi_bio *b, uint64_t off, uint64_t len);

/* Offset of the next data at or after OFF (SEEK_DATA), or the file end if
 * none; -1 when the file system cannot tell (then treat all as data). */
int64_t qi_bio_next_data(qi_bio *b, uint64_t off);
/* Offset of the next hole at or after OFF (SEEK_HOLE). */
int64_t qi_bio_next_hole(qi_bio *b, uint64_t off);

#endif
