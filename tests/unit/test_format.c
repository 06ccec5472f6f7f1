/* Unit tests for format.c: expected values come from the qcow2
 * specification and the worked numbers in shared/docs/qcow2-format.md,
 * built by hand here, never from qinspect's own output. */
#include <stdlib.h>
#include <string.h>

#include "endian.h"
#include "format.h"
#include "tap.h"

static void refcount_packing(void)
{
    /* spec: widths below 8 bits are packed LSB first within each byte */
    uint8_t b[8] = { 0xb4, 0x01 }; /* 1011 0100, 0000 0001 */
    tap_is_u64(qi_format_refcount_get(b, 0, 0), 0, "1-bit entry 0");
    tap_is_u64(qi_format_refcount_get(b, 0, 2), 1, "1-bit entry 2");
    tap_is_u64(qi_format_refcount_get(b, 0, 7), 1, "1-bit entry 7");
    tap_is_u64(qi_format_refcount_get(b, 0, 8), 1, "1-bit entry 8 (second byte)");
    tap_is_u64(qi_format_refcount_get(b, 1, 0), 0, "2-bit entry 0 (bits 0-1)");
    tap_is_u64(qi_format_refcount_get(b, 1, 1), 1, "2-bit entry 1 (bits 2-3)");
    tap_is_u64(qi_format_refcount_get(b, 1, 2), 3, "2-bit entry 2 (bits 4-5)");
    tap_is_u64(qi_format_refcount_get(b, 1, 3), 2, "2-bit entry 3 (bits 6-7)");
    tap_is_u64(qi_format_refcount_get(b, 2, 0), 4, "4-bit entry 0 = low nibble");
    tap_is_u64(qi_format_refcount_get(b, 2, 1), 0xb, "4-bit entry 1 = high nibble");
    uint8_t w[16];
    qi_put_be16(w, 0x1234);
    tap_is_u64(qi_format_refcount_get(w, 4, 0), 0x1234, "16-bit big-endian");
    qi_put_be32(w + 4, 0xdeadbeef);
    tap_is_u64(qi_format_refcount_get(w, 5, 1), 0xdeadbeef, "32-bit big-endian");
    qi_put_be64(w + 8, 0x0102030405060708ull);
    tap_is_u64(qi_format_refcount_get(w, 6, 1), 0x0102030405060708ull, "64-bit");
    tap_is_u64(qi_format_refcount_get(w, 3, 1), 0x34, "8-bit entry 1");
}

static qi_geom geom(uint32_t cluster_bits, bool extl2)
{
    qi_header h = { .cluster_bits = cluster_bits, .refcount_order = 4 };
    qi_geom g;
    if (extl2)
        h.incompatible_features = QI_INCOMPAT_EXTL2;
    qi_format_geom(&h, &g);
    return g;
}

static void compressed_descriptor(void)
{
    /* 64 KiB clusters: x = 54, 8-bit sector count (qcow2-format.md 4.3).
     * LAB: data at 0x50155 with 1 additional sector. */
    qi_geom g = geom(16, false);
    qi_l2_entry e;
    uint64_t raw = QI_OFLAG_COMPRESSED | (1ull << 54) | 0x50155;
    qi_format_decode_l2(&g, false, raw, 0, &e);
    tap_is_u64(e.type, QI_CLUSTER_COMPRESSED, "compressed type");
    tap_is_u64(e.host_offset, 0x50155, "compressed byte offset");
    tap_is_u64(e.csectors, 2, "sectors = additional + 1");
    tap_is_u64(e.csize, 2 * 512 - 0x155, "csize = sectors*512 - offset%512");
    /* 2 MiB clusters: x = 49, 13-bit count */
    g = geom(21, false);
    raw = QI_OFLAG_COMPRESSED | (5ull << 49) | 0x1000;
    qi_format_decode_l2(&g, false, raw, 0, &e);
    tap_is_u64(e.csectors, 6, "2 MiB: 13-bit count at bit 49");
    tap_is_u64(e.host_offset, 0x1000, "2 MiB: offset bits 0-48");
    /* 512 B clusters: x = 61; offset bits 56-60 are reserved */
    g = geom(9, false);
    raw = QI_OFLAG_COMPRESSED | (1ull << 61) | (1ull << 57) | 0x200;
    qi_format_decode_l2(&g, false, raw, 0, &e);
    tap_is_u64(e.csectors, 2, "512 B: 1-bit count at bit 61");
    tap_ok(e.reserved != 0, "512 B: offset bit 57 flagged reserved");
    raw = QI_OFLAG_COMPRESSED | QI_OFLAG_COPIED | 0x200;
    qi_format_decode_l2(&g, false, raw, 0, &e);
    tap_ok(e.copied && !e.reserved && e.type == QI_CLUSTER_COMPRESSED && e.host_offset == 0x200,
           "COPIED on a compressed entry: read as QEMU reads it (copied, not reserved)");
}

static void l2_types(void)
{
    qi_geom g = geom(16, false);
    qi_l2_entry e;
    qi_format_decode_l2(&g, false, 0, 0, &e);
    tap_is_u64(e.type, QI_CLUSTER_UNALLOCATED, "0 is unallocated");
    qi_format_decode_l2(&g, false, QI_OFLAG_COPIED | 0x50000, 0, &e);
    tap_is_u64(e.type, QI_CLUSTER_NORMAL, "offset is normal");
    tap_ok(e.copied && e.host_offset == 0x50000, "copied and offset decoded");
    qi_format_decode_l2(&g, false, 1, 0, &e);
    tap_is_u64(e.type, QI_CLUSTER_ZERO_PLAIN, "bit 0 alone is zero");
    qi_format_decode_l2(&g, false, 0x70000 | 1, 0, &e);
    tap_is_u64(e.type, QI_CLUSTER_ZERO_ALLOC, "bit 0 with offset is zero-allocated");
    qi_format_decode_l2(&g, false, 0x70000 | 2, 0, &e);
    tap_is_u64(e.reserved, 2, "bit 1 is reserved");
    qi_format_decode_l2(&g, false, QI_OFLAG_COPIED, 0, &e);
    tap_is_u64(e.type, QI_CLUSTER_UNALLOCATED, "COPIED with offset 0 and no data file");
    qi_format_decode_l2(&g, true, QI_OFLAG_COPIED, 0, &e);
    tap_is_u64(e.type, QI_CLUSTER_NORMAL, "COPIED with offset 0 and a data file");
    g = geom(16, true);
    qi_format_decode_l2(&g, false, 1, 0, &e);
    tap_ok((e.reserved & 1) != 0, "extended L2: bit 0 is reserved");
    qi_format_decode_l2(&g, false, 0x50000, 0xc, &e);
    tap_is_u64(e.bitmap, 0xc, "extended L2 bitmap kept");
    tap_is_u64(g.l2_entries, 4096, "extended L2: 16-byte entries");
}

static void put_header(uint8_t *b, uint32_t version, uint32_t cluster_bits,
                       uint64_t size)
{
    memset(b, 0, 512);
    qi_put_be32(b, QI_MAGIC);
    qi_put_be32(b + 4, version);
    qi_put_be32(b + 20, cluster_bits);
    qi_put_be64(b + 24, size);
    qi_put_be32(b + 36, 1);                         /* l1_size */
    qi_put_be64(b + 40, 3ull << cluster_bits);      /* l1 */
    qi_put_be64(b + 48, 1ull << cluster_bits);      /* reftable */
    qi_put_be32(b + 56, 1);
    qi_put_be32(b + 96, 4);
    qi_put_be32(b + 100, 112);
}

static int parse(const uint8_t *b, size_t len, uint64_t file_size, qi_err *err)
{
    qi_header h;
    return qi_format_parse_header(b, len, file_size, "t.qcow2", &h, err);
}

static void header_checks(void)
{
    uint8_t b[512];
    qi_err err;
    uint64_t fsz = 4 << 16;
    put_header(b, 3, 16, 1 << 20);
    tap_is_u64((uint64_t)parse(b, 112, fsz, &err), 0, "valid v3 header");
    b[0] = 0;
    tap_is_u64((uint64_t)parse(b, 112, fsz, &err), (uint64_t)QI_ECORRUPT, "bad magic");
    put_header(b, 4, 16, 1 << 20);
    tap_is_u64((uint64_t)parse(b, 112, fsz, &err), (uint64_t)QI_ENOTSUP, "version 4");
    put_header(b, 3, 22, 1 << 20);
    tap_ok(parse(b, 112, fsz, &err) == QI_ECORRUPT && err.offset == 20,
           "cluster_bits 22 refused at offset 20");
    put_header(b, 3, 16, 1 << 20);
    qi_put_be32(b + 100, 100);
    tap_ok(parse(b, 112, fsz, &err) == QI_ECORRUPT && err.offset == 100,
           "header_length 100 refused");
    put_header(b, 3, 16, 1ull << 40);
    tap_ok(parse(b, 112, fsz, &err) == QI_ECORRUPT && strstr(err.message, "too small"),
           "1 L1 entry cannot map 1 TiB with 64 KiB clusters");
    put_header(b, 3, 16, 1 << 20);
    qi_put_be32(b + 36, 0x7fffffff);
    tap_ok(parse(b, 112, fsz, &err) == QI_ECORRUPT && err.offset == 36,
           "huge l1_size refused before any allocation");
    put_header(b, 3, 16, 1 << 20);
    qi_put_be64(b + 40, (3ull << 16) + 8);
    tap_ok(parse(b, 112, fsz, &err) == QI_ECORRUPT && !strcmp(err.structure, "L1 table"),
           "unaligned L1 table");
    put_header(b, 3, 16, 1 << 20);
    qi_put_be64(b + 40, 100ull << 16);
    tap_is_u64((uint64_t)parse(b, 112, fsz, &err), 0,
               "L1 table past EOF accepted (QEMU reads it as zeros)");
    put_header(b, 3, 16, 1 << 20);
    qi_put_be32(b + 56, 1000);
    tap_ok(parse(b, 112, fsz, &err) == QI_ECORRUPT && err.offset == 56,
           "refcount table above 8 MiB");
    put_header(b, 3, 16, 1 << 20);
    b[104] = 1;
    tap_is_u64((uint64_t)parse(b, 112, fsz, &err), (uint64_t)QI_ECORRUPT,
               "zstd compression type without the feature bit");
    put_header(b, 3, 16, 1 << 20);
    qi_put_be64(b + 8, 0x20000);
    qi_put_be32(b + 16, 4);
    tap_ok(parse(b, 112, fsz, &err) == QI_ECORRUPT && err.offset == 8,
           "backing file name outside cluster 0");
    put_header(b, 2, 16, 1 << 20);
    qi_header h;
    tap_is_u64((uint64_t)qi_format_parse_header(b, 72, fsz, "t", &h, &err), 0, "v2 header");
    tap_ok(h.refcount_order == 4 && h.header_length == 72, "v2 implies 16-bit refcounts, 72 bytes");
}

/* The boundaries of the header checks, one field at a time from the valid
 * header of put_header (qcow2 spec, "Header"; QEMU's limits). */
static void header_limits(void)
{
    uint8_t b[512];
    qi_err err;
    uint64_t fsz = 4 << 16;
    /* header_length: at least 104 and a multiple of 8 */
    put_header(b, 3, 16, 1 << 20);
    qi_put_be32(b + 100, 108);
    tap_ok(parse(b, 112, fsz, &err) == QI_ECORRUPT && err.offset == 100 &&
           strstr(err.message, "multiple of 8"), "header_length 108 (not a multiple of 8) refused");
    qi_put_be32(b + 100, 104);
    tap_is_u64((uint64_t)parse(b, 112, fsz, &err), 0, "header_length 104 accepted");
    /* refcount_order: at most 6 (64-bit refcounts) */
    put_header(b, 3, 16, 1 << 20);
    qi_put_be32(b + 96, 6);
    tap_is_u64((uint64_t)parse(b, 112, fsz, &err), 0, "refcount_order 6 accepted");
    qi_put_be32(b + 96, 7);
    tap_ok(parse(b, 112, fsz, &err) == QI_ECORRUPT && err.offset == 96,
           "refcount_order 7 refused at offset 96");
    /* extended L2 entries: 32 subclusters of at least 512 bytes, so clusters
     * of at least 16 KiB (cluster_bits 14) */
    put_header(b, 3, 14, 1 << 20);
    qi_put_be64(b + 72, QI_INCOMPAT_EXTL2);
    tap_is_u64((uint64_t)parse(b, 112, 4 << 14, &err), 0,
               "extended L2 with 16 KiB clusters accepted");
    put_header(b, 3, 13, 1 << 20);
    qi_put_be64(b + 72, QI_INCOMPAT_EXTL2);
    tap_ok(parse(b, 112, 4 << 13, &err) == QI_ECORRUPT && err.offset == 20,
           "extended L2 with 8 KiB clusters refused at offset 20");
    /* the L1 table must cover the virtual size: one entry of a 64 KiB
     * cluster image maps 8192 clusters, 512 MiB */
    put_header(b, 3, 16, 512ull << 20);
    tap_is_u64((uint64_t)parse(b, 112, fsz, &err), 0, "1 L1 entry maps 512 MiB");
    put_header(b, 3, 16, (512ull << 20) + 1);
    tap_ok(parse(b, 112, fsz, &err) == QI_ECORRUPT && err.offset == 36 &&
           strstr(err.message, "too small"), "1 L1 entry cannot map 512 MiB + 1 byte");
    qi_put_be32(b + 36, 2);
    tap_is_u64((uint64_t)parse(b, 112, fsz, &err), 0, "2 L1 entries map 512 MiB + 1 byte");
    /* a table may end past the end of the file (QEMU's validate_table_offset
     * checks alignment and overflow only; the missing part reads as zeros),
     * but not past 2^56: the 8-byte L1 table at 0x30000 */
    put_header(b, 3, 16, 1 << 20);
    tap_is_u64((uint64_t)parse(b, 112, (3 << 16) + 8, &err), 0,
               "L1 table ending at the last byte of the file accepted");
    tap_is_u64((uint64_t)parse(b, 112, (3 << 16) + 7, &err), 0,
               "L1 table ending one byte past the end of the file accepted");
    qi_put_be64(b + 40, (1ull << 56) - (1 << 16));
    qi_put_be32(b + 36, 0x2001);
    tap_ok(parse(b, 112, fsz, &err) == QI_ECORRUPT && !strcmp(err.structure, "L1 table") &&
           strstr(err.message, "2^56"), "L1 table reaching past 2^56 refused");
}

/* A snapshot table entry (qcow2 spec, "Snapshot table"): 40 fixed bytes,
 * then EXTRA bytes of extra data (vm_state_size_large, disk size, icount),
 * the ID "1" and the name "snap". */
static size_t put_snapshot(uint8_t *b, uint32_t extra)
{
    memset(b, 0, 128);
    qi_put_be64(b, 0x50000);                    /* L1 table offset */
    qi_put_be32(b + 8, 2);                      /* L1 size */
    qi_put_be16(b + 12, 1);                     /* id length */
    qi_put_be16(b + 14, 4);                     /* name length */
    qi_put_be32(b + 36, extra);
    qi_put_be64(b + 40, 0x1234);                /* vm_state_size_large */
    qi_put_be64(b + 48, 1ull << 30);            /* disk size */
    qi_put_be64(b + 56, 777);                   /* icount */
    memcpy(b + 40 + extra, "1snap", 5);
    return 40 + extra + 5;
}

static void snapshot_extra_data(void)
{
    uint8_t b[128];
    qi_snapshot s;
    qi_err err;
    size_t used = 0, len = put_snapshot(b, 24);
    int rc = qi_format_parse_snapshot(b, len, 0x1000, 3, "t", &s, &used, &err);
    tap_ok(rc == 0 && s.has_disk_size && s.disk_size == 1ull << 30 && s.has_icount &&
           s.icount == 777 && s.vm_state_size == 0x1234 && !strcmp(s.id, "1") &&
           !strcmp(s.name, "snap") && used == 72,
           "24 bytes of extra data: disk size and icount present, entry padded to 72");
    free(s.id);
    free(s.name);
    len = put_snapshot(b, 16);
    rc = qi_format_parse_snapshot(b, len, 0x1000, 3, "t", &s, &used, &err);
    tap_ok(rc == 0 && s.has_disk_size && !s.has_icount && !strcmp(s.name, "snap") &&
           used == 64, "16 bytes of extra data: disk size, no icount");
    free(s.id);
    free(s.name);
}

typedef struct seen { int n; uint32_t types[4]; } seen;
static int on_ext(void *p, uint32_t type, uint32_t len, uint64_t off, const uint8_t *d)
{
    seen *s = p;
    (void)len; (void)off; (void)d;
    if (s->n < 4)
        s->types[s->n] = type;
    s->n++;
    return 0;
}

static void extensions(void)
{
    uint8_t b[512] = { 0 };
    qi_err err;
    seen s = { 0 };
    qi_put_be32(b + 112, QI_EXT_BACKING_FMT);
    qi_put_be32(b + 116, 3);
    memcpy(b + 120, "raw", 3);
    qi_put_be32(b + 128, 0x12345678);  /* unknown, padded to 8 */
    qi_put_be32(b + 132, 9);
    tap_is_u64((uint64_t)qi_format_walk_extensions(b, 512, 112, 512, "t", on_ext, &s, &err),
               0, "extensions walked");
    tap_ok(s.n == 2 && s.types[0] == QI_EXT_BACKING_FMT && s.types[1] == 0x12345678,
           "both extensions seen in order, stop at the end marker");
    qi_put_be32(b + 132, 1000);
    s.n = 0;
    tap_ok(qi_format_walk_extensions(b, 512, 112, 512, "t", on_ext, &s, &err) == QI_ECORRUPT
           && err.offset == 128, "extension running past the area refused at its offset");
}

int main(void)
{
    refcount_packing();
    compressed_descriptor();
    l2_types();
    header_checks();
    header_limits();
    snapshot_extra_data();
    extensions();
    return tap_done();
}
