/* journal.h - undo files and dry-run overlays of the files an image writes
 * (layer 0, called by bio.c; format in include/qi/undo.h). */
#ifndef QI_JOURNAL_H
#define QI_JOURNAL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qi/error.h"
#include "qi/image.h"

struct qi_bio;
typedef struct qi_journal qi_journal;

/* Undo-file record types and layout (include/qi/undo.h). */
#define QI_UNDO_MAGIC "QIUNDO\r\n"
#define QI_UNDO_VERSION 1u
enum { QI_UREC_FILE = 'F', QI_UREC_DATA = 'D', QI_UREC_END = 'E',
       QI_UREC_RESTORE = 'R', QI_UREC_DONE = 'C' };
#define QI_UNDO_HDR 16u
#define QI_UREC_MAX_PAYLOAD (1u << 20)  /* data records are cut at 1 MiB */

/* A journal either writing the undo file UNDO_PATH (created; an existing
 * file is refused) or, with DRY_RUN (UNDO_PATH NULL), holding the overlay.
 * Returns 0, QI_EINVAL, QI_EIO, QI_ENOMEM; ERR names the undo file. */
int qi_journal_new(qi_journal **out, const char *undo_path, bool dry_run, qi_err *err);

/* Put B under J (before any write to it): an 'F' record (undo) or an empty
 * overlay (dry run). At most four files (the image, its data file, data files a raw edit
 * renamed); the same file opened again gets its slot back. */
int qi_journal_attach(qi_journal *j, struct qi_bio *b, qi_err *err);

/* The writer is done: an 'E' record per file (not after an injected
 * crash). Returns 0 or QI_EIO. */
int qi_journal_finish(qi_journal *j, qi_err *err);
void qi_journal_free(qi_journal *j);
/* The open failed: remove the undo file if it saved nothing (so that the
 * same --undo FILE works for the next try). */
void qi_journal_abandon(qi_journal *j);
/* B is being closed: its slot keeps the saved ranges (a file opened again
 * under J gets its slot back) and its dry-run changes. */
void qi_journal_detach(qi_journal *j, struct qi_bio *b);
bool qi_journal_dry(const qi_journal *j);

/* Undo: save the original bytes of [OFF, OFF+LEN) of B not saved yet (those
 * below its size at attach) and make them durable. Returns 0, QI_EIO,
 * QI_ENOSPC, QI_ENOMEM. */
int qi_journal_save(qi_journal *j, struct qi_bio *b, uint64_t off, uint64_t len,
                    qi_err *err);

/* Dry run: record a write of LEN bytes of BUF (NULL: a discard) at OFF, or a
 * truncate to SIZE; read through the overlay. */
int qi_journal_dry_write(qi_journal *j, struct qi_bio *b, const void *buf, size_t len,
                         uint64_t off, const char *structure, qi_err *err);
int qi_journal_dry_truncate(qi_journal *j, struct qi_bio *b, uint64_t size, qi_err *err);
int qi_journal_dry_read(qi_journal *j, struct qi_bio *b, void *buf, size_t len,
                        uint64_t off, qi_err *err, const char *structure);
/* Whether the overlay of B holds anything (then holes are not probed). */
bool qi_journal_dry_touched(const qi_journal *j, const struct qi_bio *b);

/* Walk the dry-run changes in order (qi_image_dry_run_changes). */
int qi_journal_changes(qi_journal *j, qi_change_cb cb, void *payload);

/* The 40-byte state record of file INDEX in an undo file (size, st_dev,
 * st_ino, mtime): written by the journal at the end of a run and by undo
 * when a restore completes. */
struct stat;
void qi_journal_put_state(uint8_t p[40], uint32_t index, const struct stat *st);

/* CRC-32 of a record: header bytes H (8) then payload P. */
uint32_t qi_journal_crc(const uint8_t *h, const uint8_t *p, size_t plen);

#endif
