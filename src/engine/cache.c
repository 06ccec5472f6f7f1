/* cache.c - metadata table cache (layer 1).
 *
 * Holds whole L2 tables and refcount blocks, looked up by their file offset.
 * Code borrows a table with qi_cache_get and returns it with qi_cache_put;
 * a pinned table is never evicted, and no pointer into the cache may be kept
 * past the put. Eviction is least-recently-used among unpinned slots (an
 * intrusive LRU list, O(1) per hit), so a sequential pass over an image reads
 * each table once. Table memory is one arena, so put finds its slot by
 * address arithmetic. Writes (dirty tables, flush ordering between the L2
 * and refcount caches) come with write support. Calls: bio, hashtab. */
#include <stdlib.h>

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

int qi_cache_get(qi_cache *c, uint64_t off, const uint8_t **table, qi_err *err)
{
    uint32_t i;
    int rc;
    if (!c->arena && !(c->arena = malloc((size_t)c->nslots * c->table_size)))
        return qi_err_set(err, c->bio->path, QI_ENOMEM, c->structure, off,
                          "out of memory for the metadata cache");
    if (!qi_hashtab_get(&c->index, off, &i)) {
        if ((rc = pick_victim(c, &i)) < 0)
            return qi_err_set(err, c->bio->path, rc, c->structure, off,
                              "metadata cache exhausted (all tables pinned)");
        qi_cache_slot *s = &c->slots[i];
        if (s->valid)
            qi_hashtab_del(&c->index, s->off);
        s->valid = 0;
        if ((rc = qi_bio_pread(c->bio, c->arena + (size_t)i * c->table_size,
                               c->table_size, off, err, c->structure)) < 0)
            return rc;
        c->reads++;
        s->off = off;
        s->valid = 1;
        qi_hashtab_put(&c->index, off, i);
    }
    c->slots[i].pins++;
    if (c->head != i) {
        unlink_slot(c, i);
        push_head(c, i);
    }
    *table = c->arena + (size_t)i * c->table_size;
    return 0;
}

void qi_cache_put(qi_cache *c, const uint8_t *table)
{
    size_t i = (size_t)(table - c->arena) / c->table_size;
    if (table >= c->arena && i < c->nslots && c->slots[i].pins)
        c->slots[i].pins--;
}

void qi_cache_drop(qi_cache *c)
{
    for (uint32_t i = 0; i < c->nslots; i++)
        if (c->slots[i].valid && !c->slots[i].pins) {
            qi_hashtab_del(&c->index, c->slots[i].off);
            c->slots[i].valid = 0;
        }
}
