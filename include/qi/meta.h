/* qinspect public API: decoded views of qcow2 metadata.
 *
 * Everything here reads through the engine (and its cache) at the time of
 * the call; nothing returned points into the cache. Structures are decoded
 * views: the raw on-disk value is always kept beside the decoded fields. */
#ifndef QI_META_H
#define QI_META_H

#include <stdbool.h>
#include <stdint.h>

#include "qi/image.h"

/* Feature bits (qcow2 spec) */
#define QI_INCOMPAT_DIRTY       (1ull << 0)
#define QI_INCOMPAT_CORRUPT     (1ull << 1)
#define QI_INCOMPAT_DATA_FILE   (1ull << 2)
#define QI_INCOMPAT_COMPRESSION (1ull << 3)
#define QI_INCOMPAT_EXTL2       (1ull << 4)
#define QI_INCOMPAT_KNOWN       0x1full
#define QI_COMPAT_LAZY_REFCOUNTS (1ull << 0)
#define QI_AUTOCLEAR_BITMAPS    (1ull << 0)
#define QI_AUTOCLEAR_DATA_FILE_RAW (1ull << 1)

/* Header extension types */
#define QI_EXT_END          0x00000000u
#define QI_EXT_BACKING_FMT  0xe2792acau
#define QI_EXT_FEATURES     0x6803f857u
#define QI_EXT_BITMAPS      0x23852875u
#define QI_EXT_CRYPTO       0x0537be77u
#define QI_EXT_DATA_FILE    0x44415441u

typedef struct qi_header {
    uint32_t magic, version;
    uint64_t backing_file_offset;
    uint32_t backing_file_size;
    uint32_t cluster_bits;
    uint64_t size;
    uint32_t crypt_method;
    uint32_t l1_size;
    uint64_t l1_table_offset;
    uint64_t refcount_table_offset;
    uint32_t refcount_table_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    /* v3 (v2: zero, refcount_order 4, header_length 72) */
    uint64_t incompatible_features, compatible_features, autoclear_features;
    uint32_t refcount_order;
    uint32_t header_length;
    uint8_t compression_type; /* 0 zlib (deflate), 1 zstd */
} qi_header;

typedef struct qi_ext {
    uint32_t type;
    uint32_t length;
    uint64_t offset;        /* byte offset of the data in the header cluster */
    const uint8_t *data;    /* owned by the image, valid until close */
} qi_ext;

typedef struct qi_feature_name {
    uint8_t type;           /* 0 incompatible, 1 compatible, 2 autoclear */
    uint8_t bit;
    char name[47];          /* NUL-terminated copy */
} qi_feature_name;

/* Header view (owned by IMG, NULL for a raw image). */
const qi_header *qi_meta_header(const qi_image *img);

/* Header extensions in on-disk order (count in *n; owned by IMG). */
const qi_ext *qi_meta_extensions(const qi_image *img, uint32_t *n);

/* Feature name table entries (count in *n; owned by IMG). */
const qi_feature_name *qi_meta_feature_names(const qi_image *img, uint32_t *n);

/* Name of a feature bit: from the image's table if present, else QEMU's
 * built-in names, else NULL. TYPE is 0/1/2 as in the table. */
const char *qi_meta_feature_name(const qi_image *img, int type, int bit);

/* Derived geometry. */
uint32_t qi_meta_l2_entries(const qi_image *img);    /* entries per L2 table */
uint32_t qi_meta_refcount_bits(const qi_image *img);
uint64_t qi_meta_refblock_entries(const qi_image *img);
bool qi_meta_extended_l2(const qi_image *img);

typedef enum qi_cluster_type {
    QI_CLUSTER_UNALLOCATED = 0,
    QI_CLUSTER_NORMAL,
    QI_CLUSTER_ZERO_PLAIN,
    QI_CLUSTER_ZERO_ALLOC,
    QI_CLUSTER_COMPRESSED,
} qi_cluster_type;

const char *qi_cluster_type_name(qi_cluster_type t);

typedef struct qi_l1_entry {
    uint64_t raw;
    uint64_t l2_offset;     /* bits 9-55 */
    bool copied;            /* bit 63 */
    uint64_t reserved;      /* reserved bits that are set (should be 0) */
} qi_l1_entry;

typedef struct qi_l2_entry {
    uint64_t raw;
    uint64_t bitmap;        /* extended L2: subcluster bitmap, else 0 */
    qi_cluster_type type;
    bool copied;            /* bit 63 */
    uint64_t host_offset;   /* standard: cluster offset; compressed: byte offset */
    uint32_t csectors;      /* compressed: number of 512-byte sectors */
    uint64_t csize;         /* compressed: bytes from host_offset to end of last sector */
    uint64_t reserved;      /* reserved bits that are set (should be 0) */
} qi_l2_entry;

typedef enum qi_subcluster_state {
    QI_SC_UNALLOCATED = 0,
    QI_SC_ALLOCATED,
    QI_SC_ZERO,
    QI_SC_INVALID,          /* both allocated and zero */
} qi_subcluster_state;

/* Pure decoders (no I/O). */
void qi_meta_decode_l1(const qi_image *img, uint64_t raw, qi_l1_entry *out);
void qi_meta_decode_l2(const qi_image *img, uint64_t raw, uint64_t bitmap,
                       qi_l2_entry *out);
qi_subcluster_state qi_meta_subcluster(const qi_l2_entry *e, unsigned i);

/* The getters below decode entries without judging them: an entry with
 * reserved bits, an unaligned offset or a conflicting subcluster bitmap is
 * returned as it is on disk (see `reserved`), so it can be inspected and
 * explained. Guest reads and map refuse such entries with QI_ECORRUPT.
 * Only the location asked for (index, table offset) is validated. */

/* Active L1 entry INDEX (< header l1_size). */
int qi_meta_l1_get(qi_image *img, uint32_t index, qi_l1_entry *out);

/* L1 entry INDEX of the table at L1_OFF with L1_SIZE entries (snapshots). */
int qi_meta_l1_get_at(qi_image *img, uint64_t l1_off, uint32_t l1_size,
                      uint32_t index, qi_l1_entry *out);

/* L2 entry INDEX (< qi_meta_l2_entries) of the L2 table at L2_OFF.
 * Validates the table offset. */
int qi_meta_l2_get(qi_image *img, uint64_t l2_off, uint32_t index,
                   qi_l2_entry *out);

/* The L2 entry mapping guest offset GOFF in the active tables.
 * *l2_off = 0 when the L1 entry is unallocated (then *out is unallocated). */
int qi_meta_l2_lookup(qi_image *img, uint64_t goff, uint64_t *l2_off,
                      uint32_t *index, qi_l2_entry *out);

/* Refcount table entry INDEX (raw value). */
uint64_t qi_meta_reftable_size(const qi_image *img); /* entries */
int qi_meta_reftable_get(qi_image *img, uint64_t index, uint64_t *raw);

/* Refcount of the host cluster containing HOST_OFF (0 if not covered). */
int qi_meta_refcount(qi_image *img, uint64_t host_off, uint64_t *rc);

/* Raw edits: the hand-repair and test-corruption tools. They write what
 * they are told, bypassing the format's rules on purpose, but never the
 * caches (no stale cached copy can overwrite them later). Write mode only
 * (QI_ERDONLY otherwise). Each hands back the old value.
 *   qi_meta_l1_set: active L1 entry INDEX, written and synced at once.
 *   qi_meta_l2_set: the 64-bit word of L2 entry INDEX of the table at
 *     L2_OFF (validated like qi_meta_l2_get), through the L2 cache.
 *   qi_meta_set_refcount: the refcount of the host cluster holding
 *     HOST_OFF, through the refcount block cache (the block must exist).
 *   qi_meta_poke: LEN bytes at file offset OFF (OLD receives the LEN bytes
 *     that were there): every cached change is written back first, cached
 *     copies of what the bytes touch are dropped, and the in-memory L1 and
 *     refcount tables are read again. A poke into what open parsed (the
 *     header cluster, the snapshot table, the bitmap directory) reads all
 *     of it again and validates it, as open does; if it no longer
 *     validates, the poke stays on disk and the image enters the broken
 *     state (qi_image_header_error), which any later poke or header edit
 *     that makes it valid again ends.
 *   qi_meta_header_set: the header field NAME (qi_meta_header_fields) set
 *     to VALUE, big-endian at its offset, through qi_meta_poke; *OLD is the
 *     value that was on disk. No rule is checked except that VALUE fits the
 *     field's width and the field exists in the header on disk (a version 2
 *     header has no version 3 fields; compression_type needs header_length
 *     above 104): QI_EINVAL otherwise.
 * The L1, L2 and refcount edits are refused in the broken state (they need
 * a valid header); poke and header edits are not. */
int qi_meta_l1_set(qi_image *img, uint32_t index, uint64_t raw, uint64_t *old);
int qi_meta_l2_set(qi_image *img, uint64_t l2_off, uint32_t index, uint64_t raw,
                   uint64_t *old);
int qi_meta_set_refcount(qi_image *img, uint64_t host_off, uint64_t value, uint64_t *old);
int qi_meta_poke(qi_image *img, uint64_t off, const void *buf, size_t len, void *old);

/* Raw host bytes: up to LEN bytes of the image file at OFF into BUF, *GOT
 * the number read (less than LEN only at the end of the file, 0 past it).
 * Works on any open image (a forensic open, the broken state); cached
 * changes not yet written back are not in the file. LEN is at most
 * QI_META_PEEK_MAX. Returns 0, QI_EINVAL (LEN too large), QI_EIO. */
#define QI_META_PEEK_MAX (1u << 20)
int qi_meta_peek(qi_image *img, uint64_t off, void *buf, size_t len, size_t *got);

/* The fixed header fields: name, byte offset, width in bytes (1, 4, 8) and
 * the first version that has them. */
typedef struct qi_header_field {
    const char *name;
    uint32_t offset;
    uint32_t width;
    uint32_t version;
} qi_header_field;

/* All of them, in header order, ending with a NULL name (static). */
const qi_header_field *qi_meta_header_fields(void);

/* The field NAME, or NULL. */
const qi_header_field *qi_meta_header_field(const char *name);

int qi_meta_header_set(qi_image *img, const char *name, uint64_t value, uint64_t *old);

/* Internal snapshots */
typedef struct qi_snapshot {
    uint64_t entry_offset;  /* where the entry sits in the file */
    uint64_t entry_size;    /* its bytes in the table, padding included (the
                             * id and name may hold NUL bytes: not strlen) */
    uint64_t l1_table_offset;
    uint32_t l1_size;
    char *id;               /* NUL-terminated copies */
    char *name;
    uint32_t date_sec, date_nsec;
    uint64_t vm_clock_nsec;
    uint32_t vm_state_size32;
    uint32_t extra_data_size;
    uint64_t vm_state_size; /* large field if present, else the 32-bit one */
    bool has_disk_size;
    uint64_t disk_size;
    bool has_icount;
    uint64_t icount;
} qi_snapshot;

/* Persistent dirty bitmaps (bitmaps extension + autoclear bit 0) */
#define QI_BITMAP_IN_USE 1u
#define QI_BITMAP_AUTO 2u
#define QI_BITMAP_EXTRA_DATA_COMPATIBLE 4u

typedef struct qi_bitmap {
    uint64_t entry_offset;  /* directory entry in the file */
    uint64_t table_offset;
    uint32_t table_size;    /* entries */
    uint32_t flags;
    uint8_t type;           /* 1 = dirty tracking */
    uint8_t granularity_bits;
    char *name;             /* NUL-terminated copy */
} qi_bitmap;

/* Bitmap directory (validated at open; empty when the extension is absent
 * or the autoclear bit says the bitmaps are stale; owned by IMG). */
const qi_bitmap *qi_meta_bitmaps(const qi_image *img, uint32_t *n);

/* References to host clusters: everything that qemu-img check counts. */
typedef enum qi_ref_kind {
    QI_REF_HEADER = 0,      /* the header cluster */
    QI_REF_L1_TABLE,        /* a cluster of an L1 table (active or snapshot) */
    QI_REF_L1_ENTRY,        /* an L1 entry pointing at an L2 table */
    QI_REF_L2_ENTRY,        /* an L2 entry pointing at a data cluster */
    QI_REF_REFTABLE,        /* a cluster of the refcount table */
    QI_REF_REFBLOCK,        /* a refcount table entry pointing at a block */
    QI_REF_SNAPTABLE,       /* a cluster of the snapshot table */
    QI_REF_BITMAP_DIR,      /* a cluster of the bitmap directory */
    QI_REF_BITMAP_TABLE,    /* a cluster of a bitmap's table */
    QI_REF_BITMAP_DATA,     /* a bitmap table entry pointing at bitmap data */
} qi_ref_kind;

typedef struct qi_ref {
    qi_ref_kind kind;
    int32_t snapshot;       /* -1: active tables or not view-specific */
    uint64_t table_offset;  /* table holding the entry (entries only) */
    uint32_t index;         /* entry index in that table */
    uint64_t raw;           /* the entry's raw value (entries only) */
    uint64_t guest_offset;  /* L2 entries: first guest byte it maps */
    uint64_t host_offset;   /* start of the referenced range */
    uint64_t length;        /* bytes referenced (compressed: csize) */
} qi_ref;

const char *qi_ref_kind_name(qi_ref_kind k);

typedef int (*qi_ref_cb)(void *payload, const qi_ref *ref);

/* Every reference to the host cluster containing HOST_OFF, from the active
 * tables, every snapshot's tables and the fixed metadata, in that order. A
 * data cluster reached through an L2 table shared by several L1 tables is
 * reported once per L1 table, as qemu-img check counts it. A nonzero return
 * of CB stops the walk and is returned. Reads all metadata. */
int qi_meta_owners(qi_image *img, uint64_t host_off, qi_ref_cb cb, void *payload);

/* Every reference the image holds, in the order of qi_meta_owners (the
 * list qemu-img check builds its refcounts from). Reads all metadata once. */
int qi_meta_references(qi_image *img, qi_ref_cb cb, void *payload);

/* Snapshot table (validated at open; owned by IMG). */
const qi_snapshot *qi_meta_snapshots(const qi_image *img, uint32_t *n);

#endif
