/* Unit tests for cache.c: LRU eviction, pins, and that a sequential pass
 * reads every table exactly once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cache.h"
#include "tap.h"

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
    qi_bio_close(b);
    unlink(path);
    return tap_done();
}
