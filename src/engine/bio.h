/* bio.h - file handles: full positional I/O and QEMU-compatible locks
 * (layer 0). */
#ifndef QI_BIO_H
#define QI_BIO_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "qi/error.h"

struct qi_bio_undo;
struct qi_journal;

typedef struct qi_bio {
    int fd;
    char *path;
    uint64_t size;      /* current length: fstat at open, then kept by the
                         * writes and truncates of this handle (the image's
                         * end of file, which the allocator extends) */
    dev_t dev;
    ino_t ino;
    uint64_t blocks512; /* st_blocks at open */
    bool writable;
    bool unsynced;      /* written since the last qi_bio_sync */
    uint64_t writes;    /* writes, cuts and discards made through this handle
                         * (tells an index built from the file it is stale) */
    bool nosync;        /* qi_bio_sync orders nothing (no fdatasync):
                         * QI_OPEN_UNSAFE */
    struct qi_bio_undo *undo;   /* fault injection: pre-images of unsynced writes */
    struct qi_bio *next_open;   /* fault injection: list of writable handles */
    struct qi_journal *journal; /* undo file or dry-run overlay (journal.c), or NULL */
    int journal_idx;            /* this file's index in it */
} qi_bio;

/* Lock modes for qi_bio_open */
enum { QI_LOCK_NONE = 0, QI_LOCK_READ, QI_LOCK_SHARED_READ, QI_LOCK_WRITE };

/* Open PATH (read-only unless WRITABLE) and apply LOCK the way QEMU's
 * file-posix does (shared OFD read locks on bytes 100.. and 200..; test for
 * conflicts). *out owns the handle. Returns 0, QI_ENOENT, QI_EIO, QI_EBUSY,
 * QI_ENOMEM; ERR names the file. */
int qi_bio_open(qi_bio **out, const char *path, bool writable, int lock,
                qi_err *err);

/* Open PATH read-write, creating it (mode 0644 less the umask) if it does
 * not exist, with the write lock of QI_LOCK_WRITE. The file is not cut:
 * the caller truncates it (a write the fault injection sees). Same
 * returns as qi_bio_open. */
int qi_bio_create(qi_bio **out, const char *path, qi_err *err);

/* Open PATH for writing under the journal J (journal.c: an undo file, or a
 * dry run: then the descriptor is read-only and every write goes to J's
 * overlay), with the locks of LOCK. Same returns as qi_bio_open. */
int qi_bio_open_journaled(qi_bio **out, const char *path, int lock,
                          struct qi_journal *j, qi_err *err);

/* Close and free; NULL is a no-op. Locks go away with the descriptor. */
void qi_bio_close(qi_bio *b);

/* Read LEN bytes at OFF. Bytes past the end of the file read as zeros (as
 * QEMU's file layer does). Returns 0 or QI_EIO (recorded in ERR with
 * STRUCTURE). */
int qi_bio_pread(qi_bio *b, void *buf, size_t len, uint64_t off, qi_err *err,
                 const char *structure);

/* qi_bio_pread of the file itself, without a dry run's overlay. */
int qi_bio_pread_raw(qi_bio *b, void *buf, size_t len, uint64_t off, qi_err *err,
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

/* Write LEN bytes of BUF at OFF (looping on short writes); extends the
 * file and b->size when the range ends past it. Returns 0, QI_ERDONLY, or
 * QI_EIO / QI_ENOSPC (recorded in ERR with STRUCTURE and OFF). Not durable
 * until qi_bio_sync. */
int qi_bio_pwrite(qi_bio *b, const void *buf, size_t len, uint64_t off,
                  qi_err *err, const char *structure);

/* Make every write so far durable (fdatasync): the write barrier of the
 * crash tables. A no-op when nothing was written since the last sync.
 * Returns 0 or QI_EIO. */
int qi_bio_sync(qi_bio *b, qi_err *err);

/* Set the file length to SIZE (grow with a hole or cut). Returns 0, QI_ERDONLY,
 * QI_EIO, QI_ENOSPC. */
int qi_bio_truncate(qi_bio *b, uint64_t size, qi_err *err);

/* Discard [OFF, OFF+LEN) as QEMU's file layer does for a freed cluster:
 * a hole punched (zeros written where the file system cannot), the file
 * length kept (nothing past the end of the file is touched). Counted as
 * a write by the fault injection. Returns 0, QI_ERDONLY, QI_EIO. */
int qi_bio_discard(qi_bio *b, uint64_t off, uint64_t len, qi_err *err,
                   const char *structure);

/* Fault injection for the crash tests (SQLite's test6.c idea). Process-wide,
 * over every writable handle:
 *   qi_bio_fault_arm(N, drop): the first N writes (pwrite or truncate) are
 *     performed; the next one and every write, truncate and sync after it
 *     fail with QI_EIO ("injected crash") and change nothing. With DROP,
 *     each handle also keeps the pre-image of every write not yet synced,
 *     and at the failing write every such write is undone (newest first),
 *     as a disk cache that never reached the platter would be lost.
 *   qi_bio_fault_crash(): the power loss now, without waiting for write
 *     N+1: with DROP, undo the unsynced writes. Returns 0 or QI_EIO.
 *   qi_bio_fault_disarm(): back to normal I/O; frees the pre-images.
 *   qi_bio_fault_writes(): writes performed since the last arm (all of them
 *     when not armed), so a test can find how many writes a path makes.
 *   qi_bio_fault_tripped(): whether the injected crash has happened. */
void qi_bio_fault_arm(uint64_t limit, bool drop_unsynced);
int qi_bio_fault_crash(void);
void qi_bio_fault_disarm(void);
uint64_t qi_bio_fault_writes(void);
bool qi_bio_fault_tripped(void);

/* Trace hook (img:trace): called before each write with the handle, the
 * structure named by the writer, the range and the new bytes (NULL for a
 * truncate, then LEN is the new size), and for each sync (STRUCTURE
 * "barrier"). Process-wide; NULL to remove. */
typedef void (*qi_bio_trace_fn)(void *payload, qi_bio *b, const char *structure,
                                uint64_t off, size_t len, const void *buf);
void qi_bio_set_trace(qi_bio_trace_fn fn, void *payload);

#endif
