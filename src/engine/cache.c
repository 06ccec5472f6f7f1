/* cache.c - metadata table cache (layer 1).
 *
 * Holds whole L2 tables and refcount blocks, looked up by their file offset.
 * Code borrows a table with qi_cache_get and returns it with qi_cache_put;
 * a pinned table is never evicted, and no pointer into the cache may be kept
 * past the put. Eviction is least-recently-used among unpinned slots (an
 * intrusive LRU list, O(1) per hit), so a sequential pass over an image reads
 * each table once. Table memory is one arena, so put finds its slot by
 * address arithmetic.
 *
 * Writing: a borrower changes a table in place and marks it dirty; dirty
 * tables are written back on flush or when their slot is reused. Ordering
 * is declared once, not at each call site (STYLE convention 6):
 *   1. before any table of a cache is written, every dirty table of the
 *      cache it depends on is written and synced (refcount blocks before
 *      L2 tables: a cluster is counted before anything points at it);
 *   2. a barrier set after a data write syncs the data file before the next
 *      write-back (an L2 entry never reaches the disk before its data).
 * A write-back that fails leaves the table dirty and the error in ERR.
 * Calls: bio, hashtab. */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "cache.h"
#include "err.h"

#define NIL UINT32_MAX

int qi_cache_new(qi_cache **out, qi_bio *bio, uint32_t table_size,
                 uint32_t nslots, const char *structure)
{
    qi_cache *c = calloc(1, sizeof *c);
    *out = NULL;
    if (!c)
        return QI_ENOMEM;
    if (nslots < 2)
        nslots = 2;
    c->bio = bio;
    c->structure = structure;
    c->table_size = table_size;
    c->nslots = nslots;
    c->head = c->tail = NIL;
    c->slots = calloc(nslots, sizeof *c->slots);
    if (!c->slots || qi_hashtab_init(&c->index, nslots) < 0) {
        free(c->slots);
        free(c);
        return QI_ENOMEM;
    }
    /* every slot starts on the list, invalid, so victims come from the tail */
    for (uint32_t i = 0; i < nslots; i++) {
        c->slots[i].prev = i ? i - 1 : NIL;
        c->slots[i].next = i + 1 < nslots ? i + 1 : NIL;
    }
    c->head = 0;
    c->tail = nslots - 1;
    *out = c;
    return 0;
}

void qi_cache_free(qi_cache *c)
{
    if (!c)
        return;
    for (uint32_t i = 0; i < c->nslots; i++)
        assert(!c->slots[i].pins);  /* a get without its put: a pin leak */
    free(c->arena);
    free(c->slots);
    qi_hashtab_fini(&c->index);
    free(c);
}

static void unlink_slot(qi_cache *c, uint32_t i)
{
    qi_cache_slot *s = &c->slots[i];
    if (s->prev != NIL)
        c->slots[s->prev].next = s->next;
    else
        c->head = s->next;
    if (s->next != NIL)
        c->slots[s->next].prev = s->prev;
    else
        c->tail = s->prev;
}

static void push_head(qi_cache *c, uint32_t i)
{
    qi_cache_slot *s = &c->slots[i];
    s->prev = NIL;
    s->next = c->head;
    if (c->head != NIL)
        c->slots[c->head].prev = i;
    c->head = i;
    if (c->tail == NIL)
        c->tail = i;
}

static int pick_victim(qi_cache *c, uint32_t *out)
{
    /* invalid or unpinned slots are found from the tail; pinned ones are few */
    for (uint32_t i = c->tail; i != NIL; i = c->slots[i].prev)
        if (!c->slots[i].pins) {
            *out = i;
            return 0;
        }
    return QI_ENOMEM;
}

/* Everything that must be on disk before a table of C is written:
 * the dependency's dirty tables (written and synced), then the barrier. */
static int before_writeback(qi_cache *c, qi_err *err)
{
    int rc;
    if (c->dep && c->dep->ndirty && (rc = qi_cache_flush(c->dep, err)) < 0)
        return rc;
    if (c->barrier) {
        if ((rc = qi_bio_sync(c->barrier, err)) < 0)
            return rc;
        c->barrier = NULL;
    }
    return 0;
}

static int write_slot(qi_cache *c, uint32_t i, qi_err *err)
{
    qi_cache_slot *s = &c->slots[i];
    int rc;
    if (!s->dirty)
        return 0;
    if ((rc = before_writeback(c, err)) < 0 ||
        (rc = qi_bio_pwrite(c->bio, c->arena + (size_t)i * c->table_size,
                            c->table_size, s->off, err, c->structure)) < 0)
        return rc;
    s->dirty = 0;
    c->ndirty--;
    c->writes++;
    return 0;
}

/* A slot for the table at OFF: the cached one (*hit = 1), or a victim,
 * written back if dirty and unhooked from its old offset. */
static int find_slot(qi_cache *c, uint64_t off, uint32_t *out, int *hit, qi_err *err)
{
    uint32_t i;
    int rc;
    if (!c->arena && !(c->arena = malloc((size_t)c->nslots * c->table_size)))
        return qi_err_set(err, c->bio->path, QI_ENOMEM, c->structure, off,
                          "out of memory for the metadata cache");
    *hit = qi_hashtab_get(&c->index, off, &i);
    if (!*hit) {
        if ((rc = pick_victim(c, &i)) < 0)
            return qi_err_set(err, c->bio->path, rc, c->structure, off,
                              "metadata cache exhausted (all tables pinned)");
        qi_cache_slot *s = &c->slots[i];
        if (s->valid && (rc = write_slot(c, i, err)) < 0)
            return rc;
        if (s->valid)
            qi_hashtab_del(&c->index, s->off);
        s->valid = 0;
    }
    *out = i;
    return 0;
}

static uint8_t *borrow(qi_cache *c, uint32_t i)
{
    c->slots[i].pins++;
    if (c->head != i) {
        unlink_slot(c, i);
        push_head(c, i);
    }
    return c->arena + (size_t)i * c->table_size;
}

int qi_cache_get_mut(qi_cache *c, uint64_t off, uint8_t **table, qi_err *err)
{
    uint32_t i;
    int hit, rc;
    if ((rc = find_slot(c, off, &i, &hit, err)) < 0)
        return rc;
    if (!hit) {
        qi_cache_slot *s = &c->slots[i];
        if ((rc = qi_bio_pread(c->bio, c->arena + (size_t)i * c->table_size,
                               c->table_size, off, err, c->structure)) < 0)
            return rc;
        c->reads++;
        s->off = off;
        s->valid = 1;
        qi_hashtab_put(&c->index, off, i);
    }
    *table = borrow(c, i);
    return 0;
}

int qi_cache_get(qi_cache *c, uint64_t off, const uint8_t **table, qi_err *err)
{
    uint8_t *t;
    int rc = qi_cache_get_mut(c, off, &t, err);
    if (rc == 0)
        *table = t;
    return rc;
}

int qi_cache_get_empty(qi_cache *c, uint64_t off, uint8_t **table, qi_err *err)
{
    uint32_t i;
    int hit, rc;
    if ((rc = find_slot(c, off, &i, &hit, err)) < 0)
        return rc;
    qi_cache_slot *s = &c->slots[i];
    assert(!hit || !s->pins);   /* a new table nobody can be holding */
    memset(c->arena + (size_t)i * c->table_size, 0, c->table_size);
    if (!hit) {
        s->off = off;
        s->valid = 1;
        qi_hashtab_put(&c->index, off, i);
    }
    if (!s->dirty) {
        s->dirty = 1;
        c->ndirty++;
    }
    *table = borrow(c, i);
    return 0;
}

/* The slot of a borrowed TABLE; asserts it came from this cache. */
static uint32_t slot_of(const qi_cache *c, const uint8_t *table)
{
    assert(c->arena && table >= c->arena);
    size_t d = (size_t)(table - c->arena);
    assert(d % c->table_size == 0 && d / c->table_size < c->nslots);
    uint32_t i = (uint32_t)(d / c->table_size);
    assert(c->slots[i].valid && c->slots[i].pins);
    return i;
}

void qi_cache_mark_dirty(qi_cache *c, const uint8_t *table)
{
    uint32_t i = slot_of(c, table);
    if (!c->slots[i].dirty) {
        c->slots[i].dirty = 1;
        c->ndirty++;
    }
}

void qi_cache_put(qi_cache *c, const uint8_t *table)
{
    c->slots[slot_of(c, table)].pins--;
}

void qi_cache_set_dependency(qi_cache *c, qi_cache *dep)
{
    assert(!dep || (dep != c && dep->dep != c));
    c->dep = dep;
}

void qi_cache_barrier(qi_cache *c, qi_bio *bio)
{
    assert(!c->barrier || c->barrier == bio);
    c->barrier = bio;
}

int qi_cache_write(qi_cache *c, qi_err *err)
{
    int rc;
    for (uint32_t i = 0; i < c->nslots && c->ndirty; i++)
        if (c->slots[i].valid && (rc = write_slot(c, i, err)) < 0)
            return rc;
    return 0;
}

int qi_cache_flush(qi_cache *c, qi_err *err)
{
    int rc;
    if ((rc = qi_cache_write(c, err)) < 0)
        return rc;
    return qi_bio_sync(c->bio, err);
}

void qi_cache_discard(qi_cache *c, uint64_t off)
{
    uint32_t i;
    if (!qi_hashtab_get(&c->index, off, &i))
        return;
    qi_cache_slot *s = &c->slots[i];
    assert(!s->pins);
    if (s->dirty) {
        s->dirty = 0;
        c->ndirty--;
    }
    qi_hashtab_del(&c->index, off);
    s->valid = 0;
    /* to the tail: the next victim */
    unlink_slot(c, i);
    s->next = NIL;
    s->prev = c->tail;
    if (c->tail != NIL)
        c->slots[c->tail].next = i;
    c->tail = i;
    if (c->head == NIL)
        c->head = i;
}

void qi_cache_drop(qi_cache *c)
{
    for (uint32_t i = 0; i < c->nslots; i++)
        if (c->slots[i].valid && !c->slots[i].pins && !c->slots[i].dirty) {
            qi_hashtab_del(&c->index, c->slots[i].off);
            c->slots[i].valid = 0;
        }
}
