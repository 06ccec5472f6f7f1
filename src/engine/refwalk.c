/* refwalk.c - every reference to host clusters (layer 4).
 *
 * One walk over all metadata that reports each reference with where it
 * lives (table and index), what it points at and, for L2 entries, the guest
 * offset it maps. The owners index (refindex.c) is built from it; the check
 * counts it. L2 tables are borrowed from the cache
 * one at a time. Calls: cluster, refcount, format. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "endian.h"
#include "refcount.h"
#include "mem.h"
#include "refwalk.h"

const char *qi_ref_kind_name(qi_ref_kind k)
{
    static const char *const names[] = { "header", "L1 table", "L1 entry", "L2 entry",
                                         "refcount table", "refcount block",
                                         "snapshot table", "bitmap directory",
                                         "bitmap table", "bitmap data" };
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "unknown";
}

static int emit_range(qi_ref_cb cb, void *payload, qi_ref_kind kind, int32_t snap,
                      uint64_t off, uint64_t len)
{
    qi_ref r = { .kind = kind, .snapshot = snap, .host_offset = off, .length = len };
    return cb(payload, &r);
}

static int walk_l2(qi_image *img, int32_t snap, uint64_t l2_off, uint64_t guest,
                   qi_ref_cb cb, void *payload)
{
    const qi_geom *g = &img->g;
    int rc = 0;
    for (uint32_t i = 0; i < g->l2_entries && rc == 0; i++) {
        qi_l2_entry e;
        if ((rc = qi_cluster_l2_entry(img, l2_off, i, &e)) < 0)
            return rc;
        bool data = e.type == QI_CLUSTER_NORMAL || e.type == QI_CLUSTER_ZERO_ALLOC ||
                    e.type == QI_CLUSTER_COMPRESSED;
        /* with an external data file, data clusters are not refcounted */
        if (!data || (img->data_file && e.type != QI_CLUSTER_COMPRESSED))
            continue;
        qi_ref r = { .kind = QI_REF_L2_ENTRY, .snapshot = snap, .table_offset = l2_off,
                     .index = i, .raw = e.raw,
                     .guest_offset = guest + ((uint64_t)i << g->cluster_bits),
                     .host_offset = e.host_offset,
                     .length = e.type == QI_CLUSTER_COMPRESSED ? e.csize : g->cluster_size };
        rc = cb(payload, &r);
    }
    return rc;
}

static int walk_view(qi_image *img, int32_t snap, qi_ref_cb cb, void *payload)
{
    qi_l1view v;
    int rc;
    if ((rc = snap < 0 ? qi_cluster_view_active(img, &v)
                       : qi_cluster_view_snapshot(img, (uint32_t)snap, &v)) < 0)
        return rc;
    if (v.size && (rc = emit_range(cb, payload, QI_REF_L1_TABLE, snap, v.l1_off,
                                   8ull * v.size)) != 0)
        goto out;
    for (uint64_t i = 0; i < v.size; i++) {
        uint64_t l2_off;
        if ((rc = qi_cluster_l2_offset(img, &v, i, &l2_off)) < 0)
            goto out;
        if (!l2_off)
            continue;
        qi_ref r = { .kind = QI_REF_L1_ENTRY, .snapshot = snap, .table_offset = v.l1_off,
                     .index = (uint32_t)i, .raw = v.tab->e[i],
                     .guest_offset = i << (img->g.l2_bits + img->g.cluster_bits),
                     .host_offset = l2_off, .length = img->g.cluster_size };
        if ((rc = cb(payload, &r)) != 0)
            goto out;
        /* the view keeps its table even if a callback views another one */
        if ((rc = walk_l2(img, snap, l2_off, r.guest_offset, cb, payload)) != 0)
            goto out;
    }
out:
    qi_cluster_view_put(img, &v);
    return rc;
}

static int walk_refcounts(qi_image *img, qi_ref_cb cb, void *payload)
{
    uint64_t rt = img->hdr.refcount_table_offset;
    int rc;
    if ((rc = emit_range(cb, payload, QI_REF_REFTABLE, -1, rt,
                         (uint64_t)img->hdr.refcount_table_clusters << img->g.cluster_bits)) != 0)
        return rc;
    if ((rc = qi_refcount_load_table(img)) < 0)
        return rc;
    for (uint64_t i = 0; i < img->reftable_entries; i++) {
        uint64_t off = img->reftable[i] & QI_REFT_OFFSET_MASK;
        if (!off)
            continue;
        qi_ref r = { .kind = QI_REF_REFBLOCK, .snapshot = -1, .table_offset = rt,
                     .index = (uint32_t)i, .raw = img->reftable[i], .host_offset = off,
                     .length = img->g.cluster_size };
        if ((rc = cb(payload, &r)) != 0)
            return rc;
    }
    return 0;
}

/* A bitmap's table and the data clusters its entries point at (bits 9-55;
 * an entry without an offset reads as all zeros or all ones). */
static int walk_bitmap(qi_image *img, const qi_bitmap *b, qi_ref_cb cb, void *payload)
{
    uint64_t bytes = 8ull * b->table_size;
    uint8_t *t = NULL;
    int rc;
    if (!b->table_size)
        return 0;
    if ((rc = qi_format_check_table(&img->g, b->table_offset, bytes, true,
                                    img->file->size, img->path, "bitmap table",
                                    b->entry_offset, &img->err)) < 0)
        return rc;
    if ((rc = emit_range(cb, payload, QI_REF_BITMAP_TABLE, -1, b->table_offset, bytes)) != 0)
        return rc;
    if (!(t = qi_mem_alloc_capped(b->table_size, 8, QI_MEM_CAP)))
        return qi_fail(img, QI_ENOMEM, "bitmap table", b->table_offset, "out of memory");
    rc = qi_bio_pread(img->file, t, bytes, b->table_offset, &img->err, "bitmap table");
    for (uint32_t i = 0; rc == 0 && i < b->table_size; i++) {
        uint64_t e = qi_be64(t + 8 * i), off = e & 0x00fffffffffffe00ull;
        if (!off)
            continue;
        qi_ref r = { .kind = QI_REF_BITMAP_DATA, .snapshot = -1,
                     .table_offset = b->table_offset, .index = i, .raw = e,
                     .host_offset = off, .length = img->g.cluster_size };
        rc = cb(payload, &r);
    }
    free(t);
    return rc;
}

static int walk_fixed(qi_image *img, qi_ref_cb cb, void *payload)
{
    int rc;
    if (img->hdr.nb_snapshots) {
        /* the table's length is the sum of its entries' padded lengths */
        uint64_t end = img->hdr.snapshots_offset;
        for (uint32_t i = 0; i < img->n_snaps; i++)
            end = img->snaps[i].entry_offset + img->snaps[i].entry_size;
        if ((rc = emit_range(cb, payload, QI_REF_SNAPTABLE, -1, img->hdr.snapshots_offset,
                             end - img->hdr.snapshots_offset)) != 0)
            return rc;
    }
    for (uint32_t i = 0; i < img->n_exts; i++)
        if (img->exts[i].type == QI_EXT_BITMAPS && img->n_bitmaps &&
            (rc = emit_range(cb, payload, QI_REF_BITMAP_DIR, -1,
                             qi_be64(img->exts[i].data + 16),
                             qi_be64(img->exts[i].data + 8))) != 0)
            return rc;
    for (uint32_t i = 0; i < img->n_bitmaps; i++)
        if ((rc = walk_bitmap(img, &img->bitmaps[i], cb, payload)) != 0)
            return rc;
    return 0;
}

int qi_refwalk_fixed(qi_image *img, qi_ref_cb cb, void *payload)
{
    return walk_fixed(img, cb, payload);
}

int qi_refwalk(qi_image *img, qi_ref_cb cb, void *payload)
{
    int rc;
    if (img->raw)
        return qi_fail(img, QI_EINVAL, "", QI_NO_OFFSET, "a raw image has no qcow2 metadata");
    if ((rc = emit_range(cb, payload, QI_REF_HEADER, -1, 0, img->g.cluster_size)) != 0 ||
        (rc = walk_view(img, -1, cb, payload)) != 0)
        return rc;
    for (uint32_t s = 0; s < img->n_snaps; s++)
        if ((rc = walk_view(img, (int32_t)s, cb, payload)) != 0)
            return rc;
    if ((rc = walk_refcounts(img, cb, payload)) != 0)
        return rc;
    return walk_fixed(img, cb, payload);
}

int qi_meta_references(qi_image *img, qi_ref_cb cb, void *payload)
{
    return qi_refwalk(img, cb, payload);
}
