/* qinspect public API: opening images, properties, guest reads, map walk.
 *
 * A qi_image is a qcow2 image (with its backing chain and external data
 * file) or a raw file used as a backing file. All functions record failures
 * in the image's error slot (qi_image_error) and return a QI_E* code. */
#ifndef QI_IMAGE_H
#define QI_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qi/error.h"

typedef struct qi_image qi_image;

/* qi_open_opts.flags */
#define QI_OPEN_RW          0x01u /* read-write (writes are a later feature) */
#define QI_OPEN_NO_BACKING  0x02u /* do not open the backing chain */
#define QI_OPEN_FORCE_SHARE 0x04u /* like qemu-img -U: read even if QEMU writes it */
#define QI_OPEN_NO_LOCK     0x08u /* take no locks at all (tests) */
#define QI_OPEN_RAW         0x10u /* open the file as a raw image */
#define QI_OPEN_PROBE       0x20u /* pick raw or qcow2 by the magic */
#define QI_OPEN_REPAIR      0x40u /* with QI_OPEN_RW: an image marked corrupt
                                   * (incompatible bit 1) opens read-write for
                                   * raw edits; guest writes are refused until
                                   * the bit is clear */
#define QI_OPEN_CHECK       0x200u /* with QI_OPEN_RW: as BDRV_O_CHECK, a
                                   * dirty image is not rebuilt at open (the
                                   * repair does it and counts it) */
#define QI_OPEN_UNSAFE      0x80u /* with QI_OPEN_RW: no fdatasync at all, as
                                   * qemu-img convert's default cache=unsafe
                                   * for its new image: writes keep their
                                   * order, so a crash of the process leaves
                                   * what it leaves otherwise, but a crash of
                                   * the machine may lose any of them */
#define QI_OPEN_DRY_RUN     0x100u /* with QI_OPEN_RW: every write, truncate
                                   * and discard of the image file and its
                                   * data file goes to an in-memory overlay
                                   * (capped at QI_DRY_RUN_MAX_BYTES: past it
                                   * a write fails with QI_ENOMEM and a clear
                                   * message); reads see the overlay, syncs do
                                   * nothing, the files stay byte-identical
                                   * (opened read-only). The changes are
                                   * listed by qi_image_dry_run_changes. */

#define QI_MAX_BACKING_DEPTH 64

typedef struct qi_open_opts {
    unsigned flags;
    unsigned max_backing_depth; /* 0 = QI_MAX_BACKING_DEPTH */
    size_t cache_bytes;         /* L2 + refblock cache budget, 0 = default */
    const char *undo_path;      /* with QI_OPEN_RW (not QI_OPEN_DRY_RUN): the
                                 * undo file to create (an existing file is
                                 * refused); before the first overwrite of any
                                 * byte range of the image file or its data
                                 * file, the original bytes are appended to it
                                 * and made durable (qi/undo.h: format and
                                 * restore). NULL = no undo file. */
} qi_open_opts;

#define QI_OPEN_OPTS_INIT { 0, 0, 0, NULL }

/* Memory held by a dry run (new bytes plus the old bytes of each change). */
#define QI_DRY_RUN_MAX_BYTES (256u << 20)

/* Open PATH. On success *out owns the image (free with qi_image_close).
 * On failure *out is NULL and ERR (may be NULL) holds the reason.
 * Returns 0, QI_EIO, QI_ENOENT, QI_ECORRUPT, QI_ENOTSUP, QI_EBUSY, QI_ENOMEM.
 * Reads only; takes QEMU-compatible OFD locks held until close. */
int qi_image_open(qi_image **out, const char *path, const qi_open_opts *opts,
                  qi_err *err);

/* Creating images (`qemu-img create -f qcow2` equivalents). */
typedef enum qi_prealloc {
    QI_PREALLOC_OFF = 0,   /* nothing allocated (default) */
    QI_PREALLOC_METADATA,  /* L2 tables and data clusters allocated, not written */
    QI_PREALLOC_FALLOC,    /* as metadata, plus fallocate of the data */
    QI_PREALLOC_FULL       /* as metadata, plus zeros written to the data */
} qi_prealloc;

typedef struct qi_create_opts {
    uint64_t size;              /* virtual size in bytes (a multiple of 512) */
    int version;                /* 2 (compat=0.10) or 3 (compat=1.1); 0 = 3 */
    uint32_t cluster_size;      /* 512 .. 2 MiB, a power of two; 0 = 65536 */
    unsigned refcount_bits;     /* 1, 2, 4 .. 64; 0 = 16 */
    const char *backing_file;   /* stored as given; NULL = none */
    const char *backing_fmt;    /* "qcow2", "raw", ...; NULL = none */
    const char *data_file;      /* external data file, created; NULL = none */
    bool data_file_raw;
    bool zstd;                  /* compression_type=zstd (else zlib) */
    bool extended_l2;
    bool lazy_refcounts;
    qi_prealloc prealloc;
} qi_create_opts;

#define QI_CREATE_OPTS_INIT { 0, 0, 0, 0, NULL, NULL, NULL, false, false, false, false, QI_PREALLOC_OFF }

/* Create the qcow2 image PATH (an existing file is truncated, as qemu-img
 * create does) laid out as `qemu-img create` lays it out. Invalid
 * combinations are refused with qemu-img's reason in ERR, before the file
 * is touched. With OUT non-NULL, *OUT is the new image opened read-write
 * with OPEN (may be NULL; QI_OPEN_RW is implied); else it is closed.
 * Returns 0, QI_EINVAL, QI_ENOTSUP, QI_EIO, QI_ENOSPC, QI_ENOMEM. */
int qi_image_create(qi_image **out, const char *path, const qi_create_opts *opts,
                    const qi_open_opts *open, qi_err *err);

/* Close and free; NULL is a no-op. Closes the backing chain too. A
 * writable image is flushed first; a caller that must know whether that
 * worked calls qi_image_flush before. */
void qi_image_close(qi_image *img);

/* The last error recorded on this image (code 0 if none). */
const qi_err *qi_image_error(const qi_image *img);

/* NULL while the image's header validates. After a raw edit (of the header,
 * the snapshot table or the bitmap directory) left it invalid: the
 * validation error. The edit stays on disk; the image then refuses
 * everything except raw edits (qi_meta_poke, qi_meta_header_set), which
 * read the header again and end this state once it validates. */
const qi_err *qi_image_header_error(const qi_image *img);

/* Properties. */
const char *qi_image_path(const qi_image *img);     /* as given to open */
const char *qi_image_format(const qi_image *img);   /* "qcow2" or "raw" */
uint64_t qi_image_size(const qi_image *img);        /* virtual size, bytes */
uint32_t qi_image_cluster_size(const qi_image *img); /* 0 for raw */
bool qi_image_writable(const qi_image *img);
uint64_t qi_image_file_size(const qi_image *img);   /* host file length */
uint64_t qi_image_allocated_bytes(const qi_image *img); /* st_blocks*512 */

/* The backing image, or NULL (none, or opened with QI_OPEN_NO_BACKING).
 * Owned by IMG. */
qi_image *qi_image_backing(const qi_image *img);

/* Backing file name as stored in the header (NULL if none), the name
 * resolved as QEMU resolves it (relative to the image's directory), and
 * the backing format from the header extension (NULL if absent). */
const char *qi_image_backing_name(const qi_image *img);
const char *qi_image_backing_full_name(const qi_image *img);
const char *qi_image_backing_format(const qi_image *img);

/* External data file name (NULL if none) and whether data_file_raw is set. */
const char *qi_image_data_file_name(const qi_image *img);

/* Guest read of LEN bytes at OFF into BUF (OFF + LEN <= size). Reads the
 * backing chain for unallocated clusters and zeroes past a shorter backing
 * file. Returns 0, QI_EIO, QI_ECORRUPT, QI_EINVAL, QI_ENOMEM. */
int qi_image_read(qi_image *img, void *buf, uint64_t off, size_t len);

/* Guest read of a snapshot's view (index into the snapshot table). */
int qi_image_read_snapshot(qi_image *img, uint32_t snap, void *buf,
                           uint64_t off, size_t len);

/* Guest write of LEN bytes of BUF at OFF (OFF + LEN <= size) into an image
 * opened with QI_OPEN_RW: in place where the cluster is this image's alone
 * (COPIED), else copy-on-write into a new cluster (from the backing chain,
 * a shared, compressed or zero cluster). Metadata changes are cached and
 * reach the disk in crash-safe order on qi_image_flush / close: a crash at
 * any moment leaves at most leaked clusters. Persistent dirty bitmaps
 * with the auto flag get in_use on disk before the first write and the
 * bits of the range (also for zero and discard), saved by flush / close.
 * Returns 0, QI_ERDONLY,
 * QI_EINVAL (beyond the size), QI_ENOTSUP (a feature writes do not handle
 * yet; nothing written), QI_ECORRUPT, QI_EIO, QI_ENOSPC, QI_ENOMEM. */
int qi_image_write(qi_image *img, const void *buf, uint64_t off, size_t len);

/* A compressed write of guest cluster OFF (cluster aligned), as QEMU's
 * write_compressed: DATA holds the LEN bytes of the cluster (a whole
 * cluster, or the last one of the image cut at the virtual size), CDATA the
 * CLEN bytes qi_compressor_run (qi/compress.h) made of it (zero padded to a
 * cluster), for the image's compression type and cluster size. CLEN 0 (it
 * did not shrink) writes DATA uncompressed, as qi_image_write. The
 * compressed bytes are packed after the previous compressed cluster of this
 * session in the same host cluster where they fit; the L2 entry becomes the
 * compressed descriptor. The guest cluster must have no host cluster
 * (unallocated or a plain zero cluster; QI_EINVAL otherwise, nothing
 * written). Same ordering as qi_image_write. Returns 0, QI_ERDONLY,
 * QI_EINVAL, QI_ENOTSUP (external data file), QI_ECORRUPT, QI_EIO,
 * QI_ENOSPC, QI_ENOMEM. */
int qi_image_write_compressed(qi_image *img, uint64_t off, const void *data, size_t len,
                              const void *cdata, size_t clen);

/* Make [OFF, OFF+LEN) read as zeros. Whole clusters of a version 3 image
 * get the zero flag as QEMU sets it (keeping their host cluster unless
 * UNMAP, or the cluster was compressed); pieces of clusters, and version 2
 * images, get zero bytes written (copy-on-write as qi_image_write). Same
 * returns and ordering as qi_image_write. */
int qi_image_zero(qi_image *img, uint64_t off, uint64_t len, bool unmap);

/* Discard the whole clusters in [OFF, OFF+LEN) (the pieces at either end
 * are left alone, as QEMU does): their host clusters lose the reference;
 * they read as zeros afterwards where a backing file could show through or
 * they were allocated (version 3), else as unallocated. Same returns and
 * ordering as qi_image_write. */
int qi_image_discard(qi_image *img, uint64_t off, uint64_t len);

/* Change the virtual size to NEW_SIZE (a multiple of 512), as `qemu-img
 * resize` does (QEMU 7.2's qcow2 truncate).
 * Growing: the active L1 table grows to exactly the entries NEW_SIZE needs
 * (a new table, then the header's l1_size and l1_table_offset in one synced
 * write, then the old table freed), then the header's size field is written
 * and synced; the new range reads as zeros.
 * Shrinking (the caller asked for it: qemu-img's --shrink): every cluster
 * from NEW_SIZE rounded up to a cluster to the old end is fully discarded
 * (unallocated, its host clusters freed and discarded in the file), the L1
 * entries past NEW_SIZE zeroed (the L1 table keeps its size) and their L2
 * tables freed, refcount blocks that count nothing but themselves dropped
 * from the refcount table, the file cut after its last used cluster, then
 * the header's size. Snapshots stay (version 3), with their own sizes.
 * Either way a crash leaves the old size or the new one, with at most
 * leaked clusters, the bytes below the smaller size intact. Returns 0
 * (also when NEW_SIZE is the size now); QI_ERDONLY; QI_EINVAL (not a
 * multiple of 512); QI_ENOSPC (the L1 table would be beyond QEMU's 32 MiB
 * limit); QI_ENOTSUP (an external data file, persistent bitmaps, the dirty
 * bit, growing over a backing file longer than the image, snapshots in a
 * version 2 image, a raw image); nothing is written on any of these.
 * QI_EIO, QI_ECORRUPT, QI_ENOMEM. */
int qi_image_resize(qi_image *img, uint64_t new_size);

/* Write every cached change back in crash-safe order and sync (fdatasync),
 * then save the persistent bitmaps' bits and clear their in_use flag.
 * A no-op on a read-only image. Returns 0, QI_EIO, QI_ENOSPC, QI_ECORRUPT. */
int qi_image_flush(qi_image *img);

/* One change a dry run (QI_OPEN_DRY_RUN) would have made, in the order the
 * writes were made. KIND: QI_CHANGE_WRITE (LEN bytes at OFFSET: OLD as they
 * were before this write, as the run saw them, NEW as written; bytes past
 * the end of the file read as zeros in OLD), QI_CHANGE_DISCARD (LEN bytes at
 * OFFSET become a hole, reading as zeros: OLD as for a write, NEW NULL),
 * QI_CHANGE_TRUNCATE (the file length goes from OLD_SIZE to NEW_SIZE; OLD and
 * NEW NULL, LEN 0). FILE is the path of the file written (the image or its
 * external data file), STRUCTURE what the writer named. The pointers are
 * valid during the callback only. */
enum { QI_CHANGE_WRITE = 0, QI_CHANGE_DISCARD, QI_CHANGE_TRUNCATE };
typedef struct qi_change {
    int kind;
    const char *file;
    const char *structure;
    uint64_t offset;
    size_t len;
    const uint8_t *old_bytes, *new_bytes;
    uint64_t old_size, new_size;
} qi_change;

/* Called once per change; a nonzero return stops the walk and is returned. */
typedef int (*qi_change_cb)(void *payload, const qi_change *c);

/* Walk the changes of an image opened with QI_OPEN_DRY_RUN (none for any
 * other image; call before qi_image_close, after qi_image_flush to see the
 * cached metadata written too). Returns 0 or the callback's value. */
int qi_image_dry_run_changes(qi_image *img, qi_change_cb cb, void *payload);

/* Close IMG as qi_image_close does (its close-time writes too: clearing
 * the dirty bit of lazy refcounts, saving bitmaps) and, for a dry run, walk
 * every change before freeing it. Returns 0 or the callback's value. */
int qi_image_close_dry_run(qi_image *img, qi_change_cb cb, void *payload);

/* Whether IMG was opened with QI_OPEN_DRY_RUN. */
bool qi_image_dry_run(const qi_image *img);

/* One run of guest bytes with the same status, as qemu-img map reports it. */
typedef struct qi_map_ext {
    uint64_t start, length;
    int depth;             /* 0 = this image, n = n-th backing file */
    bool present, zero, data, compressed;
    bool has_offset;
    uint64_t offset;       /* host offset in `file` when has_offset */
    const char *file;      /* file holding the data at `offset` */
} qi_map_ext;

/* Called for each run, in guest order; a nonzero return stops the walk and
 * is returned by qi_image_map. */
typedef int (*qi_map_cb)(void *payload, const qi_map_ext *ext);

/* Walk [START, START+LEN) and report runs merged the way qemu-img map merges
 * them (same depth/flags/file and contiguous offsets). */
int qi_image_map(qi_image *img, uint64_t start, uint64_t len, qi_map_cb cb,
                 void *payload);

#endif
