/* Unit tests for cache.c: LRU eviction, pins, and that a sequential pass
 * reads every table exactly once. A sequential pass cannot tell which slot
 * is evicted, so eviction order is checked with re-touched tables and with
 * a pseudo-random access pattern against a model LRU written here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "tap.h"

/* Get and put the table of block I; 1 when it holds block I's bytes. */
static int touch(qi_cache *c, int i)
{
    const uint8_t *t;
    qi_err err;
    if (qi_cache_get(c, 512ull * (unsigned)i, &t, &err) < 0)
        return 0;
    int ok = t[0] == i && t[511] == i;
    qi_cache_put(c, t);
    return ok;
}

/* Capacity 4: load A B C D, touch A again, load E. The least recently used
 * table is B, so B goes and A stays. */
static void evicts_least_recent(qi_bio *b)
{
    qi_cache *c;
    if (qi_cache_new(&c, b, 512, 4, "L2 table") < 0) {
        tap_ok(0, "cache of 4");
        return;
    }
    for (int i = 0; i < 4; i++)
        touch(c, i);
    touch(c, 0);                             /* A is now the most recent */
    tap_is_u64(c->reads, 4, "A B C D A: four reads");
    touch(c, 4);                             /* E replaces B */
    tap_is_u64(c->reads, 5, "E read");
    touch(c, 0);
    tap_is_u64(c->reads, 5, "A, touched after B, C and D, is still cached");
    touch(c, 2);
    touch(c, 3);
    tap_is_u64(c->reads, 5, "C and D are still cached");
    touch(c, 1);
    tap_is_u64(c->reads, 6, "B, the least recently used, was the one evicted");
    qi_cache_free(c);
}

/* A model LRU of NSLOTS entries: tables in order of last use, most recent
 * first. Returns 1 when the access of table T is a miss. */
static int model_access(int *lru, int *n, int nslots, int t)
{
    int k = 0;
    while (k < *n && lru[k] != t)
        k++;
    int miss = k == *n;
    if (miss && *n < nslots)
        (*n)++;
    if (k == nslots)
        k = nslots - 1;                       /* drop the least recent */
    memmove(lru + 1, lru, (size_t)k * sizeof *lru);
    lru[0] = t;
    return miss;
}

static void random_pattern(qi_bio *b)
{
    enum { NSLOTS = 5, TABLES = 9, STEPS = 2000 };
    qi_cache *c;
    int lru[NSLOTS], n = 0, ok = 1, first_bad = -1;
    uint64_t want = 0;
    uint32_t x = 12345;
    if (qi_cache_new(&c, b, 512, NSLOTS, "L2 table") < 0) {
        tap_ok(0, "cache of %d", NSLOTS);
        return;
    }
    for (int step = 0; step < STEPS; step++) {
        x = x * 1103515245u + 12345u;
        /* skewed towards low tables, so hits and misses both happen */
        int t = (int)((x >> 16) % TABLES);
        if ((x >> 8) & 1)
            t %= 4;
        want += (uint64_t)model_access(lru, &n, NSLOTS, t);
        ok &= touch(c, t);
        if (c->reads != want && first_bad < 0)
            first_bad = step;
    }
    tap_ok(ok, "random pattern: tables hold the right bytes");
    tap_ok(first_bad < 0 && c->reads == want,
           "random pattern: reads after every step equal a model LRU's misses "
           "(%llu reads, model %llu, first difference at step %d)",
           (unsigned long long)c->reads, (unsigned long long)want, first_bad);
    tap_ok(want > 100 && want < STEPS / 2, "random pattern: %llu misses in %d steps",
           (unsigned long long)want, STEPS);
    qi_cache_free(c);
}

int main(void)
{
    char path[] = "/tmp/qi-cache-XXXXXX";
    int fd = mkstemp(path);
    uint8_t blk[512];
    for (int i = 0; i < 64; i++) {
        memset(blk, i, sizeof blk);
        if (write(fd, blk, sizeof blk) != (ssize_t)sizeof blk)
            return 1;
    }
    close(fd);
    qi_bio *b;
    qi_cache *c;
    qi_err err;
    const uint8_t *t, *t2;
    tap_is_u64((uint64_t)qi_bio_open(&b, path, false, QI_LOCK_NONE, &err), 0, "open");
    tap_is_u64((uint64_t)qi_cache_new(&c, b, 512, 4, "L2 table"), 0, "cache of 4");
    int ok = 1;
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < 64; i++)
            for (int rep = 0; rep < 3; rep++) {
                if (qi_cache_get(c, 512ull * i, &t, &err) < 0 || t[0] != i)
                    ok = 0;
                qi_cache_put(c, t);
            }
    tap_ok(ok, "tables hold the right bytes");
    tap_is_u64(c->reads, 128, "each table read once per sequential pass");
    qi_cache_get(c, 0, &t, &err);           /* pin table 0 */
    for (int i = 1; i < 20; i++) {
        qi_cache_get(c, 512ull * i, &t2, &err);
        qi_cache_put(c, t2);
    }
    uint64_t before = c->reads;
    qi_cache_get(c, 0, &t2, &err);
    tap_ok(t2 == t && c->reads == before, "a pinned table is never evicted");
    qi_cache_put(c, t2);
    qi_cache_put(c, t);
    const uint8_t *p[4];
    for (int i = 0; i < 4; i++)
        qi_cache_get(c, 512ull * (30 + i), &p[i], &err);
    tap_is_u64((uint64_t)qi_cache_get(c, 512ull * 40, &t, &err), (uint64_t)QI_ENOMEM,
               "all slots pinned: error, not an overwrite");
    for (int i = 0; i < 4; i++)
        qi_cache_put(c, p[i]);
    qi_cache_free(c);
    evicts_least_recent(b);
    random_pattern(b);
    qi_bio_close(b);
    unlink(path);
    return tap_done();
}
