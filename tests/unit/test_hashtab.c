/* Unit tests for hashtab.c: random inserts and deletes checked against a
 * plain array, so backward-shift deletion never loses a key. */
#include <stdlib.h>

#include "hashtab.h"
#include "tap.h"

#define N 4096

int main(void)
{
    qi_hashtab t;
    static uint32_t ref[N];   /* value + 1, 0 = absent; key = index * 4096 */
    unsigned seed = 12345;
    int mismatches = 0;
    tap_is_u64((uint64_t)qi_hashtab_init(&t, N), 0, "init");
    for (int step = 0; step < 200000; step++) {
        seed = seed * 1103515245u + 12345u;
        uint32_t k = (seed >> 8) % N;
        uint64_t key = (uint64_t)k * 4096;
        if ((seed & 3) != 0 && !ref[k]) {
            qi_hashtab_put(&t, key, (uint32_t)step);
            ref[k] = (uint32_t)step + 1;
        } else if (ref[k]) {
            qi_hashtab_del(&t, key);
            ref[k] = 0;
        }
        if (step % 997 == 0)
            for (uint32_t i = 0; i < N; i++) {
                uint32_t v;
                bool got = qi_hashtab_get(&t, (uint64_t)i * 4096, &v);
                if (got != (ref[i] != 0) || (got && v + 1 != ref[i]))
                    mismatches++;
            }
    }
    uint32_t live = 0;
    for (uint32_t i = 0; i < N; i++)
        live += ref[i] != 0;
    tap_is_u64(mismatches, 0, "table agrees with the reference after every step");
    tap_is_u64(t.count, live, "count of live keys");
    qi_hashtab_fini(&t);
    return tap_done();
}
