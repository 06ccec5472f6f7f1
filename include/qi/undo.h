/* qinspect public API: undo files (qi_open_opts.undo_path) and restoring
 * an image from one (`qinspect undo`).
 *
 * Format (all integers big-endian; written append-only, one record at a
 * time, each made durable with fdatasync before the image write it
 * protects; the directory is synced once when the file is created):
 *   file header, 16 bytes: magic "QIUNDO\r\n", u32 version (1), u32 0.
 *   records: u8 type, 3 bytes 0, u32 payload length P, P bytes payload,
 *            u32 CRC-32 (zlib) of the 8 header bytes and the payload.
 *   'F' file: u32 file index (0 image, 1 external data file), u64 size
 *       at open, u64 st_dev, u64 st_ino, then the path (absolute, no NUL).
 *       Written when the file is opened for writing, before any write.
 *   'D' data: u32 file index, u64 offset, then the original bytes of
 *       [offset, offset + P - 12) (only bytes below the size at open: the
 *       rest goes away when the size is restored). Each byte is saved
 *       once, before its first overwrite (write, discard or cut).
 *   'E' end: u32 file index, u64 size, u64 st_dev, u64 st_ino, u64 mtime
 *       seconds, u32 mtime nanoseconds: the file as the writer left it
 *       (written at close). Undo refuses an image that no longer matches.
 *   'R' restore started, 'C' restore complete ('C' has the 'E' payload of
 *       the restored image): appended by qi_undo_restore.
 * A torn or corrupt record at the end (a crash while appending) ends the
 * file: the image write it protected was never made. */
#ifndef QI_UNDO_H
#define QI_UNDO_H

#include <stdbool.h>
#include <stdint.h>

#include "qi/error.h"

typedef struct qi_undo_report {
    uint64_t records, bytes;    /* data records and original bytes written back */
    bool writer_finished;       /* an 'E' record was found (else the writer
                                 * crashed or was killed: identity checked only) */
    bool resumed;               /* an earlier restore had started ('R') */
    bool forced;                /* the image did not match; FORCE went on */
} qi_undo_report;

/* Restore IMAGE_PATH (and its external data file, if the undo file has
 * one) from UNDO_PATH, byte for byte and to its original size. Refuses
 * (QI_EBUSY, nothing written) when the image is not the file written (st_dev
 * and st_ino) or changed since the writer's last write (size and mtime in
 * the 'E' record), unless FORCE. Crash-safe: an 'R' record is made durable
 * first; the restore writes only original bytes and then cuts to the
 * original size, so a crash leaves a file that a repeated restore (which
 * sees the 'R' and skips the change check) completes. Returns 0, QI_ENOENT,
 * QI_EIO, QI_ECORRUPT (not an undo file, bad version), QI_EBUSY, QI_ENOMEM;
 * ERR names the file and offset. */
int qi_undo_restore(const char *undo_path, const char *image_path, bool force,
                    qi_undo_report *report, qi_err *err);

#endif
