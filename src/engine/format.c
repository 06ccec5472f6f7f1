/* format.c - pure functions on qcow2 byte buffers (layer 0).
 *
 * Parses and validates the header, walks header extensions, decodes L1 and
 * L2 entries (standard, extended, compressed), reads refcounts of every
 * width and parses snapshot table entries. No I/O: callers pass buffers and
 * the file size. Every number from disk is checked here before anything
 * above uses it: alignment, reserved bits, limits from qcow2-format.md
 * section 10, offset + length overflow. Errors name the structure and the
 * byte offset. Calls: util only. */
#include <assert.h>
#include <inttypes.h>
#include <string.h>

#include "endian.h"
#include "err.h"
#include "format.h"
#include "mem.h"

#define HDR "header"

#define corrupt(err, path, st, off, ...) \
    qi_err_set(err, path, QI_ECORRUPT, st, off, __VA_ARGS__)

static void read_fields(const uint8_t *b, size_t len, qi_header *h)
{
    memset(h, 0, sizeof *h);
    h->magic = qi_be32(b);
    h->version = qi_be32(b + 4);
    h->backing_file_offset = qi_be64(b + 8);
    h->backing_file_size = qi_be32(b + 16);
    h->cluster_bits = qi_be32(b + 20);
    h->size = qi_be64(b + 24);
    h->crypt_method = qi_be32(b + 32);
    h->l1_size = qi_be32(b + 36);
    h->l1_table_offset = qi_be64(b + 40);
    h->refcount_table_offset = qi_be64(b + 48);
    h->refcount_table_clusters = qi_be32(b + 56);
    h->nb_snapshots = qi_be32(b + 60);
    h->snapshots_offset = qi_be64(b + 64);
    h->refcount_order = 4;
    h->header_length = 72;
    if (h->version >= 3 && len >= 104) {
        h->incompatible_features = qi_be64(b + 72);
        h->compatible_features = qi_be64(b + 80);
        h->autoclear_features = qi_be64(b + 88);
        h->refcount_order = qi_be32(b + 96);
        h->header_length = qi_be32(b + 100);
        if (h->header_length > 104 && len > 104)
            h->compression_type = b[104];
    }
}

static int check_v3(const qi_header *h, size_t len, uint64_t file_size,
                    const char *path, qi_err *err)
{
    uint32_t cs = 1u << h->cluster_bits;
    if (len < 104)
        return corrupt(err, path, HDR, 0, "file too short for a version 3 "
                       "header (%" PRIu64 " bytes)", file_size);
    if (h->header_length < 104)
        return corrupt(err, path, HDR, 100, "header_length %" PRIu32
                       " is below the version 3 minimum of 104", h->header_length);
    if (h->header_length % 8)
        return corrupt(err, path, HDR, 100, "header_length %" PRIu32
                       " is not a multiple of 8", h->header_length);
    if (h->header_length > cs)
        return corrupt(err, path, HDR, 100, "header_length %" PRIu32
                       " exceeds the cluster size", h->header_length);
    if (h->header_length > file_size)
        return corrupt(err, path, HDR, 100, "header_length %" PRIu32
                       " runs past the end of the file", h->header_length);
    if ((h->incompatible_features & QI_INCOMPAT_EXTL2) && h->cluster_bits < 14)
        return corrupt(err, path, HDR, 20, "extended L2 entries need clusters of "
                       "at least 16 KiB (cluster_bits %" PRIu32 ")", h->cluster_bits);
    return 0;
}

static int check_refcount_order(const qi_header *h, const char *path, qi_err *err)
{
    if (h->refcount_order > 6)
        return corrupt(err, path, HDR, 96, "refcount_order %" PRIu32
                       " is above 6 (64-bit refcounts)", h->refcount_order);
    return 0;
}

static int check_compression(const qi_header *h, const char *path, qi_err *err)
{
    if (h->compression_type > 1)
        return qi_err_set(err, path, QI_ENOTSUP, HDR, 104,
                          "unknown compression type %u", h->compression_type);
    bool bit = h->incompatible_features & QI_INCOMPAT_COMPRESSION;
    if (h->compression_type && !bit)
        return corrupt(err, path, HDR, 104, "compression_type %" PRIu32
                       " is set but the compression type feature bit is clear",
                       h->compression_type);
    if (!h->compression_type && bit)
        return corrupt(err, path, HDR, 72, "compression type feature bit set with compression_type 0 (zlib)");
    return 0;
}

static int check_backing_name(const qi_header *h, uint32_t cs, uint64_t file_size,
                              const char *path, qi_err *err)
{
    if (!h->backing_file_offset)
        return 0;
    if (h->backing_file_offset > cs)
        return corrupt(err, path, HDR, 8, "backing file name offset %#" PRIx64
                       " is outside the first cluster", h->backing_file_offset);
    if (h->backing_file_size > QI_MAX_BACKING_NAME)
        return corrupt(err, path, HDR, 16, "backing file name length %" PRIu32
                       " is above 1023", h->backing_file_size);
    if (h->backing_file_offset + h->backing_file_size > cs)
        return corrupt(err, path, HDR, 8, "backing file name (offset %#" PRIx64
                       ") does not fit in the first cluster", h->backing_file_offset);
    if (h->backing_file_offset + h->backing_file_size > file_size)
        return corrupt(err, path, HDR, 8, "backing file name (offset %#" PRIx64
                       ") runs past the end of the file", h->backing_file_offset);
    return 0;
}

int qi_format_check_table(const qi_geom *g, uint64_t off, uint64_t size,
                          bool align, uint64_t file_size, const char *path,
                          const char *structure, uint64_t where, qi_err *err)
{
    uint64_t end;
    if (align && (off & (g->cluster_size - 1)))
        return qi_err_set(err, path, QI_ECORRUPT, structure, where,
                          "offset %#" PRIx64 " is not cluster aligned", off);
    if (__builtin_add_overflow(off, size, &end) || end > QI_MAX_OFFSET)
        return qi_err_set(err, path, QI_ECORRUPT, structure, where,
                          "offset %#" PRIx64 " + %" PRIu64 " bytes is beyond 2^56",
                          off, size);
    if (end > file_size)
        return qi_err_set(err, path, QI_ECORRUPT, structure, where,
                          "table at %#" PRIx64 " (%" PRIu64 " bytes) runs past the "
                          "end of the file (%" PRIu64 " bytes)", off, size, file_size);
    return 0;
}

/* The header fields of one table (QI_HT_*), as QEMU checks them at open
 * (validate_table_offset): size limits, cluster alignment, no overflow.
 * Not the end of the file: QEMU reads a table past it as zeros. */
static int check_l1_fields(const qi_header *h, const qi_geom *g, const char *path,
                           qi_err *err)
{
    /* L1 must cover the virtual size: ceil(size / (cluster_size * l2_entries)) */
    unsigned shift = g->cluster_bits + g->l2_bits;
    uint64_t need = (h->size >> shift) + ((h->size & ((1ull << shift) - 1)) != 0);
    if (h->l1_size > QI_MAX_L1_ENTRIES)
        return corrupt(err, path, HDR, 36, "l1_size %" PRIu32 " is above the limit "
                       "of 4194304 entries (32 MiB)", h->l1_size);
    if (h->l1_size < need)
        return corrupt(err, path, HDR, 36, "L1 table is too small: l1_size %" PRIu32
                       " cannot map the virtual size", h->l1_size);
    /* the offset is checked even for an empty table, as QEMU does */
    return qi_format_check_table(g, h->l1_table_offset, (uint64_t)h->l1_size * 8, true,
                                 UINT64_MAX, path, "L1 table", h->l1_table_offset, err);
}

static int check_reftable_fields(const qi_header *h, const qi_geom *g, const char *path,
                                 qi_err *err)
{
    if (!h->refcount_table_clusters)
        return corrupt(err, path, HDR, 56, "refcount_table_clusters is 0: the image has no refcount table");
    if ((uint64_t)h->refcount_table_clusters << g->cluster_bits > QI_MAX_REFTABLE_BYTES)
        return corrupt(err, path, HDR, 56, "refcount table of %" PRIu32 " clusters "
                       "is above the 8 MiB limit", h->refcount_table_clusters);
    return qi_format_check_table(g, h->refcount_table_offset,
                                 (uint64_t)h->refcount_table_clusters << g->cluster_bits,
                                 true, UINT64_MAX, path, "refcount table",
                                 h->refcount_table_offset, err);
}

static int check_snaptable_fields(const qi_header *h, const qi_geom *g, const char *path,
                                  qi_err *err)
{
    if (h->nb_snapshots > QI_MAX_SNAPSHOTS)
        return corrupt(err, path, HDR, 60, "nb_snapshots %" PRIu32 " is above the "
                       "limit of 65536", h->nb_snapshots);
    /* the offset is checked even with no snapshots, as QEMU does */
    return qi_format_check_table(g, h->snapshots_offset, h->nb_snapshots * 40ull, true,
                                 UINT64_MAX, path, "snapshot table", h->snapshots_offset,
                                 err);
}

int qi_format_check_header_table(const qi_header *h, int which, const char *path,
                                 qi_err *err)
{
    qi_geom g;
    qi_format_geom(h, &g);
    switch (which) {
    case QI_HT_L1: return check_l1_fields(h, &g, path, err);
    case QI_HT_REFTABLE: return check_reftable_fields(h, &g, path, err);
    default: return check_snaptable_fields(h, &g, path, err);
    }
}

int qi_format_parse_header_base(const uint8_t *buf, size_t len, uint64_t file_size,
                                const char *path, qi_header *h, qi_err *err)
{
    int rc;
    if (len < 72)
        return corrupt(err, path, HDR, 0, "file is %" PRIu64 " bytes, too short "
                       "for a qcow2 header (72 bytes)", file_size);
    read_fields(buf, len, h);
    if (h->magic != QI_MAGIC)
        return corrupt(err, path, HDR, 0, "bad magic %#" PRIx32 ": not a qcow2 "
                       "image", h->magic);
    if (h->version != 2 && h->version != 3)
        return qi_err_set(err, path, QI_ENOTSUP, HDR, 4,
                          "unsupported qcow2 version %" PRIu32, h->version);
    if (h->cluster_bits < QI_MIN_CLUSTER_BITS || h->cluster_bits > QI_MAX_CLUSTER_BITS)
        return corrupt(err, path, HDR, 20, "cluster_bits %" PRIu32 " is outside "
                       "9..21 (512 B .. 2 MiB clusters)", h->cluster_bits);
    if (h->version == 3 && (rc = check_v3(h, len, file_size, path, err)) < 0)
        return rc;
    if (h->size > (uint64_t)INT64_MAX)
        return corrupt(err, path, HDR, 24, "virtual size %#" PRIx64 " is above "
                       "2^63", h->size);
    if (h->crypt_method > 2)
        return corrupt(err, path, HDR, 32, "unknown encryption method %" PRIu32,
                       h->crypt_method);
    return 0;
}

int qi_format_check_header_field(const qi_header *h, int which, uint64_t file_size,
                                 const char *path, qi_err *err)
{
    switch (which) {
    case QI_HF_REFCOUNT_ORDER: return check_refcount_order(h, path, err);
    case QI_HF_COMPRESSION: return check_compression(h, path, err);
    default: return check_backing_name(h, 1u << h->cluster_bits, file_size, path, err);
    }
}

int qi_format_parse_header(const uint8_t *buf, size_t len, uint64_t file_size,
                           const char *path, qi_header *h, qi_err *err)
{
    int rc;
    if ((rc = qi_format_parse_header_base(buf, len, file_size, path, h, err)) < 0)
        return rc;
    for (int f = QI_HF_REFCOUNT_ORDER; f <= QI_HF_BACKING_NAME; f++)
        if ((rc = qi_format_check_header_field(h, f, file_size, path, err)) < 0)
            return rc;
    for (int t = QI_HT_L1; t <= QI_HT_SNAPSHOTS; t++)
        if ((rc = qi_format_check_header_table(h, t, path, err)) < 0)
            return rc;
    return 0;
}

void qi_format_geom(const qi_header *h, qi_geom *g)
{
    memset(g, 0, sizeof *g);
    g->cluster_bits = h->cluster_bits;
    g->cluster_size = 1u << h->cluster_bits;
    g->extl2 = (h->incompatible_features & QI_INCOMPAT_EXTL2) != 0;
    g->l2_entry_size = g->extl2 ? 16 : 8;
    g->l2_bits = h->cluster_bits - (g->extl2 ? 4 : 3);
    g->l2_entries = 1u << g->l2_bits;
    g->subcluster_size = g->extl2 ? g->cluster_size / 32 : g->cluster_size;
    g->csize_shift = 62 - (h->cluster_bits - 8);
    g->csize_mask = (1ull << (h->cluster_bits - 8)) - 1;
    g->coffset_mask = (1ull << g->csize_shift) - 1;
    g->refcount_order = h->refcount_order;
    g->refblock_entries = (uint64_t)g->cluster_size * 8 >> h->refcount_order;
}

int qi_format_walk_extensions(const uint8_t *buf, size_t len, uint64_t start,
                              uint64_t end, const char *path, qi_ext_cb cb,
                              void *payload, qi_err *err)
{
    uint64_t off = start;
    if (end > len)
        end = len;
    while (off + 8 <= end) {
        uint32_t type = qi_be32(buf + off), elen = qi_be32(buf + off + 4);
        int rc;
        if (type == QI_EXT_END)
            return 0;
        if (elen > end - off - 8)
            return qi_err_set(err, path, QI_ECORRUPT, "header extension", off,
                              "extension %#x of %" PRIu32 " bytes runs past the "
                              "end of the extension area (%#" PRIx64 ")", type,
                              elen, end);
        if ((rc = cb(payload, type, elen, off + 8, buf + off + 8)) < 0)
            return rc;
        off += 8 + (((uint64_t)elen + 7) & ~7ull);
    }
    return 0;
}

void qi_format_decode_l1(uint64_t raw, qi_l1_entry *out)
{
    out->raw = raw;
    out->l2_offset = raw & QI_L1E_OFFSET_MASK;
    out->copied = (raw & QI_OFLAG_COPIED) != 0;
    out->reserved = raw & QI_L1E_RESERVED_MASK;
}

void qi_format_decode_l2(const qi_geom *g, bool data_file, uint64_t raw,
                         uint64_t bitmap, qi_l2_entry *out)
{
    memset(out, 0, sizeof *out);
    out->raw = raw;
    out->bitmap = g->extl2 ? bitmap : 0;
    out->copied = (raw & QI_OFLAG_COPIED) != 0;
    if (raw & QI_OFLAG_COMPRESSED) {
        out->type = QI_CLUSTER_COMPRESSED;
        out->host_offset = raw & g->coffset_mask;
        out->csectors = (uint32_t)((raw >> g->csize_shift) & g->csize_mask) + 1;
        out->csize = (uint64_t)out->csectors * 512 - (out->host_offset & 511);
        /* offset bits at or above 2^56 are reserved (x > 56 for small
         * clusters). COPIED is not: QEMU reads such a cluster (only its
         * check calls the bit a corruption, compressed_copied). */
        out->reserved = out->host_offset & ~(QI_MAX_OFFSET - 1);
        return;
    }
    out->host_offset = raw & QI_L2E_OFFSET_MASK;
    out->reserved = raw & (g->extl2 ? (QI_L2E_STD_RESERVED | 1) : QI_L2E_STD_RESERVED);
    if (!g->extl2 && (raw & QI_OFLAG_ZERO))
        out->type = out->host_offset ? QI_CLUSTER_ZERO_ALLOC : QI_CLUSTER_ZERO_PLAIN;
    else if (!out->host_offset && !(data_file && out->copied))
        out->type = QI_CLUSTER_UNALLOCATED;
    else
        out->type = QI_CLUSTER_NORMAL;
}

uint64_t qi_format_refcount_get(const uint8_t *block, uint32_t order,
                                uint64_t index)
{
    switch (order) {
    case 0: case 1: case 2: {
        unsigned w = 1u << order;
        uint64_t bit = index * w;
        return (block[bit / 8] >> (bit % 8)) & ((1u << w) - 1);
    }
    case 3: return block[index];
    case 4: return qi_be16(block + 2 * index);
    case 5: return qi_be32(block + 4 * index);
    default: return qi_be64(block + 8 * index);
    }
}

uint64_t qi_format_refcount_max(uint32_t order)
{
    return order >= 6 ? UINT64_MAX : (1ull << (1u << order)) - 1;
}

void qi_format_refcount_set(uint8_t *block, uint32_t order, uint64_t index,
                            uint64_t value)
{
    assert(order <= 6 && value <= qi_format_refcount_max(order));
    switch (order) {
    case 0: case 1: case 2: {
        unsigned w = 1u << order;
        uint64_t bit = index * w;
        uint8_t mask = (uint8_t)(((1u << w) - 1) << (bit % 8));
        block[bit / 8] = (uint8_t)((block[bit / 8] & ~mask) | (value << (bit % 8)));
        return;
    }
    case 3: block[index] = (uint8_t)value; return;
    case 4: qi_put_be16(block + 2 * index, (uint16_t)value); return;
    case 5: qi_put_be32(block + 4 * index, (uint32_t)value); return;
    default: qi_put_be64(block + 8 * index, value); return;
    }
}

uint64_t qi_format_encode_l1(uint64_t l2_off, bool copied)
{
    assert(!(l2_off & ~QI_L1E_OFFSET_MASK));
    return l2_off | (copied ? QI_OFLAG_COPIED : 0);
}

uint64_t qi_format_encode_l2(uint64_t host, bool copied, bool zero)
{
    assert(!(host & ~QI_L2E_OFFSET_MASK));
    return host | (copied ? QI_OFLAG_COPIED : 0) | (zero ? QI_OFLAG_ZERO : 0);
}

uint64_t qi_format_encode_reftable(uint64_t block_off)
{
    assert(!(block_off & ~QI_L1E_OFFSET_MASK));
    return block_off;
}

uint64_t qi_format_encode_compressed(const qi_geom *g, uint64_t host, uint64_t len)
{
    uint64_t extra = (host + len - 1) / 512 - host / 512;
    assert(len >= 1 && host <= g->coffset_mask && host < QI_MAX_OFFSET &&
           extra <= g->csize_mask);
    return QI_OFLAG_COMPRESSED | host | (extra << g->csize_shift);
}

int qi_format_parse_snapshot(const uint8_t *buf, size_t avail, uint64_t off,
                             uint32_t version, const char *path,
                             qi_snapshot *s, size_t *consumed, qi_err *err)
{
    const char *st = "snapshot table";
    (void)version;
    memset(s, 0, sizeof *s);
    if (avail < 40)
        return corrupt(err, path, st, off, "entry runs past the end of the "
                       "snapshot table (%" PRIu64 " bytes left)", avail);
    s->entry_offset = off;
    s->l1_table_offset = qi_be64(buf);
    s->l1_size = qi_be32(buf + 8);
    uint32_t id_len = qi_be16(buf + 12), name_len = qi_be16(buf + 14);
    s->date_sec = qi_be32(buf + 16);
    s->date_nsec = qi_be32(buf + 20);
    s->vm_clock_nsec = qi_be64(buf + 24);
    s->vm_state_size32 = qi_be32(buf + 32);
    s->vm_state_size = s->vm_state_size32;
    s->extra_data_size = qi_be32(buf + 36);
    if (s->extra_data_size > QI_MAX_SNAPSHOT_EXTRA)
        return corrupt(err, path, st, off + 36, "extra data size %" PRIu32
                       " is above 1024", s->extra_data_size);
    uint64_t total = 40ull + s->extra_data_size + id_len + name_len;
    if (total > avail)
        return corrupt(err, path, st, off, "entry of %" PRIu64 " bytes runs past "
                       "the end of the file or table", total);
    const uint8_t *x = buf + 40;
    if (s->extra_data_size >= 8)
        s->vm_state_size = qi_be64(x);
    if (s->extra_data_size >= 16) {
        s->has_disk_size = true;
        s->disk_size = qi_be64(x + 8);
    }
    if (s->extra_data_size >= 24) {
        s->has_icount = true;
        s->icount = qi_be64(x + 16);
    }
    if (s->l1_size > QI_MAX_L1_ENTRIES)
        return corrupt(err, path, st, off + 8, "snapshot L1 size %" PRIu32
                       " is above the limit of 4194304 entries", s->l1_size);
    s->id = qi_mem_strndup(x + s->extra_data_size, id_len);
    s->name = qi_mem_strndup(x + s->extra_data_size + id_len, name_len);
    if (!s->id || !s->name)
        return qi_err_set(err, path, QI_ENOMEM, st, off, "out of memory");
    total = (total + 7) & ~7ull;
    s->entry_size = total;
    *consumed = total;
    return 0;
}

int qi_format_parse_bitmap(const uint8_t *buf, size_t avail, uint64_t off,
                           const char *path, qi_bitmap *b, size_t *consumed,
                           qi_err *err)
{
    const char *st = "bitmap directory";
    memset(b, 0, sizeof *b);
    if (avail < 24)
        return corrupt(err, path, st, off, "entry runs past the end of the directory");
    b->entry_offset = off;
    b->table_offset = qi_be64(buf);
    b->table_size = qi_be32(buf + 8);
    b->flags = qi_be32(buf + 12);
    b->type = buf[16];
    b->granularity_bits = buf[17];
    uint32_t name_size = qi_be16(buf + 18), extra = qi_be32(buf + 20);
    if (b->flags & ~7u)
        return corrupt(err, path, st, off + 12, "reserved flag bits set (%#" PRIx32 ")",
                       b->flags);
    if (b->granularity_bits < 9 || b->granularity_bits > 31)
        return corrupt(err, path, st, off + 17, "granularity bits %u outside 9..31",
                       b->granularity_bits);
    if (!name_size || name_size > 1023)
        return corrupt(err, path, st, off + 18, "name length %" PRIu32 " outside 1..1023",
                       name_size);
    uint64_t total = 24ull + extra + name_size;
    if (total > avail)
        return corrupt(err, path, st, off, "entry of %" PRIu64 " bytes runs past the "
                       "end of the directory", total);
    if (!(b->name = qi_mem_strndup(buf + 24 + extra, name_size)))
        return qi_err_set(err, path, QI_ENOMEM, st, off, "out of memory");
    *consumed = (size_t)((total + 7) & ~7ull);
    return 0;
}

const char *qi_format_builtin_feature(int type, int bit)
{
    static const char *const incompat[] = { "dirty bit", "corrupt bit",
        "external data file", "compression type", "extended L2 entries" };
    if (type == 0 && bit >= 0 && bit < 5)
        return incompat[bit];
    if (type == 1 && bit == 0)
        return "lazy refcounts";
    if (type == 2 && bit == 0)
        return "bitmaps";
    if (type == 2 && bit == 1)
        return "raw external data";
    return NULL;
}

void qi_format_put_entry(uint8_t *table, uint64_t index, uint64_t value)
{
    qi_put_be64(table + 8 * index, value);
}

uint64_t qi_format_get_entry(const uint8_t *table, uint64_t index)
{
    return qi_be64(table + 8 * index);
}

/* One header extension: type, length, data padded to 8 bytes. */
static size_t put_ext(uint8_t *p, size_t room, uint32_t type, const void *data,
                      size_t len)
{
    size_t need = 8 + ((len + 7) & ~(size_t)7);
    if (need > room)
        return 0;
    qi_put_be32(p, type);
    qi_put_be32(p + 4, (uint32_t)len);
    if (len)
        memcpy(p + 8, data, len);
    return need;
}

/* QEMU's feature name table, in its order. */
static size_t put_feature_table(uint8_t *p, size_t room)
{
    static const struct { uint8_t type, bit; } f[] = {
        { 0, 0 }, { 0, 1 }, { 0, 2 }, { 0, 3 }, { 0, 4 }, { 1, 0 }, { 2, 0 }, { 2, 1 },
    };
    uint8_t table[sizeof f / sizeof f[0] * 48];
    memset(table, 0, sizeof table);
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
        const char *name = qi_format_builtin_feature(f[i].type, f[i].bit);
        table[48 * i] = f[i].type;
        table[48 * i + 1] = f[i].bit;
        memcpy(table + 48 * i + 2, name, strlen(name));
    }
    return put_ext(p, room, 0x6803f857u, table, sizeof table);
}

static void put_fields(uint8_t *b, const qi_header *h)
{
    qi_put_be32(b, QI_MAGIC);
    qi_put_be32(b + 4, h->version);
    qi_put_be64(b + 8, h->backing_file_offset);
    qi_put_be32(b + 16, h->backing_file_size);
    qi_put_be32(b + 20, h->cluster_bits);
    qi_put_be64(b + 24, h->size);
    qi_put_be32(b + 32, h->crypt_method);
    qi_put_be32(b + 36, h->l1_size);
    qi_put_be64(b + 40, h->l1_table_offset);
    qi_put_be64(b + 48, h->refcount_table_offset);
    qi_put_be32(b + 56, h->refcount_table_clusters);
    qi_put_be32(b + 60, h->nb_snapshots);
    qi_put_be64(b + 64, h->snapshots_offset);
    if (h->version < 3)
        return;
    qi_put_be64(b + 72, h->incompatible_features);
    qi_put_be64(b + 80, h->compatible_features);
    qi_put_be64(b + 88, h->autoclear_features);
    qi_put_be32(b + 96, h->refcount_order);
    qi_put_be32(b + 100, h->header_length);
    b[104] = h->compression_type;
}

int qi_format_build_header(uint8_t *buf, size_t len, qi_header *h,
                           const qi_header_names *names)
{
    size_t pos = h->version < 3 ? 72 : 112, n;
    memset(buf, 0, len);
    if (h->version >= 3)
        h->header_length = 112;
    if (names->backing_fmt) {
        if (!(n = put_ext(buf + pos, len - pos, 0xe2792acau, names->backing_fmt,
                          strlen(names->backing_fmt))))
            return -1;
        pos += n;
    }
    if (names->data_file) {
        if (!(n = put_ext(buf + pos, len - pos, 0x44415441u, names->data_file,
                          strlen(names->data_file))))
            return -1;
        pos += n;
    }
    if (h->version >= 3 && len > 4096) {   /* QEMU leaves it out up to 4 KiB */
        if (!(n = put_feature_table(buf + pos, len - pos)))
            return -1;
        pos += n;
    }
    if (!(n = put_ext(buf + pos, len - pos, 0, NULL, 0)))
        return -1;
    pos += n;
    h->backing_file_offset = 0;
    h->backing_file_size = 0;
    if (names->backing_file) {
        size_t bl = strlen(names->backing_file);
        if (bl > len - pos)
            return -1;
        memcpy(buf + pos, names->backing_file, bl);
        h->backing_file_offset = pos;
        h->backing_file_size = (uint32_t)bl;
    }
    put_fields(buf, h);
    return 0;
}
