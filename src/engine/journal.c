/* journal.c - undo files and dry-run overlays (layer 0).
 *
 * bio.c calls in here before every write, truncate and discard of a file
 * put under a journal (the image file and its external data file).
 *
 * Undo: the first time a byte below the file's size at open is about to be
 * overwritten (written, discarded or cut off), its original value goes to
 * the undo file in a 'D' record, and the undo file is synced before the
 * write reaches the image. The ranges saved so far are kept in a sorted,
 * merged list, so a range written twice is saved once. Records are streamed
 * (at most 1 MiB of payload each): memory is the range list, not the data.
 * Crash table of a write W under undo:
 *   1. append 'D' records of the unsaved part of W    crash → torn record
 *      (ignored by undo: the image is untouched), or extra records of
 *      original bytes (restoring them rewrites what is there): consistent
 *   2. fdatasync the undo file                         crash → as 1
 *   3. the write W itself (bio.c)                      crash → the undo file
 *      holds every original byte W changed: consistent
 * and at close, 4. the 'E' record (the image's size and mtime after the
 * last write), synced; a crash before it leaves no 'E': undo then checks
 * the file's identity only.
 *
 * Dry run: each write, discard and truncate becomes a record in a log held
 * in memory (new bytes, and the old bytes as the run saw them), capped at
 * QI_DRY_RUN_MAX_BYTES. A read takes the file's bytes and applies the log
 * in order. Nothing is written to the file (it is opened read-only).
 * Calls: bio (the handle's descriptor and size), err, endian, zlib crc32. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "qi/fault.h"
#include "bio.h"
#include "endian.h"
#include "err.h"
#include "journal.h"

typedef struct range { uint64_t start, end; } range;

typedef struct drec {
    int kind;                   /* QI_CHANGE_* */
    int file;
    char structure[40];
    uint64_t off;
    size_t len;
    uint8_t *old, *new;         /* new NULL: a discard (zeros) */
    uint64_t old_size, new_size;
} drec;

#define MAX_FILES 4   /* the image, its data file, and data files a raw edit renamed */

typedef struct jfile {
    struct qi_bio *b;           /* NULL once closed */
    char *path;
    uint64_t dev, ino;
    uint64_t orig_size;
    range *saved;               /* undo: sorted, disjoint, not adjacent */
    size_t nsaved, capsaved;
    bool touched;               /* dry run: a record names this file */
} jfile;

struct qi_journal {
    int fd;                     /* undo file, -1 in a dry run */
    char *path;
    bool dry;
    jfile f[MAX_FILES];
    int nf;
    drec *recs;                 /* dry run log */
    size_t n, cap;
    uint64_t bytes;             /* memory held by the log */
    uint8_t *buf;               /* undo: record buffer (QI_UREC_MAX_PAYLOAD) */
    bool saved_any;             /* undo: a 'D' record was written */
};

uint32_t qi_journal_crc(const uint8_t *h, const uint8_t *p, size_t plen)
{
    uLong c = crc32(0L, Z_NULL, 0);
    c = crc32(c, h, 8);
    while (plen) {
        uInt n = plen > (1u << 30) ? (1u << 30) : (uInt)plen;
        c = crc32(c, p, n);
        p += n;
        plen -= n;
    }
    return (uint32_t)c;
}

static int jerr(qi_journal *j, qi_err *err, int code, const char *what)
{
    int e = errno;
    if (code == QI_EIO && (e == ENOSPC || e == EDQUOT))
        code = QI_ENOSPC;
    return qi_err_set(err, j->path, code, "undo file", QI_NO_OFFSET, "%s: %s", what,
                      strerror(e));
}

static int write_all(int fd, const uint8_t *p, size_t len)
{
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Append one record: TYPE, payload A (ALEN bytes) then B (BLEN bytes). */
static int append(qi_journal *j, int type, const uint8_t *a, size_t alen,
                  const uint8_t *b, size_t blen, qi_err *err)
{
    uint8_t h[8] = { (uint8_t)type, 0, 0, 0 }, t[4];
    uLong c;
    qi_put_be32(h + 4, (uint32_t)(alen + blen));
    c = crc32(crc32(crc32(0L, Z_NULL, 0), h, 8), a, (uInt)alen);
    if (blen)
        c = crc32(c, b, (uInt)blen);
    qi_put_be32(t, (uint32_t)c);
    if (write_all(j->fd, h, 8) < 0 || write_all(j->fd, a, alen) < 0 ||
        (blen && write_all(j->fd, b, blen) < 0) || write_all(j->fd, t, 4) < 0)
        return jerr(j, err, QI_EIO, "write failed");
    return 0;
}

static int jsync(qi_journal *j, qi_err *err)
{
    if (fdatasync(j->fd) < 0)
        return jerr(j, err, QI_EIO, "fdatasync failed");
    return 0;
}

/* The directory entry of a new file is durable once its directory is synced. */
static int sync_dir(qi_journal *j, qi_err *err)
{
    char *copy = strdup(j->path);
    int fd, rc = 0;
    if (!copy)
        return qi_err_set(err, j->path, QI_ENOMEM, "undo file", QI_NO_OFFSET, "out of memory");
    fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        rc = jerr(j, err, QI_EIO, "cannot sync its directory");
    if (fd >= 0)
        close(fd);
    free(copy);
    return rc;
}

int qi_journal_new(qi_journal **out, const char *undo_path, bool dry_run, qi_err *err)
{
    qi_journal *j = calloc(1, sizeof *j);
    uint8_t h[QI_UNDO_HDR] = { 0 };
    int rc;
    *out = NULL;
    if (!j)
        return qi_err_set(err, undo_path, QI_ENOMEM, "", QI_NO_OFFSET, "out of memory");
    j->fd = -1;
    j->dry = dry_run;
    if (dry_run) {
        *out = j;
        return 0;
    }
    if (!(j->path = strdup(undo_path)) || !(j->buf = malloc(QI_UREC_MAX_PAYLOAD + 12))) {
        qi_journal_free(j);
        return qi_err_set(err, undo_path, QI_ENOMEM, "", QI_NO_OFFSET, "out of memory");
    }
    j->fd = open(undo_path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0600);
    if (j->fd < 0) {
        rc = errno == EEXIST
           ? qi_err_set(err, undo_path, QI_EINVAL, "undo file", QI_NO_OFFSET,
                        "cannot create: the file exists (an undo file is never overwritten)")
           : jerr(j, err, QI_EIO, "cannot create");
        qi_journal_free(j);
        return rc;
    }
    memcpy(h, QI_UNDO_MAGIC, 8);
    qi_put_be32(h + 8, QI_UNDO_VERSION);
    if (write_all(j->fd, h, sizeof h) < 0)
        rc = jerr(j, err, QI_EIO, "write failed");
    else if ((rc = jsync(j, err)) == 0)
        rc = sync_dir(j, err);
    if (rc < 0) {
        qi_journal_free(j);
        return rc;
    }
    *out = j;
    return 0;
}

int qi_journal_attach(qi_journal *j, struct qi_bio *b, qi_err *err)
{
    char full[PATH_MAX];
    uint8_t p[28];
    int rc;
    for (int i = 0; i < j->nf; i++)
        if (!j->f[i].b && j->f[i].dev == (uint64_t)b->dev && j->f[i].ino == (uint64_t)b->ino) {
            j->f[i].b = b;      /* the same file opened again: its slot */
            b->journal = j;
            b->journal_idx = i;
            return 0;
        }
    if (j->nf == MAX_FILES)
        return qi_err_set(err, b->path, QI_EINVAL, "", QI_NO_OFFSET,
                          "a journal covers %d files at most", MAX_FILES);
    j->f[j->nf] = (jfile){ .b = b, .orig_size = b->size, .dev = (uint64_t)b->dev,
                           .ino = (uint64_t)b->ino, .path = strdup(b->path) };
    if (!j->f[j->nf].path)
        return qi_err_set(err, b->path, QI_ENOMEM, "", QI_NO_OFFSET, "out of memory");
    b->journal = j;
    b->journal_idx = j->nf++;
    if (j->dry)
        return 0;
    if (!realpath(b->path, full))
        snprintf(full, sizeof full, "%s", b->path);
    qi_put_be32(p, (uint32_t)b->journal_idx);
    qi_put_be64(p + 4, b->size);
    qi_put_be64(p + 12, (uint64_t)b->dev);
    qi_put_be64(p + 20, (uint64_t)b->ino);
    if ((rc = append(j, QI_UREC_FILE, p, sizeof p, (const uint8_t *)full, strlen(full),
                     err)) < 0)
        return rc;
    return jsync(j, err);
}


/* A file's state record (an E or C record): index, size, st_dev, st_ino,
 * mtime seconds and nanoseconds, big-endian, 40 bytes. */
void qi_journal_put_state(uint8_t p[40], uint32_t index, const struct stat *st)
{
    qi_put_be32(p, index);
    qi_put_be64(p + 4, (uint64_t)st->st_size);
    qi_put_be64(p + 12, (uint64_t)st->st_dev);
    qi_put_be64(p + 20, (uint64_t)st->st_ino);
    qi_put_be64(p + 28, (uint64_t)st->st_mtim.tv_sec);
    qi_put_be32(p + 36, (uint32_t)st->st_mtim.tv_nsec);
}

int qi_journal_finish(qi_journal *j, qi_err *err)
{
    int rc = 0;
    if (!j || j->dry || j->fd < 0 || qi_fault_tripped())
        return 0;
    for (int i = 0; i < j->nf && rc == 0; i++) {
        struct stat st;
        uint8_t p[40];
        if (!j->f[i].b)
            continue;
        if (fstat(j->f[i].b->fd, &st) < 0)
            return jerr(j, err, QI_EIO, "cannot stat the image");
        qi_journal_put_state(p, (uint32_t)i, &st);
        rc = append(j, QI_UREC_END, p, sizeof p, NULL, 0, err);
    }
    return rc ? rc : jsync(j, err);
}

void qi_journal_free(qi_journal *j)
{
    if (!j)
        return;
    for (int i = 0; i < j->nf; i++) {
        free(j->f[i].saved);
        free(j->f[i].path);
        if (j->f[i].b)
            j->f[i].b->journal = NULL;
    }
    for (size_t i = 0; i < j->n; i++) {
        free(j->recs[i].old);
        free(j->recs[i].new);
    }
    free(j->recs);
    if (j->fd >= 0)
        close(j->fd);
    free(j->path);
    free(j->buf);
    free(j);
}

bool qi_journal_dry(const qi_journal *j) { return j && j->dry; }

void qi_journal_abandon(qi_journal *j)
{
    if (j && !j->dry && j->path && !j->saved_any)
        (void)unlink(j->path);
}

void qi_journal_detach(qi_journal *j, struct qi_bio *b)
{
    if (j && b->journal_idx < j->nf && j->f[b->journal_idx].b == b)
        j->f[b->journal_idx].b = NULL;
    b->journal = NULL;
}

/* ---- undo: saved ranges ---- */

/* Index of the first saved range ending after OFF. */
static size_t first_after(const jfile *f, uint64_t off)
{
    size_t lo = 0, hi = f->nsaved;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (f->saved[mid].end <= off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Add [S, E) to the saved list, merging with neighbours it touches. */
static int mark_saved(jfile *f, uint64_t s, uint64_t e)
{
    size_t i = first_after(f, s ? s - 1 : 0), k = i;
    while (k < f->nsaved && f->saved[k].start <= e) {
        if (f->saved[k].start < s)
            s = f->saved[k].start;
        if (f->saved[k].end > e)
            e = f->saved[k].end;
        k++;
    }
    if (k == i) {   /* no overlap: insert */
        if (f->nsaved == f->capsaved) {
            size_t cap = f->capsaved ? 2 * f->capsaved : 16;
            range *r = realloc(f->saved, cap * sizeof *r);
            if (!r)
                return QI_ENOMEM;
            f->saved = r;
            f->capsaved = cap;
        }
        memmove(f->saved + i + 1, f->saved + i, (f->nsaved - i) * sizeof *f->saved);
        f->nsaved++;
    } else {        /* ranges i..k-1 become one */
        memmove(f->saved + i + 1, f->saved + k, (f->nsaved - k) * sizeof *f->saved);
        f->nsaved -= k - i - 1;
    }
    f->saved[i] = (range){ s, e };
    return 0;
}

/* Save the original bytes of [S, E) (none saved yet) in records. */
static int save_gap(qi_journal *j, jfile *f, uint64_t s, uint64_t e, qi_err *err)
{
    while (s < e) {
        size_t n = e - s > QI_UREC_MAX_PAYLOAD ? QI_UREC_MAX_PAYLOAD : (size_t)(e - s);
        uint8_t p[12];
        int rc;
        qi_put_be32(p, (uint32_t)f->b->journal_idx);
        qi_put_be64(p + 4, s);
        if ((rc = qi_bio_pread_raw(f->b, j->buf, n, s, err, "undo file")) < 0 ||
            (rc = append(j, QI_UREC_DATA, p, sizeof p, j->buf, n, err)) < 0)
            return rc;
        j->saved_any = true;
        s += n;
    }
    return 0;
}

int qi_journal_save(qi_journal *j, struct qi_bio *b, uint64_t off, uint64_t len,
                    qi_err *err)
{
    jfile *f = &j->f[b->journal_idx];
    uint64_t end = off + len, pos = off;
    bool wrote = false;
    int rc;
    if (end > f->orig_size)
        end = f->orig_size;
    if (pos >= end)
        return 0;
    for (size_t i = first_after(f, pos); pos < end; i++) {
        uint64_t gap_end = i < f->nsaved && f->saved[i].start < end ? f->saved[i].start : end;
        if (gap_end > pos) {
            if ((rc = save_gap(j, f, pos, gap_end, err)) < 0)
                return rc;
            wrote = true;
        }
        pos = i < f->nsaved && f->saved[i].end > gap_end ? f->saved[i].end : gap_end;
    }
    if (!wrote)
        return 0;
    if ((rc = jsync(j, err)) < 0)
        return rc;
    if (mark_saved(f, off, end) < 0)
        return qi_err_set(err, j->path, QI_ENOMEM, "undo file", QI_NO_OFFSET, "out of memory");
    return 0;
}

/* ---- dry run ---- */

bool qi_journal_dry_touched(const qi_journal *j, const struct qi_bio *b)
{
    return j && j->dry && j->f[b->journal_idx].touched;
}

static int cap_error(qi_journal *j, struct qi_bio *b, uint64_t off, qi_err *err,
                     const char *structure)
{
    (void)j;
    return qi_err_set(err, b->path, QI_ENOMEM, structure, off,
                      "dry run: the changes would hold more than %u MiB in memory "
                      "(the cap); stopped here, nothing was written to the file",
                      QI_DRY_RUN_MAX_BYTES >> 20);
}

static drec *new_rec(qi_journal *j, struct qi_bio *b, int kind, uint64_t off, size_t len,
                     const char *structure)
{
    if (j->n == j->cap) {
        size_t cap = j->cap ? 2 * j->cap : 64;
        drec *r = cap <= SIZE_MAX / sizeof *r ? realloc(j->recs, cap * sizeof *r) : NULL;
        if (!r)
            return NULL;
        j->recs = r;
        j->cap = cap;
    }
    drec *r = &j->recs[j->n];
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->file = b->journal_idx;
    r->off = off;
    r->len = len;
    snprintf(r->structure, sizeof r->structure, "%s", structure ? structure : "");
    return r;
}

int qi_journal_dry_write(qi_journal *j, struct qi_bio *b, const void *buf, size_t len,
                         uint64_t off, const char *structure, qi_err *err)
{
    uint64_t need = (uint64_t)len * (buf ? 2 : 1) + sizeof(drec);
    drec *r;
    int rc;
    if (need > QI_DRY_RUN_MAX_BYTES - j->bytes || j->bytes > QI_DRY_RUN_MAX_BYTES)
        return cap_error(j, b, off, err, structure);
    if (!(r = new_rec(j, b, buf ? QI_CHANGE_WRITE : QI_CHANGE_DISCARD, off, len, structure)))
        return qi_err_set(err, b->path, QI_ENOMEM, structure, off, "out of memory");
    if (!(r->old = malloc(len ? len : 1)) || (buf && !(r->new = malloc(len ? len : 1)))) {
        free(r->old);
        return qi_err_set(err, b->path, QI_ENOMEM, structure, off, "out of memory");
    }
    if ((rc = qi_journal_dry_read(j, b, r->old, len, off, err, structure)) < 0) {
        free(r->old);
        free(r->new);
        return rc;
    }
    if (buf)
        memcpy(r->new, buf, len);
    r->old_size = b->size;
    j->n++;
    j->bytes += need;
    j->f[b->journal_idx].touched = true;
    return 0;
}

int qi_journal_dry_truncate(qi_journal *j, struct qi_bio *b, uint64_t size, qi_err *err)
{
    drec *r;
    if (sizeof(drec) > QI_DRY_RUN_MAX_BYTES - j->bytes)
        return cap_error(j, b, size, err, "truncate");
    if (!(r = new_rec(j, b, QI_CHANGE_TRUNCATE, size, 0, "truncate")))
        return qi_err_set(err, b->path, QI_ENOMEM, "truncate", size, "out of memory");
    r->old_size = b->size;
    r->new_size = size;
    j->n++;
    j->bytes += sizeof(drec);
    j->f[b->journal_idx].touched = true;
    return 0;
}

/* Apply record R to BUF holding [OFF, OFF+LEN). */
static void apply(const drec *r, uint8_t *buf, size_t len, uint64_t off)
{
    uint64_t s, e, end = off + len;
    if (r->kind == QI_CHANGE_TRUNCATE) {
        if (r->new_size < end) {    /* a cut: what was past it reads as zeros */
            s = r->new_size > off ? r->new_size : off;
            memset(buf + (s - off), 0, end - s);
        }
        return;
    }
    s = r->off > off ? r->off : off;
    e = r->off + r->len < end ? r->off + r->len : end;
    if (s >= e)
        return;
    if (r->new)
        memcpy(buf + (s - off), r->new + (s - r->off), e - s);
    else
        memset(buf + (s - off), 0, e - s);
}

int qi_journal_dry_read(qi_journal *j, struct qi_bio *b, void *buf, size_t len,
                        uint64_t off, qi_err *err, const char *structure)
{
    int rc = qi_bio_pread_raw(b, buf, len, off, err, structure);
    if (rc < 0 || !j->f[b->journal_idx].touched)
        return rc;
    for (size_t i = 0; i < j->n; i++)
        if (j->recs[i].file == b->journal_idx)
            apply(&j->recs[i], buf, len, off);
    return 0;
}

int qi_journal_changes(qi_journal *j, qi_change_cb cb, void *payload)
{
    for (size_t i = 0; j && i < j->n; i++) {
        const drec *r = &j->recs[i];
        qi_change c = { r->kind, j->f[r->file].path,
                        r->structure, r->off, r->len, r->old, r->new,
                        r->old_size, r->new_size };
        if (r->kind == QI_CHANGE_TRUNCATE)
            c.offset = 0;
        int rc = cb(payload, &c);
        if (rc)
            return rc;
    }
    return 0;
}
