/* cache.h - cache of metadata tables (L2 tables, refcount blocks) with
 * get/put borrowing (layer 1). */
#ifndef QI_CACHE_H
#define QI_CACHE_H
#include <stddef.h>
#include <stdint.h>

#include "bio.h"
#include "hashtab.h"

typedef struct qi_cache_slot {
    uint64_t off;
    uint32_t prev, next; /* LRU list, most recent at head */
    uint32_t pins;       /* borrowers that have not put it back */
    uint8_t valid;
} qi_cache_slot;

typedef struct qi_cache {
    qi_bio *bio;
    const char *structure;  /* "L2 table", "refcount block" (for errors) */
    uint32_t table_size;
    uint32_t nslots;
    uint64_t reads;         /* tables read from disk (statistics, tests) */
    uint32_t head, tail;    /* LRU list ends (UINT32_MAX when empty) */
    qi_cache_slot *slots;
    uint8_t *arena;         /* nslots * table_size, allocated on first use */
    qi_hashtab index;       /* off -> slot */
} qi_cache;

/* Make a cache of NSLOTS tables of TABLE_SIZE bytes read from BIO.
 * Returns 0 or QI_ENOMEM. Table memory is allocated on first use. */
int qi_cache_new(qi_cache **out, qi_bio *bio, uint32_t table_size,
                 uint32_t nslots, const char *structure);
void qi_cache_free(qi_cache *c);

/* Borrow the table at OFF (the caller validated OFF). *table points at
 * TABLE_SIZE bytes, valid until the matching qi_cache_put. Returns 0,
 * QI_EIO (recorded in ERR), QI_ENOMEM when every slot is pinned. */
int qi_cache_get(qi_cache *c, uint64_t off, const uint8_t **table, qi_err *err);

/* Return a table borrowed with qi_cache_get. */
void qi_cache_put(qi_cache *c, const uint8_t *table);

/* Drop every unpinned table (e.g. after the file changed underneath). */
void qi_cache_drop(qi_cache *c);
#endif
