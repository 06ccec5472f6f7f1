/* create.c - creating qcow2 images as `qemu-img create` does (layer 4).
 *
 * qi_image_create checks the options in the order and with the words of
 * QEMU's qcow2_co_create, before any file is touched; lays the image out by
 * replaying QEMU's allocator (layout.c); then writes it. The header
 * cluster is written last, after everything else is synced, so that a
 * file cut short by a crash has no qcow2 magic and is never mistaken for
 * a complete image. Calls: layout, format, bio, err, mem, image.c (to open
 * the result). */
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "bio.h"
#include "err.h"
#include "format.h"
#include "image.h"
#include "layout.h"
#include "mem.h"

#define MAX_LENGTH 9223372035781033984ull   /* QEMU's BDRV_MAX_LENGTH */

/* The options with QEMU's defaults filled in. */
typedef struct spec {
    uint64_t size;
    int version;
    uint32_t cluster_size, cluster_bits;
    unsigned refcount_bits, refcount_order;
    qi_prealloc prealloc;
    const qi_create_opts *o;
} spec;

static int refuse(qi_err *err, const char *path, int code, const char *msg)
{
    return qi_err_set(err, path, code, "", QI_NO_OFFSET, "%s", msg);
}

static bool pow2(uint64_t v) { return v && !(v & (v - 1)); }

/* validate_cluster_size of QEMU. */
static int check_cluster(const spec *s, const char *path, qi_err *err)
{
    uint32_t cs = s->cluster_size;
    if (!pow2(cs) || cs < 512 || cs > (2u << 20))
        return refuse(err, path, QI_EINVAL,
                      "Cluster size must be a power of two between 512 and 2048k");
    if (s->o->extended_l2 && cs < 16384)
        return refuse(err, path, QI_EINVAL, "Extended L2 entries are only supported "
                      "with cluster sizes of at least 16384 bytes");
    return 0;
}

#define V3_HINT "compatibility level 1.1 and above (use version=v3 or greater)"

/* qcow2_co_create's checks, in its order. */
static int check_opts(spec *s, const char *path, qi_err *err)
{
    const qi_create_opts *o = s->o;
    int rc;
    if (o->extended_l2 && s->version < 3)
        return refuse(err, path, QI_EINVAL,
                      "Extended L2 entries are only supported with " V3_HINT);
    if ((rc = check_cluster(s, path, err)) < 0)
        return rc;
    if (o->backing_file && s->prealloc != QI_PREALLOC_OFF && !o->extended_l2)
        return refuse(err, path, QI_EINVAL, "Backing file and preallocation can only "
                      "be used at the same time if extended_l2 is on");
    if (o->backing_fmt && !o->backing_file)
        return refuse(err, path, QI_EINVAL,
                      "Backing format cannot be used without backing file");
    if (o->lazy_refcounts && s->version < 3)
        return refuse(err, path, QI_EINVAL, "Lazy refcounts only supported with " V3_HINT);
    if (s->refcount_bits > 64 || !pow2(s->refcount_bits))
        return refuse(err, path, QI_EINVAL,
                      "Refcount width must be a power of two and may not exceed 64 bits");
    if (s->version < 3 && s->refcount_bits != 16)
        return refuse(err, path, QI_EINVAL, "Different refcount widths than 16 bits "
                      "require compatibility level 1.1 or above (use version=v3 or greater)");
    if (o->data_file_raw && !o->data_file)
        return refuse(err, path, QI_EINVAL, "data-file-raw requires data-file");
    if (o->data_file_raw && o->backing_file)
        return refuse(err, path, QI_EINVAL,
                      "Backing file and data-file-raw cannot be used at the same time");
    if (o->data_file_raw && s->prealloc == QI_PREALLOC_OFF)
        s->prealloc = QI_PREALLOC_METADATA;   /* the raw file must be mapped 1:1 */
    if (o->data_file && s->version < 3)
        return refuse(err, path, QI_EINVAL,
                      "External data files are only supported with " V3_HINT);
    if (o->zstd && s->version < 3)
        return refuse(err, path, QI_EINVAL,
                      "Non-zlib compression type is only supported with " V3_HINT);
    return 0;
}

/* The size checks of the truncate that gives the image its size. */
static int check_size(const spec *s, const char *path, qi_err *err)
{
    uint64_t l2_span_bits = s->cluster_bits + s->cluster_bits - (s->o->extended_l2 ? 4 : 3);
    if (s->size > (uint64_t)INT64_MAX)
        return refuse(err, path, QI_EINVAL, "Could not resize image: Image size cannot be "
                      "negative");
    if (s->size > MAX_LENGTH)
        return qi_err_set(err, path, QI_EINVAL, "", QI_NO_OFFSET, "Could not resize image: "
                          "offset(%" PRIu64 ") exceeds maximum(%llu)", s->size, MAX_LENGTH);
    if (((s->size + (1ull << l2_span_bits) - 1) >> l2_span_bits) > QI_MAX_L1_ENTRIES)
        return refuse(err, path, QI_ENOSPC, "The image size is too large for file format "
                      "'qcow2' (try using a larger cluster size)");
    if (s->o->backing_file && strlen(s->o->backing_file) > QI_MAX_BACKING_NAME)
        return qi_err_set(err, path, QI_EINVAL, "", QI_NO_OFFSET,
                          "Could not assign backing file '%s' with format '%s': "
                          "Invalid argument", s->o->backing_file,
                          s->o->backing_fmt ? s->o->backing_fmt : "(null)");
    return 0;
}

static int make_spec(spec *s, const qi_create_opts *o, const char *path, qi_err *err)
{
    int rc;
    memset(s, 0, sizeof *s);
    s->o = o;
    /* qemu-img rounds the size up to whole sectors without a word */
    s->size = o->size > UINT64_MAX - 511 ? UINT64_MAX : (o->size + 511) & ~511ull;
    s->version = o->version ? o->version : 3;
    s->cluster_size = o->cluster_size ? o->cluster_size : 65536;
    s->refcount_bits = o->refcount_bits ? o->refcount_bits : 16;
    s->prealloc = o->prealloc;
    if (s->version != 2 && s->version != 3)
        return qi_err_set(err, path, QI_EINVAL, "", QI_NO_OFFSET,
                          "Invalid compatibility level: '%d'", s->version);
    if ((rc = check_opts(s, path, err)) < 0)
        return rc;
    s->cluster_bits = (uint32_t)__builtin_ctz(s->cluster_size);
    s->refcount_order = (unsigned)__builtin_ctz(s->refcount_bits);
    return check_size(s, path, err);
}

/* The header cluster as QEMU leaves it after the create. */
static int build_header(const spec *s, const qi_layout *lo, uint8_t *buf,
                        const char *path, qi_err *err)
{
    const qi_create_opts *o = s->o;
    qi_header h;
    memset(&h, 0, sizeof h);
    h.version = (uint32_t)s->version;
    h.cluster_bits = s->cluster_bits;
    h.size = s->size;
    h.l1_size = (uint32_t)lo->l1_size;
    h.l1_table_offset = lo->l1_off;
    h.refcount_table_offset = lo->rt_off;
    h.refcount_table_clusters = (uint32_t)(lo->rt_size * 8 >> s->cluster_bits);
    h.refcount_order = s->refcount_order;
    h.incompatible_features = (o->data_file ? 1u << 2 : 0) | (o->zstd ? 1u << 3 : 0) |
                              (o->extended_l2 ? 1u << 4 : 0);
    h.compatible_features = o->lazy_refcounts ? 1 : 0;
    h.autoclear_features = o->data_file_raw ? 2 : 0;
    h.compression_type = o->zstd ? 1 : 0;
    qi_header_names names = { o->backing_file, o->backing_fmt, o->data_file };
    if (qi_format_build_header(buf, s->cluster_size, &h, &names) < 0)
        return qi_err_set(err, path, QI_ENOSPC, "", QI_NO_OFFSET,
                          "Could not assign backing file '%s' with format '%s': "
                          "No space left on device", o->backing_file,
                          o->backing_fmt ? o->backing_fmt : "(null)");
    return 0;
}

/* Replay QEMU's allocations for the whole create. *FILL_OFF, *FILL_LEN:
 * the data area of falloc/full preallocation (length 0 if none). */
static int lay_out(const spec *s, qi_layout *lo, uint64_t *fill_off, uint64_t *fill_len)
{
    const qi_create_opts *o = s->o;
    uint32_t l2_bits = s->cluster_bits - (o->extended_l2 ? 4 : 3);
    uint64_t span = 1ull << (s->cluster_bits + l2_bits);
    int rc;
    *fill_off = *fill_len = 0;
    if ((rc = qi_layout_init(lo, s->cluster_bits, s->refcount_order, o->extended_l2,
                             o->data_file != NULL)) < 0)
        return rc;
    if ((rc = qi_layout_grow_l1(lo, (s->size + span - 1) / span)) < 0)
        return rc;
    if (s->prealloc == QI_PREALLOC_METADATA || (s->prealloc != QI_PREALLOC_OFF && o->data_file))
        return qi_layout_prealloc_metadata(lo, s->size);
    if (s->prealloc != QI_PREALLOC_OFF)
        return qi_layout_prealloc_full(lo, s->size, false, fill_off, fill_len);
    if (o->data_file)
        lo->data_end = s->size;
    return 0;
}

/* Make [OFF, OFF+LEN) of F allocated zeros: falloc reserves the blocks,
 * full writes zeros (as QEMU's file driver does for each mode). */
static int fill(qi_bio *f, qi_prealloc mode, uint64_t off, uint64_t len, qi_err *err)
{
    uint8_t *zero;
    size_t chunk = len < (4u << 20) ? (size_t)len : (4u << 20);
    int rc = 0;
    if (!len)
        return 0;
    if (mode == QI_PREALLOC_FALLOC) {
        /* the length grows with the allocation; the bytes stay zeros */
        if (fallocate(f->fd, 0, (off_t)off, (off_t)len) < 0)
            return qi_err_set(err, f->path, QI_ENOSPC, "data", off,
                              "cannot preallocate %" PRIu64 " bytes", len);
        if (off + len > f->size)
            f->size = off + len;
        return 0;
    }
    if (!(zero = calloc(1, chunk)))
        return qi_err_set(err, f->path, QI_ENOMEM, "", QI_NO_OFFSET, "out of memory");
    for (uint64_t done = 0; rc == 0 && done < len;) {
        size_t n = len - done < chunk ? (size_t)(len - done) : chunk;
        rc = qi_bio_pwrite(f, zero, n, off + done, err, "data");
        done += n;
    }
    free(zero);
    return rc;
}

/* Crash table of the writes (the file is cut to 0 first, then):
 * 1. every range but the header cluster (refcount table and blocks, L1
 *    and L2 tables), the data file sized, preallocated data filled;
 *    sync                        crash → no qcow2 magic: not an image
 * 2. the header cluster; sync    crash → before: not an image; after:
 *                                 complete, consistent image */
static int write_out(const spec *s, const qi_layout *lo, const char *path, uint64_t fo,
                     uint64_t fl, const uint8_t *hdr, qi_err *err)
{
    qi_bio *f = NULL, *d = NULL;
    uint8_t *scratch;           /* one L2 table at a time */
    int rc;
    if (!(scratch = qi_mem_alloc_capped(1, lo->cs, QI_MEM_CAP)))
        return qi_err_set(err, path, QI_ENOMEM, "", QI_NO_OFFSET, "out of memory");
    if ((rc = qi_bio_create(&f, path, err)) < 0 || (rc = qi_bio_truncate(f, 0, err)) < 0)
        goto out;
    if (s->o->data_file &&
        ((rc = qi_bio_create(&d, s->o->data_file, err)) < 0 ||
         (rc = qi_bio_truncate(d, 0, err)) < 0))
        goto out;
    for (size_t i = 0; i < lo->n; i++)
        if ((rc = qi_bio_pwrite(f, qi_layout_bytes(lo, i, scratch), lo->r[i].len,
                                lo->r[i].off, err, "metadata")) < 0)
            goto out;
    if ((rc = fill(f, s->prealloc, fo, fl, err)) < 0)
        goto out;
    if (f->size < lo->file_end && (rc = qi_bio_truncate(f, lo->file_end, err)) < 0)
        goto out;
    if (d && lo->data_end) {
        if (s->prealloc == QI_PREALLOC_FALLOC || s->prealloc == QI_PREALLOC_FULL)
            rc = fill(d, s->prealloc, 0, lo->data_end, err);
        else
            rc = qi_bio_truncate(d, lo->data_end, err);
        if (rc < 0)
            goto out;
    }
    if ((d && (rc = qi_bio_sync(d, err)) < 0) || (rc = qi_bio_sync(f, err)) < 0 ||
        (rc = qi_bio_pwrite(f, hdr, s->cluster_size, 0, err, "header")) < 0 ||
        (rc = qi_bio_sync(f, err)) < 0)
        goto out;
out:
    qi_bio_close(d);
    qi_bio_close(f);
    free(scratch);
    return rc;
}

int qi_image_create(qi_image **out, const char *path, const qi_create_opts *opts,
                    const qi_open_opts *open, qi_err *err)
{
    spec s;
    qi_layout lo;
    uint8_t *hdr = NULL;
    uint64_t fo, fl;
    int rc;
    if (out)
        *out = NULL;
    qi_err_clear(err);
    memset(&lo, 0, sizeof lo);
    if ((rc = make_spec(&s, opts, path, err)) < 0)
        return rc;
    if (!(hdr = qi_mem_calloc_capped(1, s.cluster_size, QI_MEM_CAP)))
        return qi_err_set(err, path, QI_ENOMEM, "", QI_NO_OFFSET, "out of memory");
    rc = lay_out(&s, &lo, &fo, &fl);
    if (rc == QI_ENOSPC)
        rc = refuse(err, path, QI_ENOSPC, "The image size is too large for file format "
                    "'qcow2' (try using a larger cluster size)");
    else if (rc < 0)
        rc = qi_err_set(err, path, rc, "", QI_NO_OFFSET,
                        "the new image's metadata takes over 1 GiB of memory "
                        "(qinspect lays it out in memory before writing)");
    if (rc == 0)
        rc = build_header(&s, &lo, hdr, path, err);
    if (rc == 0)
        rc = write_out(&s, &lo, path, fo, fl, hdr, err);
    free(hdr);
    qi_layout_free(&lo);
    if (rc < 0 || !out)
        return rc;
    qi_open_opts oo = QI_OPEN_OPTS_INIT;
    if (open)
        oo = *open;
    oo.flags |= QI_OPEN_RW;
    oo.flags &= ~(unsigned)(QI_OPEN_RAW | QI_OPEN_PROBE);
    return qi_image_open(out, path, &oo, err);
}
