/* Unit tests for journal.c (undo files, dry-run overlays) and undo.c (the
 * restore), through bio handles as the image opens them. Expected contents
 * are built here byte by byte; the undo file is parsed here from its
 * documented format (include/qi/undo.h), not through undo.c. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qi/undo.h"
#include "bio.h"
#include "endian.h"
#include "journal.h"
#include "tap.h"

static char dir[] = "/tmp/qi-test-journal.XXXXXX";
static char path[256], upath[256];

static void make_file(size_t size, uint8_t *content)
{
    FILE *f = fopen(path, "wb");
    for (size_t i = 0; i < size; i++)
        content[i] = (uint8_t)(i * 7 + 3);
    if (f) {
        fwrite(content, 1, size, f);
        fclose(f);
    }
}

static size_t slurp(const char *p, uint8_t *buf, size_t cap)
{
    int fd = open(p, O_RDONLY);
    size_t n = 0;
    ssize_t r;
    if (fd < 0)
        return (size_t)-1;
    while (n < cap && (r = read(fd, buf + n, cap - n)) > 0)
        n += (size_t)r;
    close(fd);
    return n;
}

/* Count, per byte of the original file, how many 'D' records hold it;
 * check the saved bytes equal ORIG. Returns the number of D records. */
static int parse_undo(const uint8_t *orig, size_t orig_size, uint8_t *times, int *bad)
{
    static uint8_t u[1 << 20];
    size_t n = slurp(upath, u, sizeof u), off = 16;
    int records = 0;
    *bad = n < 16 || memcmp(u, "QIUNDO\r\n", 8) != 0;
    while (!*bad && off + 12 <= n) {
        uint32_t plen = qi_be32(u + off + 4);
        const uint8_t *p = u + off + 8;
        if (u[off] == 'D') {
            uint64_t at = qi_be64(p + 4);
            for (uint32_t i = 0; i < plen - 12; i++) {
                if (at + i >= orig_size || p[12 + i] != orig[at + i])
                    *bad = 1;
                else
                    times[at + i]++;
            }
            records++;
        }
        off += 12 + plen;
    }
    return records;
}

static void undo_file(void)
{
    uint8_t orig[16384], now[32768], times[16384] = { 0 }, x[3000];
    qi_journal *j = NULL;
    qi_bio *b = NULL;
    qi_err err;
    int bad;
    make_file(sizeof orig, orig);
    unlink(upath);
    if (!tap_ok(qi_journal_new(&j, upath, false, &err) == 0, "create an undo file") ||
        !tap_ok(qi_bio_open_journaled(&b, path, QI_LOCK_NONE, j, &err) == 0,
                "open a file under it"))
        return;
    qi_journal *j2 = NULL;
    tap_ok(qi_journal_new(&j2, upath, false, &err) == QI_EINVAL && !j2,
           "an existing undo file is refused");
    memset(x, 0x11, sizeof x);
    /* overlapping writes, a write past the end, a discard, a cut */
    qi_bio_pwrite(b, x, 1000, 100, &err, "a");
    qi_bio_pwrite(b, x, 1000, 600, &err, "b");      /* overlaps a */
    qi_bio_pwrite(b, x, 3000, 50, &err, "c");       /* covers a and b */
    qi_bio_pwrite(b, x, 3000, 15000, &err, "d");    /* crosses the end */
    qi_bio_discard(b, 8192, 4096, &err, "e");
    qi_bio_truncate(b, 14000, &err);                /* cuts d's old part */
    qi_bio_pwrite(b, x, 100, 13990, &err, "f");     /* across the new end */
    tap_ok(qi_journal_finish(j, &err) == 0, "finish writes the end record");
    qi_journal_free(j);
    qi_bio_close(b);
    int recs = parse_undo(orig, sizeof orig, times, &bad);
    tap_ok(!bad, "every saved byte is the original byte at its offset");
    int twice = 0, missing = 0;
    for (size_t i = 0; i < sizeof orig; i++) {
        bool overwritten = (i >= 50 && i < 3050) || i >= 14000 || (i >= 8192 && i < 12288) ||
                           (i >= 13990 && i < 14090);
        twice += times[i] > 1;
        missing += overwritten && !times[i];
    }
    tap_is_u64(twice, 0, "no byte saved twice");
    tap_is_u64(missing, 0, "every overwritten byte below the original end saved");
    /* a, b's new part, c's two gaps, d below the end, e, the cut, f */
    tap_is_u64((uint64_t)recs, 8, "one record per range not saved yet");
    qi_undo_report r;
    tap_ok(qi_undo_restore(upath, path, false, &r, &err) == 0, "restore: %s", err.message);
    tap_is_u64(slurp(path, now, sizeof now), sizeof orig, "restored to the original size");
    tap_is_mem(now, orig, sizeof orig, "restored byte for byte");
    tap_ok(r.writer_finished && !r.resumed && !r.forced, "report: finished, not resumed");
}

static void dry_run(void)
{
    uint8_t orig[8192], want[12288], got[12288], x[500];
    qi_journal *j = NULL;
    qi_bio *b = NULL;
    qi_err err;
    make_file(sizeof orig, orig);
    if (!tap_ok(qi_journal_new(&j, NULL, true, &err) == 0 &&
                qi_bio_open_journaled(&b, path, QI_LOCK_NONE, j, &err) == 0, "dry run open"))
        return;
    memcpy(want, orig, sizeof orig);
    memset(x, 0x22, sizeof x);
    qi_bio_pwrite(b, x, sizeof x, 1000, &err, "w");
    memset(want + 1000, 0x22, sizeof x);
    qi_bio_discard(b, 2000, 1000, &err, "d");
    memset(want + 2000, 0, 1000);
    qi_bio_truncate(b, 6000, &err);
    qi_bio_truncate(b, 12288, &err);       /* grown again: the cut part is zeros */
    memset(want + 6000, 0, 12288 - 6000);
    tap_ok(qi_bio_pread(b, got, sizeof got, 0, &err, "r") == 0, "read through the overlay");
    tap_is_mem(got, want, sizeof want, "the overlay: write, discard, cut, grow");
    tap_is_u64(b->size, 12288, "the size the dry run sees");
    tap_ok(qi_bio_sync(b, &err) == 0, "sync does nothing, succeeds");
    tap_is_u64(slurp(path, got, sizeof got), sizeof orig, "the file keeps its size");
    tap_is_mem(got, orig, sizeof orig, "the file keeps its bytes");
    qi_journal_free(j);
    qi_bio_close(b);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        tap_ok(0, "mkdtemp");
        return tap_done();
    }
    snprintf(path, sizeof path, "%s/f", dir);
    snprintf(upath, sizeof upath, "%s/u", dir);
    undo_file();
    dry_run();
    unlink(path);
    unlink(upath);
    rmdir(dir);
    return tap_done();
}
