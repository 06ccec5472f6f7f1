/* hashtab.h - open-addressing hash table from 64-bit keys to 32-bit values
 * (layer 0). Fixed capacity chosen at creation; no allocation afterwards. */
#ifndef QI_HASHTAB_H
#define QI_HASHTAB_H
#include <stdbool.h>
#include <stdint.h>

typedef struct qi_hashtab {
    uint64_t *keys;
    uint32_t *vals;
    uint8_t *used;
    uint32_t mask;     /* capacity - 1, capacity a power of two */
    uint32_t count;
} qi_hashtab;

/* Make a table that holds at least MAX_ITEMS items at load <= 1/2.
 * Returns 0 or QI_ENOMEM. */
int qi_hashtab_init(qi_hashtab *t, uint32_t max_items);
void qi_hashtab_fini(qi_hashtab *t);
/* true and *val if KEY is present */
bool qi_hashtab_get(const qi_hashtab *t, uint64_t key, uint32_t *val);
/* insert or replace; the caller keeps count <= max_items */
void qi_hashtab_put(qi_hashtab *t, uint64_t key, uint32_t val);
/* remove KEY if present */
void qi_hashtab_del(qi_hashtab *t, uint64_t key);
#endif
