/* Tests of refwalk.c: on images that `qemu-img check` calls clean, counting
 * every reference the walk reports (per cluster its range touches) must give
 * exactly the refcount stored on disk for every cluster of the file.
 *
 * The oracle is independent of qinspect: the refcounts are parsed from the
 * raw file bytes by testutil.c (header fields, refcount table, refcount
 * blocks of any width 1..64 bits, as the qcow2 spec lays them out), and
 * qemu-img check confirms they are QEMU's. The oracle itself is tested: a
 * refcount raised by hand in the file is a leak to qemu-img check and one
 * differing cluster here. The L1/L2 tables are parsed here the same way to
 * prove that each image holds what it is meant to exercise (zero-allocated
 * clusters, compressed clusters at unaligned byte offsets). The compressed
 * images are also read back whole through qi_image_read and compared with
 * qemu-img convert.
 * Also: a refcount table of two clusters, and a persistent bitmap with data
 * clusters and an "all ones" table entry (which references nothing). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "refwalk.h"
#include "tap.h"
#include "testutil.h"

/* What the active L2 tables hold, counted from the raw bytes. */
typedef struct l2stats {
    unsigned zero_alloc;    /* standard L2: zero flag with a host offset */
    unsigned compressed, unaligned;
    unsigned spill;         /* compressed spans whose sector rounding ends at a
                             * cluster end although they start mid-sector */
    uint64_t first_compressed; /* host cluster of the first compressed one */
    unsigned decoded_wrong;     /* with IMG: qinspect's decoding differs */
} l2stats;

/* Count from the raw bytes; when IMG is given, also compare qinspect's
 * decoding of each compressed descriptor (offset, sectors, span size)
 * with the values computed here. */
static void raw_l2_scan(const tu_raw *r, l2stats *s, qi_image *img)
{
    uint64_t cs = 1ull << r->cbits, esz = r->extl2 ? 16 : 8;
    unsigned x = 62 - (r->cbits - 8);
    memset(s, 0, sizeof *s);
    for (uint64_t i = 0; i < r->l1_size; i++) {
        uint64_t l2 = tu_raw_be(r, r->l1_off + 8 * i, 8) & 0x00fffffffffffe00ull;
        for (uint64_t j = 0; l2 && j < cs / esz; j++) {
            uint64_t e = tu_raw_be(r, l2 + esz * j, 8);
            uint64_t host = e & 0x00fffffffffffe00ull;
            if (e & (1ull << 62)) {
                uint64_t off = e & ((1ull << x) - 1);
                uint64_t sectors = ((e >> x) & ((1ull << (r->cbits - 8)) - 1)) + 1;
                uint64_t end = (off & ~511ull) + sectors * 512; /* QEMU's span */
                if (!s->compressed++)
                    s->first_compressed = off & ~(cs - 1);
                qi_l2_entry d;
                if (img && (qi_meta_l2_get(img, l2, (uint32_t)j, &d) < 0 ||
                            d.type != QI_CLUSTER_COMPRESSED || d.host_offset != off ||
                            d.csectors != sectors || d.csize != end - off) &&
                    !s->decoded_wrong++)
                    tap_diag("L2 entry %#" PRIx64 " at %#" PRIx64 ": offset %#" PRIx64
                             " sectors %" PRIu64 " size %" PRIu64 ", qinspect: %#" PRIx64
                             " %" PRIu32 " %" PRIu64, e, l2 + esz * j, off, sectors,
                             end - off, d.host_offset, d.csectors, d.csize);
                s->unaligned += (off & 511) != 0;
                /* a span that forgot `offset % 512` would reach past END
                 * into the next cluster */
                s->spill += (off & 511) && ((end - 1) >> r->cbits) !=
                            ((end + (off & 511) - 1) >> r->cbits);
            } else if (!r->extl2 && (e & 1) && host) {
                s->zero_alloc++;
            }
        }
    }
}

/* ---- the walk under test ---- */

typedef struct counts {
    uint64_t *n;
    uint64_t clusters;
    unsigned bits;
    uint64_t past_end;
} counts;

static int count(void *p, const qi_ref *r)
{
    counts *c = p;
    if (!r->length)
        return 0;
    for (uint64_t k = r->host_offset >> c->bits;
         k <= (r->host_offset + r->length - 1) >> c->bits; k++) {
        if (k < c->clusters)
            c->n[k]++;
        else
            c->past_end++;
    }
    return 0;
}

/* Count the walk's references per cluster of NAME and compare with the
 * raw refcounts. Returns the number of clusters that differ (or -1 when
 * the image cannot be read or walked); *first is the first of them. */
static int64_t compare(const char *name, uint64_t *first, uint64_t *nclusters)
{
    qi_image *img;
    qi_err err;
    tu_raw r;
    int64_t bad = 0;
    *first = UINT64_MAX;
    if (tu_raw_load(&r, name) < 0) {
        tap_diag("%s: header not parsed", name);
        free(r.b);
        return -1;
    }
    if (qi_image_open(&img, tu_path(name), NULL, &err) < 0) {
        tap_diag("%s: open: %s", name, err.message);
        free(r.b);
        return -1;
    }
    counts c = { 0 };
    c.bits = r.cbits;
    c.clusters = (r.len + (1ull << r.cbits) - 1) >> r.cbits;
    c.n = calloc(c.clusters ? c.clusters : 1, sizeof *c.n);
    if (qi_refwalk(img, count, &c) < 0) {
        tap_diag("%s: walk: %s", name, qi_image_error(img)->message);
        bad = -1;
    }
    for (uint64_t k = 0; bad >= 0 && k < c.clusters; k++)
        if (tu_raw_refcount(&r, k) != c.n[k]) {
            if (*first == UINT64_MAX)
                tap_diag("%s: cluster %" PRIu64 ": refcount %" PRIu64 ", %" PRIu64
                         " references", name, k, tu_raw_refcount(&r, k), c.n[k]);
            if (*first == UINT64_MAX)
                *first = k;
            bad++;
        }
    if (bad >= 0)
        bad += (int64_t)c.past_end;
    *nclusters = c.clusters;
    free(c.n);
    free(r.b);
    qi_image_close(img);
    return bad;
}

static void check_image(const char *name, const char *make)
{
    uint64_t first, n;
    if (tu_sh("%s && qemu-img check %s", make, name) != 0) {
        tap_ok(0, "%s: made and clean by qemu-img check", name);
        return;
    }
    int64_t bad = compare(name, &first, &n);
    tap_ok(bad == 0, "%s: references counted per cluster equal the refcounts in the file "
           "(%" PRIu64 " clusters, %" PRId64 " differ)", name, n, bad);
}

/* The oracle can fail: raise the refcount of the host cluster holding a
 * compressed cluster (no COPIED flag to contradict) in the file. qemu-img
 * check must call it one leak, and the comparison must find exactly that
 * cluster. */
static void oracle_sees_a_changed_refcount(void)
{
    tu_raw r = { 0 };
    l2stats s;
    uint64_t first, n;
    if (tu_sh("cp plain.qcow2 leak.qcow2") != 0 || tu_raw_load(&r, "leak.qcow2") < 0 ||
        r.order != 4) {
        tap_ok(0, "leak.qcow2: copy of plain.qcow2 with 16-bit refcounts");
        free(r.b);
        return;
    }
    raw_l2_scan(&r, &s, NULL);
    uint64_t k = s.first_compressed >> r.cbits, per_block = (8ull << r.cbits) / 16;
    uint64_t blk = tu_raw_be(&r, r.rt_off + 8 * (k / per_block), 8) & ~511ull;
    uint64_t at = blk + 2 * (k % per_block);
    uint64_t old = tu_raw_refcount(&r, k);
    free(r.b);
    if (!k || !blk || tu_file_put_be("leak.qcow2", at, old + 1, 2) < 0) {
        tap_ok(0, "leak.qcow2: refcount of cluster %" PRIu64 " raised", k);
        return;
    }
    /* exit status 3: leaks only, no corruption */
    tap_ok(tu_sh("qemu-img check leak.qcow2 >leak.out; [ $? -eq 3 ] && "
                 "grep -q '^1 leaked clusters were found' leak.out") == 0,
           "leak.qcow2: qemu-img check reports the raised refcount as one leak");
    int64_t bad = compare("leak.qcow2", &first, &n);
    tap_ok(bad == 1 && first == k, "leak.qcow2: the comparison finds exactly cluster %"
           PRIu64 " (%" PRId64 " differ, first %" PRIu64 ")", k, bad, first);
}

static void zero_allocated(void)
{
    tu_raw r;
    l2stats s = { 0 };
    /* write -z without -u over allocated clusters keeps their host
     * offsets (ZERO_ALLOC): each is still a reference */
    check_image("zalloc.qcow2", "qemu-img create -f qcow2 zalloc.qcow2 16M && "
                "qemu-io -c 'write -P 1 0 2M' -c 'write -z 64k 192k' -c 'write -z 1M 1M' "
                "zalloc.qcow2 && qemu-img snapshot -c s zalloc.qcow2 && "
                "qemu-io -c 'write -P 2 4M 256k' -c 'write -z 4M 128k' zalloc.qcow2");
    if (tu_raw_load(&r, "zalloc.qcow2") == 0)
        raw_l2_scan(&r, &s, NULL);
    free(r.b);
    tap_ok(s.zero_alloc >= 16, "zalloc.qcow2: %u L2 entries are zero with a host offset "
           "(ZERO_ALLOC)", s.zero_alloc);
    tap_ok(tu_sh("qemu-img map --output=json zalloc.qcow2 | "
                 "grep -q '\"zero\": true, \"data\": false, \"offset\"'") == 0,
           "zalloc.qcow2: qemu-img map shows zero ranges with an offset");
}

/* A raw file of NCL clusters of size CS whose clusters compress to many
 * different sizes (and a few not at all, a few are zero). */
static int make_source(const char *name, unsigned ncl, unsigned cs)
{
    FILE *f = fopen(tu_path(name), "wb");
    uint8_t *p = malloc(cs);
    uint32_t x = 2463534242u;
    if (!f || !p) {
        if (f)
            fclose(f);
        free(p);
        return -1;
    }
    for (unsigned k = 0; k < ncl; k++) {
        unsigned alphabet = 1 + (k * 7) % 61, kind = k % 9;
        for (unsigned i = 0; i < cs; i++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            p[i] = kind == 8 ? 0 : kind == 7 ? (uint8_t)x
                 : i < cs / (1 + kind) ? (uint8_t)('a' + x % alphabet) : (uint8_t)k;
        }
        if (fwrite(p, 1, cs, f) != cs)
            break;
    }
    free(p);
    return fclose(f);
}

/* Read NAME whole, in one call and in pieces of PIECE bytes, and compare
 * with REF (qemu-img convert -O raw). */
static void reads_as(const char *name, const char *ref, size_t piece)
{
    qi_image *img;
    qi_err err;
    tu_raw r;
    if (tu_raw_read(&r, ref) < 0 || !r.len) {
        tap_ok(0, "%s: reference %s", name, ref);
        free(r.b);
        return;
    }
    if (qi_image_open(&img, tu_path(name), NULL, &err) < 0) {
        tap_ok(0, "%s: open: %s", name, err.message);
        free(r.b);
        return;
    }
    size_t len = (size_t)r.len, i = 0;
    uint8_t *got = calloc(1, len);
    int rc = qi_image_read(img, got, 0, len);
    if (rc < 0)
        tap_diag("%s: %s", name, qi_image_error(img)->message);
    while (i < len && got[i] == r.b[i])
        i++;
    if (i < len)
        tap_diag("%s: first difference at byte %zu: 0x%02x, expected 0x%02x", name, i,
                 got[i], r.b[i]);
    tap_ok(rc == 0 && i == len, "%s: one read of %zu bytes equals qemu-img convert",
           name, len);
    memset(got, 0, len);
    rc = 0;
    for (size_t off = 0; off < len && rc == 0; off += piece)
        rc = qi_image_read(img, got + off, off, len - off < piece ? len - off : piece);
    tap_ok(rc == 0 && !memcmp(got, r.b, len), "%s: reads of %zu bytes equal qemu-img "
           "convert", name, piece);
    free(got);
    free(r.b);
    qi_image_close(img);
}

/* Compressed clusters packed at byte offsets by qemu-img convert -c. */
static void compressed(const char *type, unsigned cs)
{
    char name[64], src[80], make[512];
    tu_raw r;
    l2stats s = { 0 };
    snprintf(src, sizeof src, "src%u.raw", cs);
    snprintf(name, sizeof name, "c-%s-%u.qcow2", type, cs);
    if (make_source(src, 96, cs) < 0) {
        tap_ok(0, "%s: source data written", src);
        return;
    }
    snprintf(make, sizeof make, "qemu-img convert -c -f raw -O qcow2 -o cluster_size=%u,"
             "compression_type=%s %s %s", cs, type, src, name);
    check_image(name, make);
    int ctype = -1;
    qi_image *img = NULL;
    qi_err err;
    if (tu_raw_load(&r, name) == 0 && qi_image_open(&img, tu_path(name), NULL, &err) == 0) {
        raw_l2_scan(&r, &s, img);
        ctype = tu_raw_be(&r, 100, 4) > 104 ? (int)tu_raw_be(&r, 104, 1) : 0;
    }
    qi_image_close(img);
    free(r.b);
    tap_ok(ctype == (strcmp(type, "zstd") ? 0 : 1), "%s: compression type %d in the header",
           name, ctype);
    /* with 64 KiB clusters a span rarely ends in a cluster's last sector;
     * the smaller sizes make sure a wrong span size reaches a neighbour */
    tap_ok(s.compressed >= 50 && s.unaligned > s.compressed / 2 &&
           (cs == 65536 || s.spill >= 1),
           "%s: %u compressed clusters, %u at offsets not 512-aligned, %u spans end at "
           "a cluster end from mid-sector", name, s.compressed, s.unaligned, s.spill);
    tap_ok(s.compressed && !s.decoded_wrong, "%s: qinspect decodes every compressed "
           "descriptor as the raw bytes say (%u differ)", name, s.decoded_wrong);
    snprintf(src, sizeof src, "%s.raw", name);
    if (tu_sh("qemu-img convert -O raw %s %s", name, src) != 0)
        tap_ok(0, "%s: qemu-img convert -O raw", name);
    else
        reads_as(name, src, cs + cs / 2 + 512);
}

/* A refcount table of two clusters: 512-byte clusters with 64-bit
 * refcounts (64 per block, 64 blocks per table cluster) and more than the
 * 2 MiB one table cluster covers. Both table clusters are references. */
static void two_cluster_reftable(void)
{
    tu_raw r;
    check_image("rt2.qcow2", "qemu-img create -f qcow2 -o cluster_size=512,refcount_bits=64 "
                "rt2.qcow2 4M && qemu-io -c 'write -P 1 0 3M' rt2.qcow2 && "
                "qemu-img snapshot -c s rt2.qcow2");
    int ok = tu_raw_load(&r, "rt2.qcow2") == 0;
    tap_ok(ok && r.rt_len == 1024 && tu_raw_be(&r, r.rt_off + 512, 8) != 0,
           "rt2.qcow2: refcount table of %" PRIu64 " bytes, its second cluster in use",
           ok ? r.rt_len : 0);
    free(r.b);
}

/* A persistent bitmap (granularity 512, 4 KiB clusters: 4 table entries)
 * that qemu-io dirtied in entries 0 and 2. Entry 1 is then set to 1 by
 * hand: "all ones" without a data cluster (qcow2 spec, bitmap table entry:
 * bit 0 with offset 0), which qemu-img check accepts and which references
 * nothing. */
static void bitmap_all_ones(void)
{
    const char *name = "bm.qcow2";
    tu_raw r = { 0 };
    uint64_t table = 0, n = 0, data = 0, ones = 0;
    if (tu_sh("qemu-img create -f qcow2 -o cluster_size=4k %s 64M && "
              "qemu-img bitmap --add -g 512 %s b1 && "
              "qemu-io -c 'write -P 1 0 64k' -c 'write -P 2 40M 64k' %s", name, name,
              name) != 0 ||
        tu_raw_read(&r, name) < 0) {
        tap_ok(0, "%s: made", name);
        free(r.b);
        return;
    }
    /* header extensions from header_length on, 8-byte aligned */
    for (uint64_t off = tu_raw_be(&r, 100, 4); off + 8 <= 4096 && tu_raw_be(&r, off, 4);
         off += 8 + ((tu_raw_be(&r, off + 4, 4) + 7) & ~7ull))
        if (tu_raw_be(&r, off, 4) == 0x23852875) {
            uint64_t bdir = tu_raw_be(&r, off + 8 + 16, 8);
            table = tu_raw_be(&r, bdir, 8);
            n = tu_raw_be(&r, bdir + 8, 4);
        }
    for (uint64_t i = 0; i < n; i++)
        data += (tu_raw_be(&r, table + 8 * i, 8) & 0x00fffffffffffe00ull) != 0;
    free(r.b);
    ones = table && tu_file_put_be(name, table + 8, 1, 8) == 0;
    tap_ok(n == 4 && data == 2 && ones, "%s: bitmap table of %" PRIu64 " entries, %" PRIu64
           " with data clusters, entry 1 set to all ones", name, n, data);
    check_image(name, "true");
}

/* The snapshot table's extent is the sum of its entries' on-disk sizes,
 * whatever the id and name hold: qemu-img makes a snapshot named
 * "snapshot" (id "1"), then the id's one byte is poked to NUL. A walk that
 * measured the entry with strlen() would end it 8 bytes early (the padding
 * to 8 bytes no longer covers the lost byte). Expected sizes come from the
 * raw bytes (the entry's id and name lengths and extra data size). */
typedef struct snaptab { uint64_t off, len; int n; } snaptab;
static int on_snaptab(void *p, const qi_ref *r)
{
    snaptab *t = p;
    if (r->kind == QI_REF_SNAPTABLE) {
        t->off = r->host_offset;
        t->len = r->length;
        t->n++;
    }
    return 0;
}

static void snapshot_id_with_nul(void)
{
    const char *name = "nulid.qcow2";
    tu_raw r = { 0 };
    qi_image *img = NULL;
    qi_err err;
    snaptab t = { 0 };
    if (tu_sh("qemu-img create -f qcow2 %s 1M && qemu-img snapshot -c snapshot %s",
              name, name) != 0 || tu_raw_read(&r, name) < 0 || r.len < 72) {
        tap_ok(0, "%s: made by qemu-img", name);
        free(r.b);
        return;
    }
    uint64_t so = tu_raw_be(&r, 64, 8), extra = tu_raw_be(&r, so + 36, 4);
    uint64_t id_len = tu_raw_be(&r, so + 12, 2), name_len = tu_raw_be(&r, so + 14, 2);
    uint64_t size = (40 + extra + id_len + name_len + 7) & ~7ull;
    uint64_t by_strlen = (40 + extra + name_len + 7) & ~7ull;   /* the id reads "" */
    free(r.b);
    tap_ok(id_len == 1 && size != by_strlen && tu_file_put_be(name, so + 40 + extra, 0, 1) == 0,
           "%s: the snapshot id's byte poked to NUL (entry of %" PRIu64 " bytes, %" PRIu64
           " by strlen)", name, size, by_strlen);
    if (qi_image_open(&img, tu_path(name), NULL, &err) < 0) {
        tap_ok(0, "%s: open: %s", name, err.message);
        return;
    }
    uint32_t n = 0;
    const qi_snapshot *sn = qi_meta_snapshots(img, &n);
    tap_ok(n == 1 && sn[0].entry_size == size, "%s: the entry's recorded size is %" PRIu64
           " (%" PRIu64 ")", name, size, n == 1 ? sn[0].entry_size : 0);
    int rc = qi_refwalk(img, on_snaptab, &t);
    tap_ok(rc == 0 && t.n == 1 && t.off == so && t.len == size, "%s: the snapshot table "
           "reference is %" PRIu64 " bytes at %#" PRIx64 " (walk: %" PRIu64 " at %#" PRIx64 ")",
           name, size, so, t.len, t.off);
    qi_image_close(img);
}

typedef struct owners { int n, l2; } owners;
static int on_owner(void *p, const qi_ref *r)
{
    owners *o = p;
    o->n++;
    o->l2 += r->kind == QI_REF_L2_ENTRY;
    return 0;
}

int main(void)
{
    if (tu_scratch("refwalk") < 0)
        return 1;
    check_image("plain.qcow2", "qemu-img create -f qcow2 plain.qcow2 64M && "
                "qemu-io -c 'write -P 1 0 1M' -c 'write -z 2M 64k' -c 'write -c -P 2 4M 256k' "
                "-c 'write -P 3 40M 64k' plain.qcow2");
    oracle_sees_a_changed_refcount();
    check_image("snaps.qcow2", "qemu-img create -f qcow2 -o cluster_size=4096 "
                "snaps.qcow2 16M && qemu-io -c 'write -P 1 0 2M' -c 'write -c -P 5 8M 64k' "
                "snaps.qcow2 && qemu-img snapshot -c a snaps.qcow2 && "
                "qemu-io -c 'write -P 2 1M 2M' snaps.qcow2 && qemu-img snapshot -c b snaps.qcow2 && "
                "qemu-io -c 'write -P 3 0 4k' -c 'discard 8M 64k' snaps.qcow2");
    check_image("small.qcow2", "qemu-img create -f qcow2 -o cluster_size=512 small.qcow2 4M && "
                "qemu-io -c 'write -P 1 0 100k' -c 'write -c -P 2 1M 8k' small.qcow2 && "
                "qemu-img snapshot -c s small.qcow2 && qemu-io -c 'write -P 4 0 1k' small.qcow2");
    /* every refcount width. Snapshots push counts to 3 from 2 bits on;
     * compressed clusters (many per host cluster) need 8 bits or more
     * before a snapshot, or QEMU's snapshot fails on the overflow */
    static const unsigned widths[] = { 1, 2, 4, 8, 16, 32, 64 };
    for (unsigned i = 0; i < sizeof widths / sizeof widths[0]; i++) {
        char name[32], make[800];
        unsigned w = widths[i];
        snprintf(name, sizeof name, "rb%u.qcow2", w);
        snprintf(make, sizeof make, "qemu-img create -f qcow2 -o refcount_bits=%u,"
                 "cluster_size=4k %s 8M && qemu-io -c 'write -P 1 0 1M' %s %s", w, name,
                 w >= 8 ? "-c 'write -c -P 2 2M 64k'" : "", name);
        if (w >= 2)
            snprintf(make + strlen(make), sizeof make - strlen(make),
                     " && qemu-img snapshot -c a %s && qemu-io -c 'write -P 3 512k 64k' %s"
                     " && qemu-img snapshot -c b %s", name, name, name);
        check_image(name, make);
    }
    check_image("df.qcow2", "qemu-img create -f qcow2 -o data_file=df.data df.qcow2 8M && "
                "qemu-io -c 'write -P 1 0 1M' df.qcow2");
    check_image("ext.qcow2", "qemu-img create -f qcow2 -o extended_l2=on ext.qcow2 8M && "
                "qemu-io -c 'write -P 1 4k 4k' -c 'write -z 1M 8k' ext.qcow2 && "
                "qemu-img bitmap --add ext.qcow2 bm");
    zero_allocated();
    two_cluster_reftable();
    bitmap_all_ones();
    snapshot_id_with_nul();
    static const unsigned sizes[] = { 512, 4096, 65536 };
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        compressed("zlib", sizes[i]);
        compressed("zstd", sizes[i]);
    }

    /* owners of a data cluster shared by the active image and a snapshot */
    qi_image *img;
    qi_err err;
    if (qi_image_open(&img, tu_path("snaps.qcow2"), NULL, &err) == 0) {
        uint64_t l2, rc = 0;
        uint32_t idx;
        qi_l2_entry e;
        owners o = { 0 };
        tu_raw r;
        /* guest 512 KiB: written before snapshot a and never again, so the
         * active image and both snapshots reach it */
        qi_meta_l2_lookup(img, 512u << 10, &l2, &idx, &e);
        if (tu_raw_load(&r, "snaps.qcow2") == 0)
            rc = tu_raw_refcount(&r, e.host_offset >> r.cbits);
        free(r.b);
        qi_meta_owners(img, e.host_offset, on_owner, &o);
        tap_ok(rc == 3 && o.l2 == 3 && o.n == 3,
               "cluster at guest 512 KiB: refcount %" PRIu64 ", %d L2-entry owners", rc, o.l2);
        qi_image_close(img);
    } else {
        tap_ok(0, "open snaps.qcow2: %s", err.message);
    }
    if (tu_cleanup() != 0)
        tap_diag("cleanup failed");
    return tap_done();
}
