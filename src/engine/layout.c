/* layout.c - QEMU's allocator replayed on an empty image (layer 2).
 *
 * The functions below follow QEMU's block/qcow2-refcount.c and
 * qcow2-cluster.c step by step (alloc_clusters_noref, update_refcount,
 * alloc_refcount_block, qcow2_refcount_area, qcow2_alloc_clusters[_at],
 * qcow2_grow_l1_table, preallocate_co), because the clusters of a new image
 * sit where that allocator put them: a refcount block needed by a run of
 * clusters lands after the run, the run is then searched again, and a grown
 * refcount table leaves the old one as a free cluster that a later table
 * may reuse. Refcounts are kept in the refcount block buffers themselves,
 * which are the ranges written out. Clusters are handled by index (offset
 * >> cbits). Calls: format (entry and refcount encoding), mem, libc. */
#include <stdlib.h>
#include <string.h>

#include "format.h"
#include "layout.h"
#include "mem.h"

#define AGAIN 1                                 /* QEMU's -EAGAIN */
#define MAX_CLUSTER_OFFSET ((1ull << 56) - 1)   /* QCOW_MAX_CLUSTER_OFFSET */
#define MAX_REFTABLE_SIZE (8ull << 20)          /* QCOW_MAX_REFTABLE_SIZE */
#define REQUEST_MAX_BYTES 0x7ffffe00ull         /* BDRV_REQUEST_MAX_BYTES */
#define INT_MAX_BYTES 0x7fffffffull

static uint64_t div_up(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

/* Count N more bytes held; false if that passes the cap. */
static bool hold(qi_layout *lo, uint64_t n)
{
    if (n > QI_LAYOUT_CAP - lo->held)
        return false;
    lo->held += n;
    return true;
}

/* Append a range of LEN bytes at cluster IDX with buffer BUF (NULL: the L2
 * table of L1 index L2). Returns 0 or QI_ENOMEM. */
static int push_range(qi_layout *lo, uint64_t idx, size_t len, uint8_t *buf, uint64_t l2)
{
    uint64_t off = idx << lo->cbits;
    if (lo->n == lo->cap) {
        size_t cap = lo->cap ? 2 * lo->cap : 64;
        qi_layout_range *r = realloc(lo->r, cap * sizeof *r);
        if (!r)
            return QI_ENOMEM;
        lo->r = r;
        lo->cap = cap;
    }
    if (!hold(lo, sizeof *lo->r))
        return QI_ENOMEM;
    lo->r[lo->n++] = (qi_layout_range){ off, len, buf, l2 };
    if (off + len > lo->file_end)
        lo->file_end = off + len;
    return 0;
}

/* A new range of LEN bytes at cluster IDX, zero-filled; its buffer or NULL
 * (out of memory, or more metadata than the cap). */
static uint8_t *add_range(qi_layout *lo, uint64_t idx, size_t len)
{
    uint8_t *buf;
    if (!hold(lo, len) || !(buf = qi_mem_calloc_capped(1, len, QI_MEM_CAP)))
        return NULL;
    if (push_range(lo, idx, len, buf, 0) < 0) {
        free(buf);
        return NULL;
    }
    return buf;
}

static uint64_t rt_get(const qi_layout *lo, uint64_t t)
{
    return qi_format_get_entry(lo->rt, t);
}

/* Refcount of cluster IDX as QEMU reads it: 0 beyond the refcount table
 * or where it has no refcount block. */
static uint64_t get_rc(const qi_layout *lo, uint64_t idx)
{
    uint64_t t = idx >> lo->rb_bits;
    if (t >= lo->rt_size || !rt_get(lo, t))
        return 0;
    return qi_format_refcount_get(lo->rb[t], lo->order, idx & ((1ull << lo->rb_bits) - 1));
}

/* alloc_clusters_noref: the first run of N clusters with refcount 0 from
 * free_idx on (free_idx ends after it). Returns 0 or QI_ENOSPC. */
static int alloc_noref(qi_layout *lo, uint64_t n, uint64_t max, uint64_t *idx)
{
    uint64_t i;
retry:
    for (i = 0; i < n; i++)
        if (get_rc(lo, lo->free_idx++))
            goto retry;
    if (lo->free_idx > 0 && lo->free_idx - 1 > (max >> lo->cbits))
        return QI_ENOSPC;
    *idx = lo->free_idx - n;
    return 0;
}

static int alloc_rb(qi_layout *lo, uint64_t idx, uint8_t **buf);

/* update_refcount: add ADD (+1 or -1) to the refcounts of clusters
 * [FIRST, FIRST+N); on failure (AGAIN included) the clusters done so far
 * are set back, as QEMU does. */
static int update(qi_layout *lo, uint64_t first, uint64_t n, int add)
{
    uint64_t old_t = UINT64_MAX, k, mask = (1ull << lo->rb_bits) - 1;
    uint8_t *buf = NULL;
    int rc = 0;
    for (k = 0; k < n; k++) {
        uint64_t idx = first + k, t = idx >> lo->rb_bits;
        if (t != old_t && (rc = alloc_rb(lo, idx, &buf)) != 0) {
            /* search again from the same clusters: they may still be free */
            if (rc == AGAIN && lo->free_idx > first)
                lo->free_idx = first;
            break;
        }
        old_t = t;
        uint64_t r = qi_format_refcount_get(buf, lo->order, idx & mask);
        if (add < 0 ? r == 0 : r == lo->refmax) {
            rc = QI_ENOSPC;
            break;
        }
        r = add < 0 ? r - 1 : r + 1;
        if (r == 0 && idx < lo->free_idx)
            lo->free_idx = idx;
        qi_format_refcount_set(buf, lo->order, idx & mask, r);
    }
    if (rc != 0 && k > 0)
        (void)update(lo, first, k, -add);
    return rc;
}

/* qcow2_refcount_metadata_size: refcount blocks (*BLOCKS) and table
 * clusters covering CLUSTERS clusters and themselves (GENEROUS: room for
 * half the table again). */
static void metadata_size(const qi_layout *lo, uint64_t clusters, bool generous,
                          uint64_t *blocks_out, uint64_t *table_out)
{
    uint64_t per_table = lo->cs / 8, per_block = 1ull << lo->rb_bits;
    uint64_t table = 0, blocks = 0, last, n = 0;
    do {
        last = n;
        blocks = div_up(clusters + table + blocks, per_block);
        table = div_up(blocks, per_table);
        n = clusters + blocks + table;
        if (n == last && generous) {
            clusters += div_up(table, 2);
            n = 0;
            generous = false;
        }
    } while (n != last);
    *blocks_out = blocks;
    if (table_out)
        *table_out = table;
}

static void max_rt_index(qi_layout *lo)
{
    uint64_t i = lo->rt_size - 1;
    while (i > 0 && !rt_get(lo, i))
        i--;
    lo->max_rt_index = i;
}

/* The refblocks of the new area: existing ones kept, missing ones made at
 * BLOCK (cluster index, advancing), and every cluster of the area
 * [START, END) given refcount 1. */
static int area_blocks(qi_layout *lo, uint8_t *table, uint8_t **rb, uint64_t area_t,
                       uint64_t total, uint64_t start, uint64_t end)
{
    uint64_t block = start, per_block = 1ull << lo->rb_bits;
    for (uint64_t i = area_t; i < total; i++) {
        if (!qi_format_get_entry(table, i)) {
            if (!(rb[i] = add_range(lo, block, lo->cs)))
                return QI_ENOMEM;
            qi_format_put_entry(table, i, block << lo->cbits);
            block++;
        }
        uint64_t first = i * per_block;
        if (first >= end)
            continue;
        uint64_t j = first < start ? start - first : 0;
        uint64_t stop = end - first < per_block ? end - first : per_block;
        for (; j < stop; j++)
            qi_format_refcount_set(rb[i], lo->order, j, 1);
    }
    return 0;
}

/* Switch to the new refcount table (RANGE, SIZE entries, at cluster IDX,
 * its blocks RB) and free the clusters of the old one, as QEMU does once
 * the header points at the new table. */
static void install_table(qi_layout *lo, uint8_t *range, uint8_t **rb, uint64_t size,
                          uint64_t idx)
{
    uint64_t old_off = lo->rt_off, old_size = lo->rt_size;
    free(lo->rb);
    lo->rb = rb;
    lo->rt = range;
    lo->rt_size = size;
    lo->rt_off = idx << lo->cbits;
    max_rt_index(lo);
    (void)update(lo, old_off >> lo->cbits, old_size * 8 >> lo->cbits, -1);
}

/* qcow2_refcount_area: a new refcount table and the refcount blocks it
 * lacks, self-describing, at cluster START; room for ADDITIONAL clusters
 * after them. NEW_T/NEW_BLOCK/NEW_BUF: a refcount block to enter (NEW_BLOCK
 * 0: none). The old table is freed. *END: the cluster after the area. */
static int refcount_area(qi_layout *lo, uint64_t start, uint64_t additional, bool exact,
                         uint64_t new_t, uint64_t new_block, uint8_t *new_buf,
                         uint64_t *end)
{
    uint64_t total, table_size, extra = 0, per_table = lo->cs / 8;
    metadata_size(lo, start + additional, !exact, &total, NULL);
    if (total > MAX_REFTABLE_SIZE)
        return QI_ENOSPC;
    uint64_t area_t = start >> lo->rb_bits;
    table_size = exact ? total : total + div_up(total, 2);
    table_size = div_up(table_size, per_table) * per_table;
    if (table_size > MAX_REFTABLE_SIZE)
        return QI_ENOSPC;
    uint8_t **rb = calloc(table_size, sizeof *rb);
    if (!rb)
        return QI_ENOMEM;
    uint64_t keep = table_size > lo->max_rt_index ? lo->max_rt_index + 1 : table_size;
    for (uint64_t i = area_t; i < total; i++)
        if (!(i < keep && rt_get(lo, i)) && !(new_block && i == new_t))
            extra++;
    uint64_t table_idx = start + extra, table_clusters = table_size / per_table;
    /* the table's range comes after the blocks' in QEMU's writes, but its
     * place is known now; it is filled below */
    uint8_t *table = qi_mem_calloc_capped(table_size, 8, QI_MEM_CAP);
    int rc = table ? 0 : QI_ENOMEM;
    for (uint64_t i = 0; rc == 0 && i < keep; i++) {
        qi_format_put_entry(table, i, rt_get(lo, i));
        rb[i] = lo->rb[i];
    }
    if (rc == 0 && new_block) {
        qi_format_put_entry(table, new_t, new_block << lo->cbits);
        rb[new_t] = new_buf;
    }
    if (rc == 0)
        rc = area_blocks(lo, table, rb, area_t, total, start, table_idx + table_clusters);
    uint8_t *range = rc == 0 ? add_range(lo, table_idx, table_size * 8) : NULL;
    if (rc == 0 && !range)
        rc = QI_ENOMEM;
    if (rc < 0) {
        free(table);
        free(rb);
        return rc;
    }
    memcpy(range, table, table_size * 8);
    free(table);
    install_table(lo, range, rb, table_size, table_idx);
    *end = table_idx + table_clusters;
    return 0;
}

/* alloc_refcount_block: the refcount block for cluster IDX, made if it is
 * missing; making one returns AGAIN (the caller searches again). */
static int alloc_rb(qi_layout *lo, uint64_t idx, uint8_t **buf)
{
    uint64_t t = idx >> lo->rb_bits, nb, end;
    uint8_t *nbuf;
    int rc;
    if (t < lo->rt_size && rt_get(lo, t)) {
        *buf = lo->rb[t];
        return 0;
    }
    if ((rc = alloc_noref(lo, 1, INT64_MAX, &nb)) < 0)
        return rc;
    if ((nb >> lo->rb_bits) != t && (rc = update(lo, nb, 1, +1)) != 0)
        return rc;
    if (!(nbuf = add_range(lo, nb, lo->cs)))
        return QI_ENOMEM;
    if ((nb >> lo->rb_bits) == t)   /* the block describes itself */
        qi_format_refcount_set(nbuf, lo->order, nb & ((1ull << lo->rb_bits) - 1), 1);
    if (t < lo->rt_size) {
        qi_format_put_entry(lo->rt, t, nb << lo->cbits);
        lo->rb[t] = nbuf;
        if (t > lo->max_rt_index)
            lo->max_rt_index = t;
        return AGAIN;
    }
    uint64_t used = div_up((idx > nb ? idx : nb) + 1, 1ull << lo->rb_bits);
    rc = refcount_area(lo, used << lo->rb_bits, 0, false, t, nb, nbuf, &end);
    return rc < 0 ? rc : AGAIN;
}

/* qcow2_alloc_clusters: N clusters, contiguous; *IDX the first. */
static int alloc(qi_layout *lo, uint64_t n, uint64_t *idx)
{
    int rc;
    do {
        if ((rc = alloc_noref(lo, n, MAX_CLUSTER_OFFSET, idx)) < 0)
            return rc;
        rc = update(lo, *idx, n, +1);
    } while (rc == AGAIN);
    return rc;
}

/* qcow2_alloc_clusters_at: up to N free clusters from IDX on; *GOT how
 * many. */
static int alloc_at(qi_layout *lo, uint64_t idx, uint64_t n, uint64_t *got)
{
    uint64_t i;
    int rc;
    if (n == 0)
        return *got = 0, 0;
    do {
        for (i = 0; i < n && !get_rc(lo, idx + i); i++)
            ;
        rc = update(lo, idx, i, +1);
    } while (rc == AGAIN);
    *got = i;
    return rc;
}

int qi_layout_init(qi_layout *lo, uint32_t cluster_bits, uint32_t refcount_order,
                   bool extended_l2, bool data_file)
{
    memset(lo, 0, sizeof *lo);
    lo->cbits = cluster_bits;
    lo->cs = 1u << cluster_bits;
    lo->order = refcount_order;
    lo->rb_bits = cluster_bits + 3 - refcount_order;
    lo->l2e_size = extended_l2 ? 16 : 8;
    lo->l2_bits = cluster_bits - (extended_l2 ? 4 : 3);
    lo->data_file = data_file;
    lo->refmax = qi_format_refcount_max(refcount_order);
    lo->file_end = lo->cs;                       /* the header */
    lo->rt_size = lo->cs / 8;
    lo->rt_off = lo->cs;
    if (!(lo->rb = calloc(lo->rt_size, sizeof *lo->rb)) ||
        !(lo->rt = add_range(lo, 1, lo->cs)) || !(lo->rb[0] = add_range(lo, 2, lo->cs)))
        return QI_ENOMEM;
    qi_format_put_entry(lo->rt, 0, 2ull << cluster_bits);
    uint64_t first;
    return alloc(lo, 3, &first);   /* header, table, block: clusters 0-2 */
}

void qi_layout_free(qi_layout *lo)
{
    for (size_t i = 0; i < lo->n; i++)
        free(lo->r[i].buf);
    free(lo->r);
    free(lo->rb);
    free(lo->l2);
    free(lo->runs);
    memset(lo, 0, sizeof *lo);
}

const uint8_t *qi_layout_bytes(const qi_layout *lo, size_t i, uint8_t *scratch)
{
    const qi_layout_range *r = &lo->r[i];
    uint64_t mask = (1ull << lo->l2_bits) - 1, words = lo->l2e_size / 8;
    if (r->buf)
        return r->buf;
    memset(scratch, 0, lo->cs);
    for (uint64_t k = lo->l2[r->l2].first; k; k = lo->runs[k - 1].next) {
        const qi_layout_run *u = &lo->runs[k - 1];
        for (uint64_t j = 0; j < u->n; j++) {
            uint64_t e = (u->g + j) & mask;
            qi_format_put_entry(scratch, e * words,
                                qi_format_encode_l2((u->host + j) << lo->cbits, true, false));
            if (words == 2 && u->suballoc)
                qi_format_put_entry(scratch, e * 2 + 1, 0xffffffffull);
        }
    }
    return scratch;
}

int qi_layout_grow_l1(qi_layout *lo, uint64_t entries)
{
    uint64_t idx;
    int rc;
    if (entries > QI_MAX_L1_ENTRIES)
        return QI_ENOSPC;
    if (entries == 0)
        return 0;
    if ((rc = alloc(lo, div_up(entries * 8, lo->cs), &idx)) < 0)
        return rc;
    if (!(lo->l1 = add_range(lo, idx, entries * 8)) || !hold(lo, entries * sizeof *lo->l2) ||
        !(lo->l2 = calloc(entries, sizeof *lo->l2)))
        return QI_ENOMEM;
    lo->l1_size = entries;
    lo->l1_off = idx << lo->cbits;
    return 0;
}

/* get_cluster_table: the L2 table of guest cluster G, allocated (and
 * entered in the L1 table, COPIED) when missing; *L2 its record. */
static int l2_table(qi_layout *lo, uint64_t g, qi_layout_l2 **l2)
{
    uint64_t i = g >> lo->l2_bits, idx;
    int rc;
    if (!lo->l2[i].range) {
        if ((rc = alloc(lo, 1, &idx)) < 0)
            return rc;
        if ((rc = push_range(lo, idx, lo->cs, NULL, i)) < 0)
            return rc;
        lo->l2[i].range = lo->n;
        qi_format_put_entry(lo->l1, i, qi_format_encode_l1(idx << lo->cbits, true));
    }
    *l2 = &lo->l2[i];
    return 0;
}

/* Map guest clusters [G, G+N) (in one L2 table) to host clusters from
 * HOST on, COPIED (qcow2_alloc_cluster_link_l2 of a preallocation); with
 * SUBALLOC the subclusters are marked allocated. Recorded as a run of the
 * table, rendered by qi_layout_bytes. */
static int link(qi_layout *lo, uint64_t g, uint64_t n, uint64_t host, bool suballoc)
{
    qi_layout_l2 *l2;
    int rc = l2_table(lo, g, &l2);
    if (rc < 0 || n == 0)
        return rc;
    if (lo->nruns == lo->runs_cap) {
        uint64_t cap = lo->runs_cap ? 2 * lo->runs_cap : 64;
        qi_layout_run *r = qi_mem_alloc_capped(cap, sizeof *r, QI_LAYOUT_CAP);
        if (!r)
            return QI_ENOMEM;
        if (lo->nruns)
            memcpy(r, lo->runs, lo->nruns * sizeof *r);
        free(lo->runs);
        lo->runs = r;
        lo->runs_cap = cap;
    }
    if (!hold(lo, sizeof *lo->runs))
        return QI_ENOMEM;
    lo->runs[lo->nruns++] = (qi_layout_run){ g, n, host, 0, suballoc };
    if (l2->last)
        lo->runs[l2->last - 1].next = lo->nruns;
    else
        l2->first = lo->nruns;
    l2->last = lo->nruns;
    return 0;
}

/* qcow2_alloc_host_offset for a preallocation of guest bytes from OFF,
 * at most *BYTES: L2 table first (handle_copied), then a data run up to
 * the end of that L2 table (handle_alloc), continued in the next table
 * only where the data can stay contiguous. *HOST: the first data cluster. */
static int alloc_host(qi_layout *lo, uint64_t off, uint64_t *bytes, uint64_t *host)
{
    uint64_t start = off, remaining = *bytes, cur = INT64_MAX, l2mask, nb, got;
    uint64_t next = UINT64_MAX;   /* host cluster the next run must start at */
    qi_layout_l2 *l2;
    int rc;
    *host = UINT64_MAX;
    l2mask = (1ull << lo->l2_bits) - 1;
    while (remaining) {
        uint64_t g = start >> lo->cbits;
        if ((rc = l2_table(lo, g, &l2)) < 0)
            return rc;
        nb = div_up((start & (lo->cs - 1)) + remaining, lo->cs);
        if (nb > (l2mask + 1) - (g & l2mask))
            nb = (l2mask + 1) - (g & l2mask);
        if (nb > REQUEST_MAX_BYTES >> lo->cbits)
            nb = REQUEST_MAX_BYTES >> lo->cbits;
        if (lo->data_file) {
            got = nb;
            if (next != UINT64_MAX && next != g)
                break;
            next = g;
        } else if (next == UINT64_MAX) {
            if ((rc = alloc(lo, nb, &next)) < 0)
                return rc;
            got = nb;
        } else {
            if ((rc = alloc_at(lo, next, nb, &got)) < 0)
                return rc;
            if (got == 0)
                break;
        }
        if (*host == UINT64_MAX)
            *host = next;
        uint64_t avail = got << lo->cbits > INT_MAX_BYTES ? INT_MAX_BYTES : got << lo->cbits;
        cur = remaining + (start & (lo->cs - 1)) < avail ? remaining : avail - (start & (lo->cs - 1));
        if ((rc = link(lo, g, got, next, false)) < 0)
            return rc;
        start += cur;
        remaining -= cur;
        next += got;
    }
    *bytes -= remaining;
    return 0;
}

int qi_layout_prealloc_metadata(qi_layout *lo, uint64_t size)
{
    uint64_t off = 0, host = 0, cur = 0, chunk = INT_MAX_BYTES & ~(uint64_t)(lo->cs - 1);
    int rc;
    while (off < size) {
        cur = size - off < chunk ? size - off : chunk;
        if ((rc = alloc_host(lo, off, &cur, &host)) < 0)
            return rc;
        off += cur;
    }
    if (size) {
        /* the end of the last data (sub)cluster: QEMU extends to whole ones */
        uint64_t unit = lo->l2e_size == 16 ? lo->cs / 32 : lo->cs;
        uint64_t end = (host << lo->cbits) + div_up(cur, unit) * unit;
        uint64_t *len = lo->data_file ? &lo->data_end : &lo->file_end;
        if (end > *len)
            *len = end;
    }
    return 0;
}

/* The last cluster with a refcount (qcow2_get_last_cluster), from the
 * file length on down; -1 if none. */
static int64_t last_cluster(const qi_layout *lo, uint64_t clusters)
{
    for (uint64_t i = clusters; i > 0; i--)
        if (get_rc(lo, i - 1))
            return (int64_t)(i - 1);
    return -1;
}

int qi_layout_prealloc_full(qi_layout *lo, uint64_t size, bool subclusters_alloc,
                            uint64_t *data_off, uint64_t *data_len)
{
    uint64_t old = div_up(lo->file_end, lo->cs), start, got;
    int64_t last = last_cluster(lo, old);
    uint64_t ndata = div_up(size, lo->cs);
    uint64_t nl2 = div_up(ndata, 1ull << lo->l2_bits) + 1;
    int rc;
    old = last >= 0 ? (uint64_t)last + 1 : 0;
    if ((rc = refcount_area(lo, old, ndata + nl2, true, 0, 0, NULL, &start)) < 0)
        return rc;
    if ((rc = alloc_at(lo, start, ndata, &got)) < 0)
        return rc;
    if (got != ndata)
        return QI_ENOSPC;
    *data_off = start << lo->cbits;
    *data_len = ndata << lo->cbits;
    if (*data_off + *data_len > lo->file_end)
        lo->file_end = *data_off + *data_len;
    uint64_t g = 0, host = start, per = 1ull << lo->l2_bits;
    while (g < ndata) {
        uint64_t n = per - (g & (per - 1));
        if (n > ndata - g)
            n = ndata - g;
        if ((rc = link(lo, g, n, host, subclusters_alloc)) < 0)
            return rc;
        g += n;
        host += n;
    }
    return 0;
}
