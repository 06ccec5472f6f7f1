/* Unit tests for the write side of cache.c: dirty tables are written back
 * on flush and before their slot is reused, never before; the declared
 * dependency (refcount blocks before L2 tables) and the data barrier come
 * first, in that order; new tables are not read; discarded tables are never
 * written; a failed write-back keeps the table dirty. The order of what
 * reaches the file is taken from bio's trace hook, and contents are read
 * back with plain pread(2). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "tap.h"

static char dir[] = "/tmp/qi-test-cachew.XXXXXX";
static char log_buf[4096];

static void trace(void *payload, qi_bio *b, const char *structure, uint64_t off,
                  size_t len, const void *buf)
{
    size_t n = strlen(log_buf);
    (void)payload;
    (void)len;
    (void)buf;
    snprintf(log_buf + n, sizeof log_buf - n, "%s:%s@%llu;", strrchr(b->path, '/') + 1,
             structure, (unsigned long long)off);
}

/* A file of NBLOCKS 512-byte blocks, block i filled with byte i. */
static qi_bio *make_file(const char *name, int nblocks)
{
    char path[256];
    uint8_t blk[512];
    qi_bio *b = NULL;
    qi_err err;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return NULL;
    for (int i = 0; i < nblocks; i++) {
        memset(blk, i, sizeof blk);
        fwrite(blk, 1, sizeof blk, f);
    }
    fclose(f);
    if (qi_bio_open(&b, path, true, QI_LOCK_NONE, &err) < 0)
        return NULL;
    return b;
}

static int byte_at(qi_bio *b, uint64_t off)
{
    uint8_t x;
    return pread(b->fd, &x, 1, (off_t)off) == 1 ? x : -1;
}

static void dirty_and_flush(qi_bio *b)
{
    qi_cache *c;
    uint8_t *t;
    qi_err err;
    if (qi_cache_new(&c, b, 512, 2, "L2 table") < 0)
        return;
    qi_cache_get_mut(c, 512, &t, &err);
    t[0] = 0xab;
    qi_cache_mark_dirty(c, t);
    qi_cache_put(c, t);
    tap_ok(byte_at(b, 512) == 1 && c->ndirty == 1, "a dirty table is not written before a flush");
    tap_ok(qi_cache_flush(c, &err) == 0 && byte_at(b, 512) == 0xab && c->ndirty == 0,
           "flush writes it");
    tap_ok(qi_cache_flush(c, &err) == 0 && c->writes == 1, "a second flush writes nothing");

    /* capacity 2: dirty A, then load B and C: A's slot is reused, A written first */
    qi_cache_get_mut(c, 1024, &t, &err);
    t[0] = 0xcd;
    qi_cache_mark_dirty(c, t);
    qi_cache_put(c, t);
    const uint8_t *r;
    qi_cache_get(c, 1536, &r, &err);
    qi_cache_put(c, r);
    tap_ok(byte_at(b, 1024) == 2, "A still cached and not written while a slot is free");
    qi_cache_get(c, 2048, &r, &err);
    qi_cache_put(c, r);
    qi_cache_get(c, 2560, &r, &err);
    qi_cache_put(c, r);
    tap_ok(byte_at(b, 1024) == 0xcd && c->ndirty == 0,
           "a dirty table is written back before its slot is reused");

    /* get_empty: no read, zeros, dirty */
    uint64_t reads = c->reads;
    qi_cache_get_empty(c, 3072, &t, &err);
    int zero = 1;
    for (int i = 0; i < 512; i++)
        zero &= t[i] == 0;
    qi_cache_put(c, t);
    tap_ok(zero && c->reads == reads && c->ndirty == 1, "get_empty: zeros, no read, dirty");
    tap_ok(qi_cache_flush(c, &err) == 0 && byte_at(b, 3072) == 0 && byte_at(b, 3583) == 0,
           "the new table reaches the file as zeros");

    /* discard: a dirty table that is discarded is never written */
    qi_cache_get_mut(c, 3584, &t, &err);
    t[0] = 0xee;
    qi_cache_mark_dirty(c, t);
    qi_cache_put(c, t);
    qi_cache_discard(c, 3584);
    tap_ok(qi_cache_flush(c, &err) == 0 && byte_at(b, 3584) == 7 && c->ndirty == 0,
           "a discarded dirty table is not written");
    qi_cache_get(c, 3584, &r, &err);
    tap_ok(r[0] == 7, "and is read again from the file");
    qi_cache_put(c, r);
    qi_cache_free(c);
}

static void ordering(void)
{
    qi_bio *img = make_file("img", 16), *data = make_file("data", 4);
    qi_cache *l2, *rb;
    uint8_t *t, x = 0x55;
    qi_err err;
    if (!img || !data || qi_cache_new(&l2, img, 512, 4, "L2 table") < 0 ||
        qi_cache_new(&rb, img, 512, 4, "refcount block") < 0) {
        tap_ok(0, "setup");
        return;
    }
    qi_cache_set_dependency(l2, rb);
    qi_cache_get_mut(rb, 512, &t, &err);
    qi_cache_mark_dirty(rb, t);
    qi_cache_put(rb, t);
    qi_cache_get_mut(l2, 1024, &t, &err);
    qi_cache_mark_dirty(l2, t);
    qi_cache_put(l2, t);
    qi_bio_pwrite(data, &x, 1, 0, &err, "data");
    qi_cache_barrier(l2, data);
    log_buf[0] = 0;
    qi_bio_set_trace(trace, NULL);
    int rc = qi_cache_flush(l2, &err);
    qi_bio_set_trace(NULL, NULL);
    tap_ok(rc == 0, "flush of the L2 cache");
    tap_is_str(log_buf, "img:refcount block@512;img:barrier@0;data:barrier@0;img:L2 table@1024;"
               "img:barrier@0;", "refcount block written and synced, then the data "
               "barrier, then the L2 table, then a sync");

    /* eviction follows the same order */
    for (int i = 0; i < 4; i++) {
        qi_cache_get_mut(l2, 2048 + 512ull * (unsigned)i, &t, &err);
        qi_cache_mark_dirty(l2, t);
        qi_cache_put(l2, t);
    }
    qi_cache_get_mut(rb, 512, &t, &err);
    qi_cache_mark_dirty(rb, t);
    qi_cache_put(rb, t);
    log_buf[0] = 0;
    qi_bio_set_trace(trace, NULL);
    const uint8_t *r;
    rc = qi_cache_get(l2, 6144, &r, &err);
    qi_bio_set_trace(NULL, NULL);
    if (rc == 0)
        qi_cache_put(l2, r);
    tap_is_str(log_buf, "img:refcount block@512;img:barrier@0;img:L2 table@2048;",
               "evicting a dirty L2 table flushes the refcount blocks first");

    /* a failed write-back keeps the table dirty; it is written later */
    qi_bio_fault_arm(0, false);
    rc = qi_cache_flush(l2, &err);
    qi_bio_fault_disarm();
    tap_ok(rc == QI_EIO && l2->ndirty == 3 && strstr(err.message, "injected"),
           "an injected write failure fails the flush and keeps the tables dirty (%d, %u)",
           rc, l2->ndirty);
    tap_ok(qi_cache_flush(l2, &err) == 0 && l2->ndirty == 0, "the next flush writes them");
    qi_cache_free(l2);
    qi_cache_free(rb);
    qi_bio_close(img);
    qi_bio_close(data);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        tap_ok(0, "mkdtemp");
        return tap_done();
    }
    qi_bio *b = make_file("a", 8);
    if (tap_ok(b != NULL, "scratch file")) {
        dirty_and_flush(b);
        qi_bio_close(b);
    }
    ordering();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        tap_diag("could not remove %s", dir);
    return tap_done();
}
