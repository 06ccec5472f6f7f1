/* meta.c - the public metadata API of include/qi/meta.h (layer 4).
 *
 * Decoded, validated views of the header, extensions, feature names, L1 and
 * L2 entries, refcounts and snapshots. Everything reads through the engine
 * at call time (L2 tables and refcount blocks through the cache); nothing
 * returned points into the cache. Calls: cluster, refcount, format. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "endian.h"
#include "refcount.h"

const qi_header *qi_meta_header(const qi_image *img)
{
    return img->raw ? NULL : &img->hdr;
}

const qi_ext *qi_meta_extensions(const qi_image *img, uint32_t *n)
{
    *n = img->n_exts;
    return img->exts;
}

const qi_feature_name *qi_meta_feature_names(const qi_image *img, uint32_t *n)
{
    *n = img->n_features;
    return img->features;
}

const char *qi_meta_feature_name(const qi_image *img, int type, int bit)
{
    for (uint32_t i = 0; img && i < img->n_features; i++)
        if (img->features[i].type == type && img->features[i].bit == bit &&
            img->features[i].name[0])
            return img->features[i].name;
    return qi_format_builtin_feature(type, bit);
}

uint32_t qi_meta_l2_entries(const qi_image *img) { return img->g.l2_entries; }
uint32_t qi_meta_refcount_bits(const qi_image *img) { return 1u << img->g.refcount_order; }
uint64_t qi_meta_refblock_entries(const qi_image *img) { return img->g.refblock_entries; }
bool qi_meta_extended_l2(const qi_image *img) { return img->g.extl2; }

const char *qi_cluster_type_name(qi_cluster_type t)
{
    static const char *const names[] = { "unallocated", "normal", "zero",
                                         "zero-allocated", "compressed" };
    return (unsigned)t < 5 ? names[t] : "invalid";
}

void qi_meta_decode_l1(const qi_image *img, uint64_t raw, qi_l1_entry *out)
{
    (void)img;
    qi_format_decode_l1(raw, out);
}

void qi_meta_decode_l2(const qi_image *img, uint64_t raw, uint64_t bitmap,
                       qi_l2_entry *out)
{
    qi_format_decode_l2(&img->g, img->data_file != NULL, raw, bitmap, out);
}

qi_subcluster_state qi_meta_subcluster(const qi_l2_entry *e, unsigned i)
{
    if (i >= 32)
        return QI_SC_INVALID;
    bool a = (e->bitmap >> i) & 1, z = (e->bitmap >> (32 + i)) & 1;
    if (a && z)
        return QI_SC_INVALID;
    return a ? QI_SC_ALLOCATED : z ? QI_SC_ZERO : QI_SC_UNALLOCATED;
}

static int not_qcow2(qi_image *img)
{
    return qi_fail(img, QI_EINVAL, "", QI_NO_OFFSET, "a raw image has no qcow2 metadata");
}

int qi_meta_l1_get(qi_image *img, uint32_t index, qi_l1_entry *out)
{
    qi_l1view v;
    int rc;
    if (img->raw)
        return not_qcow2(img);
    if ((rc = qi_image_usable(img)) < 0)
        return rc;
    if (index >= img->hdr.l1_size)
        return qi_fail(img, QI_EINVAL, "L1 table", QI_NO_OFFSET, "index %" PRIu32
                       " is beyond l1_size %" PRIu32, index, img->hdr.l1_size);
    if ((rc = qi_cluster_view_active(img, &v)) < 0)
        return rc;
    qi_format_decode_l1(v.tab->e[index], out);
    qi_cluster_view_put(img, &v);
    return 0;
}

int qi_meta_l1_get_at(qi_image *img, uint64_t l1_off, uint32_t l1_size,
                      uint32_t index, qi_l1_entry *out)
{
    int urc;
    if ((urc = qi_image_usable(img)) < 0)
        return urc;
    for (uint32_t s = 0; s < img->n_snaps; s++) {
        if (img->snaps[s].l1_table_offset != l1_off || img->snaps[s].l1_size != l1_size)
            continue;
        qi_l1view v;
        int rc;
        if (index >= l1_size)
            return qi_fail(img, QI_EINVAL, "snapshot L1 table", QI_NO_OFFSET,
                           "index %" PRIu32 " is beyond its size %" PRIu32, index, l1_size);
        if ((rc = qi_cluster_view_snapshot(img, s, &v)) < 0)
            return rc;
        qi_format_decode_l1(v.tab->e[index], out);
        qi_cluster_view_put(img, &v);
        return 0;
    }
    if (!img->raw && l1_off == img->hdr.l1_table_offset && l1_size == img->hdr.l1_size)
        return qi_meta_l1_get(img, index, out);
    return qi_fail(img, QI_EINVAL, "L1 table", l1_off, "no L1 table of %" PRIu32
                   " entries at this offset", l1_size);
}

int qi_meta_l2_get(qi_image *img, uint64_t l2_off, uint32_t index, qi_l2_entry *out)
{
    int rc;
    if (img->raw)
        return not_qcow2(img);
    if ((rc = qi_image_usable(img)) < 0)
        return rc;
    if (index >= img->g.l2_entries)
        return qi_fail(img, QI_EINVAL, "L2 table", l2_off, "index %" PRIu32 " is beyond "
                       "%" PRIu32 " entries", index, img->g.l2_entries);
    if ((rc = qi_format_check_table(&img->g, l2_off, img->g.cluster_size, true,
                                    img->file->size, img->path, "L2 table", l2_off,
                                    &img->err)) < 0)
        return rc;
    return qi_cluster_l2_decode(img, l2_off, index, out);
}

int qi_meta_l2_lookup(qi_image *img, uint64_t goff, uint64_t *l2_off,
                      uint32_t *index, qi_l2_entry *out)
{
    int rc;
    if (img->raw)
        return not_qcow2(img);
    if ((rc = qi_image_usable(img)) < 0)
        return rc;
    if (goff >= img->size)
        return qi_fail(img, QI_EINVAL, "", QI_NO_OFFSET, "guest offset %#" PRIx64
                       " is beyond the virtual size", goff);
    uint64_t ci = goff >> img->g.cluster_bits;
    *index = (uint32_t)(ci & (img->g.l2_entries - 1));
    if ((rc = qi_cluster_active_l2_offset(img, ci >> img->g.l2_bits, l2_off)) < 0)
        return rc;
    if (!*l2_off) {
        qi_format_decode_l2(&img->g, false, 0, 0, out);
        return 0;
    }
    return qi_cluster_l2_decode(img, *l2_off, *index, out);
}

uint64_t qi_meta_reftable_size(const qi_image *img)
{
    return img->raw ? 0 : ((uint64_t)img->hdr.refcount_table_clusters << img->g.cluster_bits) / 8;
}

int qi_meta_reftable_get(qi_image *img, uint64_t index, uint64_t *raw)
{
    int rc;
    if (img->raw)
        return not_qcow2(img);
    if ((rc = qi_image_usable(img)) < 0 || (rc = qi_refcount_load_table(img)) < 0)
        return rc;
    if (index >= img->reftable_entries)
        return qi_fail(img, QI_EINVAL, "refcount table", QI_NO_OFFSET, "index %" PRIu64
                       " is beyond %" PRIu64 " entries", index, img->reftable_entries);
    *raw = img->reftable[index];
    return 0;
}

int qi_meta_refcount(qi_image *img, uint64_t host_off, uint64_t *rc)
{
    int urc;
    if (img->raw)
        return not_qcow2(img);
    if ((urc = qi_image_usable(img)) < 0)
        return urc;
    return qi_refcount_get(img, host_off >> img->g.cluster_bits, rc);
}

const qi_snapshot *qi_meta_snapshots(const qi_image *img, uint32_t *n)
{
    *n = img->n_snaps;
    return img->snaps;
}

const qi_bitmap *qi_meta_bitmaps(const qi_image *img, uint32_t *n)
{
    *n = img->n_bitmaps;
    return img->bitmaps;
}

/* ---- raw edits ---- */

static int raw_edit_ok(qi_image *img)
{
    if (img->raw)
        return not_qcow2(img);
    if (!img->writable)
        return qi_fail(img, QI_ERDONLY, "", QI_NO_OFFSET, "image opened read-only; "
                       "reopen it with -w to edit it");
    return 0;
}

int qi_meta_l1_set(qi_image *img, uint32_t index, uint64_t raw, uint64_t *old)
{
    qi_l1_entry e;
    int rc;
    if ((rc = raw_edit_ok(img)) < 0 || (rc = qi_meta_l1_get(img, index, &e)) < 0)
        return rc;
    *old = e.raw;
    return qi_cluster_set_l1(img, index, raw);
}

int qi_meta_l2_set(qi_image *img, uint64_t l2_off, uint32_t index, uint64_t raw,
                   uint64_t *old)
{
    qi_l2_entry e;
    int rc;
    if ((rc = raw_edit_ok(img)) < 0 || (rc = qi_meta_l2_get(img, l2_off, index, &e)) < 0)
        return rc;
    img->cbuf_off = 0;
    return qi_cluster_set_l2(img, l2_off, index, raw, old);
}

int qi_meta_set_refcount(qi_image *img, uint64_t host_off, uint64_t value, uint64_t *old)
{
    int rc;
    if ((rc = raw_edit_ok(img)) < 0 || (rc = qi_image_usable(img)) < 0)
        return rc;
    return qi_refcount_set(img, host_off >> img->g.cluster_bits, value, old);
}

/* Read a table of N 64-bit entries at OFF again into the host-order copy T. */
static int reload(qi_image *img, uint64_t *t, uint64_t off, uint64_t n, const char *st)
{
    uint8_t be[8];
    int rc;
    for (uint64_t i = 0; i < n; i++) {
        if ((rc = qi_bio_pread(img->file, be, 8, off + 8 * i, &img->err, st)) < 0)
            return rc;
        t[i] = qi_be64(be);
    }
    return 0;
}

static bool overlaps(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return a < b + blen && b < a + alen;
}

/* Does [OFF, OFF+LEN) touch what open parsed: the header cluster, the
 * snapshot table, the bitmap directory? */
static bool touches_parsed(const qi_image *img, uint64_t off, uint64_t len)
{
    if (overlaps(off, len, 0, img->g.cluster_size))
        return true;
    if (img->n_snaps) {
        const qi_snapshot *last = &img->snaps[img->n_snaps - 1];
        if (overlaps(off, len, img->hdr.snapshots_offset,
                     last->entry_offset + last->entry_size - img->hdr.snapshots_offset))
            return true;
    }
    for (uint32_t i = 0; i < img->n_exts; i++)
        if (img->exts[i].type == QI_EXT_BITMAPS && img->n_bitmaps &&
            overlaps(off, len, qi_be64(img->exts[i].data + 16),
                     qi_be64(img->exts[i].data + 8)))
            return true;
    return false;
}

/* Ordering: every cached change is written back and synced before the
 * bytes are written (so no cached copy can overwrite them later), then the
 * bytes are written and synced. A poke into what open parsed (header
 * cluster, snapshot table, bitmap directory), or any poke while the header
 * does not validate, reads it all again (qi_image_reload_header); a header
 * that no longer validates leaves the image in the broken state, and the
 * poke still succeeded. Crash: the poke is one pwrite; it is there or not. */
int qi_meta_poke(qi_image *img, uint64_t off, const void *buf, size_t len, void *old)
{
    uint64_t cs = img->g.cluster_size;
    int rc;
    if ((rc = raw_edit_ok(img)) < 0 ||
        (!img->broken && (rc = qi_refcount_settle(img)) < 0) ||
        (rc = qi_bio_pread(img->file, old, len, off, &img->err, "poke")) < 0 ||
        (rc = qi_bio_pwrite(img->file, buf, len, off, &img->err, "poke")) < 0 ||
        (rc = qi_bio_sync(img->file, &img->err)) < 0)
        return rc;
    if (img->broken || touches_parsed(img, off, len)) {
        (void)qi_image_reload_header(img);  /* a failure is the broken state */
        return 0;
    }
    for (uint64_t c = off & ~(cs - 1); len && c < off + len; c += cs) {
        qi_cache_discard(img->l2_cache, c);
        qi_cache_discard(img->rb_cache, c);
    }
    img->cbuf_off = 0;
    if (img->l1 && overlaps(off, len, img->hdr.l1_table_offset, 8ull * img->hdr.l1_size) &&
        (rc = reload(img, img->l1->e, img->hdr.l1_table_offset, img->hdr.l1_size, "L1 table")) < 0)
        return rc;
    if (img->reftable && overlaps(off, len, img->hdr.refcount_table_offset,
                                  8 * img->reftable_entries) &&
        (rc = reload(img, img->reftable, img->hdr.refcount_table_offset,
                     img->reftable_entries, "refcount table")) < 0)
        return rc;
    /* a snapshot's L1 copy: read again when next asked (a view still held
     * keeps the copy it took) */
    qi_cluster_l1tab_drop(img->snap_l1);
    img->snap_l1 = NULL;
    return 0;
}

/* ---- header fields ---- */

int qi_meta_peek(qi_image *img, uint64_t off, void *buf, size_t len, size_t *got)
{
    uint64_t size = img->file->size;
    int rc;
    *got = 0;
    if (len > QI_META_PEEK_MAX)
        return qi_fail(img, QI_EINVAL, "peek", off, "%zu bytes asked, at most %u per peek",
                       len, QI_META_PEEK_MAX);
    if (off >= size)
        return 0;
    if (len > size - off)
        len = (size_t)(size - off);
    if ((rc = qi_bio_pread(img->file, buf, len, off, &img->err, "peek")) < 0)
        return rc;
    *got = len;
    return 0;
}

static const qi_header_field header_fields[] = {
    { "magic", 0, 4, 2 },
    { "version", 4, 4, 2 },
    { "backing_file_offset", 8, 8, 2 },
    { "backing_file_size", 16, 4, 2 },
    { "cluster_bits", 20, 4, 2 },
    { "size", 24, 8, 2 },
    { "crypt_method", 32, 4, 2 },
    { "l1_size", 36, 4, 2 },
    { "l1_table_offset", 40, 8, 2 },
    { "refcount_table_offset", 48, 8, 2 },
    { "refcount_table_clusters", 56, 4, 2 },
    { "nb_snapshots", 60, 4, 2 },
    { "snapshots_offset", 64, 8, 2 },
    { "incompatible_features", 72, 8, 3 },
    { "compatible_features", 80, 8, 3 },
    { "autoclear_features", 88, 8, 3 },
    { "refcount_order", 96, 4, 3 },
    { "header_length", 100, 4, 3 },
    { "compression_type", 104, 1, 3 },  /* only when header_length > 104 */
    { NULL, 0, 0, 0 },
};

const qi_header_field *qi_meta_header_fields(void) { return header_fields; }

const qi_header_field *qi_meta_header_field(const char *name)
{
    for (const qi_header_field *f = header_fields; f->name; f++)
        if (!strcmp(f->name, name))
            return f;
    return NULL;
}

/* Is field F in the header as it is on disk now (version, header_length
 * read from the file: the parsed copy may be the one before a breaking
 * edit)? */
static int field_present(qi_image *img, const qi_header_field *f)
{
    uint8_t b[4];
    int rc;
    if (f->version < 3)
        return 0;
    if ((rc = qi_bio_pread(img->file, b, 4, 4, &img->err, "header")) < 0)
        return rc;
    if (qi_be32(b) < 3)
        return qi_fail(img, QI_EINVAL, "header", f->offset, "a version %" PRIu32 " header "
                       "has no field '%s' (version 3 and later)", qi_be32(b), f->name);
    if (f->offset + f->width <= 104)
        return 0;
    if ((rc = qi_bio_pread(img->file, b, 4, 100, &img->err, "header")) < 0)
        return rc;
    if (qi_be32(b) < f->offset + f->width)
        return qi_fail(img, QI_EINVAL, "header", f->offset, "the header has no field '%s' "
                       "(header_length %" PRIu32 " ends before byte %" PRIu32 ")", f->name,
                       qi_be32(b), f->offset + f->width);
    return 0;
}

/* Crash table (qi_meta_poke's order):
 *   1. every cached change written back and synced (qi_refcount_settle, in
 *      its own order)                      crash: leak at most
 *   2. the field's 1-8 bytes written (one pwrite inside the first sector)
 *      and synced                          crash: old or new value, whole
 *   3. the header read again and validated (no writes)
 * The value itself is the user's: a crash leaves it or the old one, and
 * whether either is a valid header is what the user asked for. */
int qi_meta_header_set(qi_image *img, const char *name, uint64_t value, uint64_t *old)
{
    const qi_header_field *f = qi_meta_header_field(name);
    uint8_t nb[8], ob[8];
    int rc;
    if (!f)
        return qi_fail(img, QI_EINVAL, "header", QI_NO_OFFSET, "no field '%s' in the "
                       "header", name);
    if ((rc = raw_edit_ok(img)) < 0 || (rc = field_present(img, f)) < 0)
        return rc;
    if (f->width < 8 && value >> (8 * f->width))
        return qi_fail(img, QI_EINVAL, "header", f->offset, "%#" PRIx64 " does not fit "
                       "the %" PRIu32 "-byte field '%s'", value, f->width, f->name);
    for (uint32_t i = 0; i < f->width; i++)
        nb[i] = (uint8_t)(value >> (8 * (f->width - 1 - i)));
    if ((rc = qi_meta_poke(img, f->offset, nb, f->width, ob)) < 0)
        return rc;
    *old = 0;
    for (uint32_t i = 0; i < f->width; i++)
        *old = *old << 8 | ob[i];
    return 0;
}
