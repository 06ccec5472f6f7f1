/* image.c - opening and closing images (layer 4).
 *
 * Open reads and validates the header (format.c), the header extensions,
 * the feature bits (unknown incompatible bits and encryption are refused),
 * the backing file name and the snapshot table, then opens the external
 * data file and the backing chain (depth limit, loop detection by device
 * and inode), taking QEMU-compatible locks on every file. Tables that only
 * some work needs (active L1, refcount table) are loaded on first use, so
 * `info` stays cheap. Only this file acts on header and feature changes:
 * after a raw edit of the header, qi_image_reload_header parses everything
 * again from the same open file (the locks stay) and either replaces the
 * parsed state or puts the image in the broken state, where only raw edits
 * are allowed until the header validates again.
 * Calls: layers 0-3. */
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bitmap.h"
#include "cluster.h"
#include "endian.h"
#include "image.h"
#include "journal.h"
#include "mem.h"
#include "rebuild.h"
#include "refindex.h"
#include "refcount.h"
#include "shrink.h"

#define DEFAULT_CACHE_BYTES (4u << 20)

typedef struct chain {
    const struct chain *next;   /* images above this one */
    dev_t dev;
    ino_t ino;
    unsigned depth;
} chain;

enum { FMT_PROBE, FMT_QCOW2, FMT_RAW };

static int open_chain(qi_image **out, const char *path, const qi_open_opts *o,
                      int fmt, const chain *above, qi_err *err);

static int lock_mode(const qi_open_opts *o, bool top)
{
    if (o->flags & QI_OPEN_NO_LOCK)
        return QI_LOCK_NONE;
    if (top && (o->flags & QI_OPEN_RW))
        return QI_LOCK_WRITE;
    if (o->flags & QI_OPEN_FORCE_SHARE)
        return QI_LOCK_SHARED_READ;
    return QI_LOCK_READ;
}

/* ---- header extensions ---- */

static int on_ext(void *payload, uint32_t type, uint32_t len, uint64_t off,
                  const uint8_t *data)
{
    qi_image *img = payload;
    qi_ext *x = realloc(img->exts, (img->n_exts + 1) * sizeof *x);
    if (!x)
        return qi_fail(img, QI_ENOMEM, "header extension", off - 8, "out of memory");
    img->exts = x;
    img->exts[img->n_exts++] = (qi_ext){ type, len, off, data };
    switch (type) {
    case QI_EXT_BACKING_FMT:
        if (len > QI_MAX_BACKING_FMT)
            return qi_corrupt(img, "header extension", off - 8, "backing format "
                              "name of %" PRIu32 " bytes is too long (limit 15)", len);
        free(img->backing_fmt);
        img->backing_fmt = qi_mem_strndup(data, len);
        break;
    case QI_EXT_DATA_FILE:
        if (len > 4096)
            return qi_corrupt(img, "header extension", off - 8, "data file name "
                              "of %" PRIu32 " bytes is too long", len);
        free(img->data_file_name);
        img->data_file_name = qi_mem_strndup(data, len);
        break;
    case QI_EXT_FEATURES: {
        uint32_t n = len / 48;
        free(img->features);
        img->n_features = 0;
        if (!(img->features = calloc(n ? n : 1, sizeof *img->features)))
            return qi_fail(img, QI_ENOMEM, "header extension", off, "out of memory");
        for (uint32_t i = 0; i < n; i++) {
            qi_feature_name *f = &img->features[i];
            f->type = data[48 * i];
            f->bit = data[48 * i + 1];
            memcpy(f->name, data + 48 * i + 2, 46);
            f->name[46] = 0;
        }
        img->n_features = n;
        break;
    }
    case QI_EXT_BITMAPS:
        if (len != 24)
            return qi_corrupt(img, "header extension", off - 8, "bitmaps extension "
                              "is %" PRIu32 " bytes, must be 24", len);
        break;
    case QI_EXT_CRYPTO:
        if (len != 16)
            return qi_corrupt(img, "header extension", off - 8, "encryption header "
                              "pointer is %" PRIu32 " bytes, must be 16", len);
        break;
    default:
        break;
    }
    if ((type == QI_EXT_BACKING_FMT && !img->backing_fmt) ||
        (type == QI_EXT_DATA_FILE && !img->data_file_name))
        return qi_fail(img, QI_ENOMEM, "header extension", off, "out of memory");
    return 0;
}

/* ---- feature bits ---- */

static int check_features(qi_image *img, const qi_open_opts *o)
{
    uint64_t unknown = img->hdr.incompatible_features & ~QI_INCOMPAT_KNOWN;
    if (unknown) {
        /* like QEMU: names from the feature table, then what is left as a
         * hex mask ("Unknown incompatible feature: 20" for bit 5) */
        char names[400] = "";
        size_t used = 0;
        for (uint32_t i = 0; i < img->n_features; i++) {
            const qi_feature_name *f = &img->features[i];
            if (f->type != 0 || f->bit > 63 || !(unknown & (1ull << f->bit)))
                continue;
            int w = snprintf(names + used, sizeof names - used, "%s%s",
                             used ? ", " : "", f->name);
            if (w > 0 && (size_t)w < sizeof names - used)
                used += (size_t)w;
            unknown &= ~(1ull << f->bit);
        }
        if (unknown)
            snprintf(names + used, sizeof names - used, "%sUnknown incompatible "
                     "feature: %" PRIx64, used ? ", " : "", unknown);
        return qi_fail(img, QI_ENOTSUP, "header", 72, "Unsupported qcow2 feature(s): %s",
                       names);
    }
    if (img->hdr.crypt_method)
        return qi_fail(img, QI_ENOTSUP, "header", 32, "encrypted images (%s) are "
                       "not supported", img->hdr.crypt_method == 1 ? "AES" : "LUKS");
    if ((img->hdr.incompatible_features & QI_INCOMPAT_CORRUPT) && (o->flags & QI_OPEN_RW) &&
        !(o->flags & QI_OPEN_REPAIR))
        return qi_fail(img, QI_ECORRUPT, "header", 72, "the image is marked corrupt "
                       "(incompatible bit 1); it can only be opened read-only, or "
                       "read-write for repair");
    if ((img->hdr.incompatible_features & QI_INCOMPAT_DATA_FILE) && !img->data_file_name)
        return qi_corrupt(img, "header", 72, "external data file bit set but no data "
                          "file name extension");
    img->data_file_raw = (img->hdr.autoclear_features & QI_AUTOCLEAR_DATA_FILE_RAW) &&
                         (img->hdr.incompatible_features & QI_INCOMPAT_DATA_FILE);
    return 0;
}

/* ---- backing and data file names ---- */

/* PATH resolved relative to the directory of IMAGE_PATH, as QEMU does. */
static char *resolve_relative(const char *image_path, const char *name)
{
    char *copy, *dir, *full;
    if (name[0] == '/')
        return strdup(name);
    if (!(copy = strdup(image_path)))
        return NULL;
    dir = dirname(copy);
    if (!strchr(image_path, '/')) {
        full = strdup(name);
    } else if ((full = malloc(strlen(dir) + strlen(name) + 2))) {
        strcpy(full, dir);
        strcat(full, "/");
        strcat(full, name);
    }
    free(copy);
    return full;
}

static int read_names(qi_image *img)
{
    const qi_header *h = &img->hdr;
    if (h->backing_file_offset) {
        /* format.c checked that the name lies inside cluster 0 and the file */
        img->backing_name = qi_mem_strndup(img->hdr_buf + h->backing_file_offset,
                                           h->backing_file_size);
        if (!img->backing_name ||
            !(img->backing_full = resolve_relative(img->path, img->backing_name)))
            return qi_fail(img, QI_ENOMEM, "header", 8, "out of memory");
        if (memchr(img->hdr_buf + h->backing_file_offset, 0, h->backing_file_size))
            return qi_corrupt(img, "header", h->backing_file_offset, "backing file "
                              "name contains a NUL byte");
    }
    return 0;
}

/* ---- snapshot table ---- */

/* Make at least NEED bytes of the snapshot table from its start available
 * in *buf (grown in 64 KiB steps, never past the 64 MiB table limit or the
 * end of the file). */
static int snap_window(qi_image *img, uint8_t **buf, uint64_t *have, uint64_t need)
{
    uint64_t off = img->hdr.snapshots_offset, avail = img->file->size - off;
    if (need <= *have)
        return 0;
    if (avail > QI_MAX_SNAPSHOTS_SIZE)
        avail = QI_MAX_SNAPSHOTS_SIZE;
    uint64_t want = (need + 0xffff) & ~0xffffull;
    if (want > avail)
        want = avail;
    if (want <= *have)
        return 0; /* nothing more to read: the parser reports the short entry */
    uint8_t *nb = realloc(*buf, want);
    if (!nb)
        return qi_fail(img, QI_ENOMEM, "snapshot table", off, "out of memory");
    *buf = nb;
    int rc = qi_bio_pread(img->file, nb + *have, want - *have, off + *have, &img->err,
                          "snapshot table");
    if (rc == 0)
        *have = want;
    return rc;
}

static int read_snapshots(qi_image *img)
{
    const qi_header *h = &img->hdr;
    uint64_t off = h->snapshots_offset, have = 0, pos = 0;
    uint8_t *buf = NULL;
    int rc = 0;
    if (!h->nb_snapshots)
        return 0;
    if (!(img->snaps = calloc(h->nb_snapshots, sizeof *img->snaps)))
        return qi_fail(img, QI_ENOMEM, "snapshot table", off, "out of memory");
    for (uint32_t i = 0; i < h->nb_snapshots; i++) {
        size_t used;
        qi_snapshot *s = &img->snaps[i];
        /* the fixed part, then the whole entry (at most 40 + 1024 + 2 * 65535) */
        if ((rc = snap_window(img, &buf, &have, pos + 40)) < 0)
            goto out;
        if (have >= pos + 40 &&
            (rc = snap_window(img, &buf, &have, pos + 40 + qi_be32(buf + pos + 36) +
                              qi_be16(buf + pos + 12) + qi_be16(buf + pos + 14))) < 0)
            goto out;
        rc = qi_format_parse_snapshot(buf + pos, have - pos, off + pos, h->version,
                                      img->path, s, &used, &img->err);
        img->n_snaps = i + 1; /* so close frees the names of a partial entry */
        if (rc < 0)
            goto out;
        if (s->l1_table_offset & (img->g.cluster_size - 1)) {
            rc = qi_corrupt(img, "snapshot table", off + pos, "snapshot '%s' L1 table "
                            "offset %#" PRIx64 " is not cluster aligned", s->id,
                            s->l1_table_offset);
            goto out;
        }
        pos += used;
        if (pos > have)
            pos = have;
    }
out:
    if (rc == QI_ECORRUPT)
        img->corrupt_seen = true;
    free(buf);
    return rc;
}

/* ---- bitmap directory ---- */

static int read_bitmaps(qi_image *img)
{
    const qi_ext *x = NULL;
    uint8_t *buf = NULL;
    int rc = 0;
    for (uint32_t i = 0; i < img->n_exts; i++)
        if (img->exts[i].type == QI_EXT_BITMAPS)
            x = &img->exts[i];
    /* without autoclear bit 0 the bitmaps are stale and QEMU ignores them */
    if (!x || !(img->hdr.autoclear_features & QI_AUTOCLEAR_BITMAPS))
        return 0;
    uint32_t n = qi_be32(x->data);
    uint64_t size = qi_be64(x->data + 8), off = qi_be64(x->data + 16);
    if (!n || n > 65535 || size > 1024ull * 65535)
        return qi_corrupt(img, "header extension", x->offset, "bitmaps extension: "
                          "%" PRIu32 " bitmaps in a %" PRIu64 "-byte directory is "
                          "outside the limits", n, size);
    if ((rc = qi_format_check_table(&img->g, off, size, true, img->file->size,
                                    img->path, "bitmap directory", x->offset + 16,
                                    &img->err)) < 0)
        return rc;
    if (!(buf = malloc(size ? size : 1)) ||
        !(img->bitmaps = calloc(n, sizeof *img->bitmaps))) {
        free(buf);
        return qi_fail(img, QI_ENOMEM, "bitmap directory", off, "out of memory");
    }
    if ((rc = qi_bio_pread(img->file, buf, size, off, &img->err, "bitmap directory")) < 0)
        goto out;
    uint64_t pos = 0;
    for (uint32_t i = 0; i < n; i++) {
        size_t used;
        rc = qi_format_parse_bitmap(buf + pos, size - pos, off + pos, img->path,
                                    &img->bitmaps[i], &used, &img->err);
        if (rc < 0)
            goto out;
        img->n_bitmaps = i + 1;
        pos += used;
        if (pos > size)
            pos = size;
    }
out:
    free(buf);
    return rc;
}

/* ---- open ---- */

static int read_header(qi_image *img)
{
    uint8_t first[112] = { 0 };
    size_t want = img->file->size < 112 ? (size_t)img->file->size : 112;
    int rc;
    qi_header h;
    if ((rc = qi_bio_pread(img->file, first, want, 0, &img->err, "header")) < 0)
        return rc;
    /* parse once on the fixed part to learn the cluster size */
    if ((rc = qi_format_parse_header(first, want, img->file->size, img->path, &h,
                                     &img->err)) < 0)
        return rc;
    img->hdr_len = 1u << h.cluster_bits;
    if (img->hdr_len > img->file->size)
        img->hdr_len = (size_t)img->file->size;
    if (!(img->hdr_buf = calloc(1, 1u << h.cluster_bits)))
        return qi_fail(img, QI_ENOMEM, "header", 0, "out of memory");
    if ((rc = qi_bio_pread(img->file, img->hdr_buf, img->hdr_len, 0, &img->err,
                           "header")) < 0)
        return rc;
    img->hdr = h;
    qi_format_geom(&img->hdr, &img->g);
    img->size = h.size;
    uint64_t end = h.backing_file_offset ? h.backing_file_offset : img->g.cluster_size;
    return qi_format_walk_extensions(img->hdr_buf, img->hdr_len, h.header_length,
                                     end, img->path, on_ext, img, &img->err);
}

static void free_snapshots(qi_image *img)
{
    for (uint32_t i = 0; i < img->n_snaps; i++) {
        free(img->snaps[i].id);
        free(img->snaps[i].name);
    }
    free(img->snaps);
    img->snaps = NULL;
    img->n_snaps = 0;
}

/* QI_HDR_SNAPSHOTS: nb_snapshots (bytes 60-63) and snapshots_offset
 * (64-71) are adjacent and change in one synced write (QEMU's order), then
 * the table the header now names is parsed again into img->snaps, and the
 * kept snapshot L1 copy is dropped (its index may name another snapshot
 * now; a view still held keeps its own reference). */
static int commit_snapshots(qi_image *img)
{
    uint8_t b[12];
    int rc;
    qi_put_be32(b, img->hdr_req.nb_snapshots);
    qi_put_be64(b + 4, img->hdr_req.snapshots_offset);
    if ((rc = qi_bio_pwrite(img->file, b, 12, 60, &img->err, "header")) < 0 ||
        (rc = qi_bio_sync(img->file, &img->err)) < 0)
        return rc;
    img->hdr.nb_snapshots = img->hdr_req.nb_snapshots;
    img->hdr.snapshots_offset = img->hdr_req.snapshots_offset;
    memcpy(img->hdr_buf + 60, b, 12);
    free_snapshots(img);
    qi_cluster_l1tab_drop(img->snap_l1);
    img->snap_l1 = NULL;
    return read_snapshots(img);
}

/* QI_HDR_L1: l1_size (bytes 36-39) and l1_table_offset (40-47) are
 * adjacent and change in one write, synced before the in-memory L1 copy is
 * replaced by the one in the request. QI_HDR_SIZE: the virtual size (24-31). */
static int commit_l1_size(qi_image *img)
{
    uint8_t b[12];
    int rc;
    if (img->hdr_req.what & QI_HDR_L1) {
        qi_put_be32(b, img->hdr_req.l1_size);
        qi_put_be64(b + 4, img->hdr_req.l1_table_offset);
        if ((rc = qi_bio_pwrite(img->file, b, 12, 36, &img->err, "header")) < 0 ||
            (rc = qi_bio_sync(img->file, &img->err)) < 0)
            return rc;
        img->hdr.l1_size = img->hdr_req.l1_size;
        img->hdr.l1_table_offset = img->hdr_req.l1_table_offset;
        memcpy(img->hdr_buf + 36, b, 12);
        qi_cluster_l1tab_drop(img->l1);     /* a view still held keeps it */
        img->l1 = img->hdr_req.l1;
        img->hdr_req.l1 = NULL;
    }
    if (img->hdr_req.what & QI_HDR_SNAPSHOTS) {
        if ((rc = commit_snapshots(img)) < 0)
            return rc;
    }
    if (img->hdr_req.what & QI_HDR_SIZE) {
        qi_put_be64(b, img->hdr_req.size);
        if ((rc = qi_bio_pwrite(img->file, b, 8, 24, &img->err, "header")) < 0 ||
            (rc = qi_bio_sync(img->file, &img->err)) < 0)
            return rc;
        img->hdr.size = img->size = img->hdr_req.size;
        memcpy(img->hdr_buf + 24, b, 8);
    }
    return 0;
}

/* The header change a lower layer asks for (img->hdr_req), written and
 * synced: the refcount table's offset (bytes 48-55) and size in clusters
 * (56-59) are adjacent and change in one write; the corrupt and dirty bits
 * are one rewrite of incompatible_features (72-79, version 3 only). While
 * the dirty bit is set, refcounts may be lower than the references (the
 * next read-write open rebuilds them), so L2 tables no longer wait for the
 * refcount blocks (section 13 rule 8); clearing it restores that order. The
 * caller of QI_HDR_CLEAN has written and synced everything before. */
static int commit_header(qi_image *img)
{
    uint8_t b[12];
    unsigned what = img->hdr_req.what;
    uint64_t f = img->hdr.incompatible_features;
    int rc;
    if ((rc = commit_l1_size(img)) < 0)
        return rc;
    if (what & QI_HDR_REFTABLE) {
        qi_put_be64(b, img->hdr_req.refcount_table_offset);
        qi_put_be32(b + 8, img->hdr_req.refcount_table_clusters);
        if ((rc = qi_bio_pwrite(img->file, b, 12, 48, &img->err, "header")) < 0 ||
            (rc = qi_bio_sync(img->file, &img->err)) < 0)
            return rc;
        img->hdr.refcount_table_offset = img->hdr_req.refcount_table_offset;
        img->hdr.refcount_table_clusters = img->hdr_req.refcount_table_clusters;
        memcpy(img->hdr_buf + 48, b, 12);
    }
    f |= (what & QI_HDR_CORRUPT ? QI_INCOMPAT_CORRUPT : 0) |
         (what & QI_HDR_DIRTY ? QI_INCOMPAT_DIRTY : 0);
    if (what & QI_HDR_CLEAN)
        f &= ~QI_INCOMPAT_DIRTY;
    if (f != img->hdr.incompatible_features && img->hdr.version >= 3) {
        qi_put_be64(b, f);
        if ((rc = qi_bio_pwrite(img->file, b, 8, 72, &img->err, "header")) < 0 ||
            (rc = qi_bio_sync(img->file, &img->err)) < 0)
            return rc;
        img->hdr.incompatible_features = f;
        memcpy(img->hdr_buf + 72, b, 8);
    }
    if ((what & (QI_HDR_DIRTY | QI_HDR_CLEAN)) && img->hdr.version >= 3)
        qi_cache_set_dependency(img->l2_cache, f & QI_INCOMPAT_DIRTY ? NULL : img->rb_cache);
    img->hdr_req.what = 0;
    return 0;
}

static int make_caches(qi_image *img, const qi_open_opts *o)
{
    size_t budget = o->cache_bytes ? o->cache_bytes : DEFAULT_CACHE_BYTES;
    uint64_t n = budget / img->g.cluster_size;
    /* never more slots than L2 tables could exist, never fewer than 8 */
    uint64_t l2max = img->hdr.l1_size + 8;
    if (n > l2max)
        n = l2max;
    if (n < 8)
        n = 8;
    if (qi_cache_new(&img->l2_cache, img->file, img->g.cluster_size, (uint32_t)n,
                     "L2 table") < 0 ||
        qi_cache_new(&img->rb_cache, img->file, img->g.cluster_size, 8,
                     "refcount block") < 0)
        return qi_fail(img, QI_ENOMEM, "", QI_NO_OFFSET, "out of memory");
    /* a cluster is counted on disk before any L2 table points at it */
    qi_cache_set_dependency(img->l2_cache, img->rb_cache);
    img->commit_header = commit_header;
    return 0;
}

static int open_data_file(qi_image *img, const qi_open_opts *o)
{
    char *full;
    int rc;
    if (!(img->hdr.incompatible_features & QI_INCOMPAT_DATA_FILE))
        return 0;
    /* QEMU opens a relative data file name relative to the current
     * directory (unlike backing names). Do the same, and only when that
     * file does not exist look next to the image, where QEMU would fail. */
    if (img->data_file_name[0] == '/' || access(img->data_file_name, F_OK) == 0)
        full = strdup(img->data_file_name);
    else
        full = resolve_relative(img->path, img->data_file_name);
    if (!full)
        return qi_fail(img, QI_ENOMEM, "", QI_NO_OFFSET, "out of memory");
    if (img->journal)
        rc = qi_bio_open_journaled(&img->data_file, full, lock_mode(o, true),
                                   img->journal, &img->err);
    else
        rc = qi_bio_open(&img->data_file, full, (o->flags & QI_OPEN_RW) != 0,
                         lock_mode(o, true), &img->err);
    if (rc == 0)
        img->data_file->nosync = (o->flags & (QI_OPEN_RW | QI_OPEN_UNSAFE)) ==
                                 (QI_OPEN_RW | QI_OPEN_UNSAFE);
    if (rc < 0) {
        /* the reason is in img->err: copy it out before formatting over it */
        char why[sizeof img->err.message];
        snprintf(why, sizeof why, "%s", img->err.message);
        qi_fail(img, rc, "external data file", QI_NO_OFFSET, "cannot open '%s' "
                "(named in the header): %s", full, why);
    }
    free(full);
    if (rc == 0)
        img->data = img->data_file;
    return rc;
}

static int open_backing(qi_image *img, const qi_open_opts *o, const chain *me)
{
    int rc, fmt;
    if (!img->backing_name || (o->flags & QI_OPEN_NO_BACKING))
        return 0;
    if (me->depth + 1 >= (o->max_backing_depth ? o->max_backing_depth
                                                : QI_MAX_BACKING_DEPTH))
        return qi_fail(img, QI_ECORRUPT, "backing chain", QI_NO_OFFSET,
                       "backing chain deeper than %u images at '%s'",
                       o->max_backing_depth ? o->max_backing_depth : QI_MAX_BACKING_DEPTH,
                       img->backing_full);
    if (img->backing_fmt && strcmp(img->backing_fmt, "raw") &&
        strcmp(img->backing_fmt, "qcow2"))
        return qi_fail(img, QI_ENOTSUP, "header extension", QI_NO_OFFSET,
                       "backing file format '%s' is not supported (qcow2 and raw are)",
                       img->backing_fmt);
    /* without a backing format QEMU probes the file: qcow2 magic or raw */
    fmt = !img->backing_fmt ? FMT_PROBE : strcmp(img->backing_fmt, "raw") ? FMT_QCOW2
                                                                           : FMT_RAW;
    qi_err berr;
    qi_err_clear(&berr);
    rc = open_chain(&img->backing, img->backing_full, o, fmt, me, &berr);
    if (rc < 0) {
        if (berr.structure[0] || berr.code == QI_EBUSY)
            return qi_err_copy(&img->err, &berr);
        return qi_fail(img, rc, "backing file", QI_NO_OFFSET, "cannot open backing "
                       "file '%s': %s", img->backing_full, berr.message);
    }
    return 0;
}

/* What open reads from the header cluster, the snapshot table and the
 * bitmap directory, validated. */
static int parse_all(qi_image *img, const qi_open_opts *o)
{
    int rc;
    if ((rc = read_header(img)) < 0 || (rc = check_features(img, o)) < 0 ||
        (rc = read_names(img)) < 0 || (rc = read_snapshots(img)) < 0 ||
        (rc = read_bitmaps(img)) < 0)
        return rc;
    return 0;
}

/* Free what parse_all made (everything it sets is left NULL or 0). */
static void free_parsed(qi_image *img)
{
    free_snapshots(img);
    for (uint32_t i = 0; i < img->n_bitmaps; i++)
        free(img->bitmaps[i].name);
    free(img->bitmaps);
    free(img->hdr_buf);
    free(img->exts);
    free(img->features);
    free(img->backing_name);
    free(img->backing_full);
    free(img->backing_fmt);
    free(img->data_file_name);
    img->bitmaps = NULL;
    img->hdr_buf = NULL;
    img->exts = NULL;
    img->features = NULL;
    img->backing_name = img->backing_full = img->backing_fmt = img->data_file_name = NULL;
    img->n_bitmaps = img->n_exts = img->n_features = 0;
}

/* A dirty image opened read-write: its refcounts may be lower than the
 * references, so they are rebuilt before anything writes, and the dirty
 * bit cleared (QEMU repairs at open too, and fails the open if it cannot). */
static int rebuild_if_dirty(qi_image *img)
{
    int rc;
    if (!img->writable || !(img->hdr.incompatible_features & QI_INCOMPAT_DIRTY) ||
        (rc = qi_rebuild_refcounts(img, NULL)) == 0)
        return 0;
    qi_err e = img->err;
    return qi_fail(img, rc, e.structure, e.offset, "dirty bit set, refcount rebuild "
                   "failed: %s; a read-only open works", e.message);
}

/* Pick qcow2 or raw by the magic, as QEMU probes. A file whose magic is
 * wrong but whose next fields look like a qcow2 header (version 2 or 3 and a
 * valid cluster_bits) is refused instead of silently read as raw: it is far
 * more likely a damaged qcow2 image than a raw disk. */
static int probe(qi_image *img, int *fmt)
{
    uint8_t m[24] = { 0 };
    int rc;
    if ((rc = qi_bio_pread(img->file, m, sizeof m, 0, &img->err, "header")) < 0)
        return rc;
    uint32_t version = qi_be32(m + 4), cbits = qi_be32(m + 20);
    if (qi_be32(m) == QI_MAGIC) {
        *fmt = FMT_QCOW2;
    } else if ((version == 2 || version == 3) && cbits >= QI_MIN_CLUSTER_BITS &&
               cbits <= QI_MAX_CLUSTER_BITS && img->file->size >= 72) {
        return qi_corrupt(img, "header", 0, "bad magic %#010" PRIx32 " in what looks like "
                          "a qcow2 version %" PRIu32 " header (qemu-img would read it "
                          "as raw; open it as raw explicitly to do the same)",
                          qi_be32(m), version);
    } else {
        *fmt = FMT_RAW;
    }
    return 0;
}

/* The image file, under a journal when the caller asked for an undo file
 * or a dry run (top image only: backing files are never written). */
static int open_file(qi_image *img, const char *path, const qi_open_opts *o, bool top)
{
    bool dry = img->writable && (o->flags & QI_OPEN_DRY_RUN);
    if (dry && o->undo_path)
        return qi_err_set(&img->err, path, QI_EINVAL, "", QI_NO_OFFSET,
                          "a dry run writes nothing: it takes no undo file");
    if (img->writable && (dry || o->undo_path)) {
        int rc = qi_journal_new(&img->journal, o->undo_path, dry, &img->err);
        if (rc < 0)
            return rc;
        return qi_bio_open_journaled(&img->file, path, lock_mode(o, top), img->journal,
                                     &img->err);
    }
    return qi_bio_open(&img->file, path, img->writable, lock_mode(o, top), &img->err);
}

/* Open a qcow2 file (or a raw file: FMT_RAW, or FMT_PROBE finding no qcow2
 * magic) and everything below it. */
static int open_chain(qi_image **out, const char *path, const qi_open_opts *o,
                      int fmt, const chain *above, qi_err *err)
{
    qi_image *img = calloc(1, sizeof *img);
    chain me;
    int rc;
    *out = NULL;
    if (!img || !(img->path = strdup(path))) {
        free(img);
        return qi_err_set(err, path, QI_ENOMEM, "", QI_NO_OFFSET, "out of memory");
    }
    img->writable = !above && (o->flags & QI_OPEN_RW);
    img->meta_prealloc = -1;
    if ((rc = open_file(img, path, o, !above)) < 0)
        goto fail;
    img->file->nosync = img->writable && (o->flags & QI_OPEN_UNSAFE);
    me = (chain){ above, img->file->dev, img->file->ino, above ? above->depth + 1 : 0 };
    for (const chain *c = above; c; c = c->next)
        if (c->dev == me.dev && c->ino == me.ino) {
            rc = qi_fail(img, QI_ECORRUPT, "backing chain", QI_NO_OFFSET,
                         "backing file loop: this file is already in the chain");
            goto fail;
        }
    img->data = img->file;
    if (fmt == FMT_PROBE && (rc = probe(img, &fmt)) < 0)
        goto fail;
    if (fmt == FMT_RAW) {
        img->raw = true;
        /* QEMU's raw driver rounds the length up to whole 512-byte sectors;
         * the tail past the end of the file reads as zeros */
        img->size = (img->file->size + 511) & ~511ull;
        *out = img;
        return 0;
    }
    img->opts = *o;
    if ((rc = parse_all(img, o)) < 0 ||
        (rc = make_caches(img, o)) < 0 || (rc = open_data_file(img, o)) < 0 ||
        (rc = open_backing(img, o, &me)) < 0 || (rc = rebuild_if_dirty(img)) < 0)
        goto fail;
    *out = img;
    return 0;
fail:
    qi_err_copy(err, &img->err);
    qi_journal_abandon(img->journal);
    qi_image_close(img);
    return rc;
}

int qi_image_open(qi_image **out, const char *path, const qi_open_opts *opts,
                  qi_err *err)
{
    qi_open_opts def = QI_OPEN_OPTS_INIT;
    qi_err_clear(err);
    if (!opts)
        opts = &def;
    int fmt = (opts->flags & QI_OPEN_RAW) ? FMT_RAW
            : (opts->flags & QI_OPEN_PROBE) ? FMT_PROBE : FMT_QCOW2;
    return open_chain(out, path, opts, fmt, NULL, err);
}

static void close_writes(qi_image *img)
{
    if (img->writable && !img->raw && img->l2_cache && img->rb_cache &&
        qi_refcount_settle(img) == 0) {
        /* the bitmaps are saved (and in_use cleared) only over a settled
         * image, and the dirty bit of lazy refcounts cleared after them */
        if (qi_bitmap_flush(img) == 0 && img->lazy_dirty) {
            img->hdr_req.what = QI_HDR_CLEAN;   /* everything is synced: clean */
            (void)commit_header(img);
        }
    }
}

void qi_image_close(qi_image *img)
{
    if (!img)
        return;
    close_writes(img);
    qi_bitmap_free(img->bm);
    qi_refindex_free(img->refindex);
    qi_image_close(img->backing);
    qi_cache_free(img->l2_cache);
    qi_cache_free(img->rb_cache);
    (void)qi_journal_finish(img->journal, NULL);   /* the 'E' record */
    qi_journal_free(img->journal);
    qi_bio_close(img->data_file);
    qi_bio_close(img->file);
    free_parsed(img);
    qi_cluster_l1_release(img);
    free(img->reftable);
    free(img->cbuf);
    free(img->cin);
    free(img->pending_free);
    free(img->path);
    free(img);
}

/* ---- the header read again after a raw edit ---- */

static bool same_str(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

/* Move the parsed state of T (made by parse_all) into IMG, whose own was
 * freed. */
static void take_parsed(qi_image *img, qi_image *t)
{
    img->hdr = t->hdr;
    img->g = t->g;
    img->size = t->size;
    img->hdr_buf = t->hdr_buf;
    img->hdr_len = t->hdr_len;
    img->exts = t->exts;
    img->n_exts = t->n_exts;
    img->features = t->features;
    img->n_features = t->n_features;
    img->backing_name = t->backing_name;
    img->backing_full = t->backing_full;
    img->backing_fmt = t->backing_fmt;
    img->data_file_name = t->data_file_name;
    img->data_file_raw = t->data_file_raw;
    img->snaps = t->snaps;
    img->n_snaps = t->n_snaps;
    img->bitmaps = t->bitmaps;
    img->n_bitmaps = t->n_bitmaps;
}

/* Everything derived from the old header: cached tables (clean: the edit
 * wrote them back first; the caller installs new ones), loaded L1 and
 * refcount tables, allocation hints. */
static void drop_derived(qi_image *img)
{
    qi_cache_free(img->l2_cache);
    qi_cache_free(img->rb_cache);
    img->l2_cache = img->rb_cache = NULL;
    qi_cluster_l1tab_drop(img->l1);         /* views still held keep theirs */
    qi_cluster_l1tab_drop(img->snap_l1);
    free(img->reftable);
    img->l1 = img->snap_l1 = NULL;
    img->reftable = NULL;
    img->reftable_entries = 0;
    img->cbuf_off = 0;
    img->free_hint = 0;
    img->free_byte_offset = 0;
    img->meta_prealloc = -1;
}

/* The backing chain and the data file follow the new names: opened again
 * when a name, the format or the data file bit changed, or when a failed
 * reload left them closed. */
static int reattach(qi_image *img, bool backing, bool data_file)
{
    chain me = { NULL, img->file->dev, img->file->ino, 0 };
    int rc;
    if (data_file) {
        qi_bio_close(img->data_file);
        img->data_file = NULL;
        img->data = img->file;
        if ((rc = open_data_file(img, &img->opts)) < 0)
            return rc;
    }
    if (backing) {
        qi_image_close(img->backing);
        img->backing = NULL;
        if ((rc = open_backing(img, &img->opts, &me)) < 0)
            return rc;
    }
    return 0;
}

static int enter_broken(qi_image *img, int rc)
{
    img->broken = true;
    img->broken_err = img->err;
    img->broken_err.code = rc;
    snprintf(img->broken_err.message, sizeof img->broken_err.message, "%.400s (after a "
             "raw edit; only raw edits until the header validates again)", img->err.message);
    return rc;
}

int qi_image_reload_header(qi_image *img)
{
    qi_open_opts o = img->opts;
    qi_image *t = calloc(1, sizeof *t);
    int rc;
    if (!t)
        return qi_fail(img, QI_ENOMEM, "header", 0, "out of memory");
    t->path = img->path;
    t->file = img->file;
    /* the session opened it read-write: an edit that sets the corrupt bit
     * leaves it open for repair, never shut */
    o.flags |= QI_OPEN_REPAIR;
    if ((rc = parse_all(t, &o)) < 0 || (rc = make_caches(t, &img->opts)) < 0) {
        qi_err_copy(&img->err, &t->err);
        qi_cache_free(t->l2_cache);
        qi_cache_free(t->rb_cache);
        free_parsed(t);
        free(t);
        return enter_broken(img, rc);
    }
    bool backing = !same_str(t->backing_full, img->backing_full) ||
                   !same_str(t->backing_fmt, img->backing_fmt) ||
                   (t->backing_name && !img->backing);
    bool data_file = !same_str(t->data_file_name, img->data_file_name) ||
                     ((t->hdr.incompatible_features ^ img->hdr.incompatible_features) &
                      QI_INCOMPAT_DATA_FILE) ||
                     ((t->hdr.incompatible_features & QI_INCOMPAT_DATA_FILE) && !img->data_file);
    bool uncorrupted = (img->hdr.incompatible_features & QI_INCOMPAT_CORRUPT) &&
                       !(t->hdr.incompatible_features & QI_INCOMPAT_CORRUPT);
    drop_derived(img);
    free_parsed(img);
    take_parsed(img, t);
    img->l2_cache = t->l2_cache;
    img->rb_cache = t->rb_cache;
    free(t);
    if ((rc = reattach(img, backing, data_file)) < 0)
        return enter_broken(img, rc);
    /* clearing the corrupt bit by hand says the damage was repaired */
    if (uncorrupted)
        img->corrupt_seen = false;
    img->broken = false;
    return 0;
}

const qi_err *qi_image_header_error(const qi_image *img)
{
    return img->broken ? &img->broken_err : NULL;
}

int qi_image_usable(qi_image *img)
{
    if (!img->broken)
        return 0;
    return qi_err_copy(&img->err, &img->broken_err);
}

int qi_image_write_state(qi_image *img)
{
    int rc;
    if ((rc = qi_image_usable(img)) < 0)
        return rc;
    if (img->hdr.incompatible_features & QI_INCOMPAT_CORRUPT)
        return qi_fail(img, QI_ECORRUPT, "header", 72, "the image is marked corrupt; raw "
                       "edits and repair only until the corrupt bit is cleared: qemu-img "
                       "check -r all, or img.header.incompatible_features = ...");
    return 0;
}

/* ---- properties ---- */

const qi_err *qi_image_error(const qi_image *img) { return &img->err; }
const char *qi_image_path(const qi_image *img) { return img->path; }
const char *qi_image_format(const qi_image *img) { return img->raw ? "raw" : "qcow2"; }
uint64_t qi_image_size(const qi_image *img) { return img->size; }
uint32_t qi_image_cluster_size(const qi_image *img)
{
    return img->raw ? 0 : img->g.cluster_size;
}
bool qi_image_writable(const qi_image *img) { return img->writable; }
uint64_t qi_image_file_size(const qi_image *img) { return img->file->size; }
uint64_t qi_image_allocated_bytes(const qi_image *img)
{
    return img->file->blocks512 * 512;
}
qi_image *qi_image_backing(const qi_image *img) { return img->backing; }
const char *qi_image_backing_name(const qi_image *img) { return img->backing_name; }
const char *qi_image_backing_full_name(const qi_image *img) { return img->backing_full; }
const char *qi_image_backing_format(const qi_image *img) { return img->backing_fmt; }
const char *qi_image_data_file_name(const qi_image *img) { return img->data_file_name; }

/* ---- resize ---- */

/* Why IMG cannot be resized to NEW_SIZE (NULL: it can). */
static const char *resize_refused(const qi_image *img, uint64_t new_size)
{
    /* growing: QEMU zeroes the new range where a longer backing file
     * would show (shrinking leaves the backing file out of it) */
    if (new_size > img->size && img->backing_name &&
        (!img->backing || img->backing->size > img->size))
        return "a backing file that is (or may be) longer than the image";
    if (img->raw)
        return "a raw image";
    if (img->data_file)
        return "an external data file (its length would have to change too)";
    if (img->n_bitmaps)
        return "persistent dirty bitmaps (they would have to be resized too)";
    if (img->hdr.incompatible_features & QI_INCOMPAT_DIRTY)
        return "the dirty bit set (refcounts must be rebuilt first: qemu-img check -r all)";
    /* version 2 did not require a snapshot's disk size: QEMU refuses too */
    if (img->n_snaps && img->hdr.version < 3)
        return "internal snapshots and a version 2 (compat 0.10) header (QEMU refuses it too)";
    return NULL;
}

/* Growing, as QEMU's qcow2 truncate does it (shrinking: qi_shrink in
 * shrink.c, its own crash table). Crash table:
 *   1. the L1 table grows to exactly the entries NEW_SIZE needs
 *      (qi_cluster_grow_l1: new table, header l1_size + l1_table_offset,
 *      old table freed)                crash: consistent, old size (leaks)
 *   2. header: size (8 bytes at offset 24), synced
 *                                      crash: consistent, new size */
int qi_image_resize(qi_image *img, uint64_t new_size)
{
    const char *why;
    int rc;
    if (!img->writable)
        return qi_fail(img, QI_ERDONLY, "", QI_NO_OFFSET, "image opened read-only; "
                       "reopen it with -w to write");
    if ((why = resize_refused(img, new_size)))
        return qi_fail(img, QI_ENOTSUP, "", QI_NO_OFFSET, "resizing an image with %s "
                       "is not supported", why);
    if (img->corrupt_seen)
        return qi_fail(img, QI_ECORRUPT, "", QI_NO_OFFSET, "the image was found corrupt "
                       "earlier in this session; no further writes");
    if (new_size % 512)
        return qi_fail(img, QI_EINVAL, "", QI_NO_OFFSET, "the new size %" PRIu64
                       " is not a multiple of 512", new_size);
    if (new_size < img->size)
        return qi_shrink(img, new_size);
    if (new_size == img->size)
        return 0;
    unsigned shift = img->g.cluster_bits + img->g.l2_bits;
    uint64_t need = (new_size >> shift) + ((new_size & ((1ull << shift) - 1)) != 0);
    /* 1 */
    if ((rc = qi_cluster_grow_l1(img, need, true)) < 0)
        return rc;
    /* 2 */
    img->hdr_req.what = QI_HDR_SIZE;
    img->hdr_req.size = new_size;
    return img->commit_header(img);
}

int qi_image_dry_run_changes(qi_image *img, qi_change_cb cb, void *payload)
{
    return qi_journal_dry(img->journal) ? qi_journal_changes(img->journal, cb, payload) : 0;
}

int qi_image_close_dry_run(qi_image *img, qi_change_cb cb, void *payload)
{
    int rc = 0;
    if (!img)
        return 0;
    close_writes(img);
    if (qi_journal_dry(img->journal))
        rc = qi_journal_changes(img->journal, cb, payload);
    qi_image_close(img);   /* close_writes again: nothing left to write */
    return rc;
}

bool qi_image_dry_run(const qi_image *img)
{
    return qi_journal_dry(img->journal);
}
