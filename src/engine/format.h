/* format.h - pure encode/decode/validate of qcow2 structures (layer 0).
 * No I/O; every function works on byte buffers. Errors are recorded in a
 * qi_err with the structure name and the byte offset in the image file. */
#ifndef QI_FORMAT_H
#define QI_FORMAT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "qi/meta.h"

#define QI_MAGIC 0x514649fbu
#define QI_MIN_CLUSTER_BITS 9
#define QI_MAX_CLUSTER_BITS 21
#define QI_MAX_OFFSET (1ull << 56)            /* host offsets are < 2^56 */
#define QI_MAX_L1_ENTRIES (32u * 1024 * 1024 / 8)
#define QI_MAX_REFTABLE_BYTES (8u * 1024 * 1024)
#define QI_MAX_SNAPSHOTS 65536u
#define QI_MAX_SNAPSHOT_EXTRA 1024u
#define QI_MAX_SNAPSHOTS_SIZE (1024u * 65536u)
#define QI_MAX_BACKING_NAME 1023u
#define QI_MAX_BACKING_FMT 15u

#define QI_L1E_OFFSET_MASK     0x00fffffffffffe00ull
#define QI_L1E_RESERVED_MASK   0x7f000000000001ffull
#define QI_L2E_OFFSET_MASK     0x00fffffffffffe00ull
#define QI_L2E_STD_RESERVED    0x3f000000000001feull
#define QI_REFT_OFFSET_MASK    0xfffffffffffffe00ull
#define QI_REFT_RESERVED_MASK  0x1ffull
#define QI_OFLAG_COPIED        (1ull << 63)
#define QI_OFLAG_COMPRESSED    (1ull << 62)
#define QI_OFLAG_ZERO          1ull

/* Geometry derived from a validated header. */
typedef struct qi_geom {
    uint32_t cluster_bits;
    uint32_t cluster_size;
    uint32_t l2_bits;          /* log2 entries per L2 table */
    uint32_t l2_entries;
    uint32_t l2_entry_size;    /* 8 or 16 */
    bool extl2;
    uint32_t subcluster_size;  /* cluster_size / 32 with extended L2 */
    uint32_t csize_shift;      /* compressed descriptor: x = 62 - (cb - 8) */
    uint64_t csize_mask;
    uint64_t coffset_mask;
    uint32_t refcount_order;
    uint64_t refblock_entries;
} qi_geom;

/* Parse the fixed header (first LEN bytes of the file, LEN >= 72) into H and
 * validate every field that can be checked without other structures, against
 * FILE_SIZE: qi_format_parse_header_base, then the fields of the three
 * tables (qi_format_check_header_table). Returns 0 or QI_ECORRUPT /
 * QI_ENOTSUP (recorded in ERR). */
int qi_format_parse_header(const uint8_t *buf, size_t len, uint64_t file_size,
                           const char *path, qi_header *h, qi_err *err);

/* The part of the header that must be valid for the file to be read at all
 * (magic, version, cluster size, header length, virtual size, encryption
 * method); not the fields of qi_format_check_header_field or the tables.
 * Same returns. */
int qi_format_parse_header_base(const uint8_t *buf, size_t len, uint64_t file_size,
                                const char *path, qi_header *h, qi_err *err);

/* One header field that a forensic open can do without (QI_HF_*): the
 * refcount order (refcounts unavailable), the compression type (compressed
 * clusters unavailable), the backing file name (no backing file). Returns 0
 * or QI_ECORRUPT / QI_ENOTSUP (recorded). */
enum { QI_HF_REFCOUNT_ORDER, QI_HF_COMPRESSION, QI_HF_BACKING_NAME };
int qi_format_check_header_field(const qi_header *h, int which, uint64_t file_size,
                                 const char *path, qi_err *err);

/* The header fields of one table, as QEMU checks them at open: size limits,
 * cluster alignment, below 2^56; a table past the end of the file is valid
 * (it reads as zeros, as in QEMU). Returns 0 or QI_ECORRUPT (recorded). */
enum { QI_HT_L1, QI_HT_REFTABLE, QI_HT_SNAPSHOTS };
int qi_format_check_header_table(const qi_header *h, int which, const char *path,
                                 qi_err *err);

/* Geometry of a validated header. */
void qi_format_geom(const qi_header *h, qi_geom *g);

/* Walk the header extensions in BUF (the header cluster, LEN bytes) from
 * header_length up to END (min of cluster size, backing file offset).
 * Calls CB for every extension (END marker excluded). Returns 0 or
 * QI_ECORRUPT (recorded). */
typedef int (*qi_ext_cb)(void *payload, uint32_t type, uint32_t len,
                         uint64_t off, const uint8_t *data);
int qi_format_walk_extensions(const uint8_t *buf, size_t len, uint64_t start,
                              uint64_t end, const char *path, qi_ext_cb cb,
                              void *payload, qi_err *err);

/* Check that a table of SIZE bytes at OFF is cluster aligned (if ALIGN) and
 * lies inside a file of FILE_SIZE bytes (UINT64_MAX: no such check) and
 * below 2^56. */
int qi_format_check_table(const qi_geom *g, uint64_t off, uint64_t size,
                          bool align, uint64_t file_size, const char *path,
                          const char *structure, uint64_t where, qi_err *err);

/* Decoders */
void qi_format_decode_l1(uint64_t raw, qi_l1_entry *out);
void qi_format_decode_l2(const qi_geom *g, bool data_file, uint64_t raw,
                         uint64_t bitmap, qi_l2_entry *out);

/* Refcount entry INDEX of a refcount block of width 1 << ORDER bits. */
uint64_t qi_format_refcount_get(const uint8_t *block, uint32_t order,
                                uint64_t index);

/* Largest refcount of width 1 << ORDER bits (1 for 1-bit, ... 2^64-1). */
uint64_t qi_format_refcount_max(uint32_t order);

/* Set refcount entry INDEX of BLOCK (width 1 << ORDER bits) to VALUE, which
 * the caller checked against qi_format_refcount_max (asserted). Only the
 * bits of that entry change. */
void qi_format_refcount_set(uint8_t *block, uint32_t order, uint64_t index,
                            uint64_t value);

/* Encoders of table entries (the inverse of the decoders above):
 * an L1 entry pointing at the L2 table at L2_OFF; a standard L2 entry of a
 * data cluster at HOST (0 with ZERO set gives a plain zero cluster); a
 * refcount table entry. Offsets are cluster aligned and below 2^56
 * (asserted: the allocator made them). */
uint64_t qi_format_encode_l1(uint64_t l2_off, bool copied);
uint64_t qi_format_encode_l2(uint64_t host, bool copied, bool zero);
uint64_t qi_format_encode_reftable(uint64_t block_off);

/* The L2 entry of a compressed cluster whose LEN (>= 1) bytes of data start
 * at byte HOST: the offset, and in the sector field the number of 512-byte
 * sectors [HOST, HOST+LEN) touches minus one, as QEMU encodes it (no
 * COPIED). The offset fits the descriptor and the sectors the field
 * (asserted: the allocator placed the data inside at most two clusters). */
uint64_t qi_format_encode_compressed(const qi_geom *g, uint64_t host, uint64_t len);

/* Parse one snapshot table entry starting at BUF (AVAIL bytes available,
 * OFF = its file offset). On success *consumed = padded entry length. */
int qi_format_parse_snapshot(const uint8_t *buf, size_t avail, uint64_t off,
                             uint32_t version, const char *path,
                             qi_snapshot *s, size_t *consumed, qi_err *err);

/* Parse one bitmap directory entry at BUF (AVAIL bytes, file offset OFF).
 * On success *consumed = padded entry length. */
int qi_format_parse_bitmap(const uint8_t *buf, size_t avail, uint64_t off,
                           const char *path, qi_bitmap *b, size_t *consumed,
                           qi_err *err);

/* Big-endian 64-bit table entry INDEX of TABLE (L1, L2, reftable). */
void qi_format_put_entry(uint8_t *table, uint64_t index, uint64_t value);
uint64_t qi_format_get_entry(const uint8_t *table, uint64_t index);

/* The names a header cluster carries (NULL: none). */
typedef struct qi_header_names {
    const char *backing_file;
    const char *backing_fmt;
    const char *data_file;
} qi_header_names;

/* Lay out the header cluster BUF (LEN = the cluster size) as QEMU's
 * qcow2_update_header does: the fields of H (version 2: 72 bytes; 3: 112,
 * header_length set), then the extensions in QEMU's order (backing format,
 * external data file name, the feature name table for version 3 with
 * clusters above 4 KiB), the end marker, and the backing file name after
 * them (H's backing_file_offset/size set). Returns 0, or -1 when the names
 * do not fit the cluster (QEMU's ENOSPC). */
int qi_format_build_header(uint8_t *buf, size_t len, qi_header *h,
                           const qi_header_names *names);

/* QEMU's built-in feature names (type 0/1/2), NULL if unknown. */
const char *qi_format_builtin_feature(int type, int bit);

#endif
