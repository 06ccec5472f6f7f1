/* hashtab.c - open addressing with linear probing and backward-shift
 * deletion (layer 0), so lookups never walk tombstones. Used by the metadata
 * cache (table offset -> slot). Calls: libc. */
#include <assert.h>
#include <stdlib.h>

#include "qi/error.h"
#include "hashtab.h"

static uint32_t slot_of(const qi_hashtab *t, uint64_t key)
{
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdull;
    key ^= key >> 33;
    return (uint32_t)key & t->mask;
}

int qi_hashtab_init(qi_hashtab *t, uint32_t max_items)
{
    uint32_t cap = 8;
    while (cap < 2u * max_items && cap < (1u << 30))
        cap <<= 1;
    t->keys = calloc(cap, sizeof *t->keys);
    t->vals = calloc(cap, sizeof *t->vals);
    t->used = calloc(cap, 1);
    t->mask = cap - 1;
    t->count = 0;
    if (!t->keys || !t->vals || !t->used) {
        qi_hashtab_fini(t);
        return QI_ENOMEM;
    }
    return 0;
}

void qi_hashtab_fini(qi_hashtab *t)
{
    free(t->keys);
    free(t->vals);
    free(t->used);
    t->keys = NULL;
    t->vals = NULL;
    t->used = NULL;
}

bool qi_hashtab_get(const qi_hashtab *t, uint64_t key, uint32_t *val)
{
    for (uint32_t i = slot_of(t, key); t->used[i]; i = (i + 1) & t->mask)
        if (t->keys[i] == key) {
            *val = t->vals[i];
            return true;
        }
    return false;
}

void qi_hashtab_put(qi_hashtab *t, uint64_t key, uint32_t val)
{
    uint32_t i = slot_of(t, key);
    for (; t->used[i]; i = (i + 1) & t->mask)
        if (t->keys[i] == key) {
            t->vals[i] = val;
            return;
        }
    /* sized at init for at most max_items: a full table is a caller's bug */
    assert(t->count < t->mask);
    t->used[i] = 1;
    t->keys[i] = key;
    t->vals[i] = val;
    t->count++;
}

void qi_hashtab_del(qi_hashtab *t, uint64_t key)
{
    uint32_t i = slot_of(t, key);
    for (; t->used[i]; i = (i + 1) & t->mask)
        if (t->keys[i] == key)
            break;
    if (!t->used[i])
        return;
    /* backward shift: move later members of the cluster into the hole */
    uint32_t hole = i;
    for (uint32_t j = (i + 1) & t->mask; t->used[j]; j = (j + 1) & t->mask) {
        uint32_t home = slot_of(t, t->keys[j]);
        /* j may move to hole if home is not in (hole, j] cyclically */
        if (((j - home) & t->mask) >= ((j - hole) & t->mask)) {
            t->keys[hole] = t->keys[j];
            t->vals[hole] = t->vals[j];
            hole = j;
        }
    }
    t->used[hole] = 0;
    t->count--;
}
