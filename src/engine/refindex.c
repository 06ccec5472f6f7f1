/* refindex.c - owners of a host cluster from an index of every reference
 * (layer 4).
 *
 * qi_meta_owners answers "who references this cluster" for one cluster.
 * Answered by a full walk (refwalk.c) per question, a script that asks for
 * every cluster of a large image does a walk per cluster (hours). Instead
 * the first question builds an index with one walk: every reference as a
 * record, plus one 4-byte key per cluster the reference touches (two at
 * most: a compressed range can cross into the next cluster), sorted by
 * cluster and then by walk order. References touching more than two
 * clusters (L1 tables, the refcount and snapshot tables, bitmap
 * directories: a few per image) sit in a short list checked for every
 * question. Memory: sizeof(qi_ref) + 4 or 8 bytes per reference (under 64).
 *
 * The index belongs to the image (img->refindex), is valid for the file
 * state it was built from (the file handle's write counter, after a flush
 * of cached metadata: a writable image is flushed before every question)
 * and is rebuilt when that changed. An image with more references than
 * QI_REFINDEX_MAX_REFS, or an index that cannot be allocated, falls back
 * to the walk per question (same answers, slower).
 * Calls: refwalk, image (flush), mem. */
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "refindex.h"
#include "refwalk.h"

#define WIDE_MAX 4096u          /* references touching > 2 clusters */
#define SECOND 0x80000000u      /* key flag: the second cluster of the ref */

struct qi_refindex {
    uint64_t gen;               /* img->file->writes when built */
    qi_ref *refs;
    uint32_t n_refs, cap_refs;
    uint32_t *keys;             /* ref index | SECOND, sorted */
    uint32_t n_keys;
    uint32_t wide[WIDE_MAX];    /* ref indices, in walk order */
    uint32_t n_wide;
    uint32_t cluster_bits;
    bool overflow;              /* too many references: no index */
};

static uint64_t first_cluster(const qi_refindex *x, const qi_ref *r)
{
    return r->host_offset >> x->cluster_bits;
}

static uint64_t last_cluster(const qi_refindex *x, const qi_ref *r)
{
    uint64_t end = r->host_offset + r->length - 1;
    return end < r->host_offset ? UINT64_MAX >> x->cluster_bits : end >> x->cluster_bits;
}

static uint64_t key_cluster(const qi_refindex *x, uint32_t k)
{
    return first_cluster(x, &x->refs[k & ~SECOND]) + ((k & SECOND) ? 1 : 0);
}

static int collect(void *payload, const qi_ref *r)
{
    qi_refindex *x = payload;
    if (!r->length)
        return 0;
    if (x->n_refs == x->cap_refs) {
        uint32_t cap = x->cap_refs ? x->cap_refs * 2 : 1024;
        qi_ref *p;
        if (x->cap_refs >= QI_REFINDEX_MAX_REFS / 2 ||
            !(p = realloc(x->refs, (size_t)cap * sizeof *p))) {
            x->overflow = true;
            return 1;
        }
        x->refs = p;
        x->cap_refs = cap;
    }
    x->refs[x->n_refs++] = *r;
    return 0;
}

/* qsort has no payload argument: the index being sorted, set around it
 * (one sort at a time; the engine is not shared between threads). */
static const qi_refindex *sorting;

static int key_cmp(const void *a, const void *b)
{
    uint32_t ka = *(const uint32_t *)a, kb = *(const uint32_t *)b;
    uint64_t ca = key_cluster(sorting, ka), cb = key_cluster(sorting, kb);
    if (ca != cb)
        return ca < cb ? -1 : 1;
    ka &= ~SECOND;
    kb &= ~SECOND;
    return ka < kb ? -1 : ka > kb;
}

/* Keys for the collected references; false when out of memory or when
 * too many references are wide. */
static bool make_keys(qi_refindex *x)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < x->n_refs; i++) {
        uint64_t span = last_cluster(x, &x->refs[i]) - first_cluster(x, &x->refs[i]);
        n += span == 0 ? 1 : span == 1 ? 2 : 0;
    }
    if (!(x->keys = qi_mem_alloc_capped(n ? n : 1, 4, (size_t)QI_REFINDEX_MAX_REFS * 8)))
        return false;
    for (uint32_t i = 0; i < x->n_refs; i++) {
        uint64_t span = last_cluster(x, &x->refs[i]) - first_cluster(x, &x->refs[i]);
        if (span > 1) {
            if (x->n_wide == WIDE_MAX)
                return false;
            x->wide[x->n_wide++] = i;
            continue;
        }
        x->keys[x->n_keys++] = i;
        if (span == 1)
            x->keys[x->n_keys++] = i | SECOND;
    }
    sorting = x;
    qsort(x->keys, x->n_keys, sizeof *x->keys, key_cmp);
    sorting = NULL;
    return true;
}

void qi_refindex_free(qi_refindex *x)
{
    if (!x)
        return;
    free(x->refs);
    free(x->keys);
    free(x);
}

/* The image's index for its current state: built or rebuilt as needed.
 * NULL with rc 0: no index (too large), walk instead. */
static int current(qi_image *img, qi_refindex **out)
{
    qi_refindex *x = img->refindex;
    int rc;
    *out = NULL;
    if (img->writable && (rc = qi_image_flush(img)) < 0)
        return rc;
    if (x && x->gen == img->file->writes) {
        *out = x->overflow ? NULL : x;
        return 0;
    }
    qi_refindex_free(x);
    img->refindex = NULL;
    if (!(x = calloc(1, sizeof *x)))
        return 0;
    x->cluster_bits = img->g.cluster_bits;
    x->gen = img->file->writes;
    rc = qi_refwalk(img, collect, x);
    if (rc < 0) {
        qi_refindex_free(x);
        return rc;
    }
    if (x->overflow || !make_keys(x)) {
        free(x->refs);
        free(x->keys);
        memset(x, 0, sizeof *x);
        x->overflow = true;
        x->gen = img->file->writes;
    }
    img->refindex = x;
    *out = x->overflow ? NULL : x;
    return 0;
}

/* First key of cluster C (binary search). */
static uint32_t lower_bound(const qi_refindex *x, uint64_t c)
{
    uint32_t lo = 0, hi = x->n_keys;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (key_cluster(x, x->keys[mid]) < c)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The references to cluster C in walk order: keyed ones merged with wide. */
static int answer(const qi_refindex *x, uint64_t c, qi_ref_cb cb, void *payload)
{
    uint32_t k = lower_bound(x, c), w = 0;
    int rc;
    for (;;) {
        while (w < x->n_wide && (first_cluster(x, &x->refs[x->wide[w]]) > c ||
                                 last_cluster(x, &x->refs[x->wide[w]]) < c))
            w++;
        bool have_k = k < x->n_keys && key_cluster(x, x->keys[k]) == c;
        bool have_w = w < x->n_wide;
        if (!have_k && !have_w)
            return 0;
        uint32_t i;
        if (have_k && (!have_w || (x->keys[k] & ~SECOND) < x->wide[w]))
            i = x->keys[k++] & ~SECOND;
        else
            i = x->wide[w++];
        if ((rc = cb(payload, &x->refs[i])) != 0)
            return rc;
    }
}

typedef struct owners_ctx {
    uint64_t first, last;   /* target cluster's byte range */
    qi_ref_cb cb;
    void *payload;
} owners_ctx;

static int owners_filter(void *payload, const qi_ref *r)
{
    owners_ctx *c = payload;
    if (!r->length || r->host_offset > c->last || r->host_offset + r->length - 1 < c->first)
        return 0;
    return c->cb(c->payload, r);
}

int qi_meta_owners(qi_image *img, uint64_t host_off, qi_ref_cb cb, void *payload)
{
    uint64_t cs = img->g.cluster_size;
    owners_ctx c = { host_off & ~(cs - 1), (host_off & ~(cs - 1)) + cs - 1, cb, payload };
    qi_refindex *x;
    int rc;
    if (img->raw)
        return qi_refwalk(img, owners_filter, &c);  /* its error */
    if ((rc = current(img, &x)) < 0)
        return rc;
    if (!x)
        return qi_refwalk(img, owners_filter, &c);
    return answer(x, host_off >> img->g.cluster_bits, cb, payload);
}
