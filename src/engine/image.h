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

struct qi_l1tab;

typedef struct qi_refindex qi_refindex;

struct qi_image {
    char *path;                 /* as given to open */
    bool raw;                   /* a raw file (backing files only, or forced) */
    bool writable;
    qi_bio *file;               /* the image file */
    qi_bio *data;               /* where guest data lives: file or data file */
    qi_bio *data_file;          /* external data file (owned), or NULL */
    struct qi_journal *journal; /* undo file or dry-run overlay of file and
                                 * data_file (journal.c), or NULL */
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
    struct qi_l1tab *l1;        /* active L1 (one reference, cluster.h) */
    uint64_t *reftable;         /* host byte order */
    uint64_t reftable_entries;
    uint32_t snap_l1_index;     /* which snapshot's L1 is in snap_l1 */
    struct qi_l1tab *snap_l1;   /* one reference */

    qi_snapshot *snaps;
    uint32_t n_snaps;
    qi_bitmap *bitmaps;
    uint32_t n_bitmaps;
    struct qi_bitmaps *bm;      /* bitmaps tracking writes (bitmap.c), or NULL */
    struct qi_refindex *refindex; /* owners index (refindex.c), or NULL */

    qi_cache *l2_cache;
    qi_cache *rb_cache;

    /* compressed cluster scratch: decompressed cluster and its host offset */
    uint8_t *cbuf, *cin;
    uint64_t cbuf_off;          /* raw L2 entry of the cluster in cbuf, 0 none */

    /* writing */
    uint64_t free_hint;         /* lowest host cluster that may be free */
    uint64_t free_byte_offset;  /* compressed writes: the next byte free for
                                 * packing, inside a host cluster holding
                                 * compressed data of this session; 0 none
                                 * (cwrite.c; refcount.c clears it when that
                                 * cluster's refcount drops to 0) */
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
        uint32_t l1_size;                   /* QI_HDR_L1 */
        uint64_t l1_table_offset;
        struct qi_l1tab *l1;                /* QI_HDR_L1: the new table
                                             * (one reference); image.c takes
                                             * it (sets this to NULL) once the
                                             * header is on disk */
        uint64_t size;                      /* QI_HDR_SIZE: virtual size */
        uint32_t nb_snapshots;              /* QI_HDR_SNAPSHOTS */
        uint64_t snapshots_offset;
    } hdr_req;
    int (*commit_header)(struct qi_image *img);
    bool lazy_dirty;            /* this session set the dirty bit for lazy
                                 * refcounts; a clean flush clears it */

    int8_t meta_prealloc;       /* map: -1 not yet known, else 0/1 (map.c) */
    qi_image *backing;
    size_t cache_bytes;
    bool corrupt_seen;          /* set by lower layers; image.c acts on it */
    qi_err err;

    /* Raw edits of the header (qi_image_reload_header): the options the
     * image was opened with, and whether the header read again after an
     * edit failed to validate (then broken_err says why; everything but
     * raw edits is refused). */
    qi_open_opts opts;
    bool broken;
    qi_err broken_err;
};

/* Read the header cluster, extensions, feature bits, snapshot table and
 * bitmap directory again from the open file (no reopen: the locks stay),
 * after a raw edit wrote to them; the caller wrote back every cached
 * change before the edit. Success: the parsed state is replaced, cached
 * L2 tables and refcount blocks and the loaded L1 and refcount tables are
 * dropped, geometry and caches made anew, the backing chain or data file
 * opened again if their names changed, and a broken state ends. Failure
 * (the header no longer validates): the image enters the broken state,
 * keeping the old parsed state in memory (never used while broken), and the
 * validation error is returned and kept (qi_image_header_error). Returns 0
 * or the validation error's code. */
int qi_image_reload_header(qi_image *img);

/* 0, or the error that refuses anything but raw edits (the broken state,
 * recorded in img->err again). */
int qi_image_usable(qi_image *img);

/* 0 when guest writes may change the image's state, else the reason,
 * recorded: the broken state, or the corrupt bit set (an image opened with
 * QI_OPEN_REPAIR: raw edits only until the bit is clear). */
int qi_image_write_state(qi_image *img);

/* img->hdr_req.what */
#define QI_HDR_REFTABLE 0x1u    /* refcount table offset and size */
#define QI_HDR_CORRUPT  0x2u    /* set the corrupt bit (incompatible bit 1) */
#define QI_HDR_L1       0x4u    /* active L1 table size and offset */
#define QI_HDR_SIZE     0x8u    /* virtual size */
#define QI_HDR_DIRTY    0x10u   /* set the dirty bit (incompatible bit 0) */
#define QI_HDR_CLEAN    0x20u   /* clear the dirty bit (everything synced) */
#define QI_HDR_SNAPSHOTS 0x40u  /* nb_snapshots and snapshots_offset: the new
                                 * table (written and synced by the caller)
                                 * is read again into img->snaps */

/* Record a corruption in IMG's error slot; returns QI_ECORRUPT. */
#define qi_corrupt(img, st, off, ...) \
    ((img)->corrupt_seen = true, \
     qi_err_set(&(img)->err, (img)->path, QI_ECORRUPT, st, off, __VA_ARGS__))

/* Record any other failure in IMG's error slot; returns CODE. */
#define qi_fail(img, code, st, off, ...) \
    qi_err_set(&(img)->err, (img)->path, code, st, off, __VA_ARGS__)

#endif
