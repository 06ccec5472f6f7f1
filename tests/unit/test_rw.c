/* Tests of guest reads (rw.c over cluster.c's runs) on images made by
 * qemu-img and qemu-io. Expected bytes come from `qemu-img convert -O raw`,
 * expected refusals from qemu-io, and the layouts are checked with
 * `qemu-img map` and the raw L1/L2 bytes, never with qinspect's own output.
 *
 * - Guest clusters written in reverse order sit in descending host clusters:
 *   a run may only grow over clusters that are contiguous on the host.
 * - An extended-L2 entry with no host offset but allocated subclusters is
 *   corruption (qcow2 spec), reported for that L2 entry.
 * - Entries damaged by hand that `qemu-img check` calls errors (a subcluster
 *   both allocated and zero, an unaligned zero-allocated cluster, reserved
 *   bits in an L1 entry, a data cluster past the end of the file) make a
 *   read of that guest range fail as corruption there.
 * - Guest clusters that are host-adjacent with a guest hole between them
 *   (one preadv, separate buffers); a backing file shorter than the
 *   overlay (zeros past its end); reads that end past the virtual size
 *   (refused, as qemu-io refuses them). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "tap.h"
#include "testutil.h"

/* Read NAME whole, in one call and in pieces of PIECE bytes, and compare
 * with REF (qemu-img convert -O raw). */
static void reads_as(const char *name, const char *ref, size_t piece)
{
    qi_image *img;
    qi_err err;
    size_t len;
    uint8_t *want = tu_slurp(ref, &len);
    if (!want || !len || qi_image_open(&img, tu_path(name), NULL, &err) < 0) {
        tap_ok(0, "%s: reference and image open (%s)", name, want ? err.message : ref);
        free(want);
        return;
    }
    uint8_t *got = calloc(1, len);
    int rc = qi_image_read(img, got, 0, len);
    if (rc < 0)
        tap_diag("%s: %s", name, qi_image_error(img)->message);
    size_t i = 0;
    while (i < len && got[i] == want[i])
        i++;
    if (i < len)
        tap_diag("%s: first difference at byte %zu: 0x%02x, expected 0x%02x", name, i,
                 got[i], want[i]);
    tap_ok(rc == 0 && i == len, "%s: one read of %zu bytes equals qemu-img convert",
           name, len);
    memset(got, 0, len);
    rc = 0;
    for (size_t off = 0; off < len && rc == 0; off += piece)
        rc = qi_image_read(img, got + off, off, len - off < piece ? len - off : piece);
    tap_ok(rc == 0 && !memcmp(got, want, len),
           "%s: reads of %zu bytes (across cluster ends) equal qemu-img convert", name, piece);
    free(got);
    free(want);
    qi_image_close(img);
}

/* NCL guest clusters written from the last to the first (with a contiguous
 * four-cluster write at the end of the disk, which must stay one run). */
static void reverse_order(const char *name, unsigned cs, const char *opts, unsigned ncl)
{
    char ref[80];
    if (tu_reverse_cmds(cs, ncl) < 0) {
        tap_ok(0, "%s: qemu-io commands written", name);
        return;
    }
    snprintf(ref, sizeof ref, "%s.raw", name);
    int made = tu_sh("qemu-img create -f qcow2 -o cluster_size=%u%s %s %u && qemu-io %s <cmds "
                     "&& qemu-img check %s && qemu-img convert -O raw %s %s && "
                     "qemu-img map --output=json %s >%s.map", cs, opts, name,
                     (ncl + 8) * cs, name, name, name, ref, name, name) == 0;
    /* descending host offsets: one map record per written cluster */
    char cmd[300];
    snprintf(cmd, sizeof cmd, "[ $(grep -c '\"data\": true' %s.map) -ge %u ]", name, ncl);
    tap_ok(made && tu_sh("%s", cmd) == 0,
           "%s: made, clean, and qemu-img map shows %u separate data runs", name, ncl);
    reads_as(name, ref, cs + cs / 2 + 512);
}

/* Extended L2: entry 1 of the first L2 table gets host offset 0 and an
 * allocation bitmap with subcluster 0 set. */
static void unallocated_with_allocated_subclusters(void)
{
    const char *name = "sc.qcow2";
    if (tu_sh("qemu-img create -f qcow2 -o extended_l2=on,cluster_size=64k %s 1M && "
              "qemu-io -c 'write -P 7 0 64k' -c 'write -P 8 128k 64k' %s", name, name) != 0) {
        tap_ok(0, "%s: made", name);
        return;
    }
    uint64_t l1 = tu_file_be(name, 40, 8);
    uint64_t l2 = tu_file_be(name, l1, 8) & 0x00fffffffffffe00ull;
    uint64_t entry = l2 + 16 * 1;
    int poked = l2 && tu_file_be(name, entry, 8) == 0 && tu_file_be(name, entry + 8, 8) == 0 &&
                tu_file_put_be(name, entry + 8, 1, 8) == 0;
    tap_ok(poked, "%s: L2 entry at %#" PRIx64 " made unallocated with subcluster 0 "
           "allocated", name, entry);
    tap_ok(tu_sh("qemu-io -r -c 'read 64k 64k' %s", name) != 0 &&
           tu_sh("qemu-io -r -c 'read -P 7 0 64k' -c 'read -P 8 128k 64k' %s", name) == 0,
           "%s: QEMU refuses to read that cluster, reads its neighbours", name);
    qi_image *img;
    qi_err err;
    if (qi_image_open(&img, tu_path(name), NULL, &err) < 0) {
        tap_ok(0, "%s: open: %s", name, err.message);
        return;
    }
    uint8_t *buf = malloc(192 << 10);
    int rc = qi_image_read(img, buf, 64 << 10, 4096);
    const qi_err *e = qi_image_error(img);
    tap_ok(rc == QI_ECORRUPT && !strcmp(e->structure, "L2 table") && e->offset == entry &&
           strstr(e->message, "allocated subclusters"),
           "reading the cluster fails as corruption of that L2 entry: rc %d, %s at %#"
           PRIx64 ": %s", rc, e->structure, e->offset, e->message);
    rc = qi_image_read(img, buf, 0, 192 << 10);
    tap_ok(rc == QI_ECORRUPT && qi_image_error(img)->offset == entry,
           "a read across it fails the same way");
    rc = qi_image_read(img, buf, 0, 64 << 10) | qi_image_read(img, buf + 65536, 128 << 10,
                                                               64 << 10);
    tap_ok(rc == 0 && buf[0] == 7 && buf[65535] == 7 && buf[65536] == 8,
           "its neighbours still read");
    free(buf);
    qi_image_close(img);
}

/* File offset of entry IDX of the L2 table that L1 entry 0 points at. */
static uint64_t l2_entry_off(const char *name, unsigned idx, unsigned esz)
{
    uint64_t l2 = tu_file_be(name, tu_file_be(name, 40, 8), 8) & 0x00fffffffffffe00ull;
    return l2 ? l2 + (uint64_t)esz * idx : 0;
}

/* One hand-made damage: the 8 bytes at POKE become VAL, `qemu-img check`
 * must then print EXPECT, a read of 4 KiB at guest GOFF must fail as
 * corruption of STRUCTURE at byte WHERE (MSG in the message), and the
 * undamaged guest cluster at OK_OFF must still read as byte OK_BYTE. */
typedef struct damage {
    const char *name, *expect;
    uint64_t poke, val;
    const char *structure, *msg;
    uint64_t where, goff, ok_off;
    int ok_byte;
} damage;

static void damaged_read(const damage *d)
{
    qi_image *img;
    qi_err err;
    tap_ok(d->poke && tu_file_put_be(d->name, d->poke, d->val, 8) == 0 &&
           tu_sh("qemu-img check %s >%s.out 2>&1; [ $? -ne 0 ] && grep -q '%s' %s.out",
                 d->name, d->name, d->expect, d->name) == 0,
           "%s: %#018" PRIx64 " written at %#" PRIx64 ", qemu-img check reports '%s'",
           d->name, d->val, d->poke, d->expect);
    if (qi_image_open(&img, tu_path(d->name), NULL, &err) < 0) {
        tap_ok(0, "%s: open: %s", d->name, err.message);
        return;
    }
    uint8_t buf[4096];
    int rc = qi_image_read(img, buf, d->goff, sizeof buf);
    const qi_err *e = qi_image_error(img);
    tap_ok(rc == QI_ECORRUPT && !strcmp(e->structure, d->structure) &&
           e->offset == d->where && strstr(e->message, d->msg),
           "%s: a read at %#" PRIx64 " fails as corruption of the %s at %#" PRIx64
           ": rc %d, %s at %#" PRIx64 ": %s", d->name, d->goff, d->structure, d->where,
           rc, e->structure, e->offset, e->message);
    memset(buf, 0, sizeof buf);
    rc = qi_image_read(img, buf, d->ok_off, sizeof buf);
    tap_ok(rc == 0 && buf[0] == d->ok_byte && buf[4095] == d->ok_byte,
           "%s: the cluster at %#" PRIx64 " still reads as %d", d->name, d->ok_off,
           d->ok_byte);
    qi_image_close(img);
}

static void damaged_entries(void)
{
    uint64_t at, e;
    /* extended L2: subcluster 0 both allocated and zero (bitmap half of
     * entry 0); QEMU's read fails with "Invalid cluster entry" */
    if (tu_sh("qemu-img create -f qcow2 -o extended_l2=on az.qcow2 1M && qemu-io -c "
              "'write -P 7 0 64k' -c 'write -P 8 64k 64k' az.qcow2") == 0) {
        at = l2_entry_off("az.qcow2", 0, 16);
        damaged_read(&(damage){ "az.qcow2", "corrupted subcluster allocation bitmap",
                                at ? at + 8 : 0, 0x1ffffffffull, "L2 table",
                                "both allocated and zero", at, 0, 65536, 8 });
    } else {
        tap_ok(0, "az.qcow2: made");
    }
    /* a zero cluster that keeps its host cluster (write -z without -u),
     * moved 512 bytes into that cluster; QEMU's read fails too */
    if (tu_sh("qemu-img create -f qcow2 za.qcow2 1M && qemu-io -c 'write -P 7 0 128k' "
              "-c 'write -z 0 64k' za.qcow2") == 0) {
        at = l2_entry_off("za.qcow2", 0, 8);
        e = tu_file_be("za.qcow2", at, 8);
        tap_ok(at && (e & 1) && (e & 0x00fffffffffffe00ull), "za.qcow2: L2 entry 0 "
               "(%#018" PRIx64 ") is zero with a host offset", e);
        damaged_read(&(damage){ "za.qcow2", "Preallocated cluster is not properly aligned",
                                at, e + 0x200, "L2 table", "not cluster aligned", at, 0,
                                65536, 7 });
    } else {
        tap_ok(0, "za.qcow2: made");
    }
    /* L1 entry 0 with reserved bit 1 (qcow2 spec: bits 0-8 are reserved);
     * QEMU's read ignores the bit, its check does not */
    if (tu_sh("qemu-img create -f qcow2 l1r.qcow2 1G && qemu-io -c 'write -P 7 0 64k' "
              "-c 'write -P 9 512M 64k' l1r.qcow2") == 0) {
        at = tu_file_be("l1r.qcow2", 40, 8);
        damaged_read(&(damage){ "l1r.qcow2", "found L1 entry with reserved bits set", at,
                                tu_file_be("l1r.qcow2", at, 8) | 2, "L1 table", "reserved bits",
                                at, 0, 512u << 20, 9 });
    } else {
        tap_ok(0, "l1r.qcow2: made");
    }
    /* L2 entry 0 points at 2 MiB, past the end of a 448 KiB file: QEMU's
     * read gives zeros there, its check calls it an error. The error names
     * the data cluster at its host offset. */
    if (tu_sh("qemu-img create -f qcow2 eof.qcow2 1M && qemu-io -c 'write -P 7 0 128k' "
              "eof.qcow2") == 0) {
        at = l2_entry_off("eof.qcow2", 0, 8);
        damaged_read(&(damage){ "eof.qcow2", "region exceeding the end of the file", at,
                                (1ull << 63) | 0x200000, "data cluster",
                                "past the end of the file", 0x200000, 0, 65536, 7 });
    } else {
        tap_ok(0, "eof.qcow2: made");
    }
}

/* Guest clusters 0 and 2 written one after the other sit in adjacent host
 * clusters with guest cluster 1 (unallocated) between them: one host range,
 * two guest buffers. */
static void guest_hole(const char *name, unsigned cs, const char *opts)
{
    char ref[80];
    snprintf(ref, sizeof ref, "%s.raw", name);
    int made = tu_sh("qemu-img create -f qcow2 -o cluster_size=%u%s %s %u && qemu-io -c "
                     "'write -P 1 0 %u' -c 'write -P 2 %u %u' -c 'write -P 3 %u %u' %s && "
                     "qemu-img convert -O raw %s %s", cs, opts, name, 8 * cs, cs, 2 * cs, cs,
                     4 * cs, 2 * cs, name, name, ref) == 0;
    uint64_t e0 = tu_file_be(name, l2_entry_off(name, 0, *opts ? 16 : 8), 8);
    uint64_t e2 = tu_file_be(name, l2_entry_off(name, 2, *opts ? 16 : 8), 8);
    uint64_t h0 = e0 & 0x00fffffffffffe00ull, h2 = e2 & 0x00fffffffffffe00ull;
    tap_ok(made && h0 && h2 == h0 + cs, "%s: guest clusters 0 and 2 at host %#" PRIx64
           " and %#" PRIx64, name, h0, h2);
    reads_as(name, ref, 3 * cs);
}

/* An overlay of 4 MiB over a raw backing file of 1 MiB + 1536 bytes:
 * past that, unallocated clusters read as zeros. */
static void short_backing(void)
{
    int made = tu_sh("qemu-img create -f raw base.raw 1049088 && qemu-io -f raw -c "
                     "'write -P 0x5a 0 1049088' base.raw && qemu-img create -f qcow2 -b "
                     "base.raw -F raw over.qcow2 4M && qemu-io -c 'write -P 6 512k 64k' "
                     "-c 'write -P 7 2M 64k' over.qcow2 && qemu-img convert -O raw over.qcow2 "
                     "over.raw && [ $(stat -c %%s over.raw) -eq 4194304 ]") == 0;
    tap_ok(made, "over.qcow2: 4 MiB over a backing file of 1049088 bytes");
    reads_as("over.qcow2", "over.raw", 65536 + 1536);
}

/* qemu-io refuses a read that ends past the virtual size, and one that ends
 * at it reads. */
static void past_virtual_size(void)
{
    qi_image *img;
    qi_err err;
    uint8_t buf[1024];
    tap_ok(tu_sh("qemu-img create -f qcow2 size.qcow2 1M && qemu-io -c 'write -P 4 960k 64k' "
                 "size.qcow2") == 0 &&
           tu_sh("qemu-io -r -c 'read 1048064 1024' size.qcow2") != 0 &&
           tu_sh("qemu-io -r -c 'read 1048576 1' size.qcow2") != 0 &&
           tu_sh("qemu-io -r -c 'read -P 4 1048064 512' size.qcow2") == 0,
           "size.qcow2: qemu-io refuses 1024 bytes at 1 MiB - 512 and 1 byte at 1 MiB, "
           "reads 512 bytes at 1 MiB - 512");
    if (qi_image_open(&img, tu_path("size.qcow2"), NULL, &err) < 0) {
        tap_ok(0, "size.qcow2: open: %s", err.message);
        return;
    }
    uint64_t size = qi_image_size(img);
    int rc1 = qi_image_read(img, buf, size - 512, 1024);
    int rc2 = qi_image_read(img, buf, size - 512, 512);
    int rc3 = qi_image_read(img, buf, size, 1);
    tap_ok(size == 1 << 20 && rc1 == QI_EINVAL && rc2 == 0 && buf[0] == 4 &&
           buf[511] == 4 && rc3 == QI_EINVAL, "size.qcow2: 1024 bytes at size - 512 refused (rc %d), 512 read (rc %d), 1 byte "
           "at size refused (rc %d)", rc1, rc2, rc3);
    qi_image_close(img);
}

int main(void)
{
    if (tu_scratch("rw") < 0)
        return 1;
    reverse_order("rev64k.qcow2", 65536, "", 12);
    reverse_order("rev-ext.qcow2", 65536, ",extended_l2=on", 12);
    /* 512 B clusters: 64 entries per L2 table, so runs also meet table ends */
    reverse_order("rev512.qcow2", 512, "", 150);
    unallocated_with_allocated_subclusters();
    damaged_entries();
    guest_hole("hole64k.qcow2", 65536, "");
    guest_hole("hole-ext.qcow2", 65536, ",extended_l2=on");
    guest_hole("hole512.qcow2", 512, "");
    short_backing();
    past_virtual_size();
    tu_cleanup();
    return tap_done();
}
