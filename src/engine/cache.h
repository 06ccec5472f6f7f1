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
    uint8_t dirty;       /* changed in memory, not yet written back */
} qi_cache_slot;

typedef struct qi_cache {
    qi_bio *bio;
    const char *structure;  /* "L2 table", "refcount block" (for errors) */
    uint32_t table_size;
    uint32_t nslots;
    uint64_t reads;         /* tables read from disk (statistics, tests) */
    uint64_t writes;        /* tables written back (statistics, tests) */
    uint32_t ndirty;        /* slots with dirty set */
    struct qi_cache *dep;   /* flushed (written and synced) before any
                             * table of this cache is written back */
    qi_bio *barrier;        /* synced before the next write-back, or NULL */
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
 * TABLE_SIZE bytes, valid until the matching qi_cache_put. Loading a table
 * may evict a dirty one, which is written back first (in the declared
 * order). Returns 0, QI_EIO/QI_ENOSPC (recorded in ERR), QI_ENOMEM when
 * every slot is pinned. */
int qi_cache_get(qi_cache *c, uint64_t off, const uint8_t **table, qi_err *err);

/* The same, for a table the caller will change: after changing it, the
 * caller calls qi_cache_mark_dirty before the put. */
int qi_cache_get_mut(qi_cache *c, uint64_t off, uint8_t **table, qi_err *err);

/* Borrow a slot for a new table at OFF without reading it: all zeros,
 * already dirty (a newly allocated L2 table or refcount block). */
int qi_cache_get_empty(qi_cache *c, uint64_t off, uint8_t **table, qi_err *err);

/* Mark a borrowed table as changed: it is written back on flush or before
 * its slot is reused. */
void qi_cache_mark_dirty(qi_cache *c, const uint8_t *table);

/* Return a table borrowed with qi_cache_get*. Asserts that TABLE came from
 * this cache and is borrowed. */
void qi_cache_put(qi_cache *c, const uint8_t *table);

/* Declare that tables of C may be written only after every dirty table of
 * DEP is written and synced (QEMU: the L2 cache depends on the refcount
 * block cache, so a new cluster is counted before anything points at it).
 * DEP NULL: no dependency (lazy refcounts, under the dirty bit). */
void qi_cache_set_dependency(qi_cache *c, qi_cache *dep);

/* A barrier: BIO (the file guest data went to) is synced before the next
 * write-back of a table of C, so no L2 entry reaches the disk before the
 * data it points at. */
void qi_cache_barrier(qi_cache *c, qi_bio *bio);

/* Write back every dirty table (after the dependency and the barrier) and
 * sync C's file. Returns 0, QI_EIO, QI_ENOSPC (ERR says which table). */
int qi_cache_flush(qi_cache *c, qi_err *err);

/* qi_cache_flush without the closing sync: for a caller that puts more
 * writes under the same sync (each must be harmless on disk before or
 * without the others: they share one ordering point). */
int qi_cache_write(qi_cache *c, qi_err *err);

/* Forget the table at OFF without writing it (its cluster was freed); a
 * no-op if it is not cached. Asserts it is not borrowed. */
void qi_cache_discard(qi_cache *c, uint64_t off);

/* Drop every unpinned clean table (e.g. after the file changed underneath).
 * Dirty tables stay. */
void qi_cache_drop(qi_cache *c);
#endif
