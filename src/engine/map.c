/* map.c - the allocation map of the guest disk (layer 4).
 *
 * Reports runs of guest bytes with the same status, with the meaning and
 * merging rules of `qemu-img map --output=json` (QEMU's block-status through
 * the backing chain): the depth is the first layer that has data or zeros;
 * an unallocated run with no backing file (or past the end of a shorter
 * backing file) is zero and not present at the layer where the search ended;
 * a raw file reports its holes as zero. Adjacent runs merge when every field
 * matches and their host offsets are contiguous. Calls: cluster, bio. */
#include <string.h>

#include "cluster.h"
#include "refcount.h"

/* QEMU asks the file layer whether data clusters are holes only when it
 * believes the image was preallocated with metadata: when at least
 * max(n * 10 / 9, n + 2) clusters have a nonzero refcount, n being the
 * clusters the host file really has allocated (qcow2.c,
 * qcow2_detect_metadata_preallocation). Same test here, once per image. */
static int detect_prealloc(qi_image *img)
{
    uint64_t real = qi_image_allocated_bytes(img) / img->g.cluster_size;
    uint64_t threshold = real * 10 / 9 > real + 2 ? real * 10 / 9 : real + 2;
    uint64_t end = (img->file->size + img->g.cluster_size - 1) >> img->g.cluster_bits;
    uint64_t count = 0, rc;
    for (uint64_t i = 0; i < end && count < threshold; i++) {
        /* a refcount that cannot be read counts as 0, as in QEMU, where the
         * heuristic never fails a status query (map needs no refcounts) */
        if (qi_refcount_get(img, i, &rc) < 0) {
            qi_err_clear(&img->err);
            rc = 0;
        }
        count += rc != 0;
    }
    img->meta_prealloc = count >= threshold;
    return 0;
}

/* Split a data run where the host file has holes, as QEMU's block layer
 * does when it recurses into the file: a hole reads as zero (data stays
 * true); a hole that reaches the end of the file covers the whole run. */
static void split_on_holes(qi_image *img, qi_map_ext *e)
{
    qi_bio *f = img->data_file ? img->data_file : img->file;
    int64_t d = qi_bio_next_data(f, e->offset);
    if (d < 0)
        return;
    if ((uint64_t)d <= e->offset) {
        int64_t h = qi_bio_next_hole(f, e->offset);
        if (h > 0 && (uint64_t)h > e->offset && (uint64_t)h - e->offset < e->length)
            e->length = (uint64_t)h - e->offset;
        return;
    }
    e->zero = true;
    if ((uint64_t)d < f->size && (uint64_t)d - e->offset < e->length)
        e->length = (uint64_t)d - e->offset;
}

/* Status of the run at OFF (at most MAXLEN bytes) of IMG at DEPTH. */
static int status_raw(qi_image *img, uint64_t off, uint64_t maxlen, qi_map_ext *e)
{
    e->present = true;
    e->has_offset = true;
    e->offset = off;
    e->file = img->path;
    if (off >= img->file->size) {
        /* the sector tail QEMU adds past the end of the file: zeros */
        e->zero = true;
        e->length = maxlen;
        return 0;
    }
    int64_t d = qi_bio_next_data(img->file, off);
    if (d < 0 || (uint64_t)d <= off) {
        int64_t h = d < 0 ? -1 : qi_bio_next_hole(img->file, off);
        uint64_t end = h < 0 || (uint64_t)h <= off ? off + maxlen : (uint64_t)h;
        e->data = true;
        e->length = end - off < maxlen ? end - off : maxlen;
    } else {
        e->zero = true;
        e->length = (uint64_t)d - off < maxlen ? (uint64_t)d - off : maxlen;
    }
    return 0;
}

static int status_at(qi_image *img, int depth, uint64_t off, uint64_t maxlen,
                     qi_map_ext *e)
{
    qi_run r;
    int rc;
    memset(e, 0, sizeof *e);
    e->depth = depth;
    if (img->raw)
        return status_raw(img, off, maxlen, e);
    if ((rc = qi_cluster_active_run(img, off, maxlen, &r)) < 0)
        return rc;
    e->length = r.len;
    if (r.kind == QI_RUN_UNALLOC && img->backing && off < img->backing->size) {
        uint64_t n = img->backing->size - off < r.len ? img->backing->size - off : r.len;
        if ((rc = status_at(img->backing, depth + 1, off, n, e)) < 0)
            return qi_err_copy(&img->err, &img->backing->err);
        return 0;
    }
    e->has_offset = r.has_host;
    e->offset = r.host;
    e->file = img->data_file ? img->data_file->path : img->path;
    switch (r.kind) {
    case QI_RUN_DATA:
        e->present = e->data = true;
        if (img->meta_prealloc < 0 && (rc = detect_prealloc(img)) < 0)
            return rc;
        if (img->meta_prealloc)
            split_on_holes(img, e);
        break;
    case QI_RUN_ZERO:
        e->present = e->zero = true;
        break;
    case QI_RUN_COMPRESSED:
        e->present = e->data = e->compressed = true;
        break;
    default:
        e->zero = true;
        break;
    }
    return 0;
}

static bool mergeable(const qi_map_ext *a, const qi_map_ext *b)
{
    if (a->depth != b->depth || a->present != b->present || a->zero != b->zero ||
        a->data != b->data || a->compressed != b->compressed ||
        a->has_offset != b->has_offset)
        return false;
    if (!a->has_offset)
        return true;
    return a->offset + a->length == b->offset &&
           (a->file == b->file || (a->file && b->file && !strcmp(a->file, b->file)));
}

int qi_image_map(qi_image *img, uint64_t start, uint64_t len, qi_map_cb cb,
                 void *payload)
{
    qi_map_ext cur = { 0 }, e;
    uint64_t off = start, end;
    int rc;
    if (start > img->size || len > img->size - start)
        return qi_fail(img, QI_EINVAL, "", QI_NO_OFFSET, "map range is beyond the "
                       "virtual size");
    end = start + len;
    while (off < end) {
        if ((rc = status_at(img, 0, off, end - off, &e)) < 0)
            return rc;
        e.start = off;
        if (cur.length && mergeable(&cur, &e)) {
            cur.length += e.length;
        } else {
            if (cur.length && (rc = cb(payload, &cur)) != 0)
                return rc;
            cur = e;
        }
        off += e.length;
    }
    if (cur.length)
        return cb(payload, &cur);
    return 0;
}
