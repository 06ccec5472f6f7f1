/* undo.c - restoring an image from its undo file (layer 0; the format is in
 * include/qi/undo.h, the writer in journal.c).
 *
 * Two passes over the undo file: the first validates every record (CRC,
 * lengths), collects the files ('F'), the writer's end state ('E') and
 * earlier restores ('R', 'C'); the second writes the original bytes back.
 * Ordering and crash table of a restore:
 *   1. cut a torn record off the end of the undo file, append 'R', sync it
 *                                  crash → image untouched; a new restore
 *                                  sees 'R' and skips the change check
 *   2. write each 'D' record's bytes back (through bio: fault injection
 *      counts them)                crash → a mix of original and repaired
 *                                  bytes; a repeated restore rewrites all
 *   3. cut or grow each file to its size at open, sync each file
 *                                  crash → as 2
 *   4. append 'C' (the restored files' state), sync
 *                                  crash → restored; a repeated restore
 *                                  sees 'R' without 'C' and restores again
 * Every step writes original bytes only, so a restore repeated after a
 * crash at any point ends with the image byte for byte as before the
 * writer ran. Calls: bio, journal (record layout), err, endian. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qi/undo.h"
#include "bio.h"
#include "journal.h"
#include "endian.h"
#include "err.h"
#include "journal.h"

#define MAX_FILES 4

typedef struct ufile {
    bool seen, has_end;
    char *path;
    uint64_t size, dev, ino;        /* 'F': at the writer's open */
    uint8_t end[40];                /* last 'E' or 'C' (after the last 'R') */
    qi_bio *b;
} ufile;

typedef struct ustate {
    int fd;
    const char *path;
    uint64_t file_size, valid_end;
    uint8_t *buf;                   /* one payload + trailer */
    ufile f[MAX_FILES];
    bool restoring;                 /* 'R' without a later 'C' */
    bool any_restore;
    qi_err *err;
} ustate;

static int uerr(ustate *u, int code, uint64_t off, const char *fmt, const char *arg)
{
    return qi_err_set(u->err, u->path, code, "undo file", off, fmt, arg);
}

static int read_at(ustate *u, void *buf, size_t len, uint64_t off)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = pread(u->fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return uerr(u, QI_EIO, off, "read failed: %s", n < 0 ? strerror(errno) : "short");
        done += (size_t)n;
    }
    return 0;
}

/* The record at OFF: type and payload length in *TYPE, *PLEN, payload in
 * u->buf. Returns 1 for a valid record, 0 for the end (or a torn record at
 * the end, a crash while appending), or a negative code. */
static int next_record(ustate *u, uint64_t off, int *type, uint32_t *plen)
{
    uint8_t h[8];
    int rc;
    if (off == u->file_size)
        return 0;
    if (u->file_size - off < 12)
        return 0;                               /* torn header */
    if ((rc = read_at(u, h, 8, off)) < 0)
        return rc;
    *type = h[0];
    *plen = qi_be32(h + 4);
    bool len_ok = *plen <= QI_UREC_MAX_PAYLOAD + 12 + 4096;
    if (len_ok && u->file_size - off - 12 >= *plen) {
        if ((rc = read_at(u, u->buf, *plen + 4, off + 8)) < 0)
            return rc;
        if (qi_journal_crc(h, u->buf, *plen) == qi_be32(u->buf + *plen))
            return 1;
        if (off + 12 + *plen == u->file_size)
            return 0;                           /* the last record, torn */
    } else if (u->file_size - off < QI_UREC_MAX_PAYLOAD + 4096 + 24) {
        return 0;                               /* runs past the end: torn */
    }
    return uerr(u, QI_ECORRUPT, off, "%s", "record damaged (bad checksum or length) "
                "before the end of the file: refusing a partial restore");
}

/* Pass 1: one record of type TYPE (payload in u->buf). */
static int scan_record(ustate *u, int type, uint32_t plen, uint64_t off)
{
    const uint8_t *p = u->buf;
    uint32_t idx = plen >= 4 ? qi_be32(p) : MAX_FILES;
    if (type == QI_UREC_RESTORE) {
        u->restoring = u->any_restore = true;
        return 0;
    }
    if (idx >= MAX_FILES)
        return uerr(u, QI_ECORRUPT, off, "%s", "record names no file of the undo file");
    ufile *f = &u->f[idx];
    if (type == QI_UREC_FILE && plen > 28 && !f->seen) {
        f->seen = true;
        f->size = qi_be64(p + 4);
        f->dev = qi_be64(p + 12);
        f->ino = qi_be64(p + 20);
        if (!(f->path = strndup((const char *)p + 28, plen - 28)))
            return uerr(u, QI_ENOMEM, off, "%s", "out of memory");
    } else if ((type == QI_UREC_END || type == QI_UREC_DONE) && plen == 40 && f->seen) {
        memcpy(f->end, p, 40);
        f->has_end = true;
        if (type == QI_UREC_DONE)
            u->restoring = false;
    } else if (!(type == QI_UREC_DATA && plen >= 12 && f->seen &&
                 qi_be64(p + 4) <= f->size && plen - 12 <= f->size - qi_be64(p + 4))) {
        return uerr(u, QI_ECORRUPT, off, "%s", "unexpected or malformed record");
    }
    return 0;
}

static int scan(ustate *u)
{
    uint8_t h[QI_UNDO_HDR];
    struct stat st;
    uint64_t off = QI_UNDO_HDR;
    int rc, type;
    uint32_t plen;
    if (fstat(u->fd, &st) < 0)
        return uerr(u, QI_EIO, QI_NO_OFFSET, "stat: %s", strerror(errno));
    u->file_size = (uint64_t)st.st_size;
    if (u->file_size < QI_UNDO_HDR || (rc = read_at(u, h, sizeof h, 0)) < 0 ||
        memcmp(h, QI_UNDO_MAGIC, 8))
        return uerr(u, QI_ECORRUPT, 0, "%s", "not a qinspect undo file (bad magic)");
    if (qi_be32(h + 8) != QI_UNDO_VERSION)
        return uerr(u, QI_ENOTSUP, 8, "%s", "undo file version not supported");
    while ((rc = next_record(u, off, &type, &plen)) == 1) {
        if ((rc = scan_record(u, type, plen, off)) < 0)
            return rc;
        off += 12 + (uint64_t)plen;
    }
    u->valid_end = off;
    if (rc < 0)
        return rc;
    if (!u->f[0].seen)
        return uerr(u, QI_ECORRUPT, off, "%s", "the undo file names no image");
    return 0;
}

/* Whether file F (open in f->b) is the state the undo file expects. */
static const char *mismatch(const ufile *f, const ustate *u)
{
    struct stat st;
    if (fstat(f->b->fd, &st) < 0)
        return "cannot stat it";
    if ((uint64_t)st.st_dev != f->dev || (uint64_t)st.st_ino != f->ino)
        return "it is not the file the undo file was written for";
    if (u->restoring || !f->has_end)
        return NULL;
    if ((uint64_t)st.st_size != qi_be64(f->end + 4) ||
        (uint64_t)st.st_mtim.tv_sec != qi_be64(f->end + 28) ||
        (uint32_t)st.st_mtim.tv_nsec != qi_be32(f->end + 36))
        return "it changed since the undo file's last recorded write (size or "
               "modification time differ)";
    return NULL;
}

static int open_files(ustate *u, const char *image_path, bool force, qi_undo_report *r)
{
    int rc;
    for (int i = 0; i < MAX_FILES; i++) {
        ufile *f = &u->f[i];
        const char *why;
        if (!f->seen)
            continue;
        if ((rc = qi_bio_open(&f->b, i ? f->path : image_path, true, QI_LOCK_WRITE,
                              u->err)) < 0)
            return rc;
        r->writer_finished = r->writer_finished || f->has_end;
        if ((why = mismatch(f, u)) && !force)
            return qi_err_set(u->err, f->b->path, QI_EBUSY, "", QI_NO_OFFSET,
                              "refusing to restore from '%s': %s (--force restores "
                              "anyway)", u->path, why);
        r->forced = r->forced || why;
    }
    return 0;
}

static int append_rec(ustate *u, int type, const uint8_t *p, uint32_t plen)
{
    uint8_t h[8] = { (uint8_t)type }, t[4];
    qi_put_be32(h + 4, plen);
    qi_put_be32(t, qi_journal_crc(h, p, plen));
    if (pwrite(u->fd, h, 8, (off_t)u->valid_end) != 8 ||
        (plen && pwrite(u->fd, p, plen, (off_t)u->valid_end + 8) != (ssize_t)plen) ||
        pwrite(u->fd, t, 4, (off_t)(u->valid_end + 8 + plen)) != 4 || fdatasync(u->fd) < 0)
        return uerr(u, QI_EIO, u->valid_end, "append failed: %s", strerror(errno));
    u->valid_end += 12 + (uint64_t)plen;
    return 0;
}

/* Pass 2: every 'D' record written back, then the sizes. */
static int write_back(ustate *u, qi_undo_report *r)
{
    uint64_t off = QI_UNDO_HDR;
    uint32_t plen;
    int rc = 0, type;
    u->file_size = u->valid_end;
    while (off < u->valid_end && (rc = next_record(u, off, &type, &plen)) == 1) {
        if (type == QI_UREC_DATA) {
            ufile *f = &u->f[qi_be32(u->buf)];
            if ((rc = qi_bio_pwrite(f->b, u->buf + 12, plen - 12, qi_be64(u->buf + 4),
                                    u->err, "undo: original bytes")) < 0)
                return rc;
            r->records++;
            r->bytes += plen - 12;
        }
        off += 12 + (uint64_t)plen;
    }
    if (rc < 0)
        return rc;
    for (int i = 0; i < MAX_FILES; i++)
        if (u->f[i].b && ((rc = qi_bio_truncate(u->f[i].b, u->f[i].size, u->err)) < 0 ||
                          (rc = qi_bio_sync(u->f[i].b, u->err)) < 0))
            return rc;
    return 0;
}

static int append_done(ustate *u)
{
    for (int i = 0; i < MAX_FILES; i++) {
        struct stat st;
        uint8_t p[40];
        int rc;
        if (!u->f[i].b)
            continue;
        if (fstat(u->f[i].b->fd, &st) < 0)
            return uerr(u, QI_EIO, QI_NO_OFFSET, "stat: %s", strerror(errno));
        qi_journal_put_state(p, (uint32_t)i, &st);
        if ((rc = append_rec(u, QI_UREC_DONE, p, sizeof p)) < 0)
            return rc;
    }
    return 0;
}

int qi_undo_restore(const char *undo_path, const char *image_path, bool force,
                    qi_undo_report *report, qi_err *err)
{
    ustate u = { .fd = -1, .path = undo_path, .err = err };
    qi_undo_report dummy;
    qi_undo_report *r = report ? report : &dummy;
    int rc;
    memset(r, 0, sizeof *r);
    qi_err_clear(err);
    if (!(u.buf = malloc(QI_UREC_MAX_PAYLOAD + 12 + 4096 + 4)))
        return uerr(&u, QI_ENOMEM, QI_NO_OFFSET, "%s", "out of memory");
    u.fd = open(undo_path, O_RDWR | O_CLOEXEC);
    if (u.fd < 0) {
        rc = uerr(&u, errno == ENOENT ? QI_ENOENT : QI_EIO, QI_NO_OFFSET, "cannot open: %s",
                  strerror(errno));
        goto out;
    }
    if ((rc = scan(&u)) < 0 || (rc = open_files(&u, image_path, force, r)) < 0)
        goto out;
    r->resumed = u.restoring;
    /* a torn record at the end protected no write: cut it before appending */
    if (u.valid_end < u.file_size && ftruncate(u.fd, (off_t)u.valid_end) < 0) {
        rc = uerr(&u, QI_EIO, u.valid_end, "cannot cut the torn record: %s", strerror(errno));
        goto out;
    }
    if ((rc = append_rec(&u, QI_UREC_RESTORE, NULL, 0)) < 0 ||
        (rc = write_back(&u, r)) < 0 || (rc = append_done(&u)) < 0)
        goto out;
out:
    for (int i = 0; i < MAX_FILES; i++) {
        qi_bio_close(u.f[i].b);
        free(u.f[i].path);
    }
    if (u.fd >= 0)
        close(u.fd);
    free(u.buf);
    return rc;
}
