/* Unit tests for the write side of bio.c: pwrite extends the live size,
 * sync and truncate, read-only refusal, and the fault injection the crash
 * tests stand on (stop after N writes; undo what was not synced). Expected
 * file contents are built here byte by byte and compared with what read(2)
 * sees through a separate descriptor, not through bio. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bio.h"
#include "tap.h"

static char dir[] = "/tmp/qi-test-bio.XXXXXX";
static char path[256];

/* The file as the kernel has it, read with plain read(2). */
static size_t slurp(uint8_t *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    size_t n = 0;
    ssize_t r;
    if (fd < 0)
        return (size_t)-1;
    while (n < cap && (r = read(fd, buf + n, cap - n)) > 0)
        n += (size_t)r;
    close(fd);
    return n;
}

static qi_bio *fresh(size_t size, uint8_t fill, bool writable)
{
    uint8_t *b = malloc(size ? size : 1);
    FILE *f = fopen(path, "wb");
    qi_bio *bio = NULL;
    qi_err err;
    memset(b, fill, size);
    if (!f || fwrite(b, 1, size, f) != size) {
        free(b);
        if (f)
            fclose(f);
        return NULL;
    }
    fclose(f);
    free(b);
    if (qi_bio_open(&bio, path, writable, QI_LOCK_NONE, &err) < 0)
        return NULL;
    return bio;
}

static void basic_writes(void)
{
    uint8_t want[8192], got[8192], x[100];
    qi_err err;
    qi_bio *b = fresh(4096, 0xaa, true);
    if (!tap_ok(b != NULL, "open a 4 KiB file read-write"))
        return;
    memset(want, 0xaa, 4096);
    memset(x, 0x11, sizeof x);
    tap_ok(qi_bio_pwrite(b, x, sizeof x, 1000, &err, "data") == 0, "write inside the file");
    memset(want + 1000, 0x11, sizeof x);
    tap_is_u64(b->size, 4096, "size unchanged by a write inside the file");
    tap_ok(qi_bio_pwrite(b, x, sizeof x, 6000, &err, "data") == 0, "write past the end");
    memset(want + 4096, 0, 6000 - 4096);
    memset(want + 6000, 0x11, sizeof x);
    tap_is_u64(b->size, 6100, "size is the end of the last write (live end of file)");
    tap_is_u64(slurp(got, sizeof got), 6100, "the file is 6100 bytes long");
    tap_is_mem(got, want, 6100, "contents: old bytes, the two writes, a zero gap");
    tap_ok(qi_bio_sync(b, &err) == 0 && !b->unsynced, "sync clears the unsynced state");
    tap_ok(qi_bio_truncate(b, 5000, &err) == 0 && b->size == 5000, "truncate cuts");
    tap_is_u64(slurp(got, sizeof got), 5000, "the file is 5000 bytes long");
    tap_ok(qi_bio_truncate(b, 8192, &err) == 0 && b->size == 8192, "truncate grows");
    memset(want + 5000, 0, 8192 - 5000);
    tap_is_u64(slurp(got, sizeof got), 8192, "the file is 8192 bytes long");
    tap_is_mem(got, want, 8192, "a grown file reads zeros past the old end");
    qi_bio_close(b);

    b = fresh(512, 0, false);
    if (!tap_ok(b != NULL, "open read-only"))
        return;
    tap_ok(qi_bio_pwrite(b, x, 10, 0, &err, "header") == QI_ERDONLY &&
           strstr(err.message, "read-only") && !strcmp(err.structure, "header"),
           "a write to a read-only handle is refused, naming the structure");
    tap_ok(qi_bio_truncate(b, 0, &err) == QI_ERDONLY, "so is a truncate");
    qi_bio_close(b);
}

/* Four writes; the fault is armed to allow LIMIT of them. */
static int four_writes(qi_bio *b, int sync_after_second)
{
    uint8_t x[512];
    qi_err err;
    int rc = 0, done = 0;
    for (int i = 0; i < 4 && rc == 0; i++) {
        memset(x, 0x10 + i, sizeof x);
        rc = qi_bio_pwrite(b, x, sizeof x, 512ull * (unsigned)i * 2, &err, "data");
        if (rc == 0)
            done++;
        if (rc == 0 && i == 1 && sync_after_second)
            rc = qi_bio_sync(b, &err);
    }
    return rc < 0 ? -done - 1 : done;
}

static void fault_injection(void)
{
    uint8_t got[8192], want[8192];
    for (unsigned limit = 0; limit <= 4; limit++) {
        qi_bio *b = fresh(2048, 0xee, true);
        if (!b)
            continue;
        qi_bio_fault_arm(limit, false);
        int r = four_writes(b, 0);
        tap_ok(limit == 4 ? r == 4 : r == -(int)limit - 1,
               "limit %u: %u writes succeed, the next fails (%d)", limit, limit, r);
        tap_ok(qi_bio_fault_tripped() == (limit < 4), "limit %u: tripped flag", limit);
        qi_bio_fault_crash();
        qi_bio_fault_disarm();
        memset(want, 0, sizeof want);
        memset(want, 0xee, 2048);
        for (unsigned i = 0; i < limit; i++)
            memset(want + 1024 * i, 0x10 + i, 512);
        size_t end = limit >= 3 ? 1024 * (limit - 1) + 512 : 2048;
        if (end < 2048)
            end = 2048;
        tap_ok(slurp(got, sizeof got) == end, "limit %u: file length %zu", limit, end);
        tap_is_mem(got, want, end, "without drop, performed writes stay and the "
                   "failed one changed nothing");
        qi_bio_close(b);
    }
    /* With drop: writes after the last sync are undone, the rest stay. */
    for (unsigned limit = 1; limit <= 4; limit++) {
        qi_bio *b = fresh(2048, 0xee, true);
        if (!b)
            continue;
        qi_bio_fault_arm(limit, true);
        four_writes(b, 1);
        tap_ok(qi_bio_fault_crash() == 0, "drop, limit %u: crash undo", limit);
        qi_bio_fault_disarm();
        memset(want, 0xee, 2048);
        unsigned kept = limit >= 2 ? 2 : 0;   /* synced after the second write */
        for (unsigned i = 0; i < kept; i++)
            memset(want + 1024 * i, 0x10 + i, 512);
        tap_ok(slurp(got, sizeof got) == 2048, "drop, limit %u: the length the "
               "file had at the sync", limit);
        tap_is_mem(got, want, 2048, "drop: only the synced writes survive");
        qi_bio_close(b);
    }
    /* With drop, a truncate and an extending write are undone too. */
    qi_bio *b = fresh(4096, 0x33, true);
    if (b) {
        qi_err err;
        uint8_t x[100];
        memset(x, 0x44, sizeof x);
        qi_bio_fault_arm(10, true);
        int ok = qi_bio_truncate(b, 1000, &err) == 0 &&
                 qi_bio_pwrite(b, x, sizeof x, 9000, &err, "data") == 0;
        qi_bio_fault_crash();
        qi_bio_fault_disarm();
        memset(want, 0x33, 4096);
        tap_ok(ok && slurp(got, sizeof got) == 4096 && !memcmp(got, want, 4096),
               "drop: a cut and an extending write are undone to the synced file");
        tap_is_u64(b->size, 4096, "drop: the live size is back too");
        qi_bio_close(b);
    }
}

static void tracing_cb(void *payload, qi_bio *b, const char *structure, uint64_t off,
                       size_t len, const void *buf)
{
    char *log = payload;
    size_t n = strlen(log);
    (void)b;
    (void)buf;
    snprintf(log + n, 512 - n, "%s@%llu+%zu;", structure, (unsigned long long)off, len);
}

static void tracing(void)
{
    char log[512] = "";
    qi_err err;
    uint8_t x[16] = { 0 };
    qi_bio *b = fresh(512, 0, true);
    if (!b)
        return;
    qi_bio_set_trace(tracing_cb, log);
    qi_bio_pwrite(b, x, 16, 64, &err, "L2 table");
    qi_bio_sync(b, &err);
    qi_bio_sync(b, &err);   /* nothing new: no second barrier */
    qi_bio_pwrite(b, x, 8, 0, &err, "header");
    qi_bio_set_trace(NULL, NULL);
    qi_bio_pwrite(b, x, 8, 0, &err, "header");
    tap_is_str(log, "L2 table@64+16;barrier@0+0;header@0+8;",
               "trace: each write and each real barrier, in order");
    qi_bio_close(b);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        tap_ok(0, "mkdtemp");
        return tap_done();
    }
    snprintf(path, sizeof path, "%s/f", dir);
    basic_writes();
    fault_injection();
    tracing();
    unlink(path);
    rmdir(dir);
    return tap_done();
}
