/* bio.c - file handles (layer 0).
 *
 * Full positional reads (looping on short and interrupted reads, zeros past
 * the end of file), data/hole probing, and the image locks QEMU uses: open
 * file description (OFD) read locks on single bytes 100+i ("holds permission
 * i") and 200+i ("does not share permission i"), with conflicts found by
 * F_OFD_GETLK tests (qcow2-format.md section 17). OFD locks belong to the
 * descriptor, so closing another descriptor of the same file does not drop
 * them. Writes: full pwrite, fdatasync as the barrier, truncate; b->size is
 * the live end of file. Fault injection for the crash tests stops all
 * writing after N writes and can undo the writes not yet synced (a lost
 * disk cache). A handle opened under a journal (journal.c) saves the
 * original bytes to an undo file before each overwrite, or in a dry run
 * sends every write to an in-memory overlay that reads then see.
 * Calls: libc, journal. Never prints. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "qi/fault.h"
#include "qi/trace.h"
#include "bio.h"
#include "err.h"
#include "journal.h"

enum { PERM_READ = 0, PERM_WRITE = 1, PERM_WRITE_UNCHANGED = 2, PERM_RESIZE = 3 };
static const char *const perm_names[] = { "consistent read", "write",
                                          "write unchanged", "resize" };

/* Fault injection and tracing (process-wide, for tests). */
typedef struct qi_bio_undo {
    struct qi_bio_undo *prev;   /* older pre-image */
    uint64_t off, old_size;
    size_t len;
    uint8_t data[];             /* bytes at [off, off+len) before the write,
                                 * as far as they were inside old_size */
} qi_bio_undo;

static struct {
    bool armed, drop, tripped;
    uint64_t limit, writes;
    qi_bio *open;               /* writable handles (for the crash undo) */
    qi_bio_trace_fn trace;
    void *trace_payload;
} fault;

static int ofd_lock(int fd, off_t byte)
{
    struct flock fl = { .l_type = F_RDLCK, .l_whence = SEEK_SET,
                        .l_start = byte, .l_len = 1 };
    return fcntl(fd, F_OFD_SETLK, &fl);
}

/* 1 if another open file description holds a lock on BYTE. */
static int ofd_conflict(int fd, off_t byte)
{
    struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET,
                        .l_start = byte, .l_len = 1 };
    if (fcntl(fd, F_OFD_GETLK, &fl) < 0)
        return 0;
    return fl.l_type != F_UNLCK;
}

/* held: permissions we hold; unshared: permissions we do not let others
 * have. QEMU's check: for each perm we hold, nobody may lock 200+i; for each
 * perm we do not share, nobody may lock 100+i (or 104: GRAPH_MOD of <= 6.1,
 * which only matters as a held permission). */
static int apply_locks(qi_bio *b, unsigned held, unsigned unshared, qi_err *err)
{
    for (int i = 0; i < 4; i++) {
        if ((held & (1u << i)) && ofd_lock(b->fd, 100 + i) < 0)
            goto lockfail;
        if ((unshared & (1u << i)) && ofd_lock(b->fd, 200 + i) < 0)
            goto lockfail;
    }
    for (int i = 0; i < 4; i++) {
        if ((held & (1u << i)) && ofd_conflict(b->fd, 200 + i))
            return qi_err_set(err, b->path, QI_EBUSY, "", QI_NO_OFFSET,
                              "Failed to get \"%s\" lock; is another process "
                              "using the image?", perm_names[i]);
        if ((unshared & (1u << i)) && ofd_conflict(b->fd, 100 + i))
            return qi_err_set(err, b->path, QI_EBUSY, "", QI_NO_OFFSET,
                              "Failed to get shared \"%s\" lock; is another "
                              "process using the image? (-U reads anyway)",
                              perm_names[i]);
    }
    return 0;
lockfail:
    if (errno == EINVAL || errno == ENOSYS)
        return 0; /* no OFD locks here: QEMU's "auto" does not lock either */
    return qi_err_set(err, b->path, QI_EIO, "", QI_NO_OFFSET,
                      "cannot lock: %s", strerror(errno));
}

static int open_as(qi_bio **out, const char *path, bool writable, int oflags,
                   int lock, bool dry, qi_err *err)
{
    qi_bio *b = NULL;
    struct stat st;
    int rc;
    *out = NULL;
    if (!(b = calloc(1, sizeof *b)) || !(b->path = strdup(path))) {
        free(b);
        return qi_err_set(err, path, QI_ENOMEM, "", QI_NO_OFFSET, "out of memory");
    }
    b->fd = open(path, (writable && !dry ? O_RDWR : O_RDONLY) | O_CLOEXEC | oflags, 0644);
    if (b->fd < 0) {
        rc = qi_err_set(err, path, errno == ENOENT ? QI_ENOENT : QI_EIO, "",
                        QI_NO_OFFSET, "cannot open: %s", strerror(errno));
        goto fail;
    }
    if (fstat(b->fd, &st) < 0) {
        rc = qi_err_set(err, path, QI_EIO, "", QI_NO_OFFSET, "stat: %s",
                        strerror(errno));
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        rc = qi_err_set(err, path, QI_EIO, "", QI_NO_OFFSET, "is a directory");
        goto fail;
    }
    b->size = (uint64_t)st.st_size;
    b->dev = st.st_dev;
    b->ino = st.st_ino;
    b->blocks512 = (uint64_t)st.st_blocks;
    b->writable = writable;
    if (writable && !dry) {
        b->next_open = fault.open;
        fault.open = b;
    }
    rc = 0;
    if (lock == QI_LOCK_READ)
        rc = apply_locks(b, 1u << PERM_READ,
                         1u << PERM_WRITE | 1u << PERM_RESIZE, err);
    else if (lock == QI_LOCK_SHARED_READ)
        rc = apply_locks(b, 1u << PERM_READ, 0, err);
    else if (lock == QI_LOCK_WRITE)
        rc = apply_locks(b, 1u << PERM_READ | 1u << PERM_WRITE | 1u << PERM_RESIZE,
                         1u << PERM_WRITE | 1u << PERM_RESIZE, err);
    if (rc < 0)
        goto fail;
    *out = b;
    return 0;
fail:
    qi_bio_close(b);
    return rc;
}

int qi_bio_open(qi_bio **out, const char *path, bool writable, int lock,
                qi_err *err)
{
    return open_as(out, path, writable, 0, lock, false, err);
}

int qi_bio_open_journaled(qi_bio **out, const char *path, int lock,
                          struct qi_journal *j, qi_err *err)
{
    int rc = open_as(out, path, true, 0, lock, qi_journal_dry(j), err);
    if (rc == 0 && (rc = qi_journal_attach(j, *out, err)) < 0) {
        qi_bio_close(*out);
        *out = NULL;
    }
    return rc;
}

int qi_bio_create(qi_bio **out, const char *path, qi_err *err)
{
    return open_as(out, path, true, O_CREAT, QI_LOCK_WRITE, false, err);
}

static void free_undo(qi_bio *b)
{
    while (b->undo) {
        qi_bio_undo *u = b->undo;
        b->undo = u->prev;
        free(u);
    }
}

void qi_bio_fault_arm(uint64_t limit, bool drop_unsynced)
{
    fault.armed = true;
    fault.drop = drop_unsynced;
    fault.tripped = false;
    fault.limit = limit;
    fault.writes = 0;
}

void qi_bio_fault_disarm(void)
{
    fault.armed = fault.drop = fault.tripped = false;
    for (qi_bio *b = fault.open; b; b = b->next_open)
        free_undo(b);
}

uint64_t qi_bio_fault_writes(void) { return fault.writes; }
bool qi_bio_fault_tripped(void) { return fault.tripped; }

void qi_bio_set_trace(qi_bio_trace_fn fn, void *payload)
{
    fault.trace = fn;
    fault.trace_payload = payload;
}

/* Undo, newest first, every write each handle made since its last sync. */
static int undo_unsynced(void)
{
    int rc = 0;
    for (qi_bio *b = fault.open; b; b = b->next_open) {
        while (b->undo) {
            qi_bio_undo *u = b->undo;
            size_t keep = u->off >= u->old_size ? 0
                        : (size_t)(u->old_size - u->off < u->len ? u->old_size - u->off : u->len);
            if (keep && pwrite(b->fd, u->data, keep, (off_t)u->off) != (ssize_t)keep)
                rc = QI_EIO;
            if (ftruncate(b->fd, (off_t)u->old_size) < 0)
                rc = QI_EIO;
            b->size = u->old_size;
            b->undo = u->prev;
            free(u);
        }
    }
    return rc;
}

int qi_bio_fault_crash(void)
{
    fault.tripped = true;
    return undo_unsynced();
}

/* Before a write or truncate: 0 to go on, QI_EIO once the injected crash
 * has happened. With DROP, remember the pre-image of [off, off+len). */
static int fault_gate(qi_bio *b, uint64_t off, size_t len, qi_err *err,
                      const char *structure)
{
    if (!fault.armed) {
        fault.writes++;
        return 0;
    }
    if (fault.tripped || fault.writes >= fault.limit) {
        /* the power goes here: with DROP, the disk cache is lost at once */
        if (!fault.tripped && fault.drop)
            (void)undo_unsynced();
        fault.tripped = true;
        return qi_err_set(err, b->path, QI_EIO, structure, off,
                          "injected crash after %" PRIu64 " writes", fault.limit);
    }
    fault.writes++;
    if (fault.drop) {
        qi_bio_undo *u = malloc(sizeof *u + len);
        if (!u)
            return qi_err_set(err, b->path, QI_ENOMEM, structure, off, "out of memory");
        u->off = off;
        u->len = len;
        u->old_size = b->size;
        if (len && pread(b->fd, u->data, len, (off_t)off) < 0) {
            free(u);
            return qi_err_set(err, b->path, QI_EIO, structure, off, "read failed: %s",
                              strerror(errno));
        }
        u->prev = b->undo;
        b->undo = u;
    }
    return 0;
}

static int write_errno(qi_bio *b, uint64_t off, qi_err *err, const char *structure,
                       const char *what)
{
    int e = errno;
    return qi_err_set(err, b->path, e == ENOSPC || e == EDQUOT || e == EFBIG ? QI_ENOSPC
                      : QI_EIO, structure, off, "%s failed: %s", what, strerror(e));
}

int qi_bio_pwrite(qi_bio *b, const void *buf, size_t len, uint64_t off,
                  qi_err *err, const char *structure)
{
    const uint8_t *p = buf;
    size_t done = 0;
    int rc;
    if (!b->writable)
        return qi_err_set(err, b->path, QI_ERDONLY, structure, off,
                          "file opened read-only");
    if (off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off)
        return qi_err_set(err, b->path, QI_EIO, structure, off,
                          "write of %zu bytes beyond the largest file offset", len);
    if (fault.trace)
        fault.trace(fault.trace_payload, b, structure, off, len, buf);
    if ((rc = fault_gate(b, off, len, err, structure)) < 0)
        return rc;
    if (b->journal && qi_journal_dry(b->journal)) {
        if ((rc = qi_journal_dry_write(b->journal, b, buf, len, off, structure, err)) < 0)
            return rc;
        b->writes++;    /* the file as reads see it changed */
        if (off + len > b->size)
            b->size = off + len;
        return 0;
    }
    if (b->journal && (rc = qi_journal_save(b->journal, b, off, len, err)) < 0)
        return rc;
    while (done < len) {
        ssize_t n = pwrite(b->fd, p + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return write_errno(b, off + done, err, structure, "write");
        }
        done += (size_t)n;
    }
    b->unsynced = true;
    b->writes++;
    if (off + len > b->size)
        b->size = off + len;
    return 0;
}

int qi_bio_sync(qi_bio *b, qi_err *err)
{
    if (!b->unsynced)
        return 0;
    if (fault.trace)
        fault.trace(fault.trace_payload, b, "barrier", 0, 0, NULL);
    if (fault.armed && fault.tripped)
        return qi_err_set(err, b->path, QI_EIO, "", QI_NO_OFFSET,
                          "injected crash after %" PRIu64 " writes", fault.limit);
    if (!b->nosync && fdatasync(b->fd) < 0)
        return write_errno(b, QI_NO_OFFSET, err, "", "fdatasync");
    b->unsynced = false;
    free_undo(b);
    return 0;
}

int qi_bio_truncate(qi_bio *b, uint64_t size, qi_err *err)
{
    int rc;
    if (!b->writable)
        return qi_err_set(err, b->path, QI_ERDONLY, "", QI_NO_OFFSET,
                          "file opened read-only");
    if (size > (uint64_t)INT64_MAX)
        return qi_err_set(err, b->path, QI_EINVAL, "", QI_NO_OFFSET,
                          "length %" PRIu64 " beyond the largest file offset", size);
    if (fault.trace)
        fault.trace(fault.trace_payload, b, "truncate", size, 0, NULL);
    /* the pre-image of a cut is the tail that goes away */
    if ((rc = fault_gate(b, size, size < b->size ? (size_t)(b->size - size) : 0,
                         err, "truncate")) < 0)
        return rc;
    if (b->journal && qi_journal_dry(b->journal)) {
        if ((rc = qi_journal_dry_truncate(b->journal, b, size, err)) < 0)
            return rc;
        b->writes++;
        b->size = size;
        return 0;
    }
    if (b->journal && size < b->size &&
        (rc = qi_journal_save(b->journal, b, size, b->size - size, err)) < 0)
        return rc;
    while (ftruncate(b->fd, (off_t)size) < 0)
        if (errno != EINTR)
            return write_errno(b, size, err, "", "truncate");
    b->unsynced = true;
    b->writes++;
    b->size = size;
    return 0;
}

int qi_bio_discard(qi_bio *b, uint64_t off, uint64_t len, qi_err *err,
                   const char *structure)
{
    struct stat st;
    int rc;
    if (!b->writable)
        return qi_err_set(err, b->path, QI_ERDONLY, structure, off,
                          "file opened read-only");
    if (fstat(b->fd, &st) < 0)
        return qi_err_set(err, b->path, QI_EIO, structure, off, "fstat failed: %s",
                          strerror(errno));
    if (b->journal && qi_journal_dry(b->journal))
        st.st_size = (off_t)b->size;   /* the file as the dry run sees it */
    /* the file keeps its length: nothing past its end is touched */
    if (off >= (uint64_t)st.st_size || !len)
        return 0;
    if (len > (uint64_t)st.st_size - off)
        len = (uint64_t)st.st_size - off;
    if (fault.trace)
        fault.trace(fault.trace_payload, b, structure, off, (size_t)len, NULL);
    if ((rc = fault_gate(b, off, (size_t)len, err, structure)) < 0)
        return rc;
    if (b->journal && qi_journal_dry(b->journal)) {
        if ((rc = qi_journal_dry_write(b->journal, b, NULL, (size_t)len, off, structure,
                                       err)) == 0)
            b->writes++;
        return rc;
    }
    if (b->journal && (rc = qi_journal_save(b->journal, b, off, len, err)) < 0)
        return rc;
    if (fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
                  (off_t)len) < 0) {
        /* no hole punching here: zeros written instead read the same */
        static const uint8_t zeros[65536];
        for (uint64_t done = 0; done < len;) {
            size_t n = len - done < sizeof zeros ? (size_t)(len - done) : sizeof zeros;
            ssize_t w = pwrite(b->fd, zeros, n, (off_t)(off + done));
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return write_errno(b, off + done, err, structure, "write");
            done += (uint64_t)w;
        }
    }
    b->unsynced = true;
    b->writes++;
    return 0;
}

void qi_bio_close(qi_bio *b)
{
    if (!b)
        return;
    for (qi_bio **pp = &fault.open; *pp; pp = &(*pp)->next_open)
        if (*pp == b) {
            *pp = b->next_open;
            break;
        }
    free_undo(b);
    if (b->journal)
        qi_journal_detach(b->journal, b);
    if (b->fd >= 0)
        close(b->fd);
    free(b->path);
    free(b);
}

int qi_bio_pread(qi_bio *b, void *buf, size_t len, uint64_t off, qi_err *err,
                 const char *structure)
{
    if (qi_journal_dry_touched(b->journal, b))
        return qi_journal_dry_read(b->journal, b, buf, len, off, err, structure);
    return qi_bio_pread_raw(b, buf, len, off, err, structure);
}

int qi_bio_pread_raw(qi_bio *b, void *buf, size_t len, uint64_t off, qi_err *err,
                     const char *structure)
{
    uint8_t *p = buf;
    size_t done = 0;
    if (off > (uint64_t)INT64_MAX || len > (uint64_t)INT64_MAX - off)
        return qi_err_set(err, b->path, QI_EIO, structure, off,
                          "read of %zu bytes beyond the largest file offset", len);
    while (done < len) {
        ssize_t n = pread(b->fd, p + done, len - done, (off_t)(off + done));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return qi_err_set(err, b->path, QI_EIO, structure, off + done,
                              "read failed: %s", strerror(errno));
        }
        if (n == 0) {
            memset(p + done, 0, len - done);
            break;
        }
        done += (size_t)n;
    }
    return 0;
}

int qi_bio_preadv(qi_bio *b, const struct iovec *iov, int iovcnt, uint64_t off,
                  qi_err *err, const char *structure)
{
    uint64_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    if (qi_journal_dry_touched(b->journal, b)) {
        for (int i = 0; i < iovcnt; i++) {
            int rc = qi_bio_pread(b, iov[i].iov_base, iov[i].iov_len, off, err, structure);
            if (rc < 0)
                return rc;
            off += iov[i].iov_len;
        }
        return 0;
    }
    if (off > (uint64_t)INT64_MAX || total > (uint64_t)INT64_MAX - off)
        return qi_err_set(err, b->path, QI_EIO, structure, off,
                          "read beyond the largest file offset");
    ssize_t n;
    do
        n = preadv(b->fd, iov, iovcnt, (off_t)off);
    while (n < 0 && errno == EINTR);
    if (n == (ssize_t)total)
        return 0;
    if (n < 0)
        return qi_err_set(err, b->path, QI_EIO, structure, off, "read failed: %s",
                          strerror(errno));
    /* short read (end of file, or a partial transfer): finish piece by piece */
    uint64_t pos = off;
    for (int i = 0; i < iovcnt; i++) {
        int rc = qi_bio_pread(b, iov[i].iov_base, iov[i].iov_len, pos, err, structure);
        if (rc < 0)
            return rc;
        pos += iov[i].iov_len;
    }
    return 0;
}

int qi_bio_stat_size(qi_bio *b, uint64_t *size)
{
    struct stat st;
    if (b->journal && qi_journal_dry(b->journal)) {
        *size = b->size;
        return 0;
    }
    if (fstat(b->fd, &st) < 0)
        return QI_EIO;
    *size = (uint64_t)st.st_size;
    return 0;
}

int64_t qi_bio_next_data(qi_bio *b, uint64_t off)
{
    if (qi_journal_dry_touched(b->journal, b))  /* the overlay: all data */
        return off < b->size ? (int64_t)off : (int64_t)b->size;
    off_t r = lseek(b->fd, (off_t)off, SEEK_DATA);
    if (r < 0)
        return errno == ENXIO ? (int64_t)b->size : -1;
    return r;
}

int64_t qi_bio_next_hole(qi_bio *b, uint64_t off)
{
    if (qi_journal_dry_touched(b->journal, b))
        return off < b->size ? (int64_t)b->size : (int64_t)off;
    off_t r = lseek(b->fd, (off_t)off, SEEK_HOLE);
    if (r < 0)
        return errno == ENXIO ? (int64_t)off : -1;
    return r;
}

int qi_bio_is_hole(qi_bio *b, uint64_t off, uint64_t len)
{
    int64_t d = qi_bio_next_data(b, off);
    if (d < 0)
        return 0;
    return (uint64_t)d >= off + len;
}

/* ---- the public face of fault injection (include/qi/fault.h) ---- */

void qi_fault_arm(uint64_t limit, bool drop_unsynced) { qi_bio_fault_arm(limit, drop_unsynced); }
int qi_fault_crash(void) { return qi_bio_fault_crash(); }
uint64_t qi_fault_writes(void) { return qi_bio_fault_writes(); }
bool qi_fault_tripped(void) { return qi_bio_fault_tripped(); }

/* ---- write tracing (include/qi/trace.h) ---- */

static struct {
    int on, oom;
    qi_trace_rec *recs;
    size_t n, cap;
} tr;

static int is_data(const char *structure)
{
    return !strcmp(structure, "data cluster") || !strcmp(structure, "COW cluster");
}

static void trace_rec(void *payload, qi_bio *b, const char *structure, uint64_t off,
                      size_t len, const void *buf)
{
    qi_trace_rec *r;
    (void)payload;
    if (tr.n == tr.cap) {
        size_t cap = tr.cap ? 2 * tr.cap : 64;
        qi_trace_rec *p = cap <= (64u << 20) / sizeof *p ? realloc(tr.recs, cap * sizeof *p) : NULL;
        if (!p) {
            tr.oom = 1;
            return;
        }
        tr.recs = p;
        tr.cap = cap;
    }
    r = &tr.recs[tr.n++];
    memset(r, 0, sizeof *r);
    snprintf(r->structure, sizeof r->structure, "%s", structure);
    snprintf(r->file, sizeof r->file, "%s", b->path);
    r->offset = off;
    r->length = len;
    if (!buf || is_data(structure))
        return;
    /* the words that change: compare with the file as it is now (one read;
     * past the end of the file the old bytes are zeros) */
    uint8_t *old = calloc(1, len);
    if (!old) {
        tr.oom = 1;
        return;
    }
    if (off < b->size)
        (void)qi_bio_pread(b, old, len, off, NULL, structure);
    for (size_t i = 0; i + 8 <= len; i += 8) {
        uint64_t o = 0, nw = 0;
        for (int k = 0; k < 8; k++) {
            o = o << 8 | old[i + k];
            nw = nw << 8 | ((const uint8_t *)buf)[i + k];
        }
        if (o == nw)
            continue;
        if (r->n_changes < QI_TRACE_MAX_CHANGES)
            r->changes[r->n_changes] = (qi_trace_change){ off + i, o, nw };
        r->n_changes++;
    }
    free(old);
}

int qi_trace_start(void)
{
    if (tr.on || fault.trace)
        return QI_EINVAL;
    tr.on = 1;
    tr.oom = 0;
    tr.n = 0;
    qi_bio_set_trace(trace_rec, NULL);
    return 0;
}

int qi_trace_stop(qi_trace_rec **recs, size_t *n)
{
    int oom = tr.oom;
    qi_bio_set_trace(NULL, NULL);
    *recs = oom ? NULL : tr.recs;
    *n = oom ? 0 : tr.n;
    if (oom)
        free(tr.recs);
    tr.recs = NULL;
    tr.n = tr.cap = 0;
    tr.on = 0;
    return oom ? QI_ENOMEM : 0;
}
