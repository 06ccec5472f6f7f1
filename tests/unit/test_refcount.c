/* Unit tests for refcount.c (layer 2): qi_refcount_get on images made by
 * qemu-img and qemu-io, linked with nothing above layer 2. The image state
 * is built here from the file (header parsed by format.c, a refcount block
 * cache), the way image.c would, without image.c.
 *
 * The oracle is independent of qinspect: every refcount is parsed from the
 * raw file bytes by testutil.c (refcount table, refcount blocks of any
 * width 1..64 bits, as the qcow2 spec lays them out), on images that
 * `qemu-img check` calls clean. The damaged images are damaged by hand and
 * `qemu-img check` must name the same damage:
 * - every cluster of the file, for every refcount width, equals the raw
 *   refcount (the index inside a block is cluster_index mod the entries per
 *   block);
 * - the last cluster the refcount table covers, and the first one past it
 *   (its table index equals the number of table entries), read as 0, as in
 *   QEMU's qcow2_get_refcount; the image has a refcount table of two
 *   clusters, every entry of it used up to the end of the file;
 * - a table entry with reserved bits set, and one pointing at an unaligned
 *   refcount block, are corruption of that table entry. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "refcount.h"
#include "tap.h"
#include "testutil.h"

/* ---- the layer-2 state of an image, without image.c ---- */

static int open_l2(qi_image *img, const char *name)
{
    uint8_t first[112] = { 0 };
    qi_err err;
    memset(img, 0, sizeof *img);
    img->path = tu_path(name);
    if (qi_bio_open(&img->file, img->path, false, QI_LOCK_NONE, &err) < 0) {
        tap_diag("%s: %s", name, err.message);
        return -1;
    }
    size_t want = img->file->size < sizeof first ? (size_t)img->file->size : sizeof first;
    if (qi_bio_pread(img->file, first, want, 0, &img->err, "header") < 0 ||
        qi_format_parse_header(first, want, img->file->size, img->path, &img->hdr,
                               &img->err) < 0) {
        tap_diag("%s: %s", name, img->err.message);
        return -1;
    }
    qi_format_geom(&img->hdr, &img->g);
    img->size = img->hdr.size;
    img->data = img->file;
    if (qi_cache_new(&img->rb_cache, img->file, img->g.cluster_size, 8,
                     "refcount block") < 0)
        return -1;
    return 0;
}

static void close_l2(qi_image *img)
{
    free(img->reftable);
    qi_cache_free(img->rb_cache);
    qi_bio_close(img->file);
}

/* Every cluster of NAME (and a few past the end of the file) through
 * qi_refcount_get against the raw refcounts; then the last cluster the
 * table covers and the first it does not. */
static void same_refcounts(const char *name, const char *make, unsigned min_shared)
{
    tu_raw r;
    qi_image img;
    if (tu_sh("%s && qemu-img check %s", make, name) != 0 || tu_raw_load(&r, name) < 0) {
        tap_ok(0, "%s: made and clean by qemu-img check", name);
        return;
    }
    if (open_l2(&img, name) < 0) {
        tap_ok(0, "%s: opened at layer 2", name);
        free(r.b);
        return;
    }
    uint64_t nclusters = (r.len >> r.cbits) + 64, bad = 0, shared = 0;
    int rc = 0;
    for (uint64_t k = 0; k < nclusters && rc == 0; k++) {
        uint64_t got = UINT64_MAX, want = tu_raw_refcount(&r, k);
        rc = qi_refcount_get(&img, k, &got);
        shared += want > 1;
        if (rc == 0 && got != want && !bad++)
            tap_diag("%s: cluster %" PRIu64 ": refcount %" PRIu64 ", raw %" PRIu64, name,
                     k, got, want);
    }
    if (rc < 0)
        tap_diag("%s: %s", name, img.err.message);
    tap_ok(rc == 0 && !bad && shared >= min_shared,
           "%s: %u-bit refcounts of %" PRIu64 " clusters equal the raw ones (%" PRIu64
           " differ, %" PRIu64 " above 1)", name, 1u << r.order, nclusters, bad, shared);

    /* the end of the refcount table: its last cluster and one past it */
    uint64_t entries = r.rt_len / 8, end = entries * tu_raw_per_block(&r);
    uint64_t last = UINT64_MAX, past = UINT64_MAX, far = UINT64_MAX;
    int rc1 = qi_refcount_get(&img, end - 1, &last);
    int rc2 = qi_refcount_get(&img, end, &past);
    int rc3 = qi_refcount_get(&img, UINT64_MAX >> r.cbits, &far);
    tap_ok(rc1 == 0 && last == tu_raw_refcount(&r, end - 1) && rc2 == 0 && past == 0 &&
           rc3 == 0 && far == 0,
           "%s: cluster %" PRIu64 " (last of %" PRIu64 " table entries) reads %" PRIu64
           ", cluster %" PRIu64 " (table index %" PRIu64 ") and the last cluster of "
           "2^64 read 0 (rc %d %d %d)", name, end - 1, entries, last, end,
           end / tu_raw_per_block(&r), rc1, rc2, rc3);
    close_l2(&img);
    free(r.b);
}

/* A table whose every entry is used: 512-byte clusters, 64-bit refcounts
 * (64 clusters per block, 64 entries per table cluster), and a file that
 * needs a second table cluster. */
static void full_table(void)
{
    tu_raw r;
    const char *name = "full.qcow2";
    same_refcounts(name, "qemu-img create -f qcow2 -o cluster_size=512,refcount_bits=64 "
                   "full.qcow2 4M && qemu-io -c 'write -P 1 0 3M' full.qcow2 && "
                   "qemu-img snapshot -c s full.qcow2", 1);
    uint64_t used = 0;
    if (tu_raw_load(&r, name) == 0)
        for (uint64_t i = 0; i < r.rt_len / 8; i++)
            used += tu_raw_be(&r, r.rt_off + 8 * i, 8) != 0;
    tap_ok(r.rt_len == 1024 && used >= 64 && r.len > (64ull * 64) << 9,
           "%s: refcount table of %" PRIu64 " bytes, %" PRIu64 " entries used, "
           "file of %" PRIu64 " bytes", name, r.rt_len, used, r.len);
    free(r.b);
}

/* Copy good.qcow2 to NAME with refcount table entry 0 replaced by
 * entry0 | SET + ADD; qemu-img check must print EXPECT. Then the refcount
 * of cluster 0 is corruption of that table entry. */
static void damaged_entry(const char *name, uint64_t set, uint64_t add,
                          const char *expect, const char *what)
{
    tu_raw r = { 0 };
    qi_image img;
    if (tu_sh("cp good.qcow2 %s", name) != 0 || tu_raw_load(&r, name) < 0) {
        tap_ok(0, "%s: copied", name);
        free(r.b);
        return;
    }
    uint64_t e = tu_raw_be(&r, r.rt_off, 8);
    free(r.b);
    if (!e || tu_file_put_be(name, r.rt_off, (e | set) + add, 8) < 0) {
        tap_ok(0, "%s: refcount table entry 0 (%#" PRIx64 ") changed", name, e);
        return;
    }
    tap_ok(tu_sh("qemu-img check %s >%s.out 2>&1; [ $? -ne 0 ] && grep -q '%s' %s.out", name,
                 name, expect, name) == 0,
           "%s: qemu-img check reports '%s'", name, expect);
    if (open_l2(&img, name) < 0) {
        tap_ok(0, "%s: opened at layer 2", name);
        return;
    }
    uint64_t got = 0;
    int rc = qi_refcount_get(&img, 0, &got);
    tap_ok(rc == QI_ECORRUPT && !strcmp(img.err.structure, "refcount table") &&
           img.err.offset == r.rt_off && strstr(img.err.message, what),
           "%s: the refcount of cluster 0 is corruption of table entry 0 at %#" PRIx64
           ": rc %d, %s at %#" PRIx64 ": %s", name, r.rt_off, rc, img.err.structure,
           img.err.offset, img.err.message);
    close_l2(&img);
}

static void damaged_table(void)
{
    tu_raw r;
    qi_image img;
    uint64_t got = 0;
    if (tu_sh("qemu-img create -f qcow2 good.qcow2 1M && "
              "qemu-io -c 'write -P 1 0 64k' good.qcow2") != 0 ||
        tu_raw_load(&r, "good.qcow2") < 0 || open_l2(&img, "good.qcow2") < 0) {
        tap_ok(0, "good.qcow2: made and opened");
        free(r.b);
        return;
    }
    int rc = qi_refcount_get(&img, 0, &got);
    tap_ok(rc == 0 && got == 1 && tu_raw_refcount(&r, 0) == 1,
           "good.qcow2: the header cluster has refcount 1 (rc %d, %" PRIu64 ")", rc, got);
    close_l2(&img);
    free(r.b);
    /* bit 0 and bit 8: reserved (qcow2 spec, refcount table entry) */
    damaged_entry("res0.qcow2", 1, 0, "refcount table entry 0 has reserved bits set",
                  "reserved bits");
    damaged_entry("res8.qcow2", 0x100, 0, "refcount table entry 0 has reserved bits set",
                  "reserved bits");
    /* a block 512 bytes into a 64 KiB cluster: offset bits only */
    damaged_entry("unaligned.qcow2", 0, 0x200,
                  "refcount block 0 is not cluster aligned", "not cluster aligned");
}

int main(void)
{
    if (tu_scratch("refcount") < 0)
        return 1;
    static const unsigned widths[] = { 1, 2, 4, 8, 16, 32, 64 };
    for (unsigned i = 0; i < sizeof widths / sizeof widths[0]; i++) {
        char name[32], make[800];
        unsigned w = widths[i];
        snprintf(name, sizeof name, "rb%u.qcow2", w);
        /* snapshots raise refcounts to 3 where the width allows it */
        snprintf(make, sizeof make, "qemu-img create -f qcow2 -o refcount_bits=%u,"
                 "cluster_size=4k %s 8M && qemu-io -c 'write -P 1 0 1M' -c "
                 "'write -P 2 3M 256k' %s", w, name, name);
        if (w >= 2)
            snprintf(make + strlen(make), sizeof make - strlen(make),
                     " && qemu-img snapshot -c a %s && qemu-io -c 'write -P 3 512k 64k' %s"
                     " && qemu-img snapshot -c b %s", name, name, name);
        same_refcounts(name, make, w >= 2 ? 100 : 0);
    }
    full_table();
    damaged_table();
    tu_cleanup();
    return tap_done();
}
