/* image.h - the private state of an open image, shared by layers 1-5.
 *
 * Lower layers read these fields and set flags (corrupt_seen); only image.c
 * acts on header or feature changes. Public code sees only include/qi/. */
#ifndef QI_IMAGE_PRIV_H
#define QI_IMAGE_PRIV_H
#include <stdbool.h>
#include <stdint.h>

#include "qi/image.h"
#include "qi/meta.h"
#include "bio.h"
#include "cache.h"
#include "err.h"
#include "format.h"

struct qi_image {
    char *path;                 /* as given to open */
    bool raw;                   /* a raw file (backing files only, or forced) */
    bool writable;
    qi_bio *file;               /* the image file */
    qi_bio *data;               /* where guest data lives: file or data file */
    qi_bio *data_file;          /* external data file (owned), or NULL */
    qi_header hdr;
    qi_geom g;
    uint8_t *hdr_buf;           /* first cluster (or the whole short file) */
    size_t hdr_len;
    qi_ext *exts;
    uint32_t n_exts;
    qi_feature_name *features;
    uint32_t n_features;
    char *backing_name, *backing_full, *backing_fmt, *data_file_name;
    bool data_file_raw;
    uint64_t size;              /* virtual size */

    /* loaded on first use */
    uint64_t *l1;               /* active L1, host byte order */
    uint64_t *reftable;         /* host byte order */
    uint64_t reftable_entries;
    uint32_t snap_l1_index;     /* which snapshot's L1 is in snap_l1 */
    uint64_t *snap_l1;

    qi_snapshot *snaps;
    uint32_t n_snaps;
    qi_bitmap *bitmaps;
    uint32_t n_bitmaps;

    qi_cache *l2_cache;
    qi_cache *rb_cache;

    /* compressed cluster scratch: decompressed cluster and its host offset */
    uint8_t *cbuf, *cin;
    uint64_t cbuf_off;          /* raw L2 entry of the cluster in cbuf, 0 none */

    /* writing */
    uint64_t free_hint;         /* lowest host cluster that may be free */
    uint64_t *pending_free;     /* host clusters losing a reference once the
                                 * L2 entries that dropped it are on disk */
    size_t n_pending, cap_pending;

    /* Header changes asked for by lower layers (STYLE convention 4): they
     * fill hdr_req and call commit_header, which image.c installs at open;
     * it writes the fields to disk, syncs, and updates hdr. NULL: header
     * changes are not possible (QI_ENOTSUP). */
    struct {
        unsigned what;                      /* QI_HDR_* */
        uint64_t refcount_table_offset;     /* QI_HDR_REFTABLE */
        uint32_t refcount_table_clusters;
    } hdr_req;
    int (*commit_header)(struct qi_image *img);
    bool lazy_dirty;            /* this session set the dirty bit for lazy
                                 * refcounts; a clean flush clears it */

    int8_t meta_prealloc;       /* map: -1 not yet known, else 0/1 (map.c) */
    qi_image *backing;
    size_t cache_bytes;
    bool corrupt_seen;          /* set by lower layers; image.c acts on it */
    qi_err err;
};

/* img->hdr_req.what */
#define QI_HDR_REFTABLE 0x1u    /* refcount table offset and size */
#define QI_HDR_CORRUPT  0x2u    /* set the corrupt bit (incompatible bit 1) */
#define QI_HDR_DIRTY    0x4u    /* set the dirty bit (incompatible bit 0) */
#define QI_HDR_CLEAN    0x8u    /* clear the dirty bit (everything synced) */

/* Record a corruption in IMG's error slot; returns QI_ECORRUPT. */
#define qi_corrupt(img, st, off, ...) \
    ((img)->corrupt_seen = true, \
     qi_err_set(&(img)->err, (img)->path, QI_ECORRUPT, st, off, __VA_ARGS__))

/* Record any other failure in IMG's error slot; returns CODE. */
#define qi_fail(img, code, st, off, ...) \
    qi_err_set(&(img)->err, (img)->path, code, st, off, __VA_ARGS__)

#endif
