/* refcount.c - refcounts (layer 2).
 *
 * Reads refcounts of every width (1..64 bits) through the refcount block
 * cache. The refcount table is loaded once, on first use, and each entry is
 * validated when it is used: reserved bits clear, block cluster aligned and
 * inside the file. Allocation, freeing and table growth come with write
 * support. Calls: cache, format, bio. */
#include <inttypes.h>
#include <stdlib.h>

#include "endian.h"
#include "mem.h"
#include "refcount.h"

int qi_refcount_load_table(qi_image *img)
{
    uint64_t bytes = (uint64_t)img->hdr.refcount_table_clusters << img->g.cluster_bits;
    uint64_t n = bytes / 8;
    uint8_t *raw = NULL;
    int rc;
    if (img->reftable)
        return 0;
    /* the header check already bounded bytes by 8 MiB and the file size */
    raw = qi_mem_alloc_capped(n, 8, QI_MAX_REFTABLE_BYTES);
    img->reftable = qi_mem_alloc_capped(n, 8, QI_MAX_REFTABLE_BYTES);
    if (!raw || !img->reftable) {
        rc = qi_fail(img, QI_ENOMEM, "refcount table", img->hdr.refcount_table_offset,
                     "out of memory");
        goto out;
    }
    if ((rc = qi_bio_pread(img->file, raw, bytes, img->hdr.refcount_table_offset,
                           &img->err, "refcount table")) < 0)
        goto out;
    for (uint64_t i = 0; i < n; i++)
        img->reftable[i] = qi_be64(raw + 8 * i);
    img->reftable_entries = n;
out:
    free(raw);
    if (rc < 0) {
        free(img->reftable);
        img->reftable = NULL;
    }
    return rc;
}

int qi_refcount_get(qi_image *img, uint64_t cluster_index, uint64_t *rc_out)
{
    uint64_t ti = cluster_index / img->g.refblock_entries;
    uint64_t bi = cluster_index % img->g.refblock_entries;
    const uint8_t *block;
    int rc;
    *rc_out = 0;
    if ((rc = qi_refcount_load_table(img)) < 0)
        return rc;
    if (ti >= img->reftable_entries)
        return 0;
    uint64_t e = img->reftable[ti];
    uint64_t where = img->hdr.refcount_table_offset + 8 * ti;
    if (e & QI_REFT_RESERVED_MASK)
        return qi_corrupt(img, "refcount table", where, "entry %" PRIu64
                          " (%#" PRIx64 ") has reserved bits set", ti, e);
    uint64_t off = e & QI_REFT_OFFSET_MASK;
    if (!off)
        return 0;
    if ((rc = qi_format_check_table(&img->g, off, img->g.cluster_size, true,
                                    img->file->size, img->path, "refcount table",
                                    where, &img->err)) < 0) {
        img->corrupt_seen = true;
        return rc;
    }
    if ((rc = qi_cache_get(img->rb_cache, off, &block, &img->err)) < 0)
        return rc;
    *rc_out = qi_format_refcount_get(block, img->g.refcount_order, bi);
    qi_cache_put(img->rb_cache, block);
    return 0;
}
