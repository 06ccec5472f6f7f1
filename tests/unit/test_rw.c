/* Tests of guest reads (rw.c over cluster.c's runs) on images made by
 * qemu-img and qemu-io. Expected bytes come from `qemu-img convert -O raw`,
 * expected refusals from qemu-io, and the layouts are checked with
 * `qemu-img map` and the raw L1/L2 bytes, never with qinspect's own output.
 *
 * - Guest clusters written in reverse order sit in descending host clusters:
 *   a run may only grow over clusters that are contiguous on the host.
 * - An extended-L2 entry with no host offset but allocated subclusters is
 *   corruption (qcow2 spec), reported for that L2 entry. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "tap.h"

static char dir[] = "/tmp/qi-rw-XXXXXX";

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[4096], full[4200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "cd %s && (%s) >/dev/null 2>&1", dir, cmd);
    return system(full);
}

static char *path(const char *name)
{
    static char buf[4][600];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static uint8_t *slurp(const char *name, size_t *len)
{
    FILE *f = fopen(path(name), "rb");
    *len = 0;
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *len = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc(*len ? *len : 1);
    if (fread(p, 1, *len, f) != *len)
        *len = 0;
    fclose(f);
    return p;
}

static uint64_t file_be64(const char *name, uint64_t off)
{
    uint8_t b[8] = { 0 };
    uint64_t v = 0;
    FILE *f = fopen(path(name), "rb");
    if (f && fseek(f, (long)off, SEEK_SET) == 0 && fread(b, 1, 8, f) == 8)
        for (int i = 0; i < 8; i++)
            v = v << 8 | b[i];
    if (f)
        fclose(f);
    return v;
}

static int file_put_be64(const char *name, uint64_t off, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (56 - 8 * i));
    FILE *f = fopen(path(name), "r+b");
    int ok = f && fseek(f, (long)off, SEEK_SET) == 0 && fwrite(b, 1, 8, f) == 8;
    if (f && fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

/* Read NAME whole, in one call and in pieces of PIECE bytes, and compare
 * with REF (qemu-img convert -O raw). */
static void reads_as(const char *name, const char *ref, size_t piece)
{
    qi_image *img;
    qi_err err;
    size_t len;
    uint8_t *want = slurp(ref, &len);
    if (!want || !len || qi_image_open(&img, path(name), NULL, &err) < 0) {
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
    FILE *f = fopen(path("cmds"), "w");
    if (!f) {
        tap_ok(0, "%s: qemu-io commands written", name);
        return;
    }
    for (unsigned i = ncl; i-- > 0;)
        fprintf(f, "write -P %u %u %u\n", 1 + i % 250, i * cs, cs);
    fprintf(f, "write -P 251 %u %u\n", (ncl + 2) * cs, 4 * cs);
    fclose(f);
    snprintf(ref, sizeof ref, "%s.raw", name);
    int made = sh("qemu-img create -f qcow2 -o cluster_size=%u%s %s %u && qemu-io %s <cmds "
                  "&& qemu-img check %s && qemu-img convert -O raw %s %s && "
                  "qemu-img map --output=json %s >%s.map", cs, opts, name,
                  (ncl + 8) * cs, name, name, name, ref, name, name) == 0;
    /* descending host offsets: one map record per written cluster */
    char cmd[300];
    snprintf(cmd, sizeof cmd, "[ $(grep -c '\"data\": true' %s.map) -ge %u ]", name, ncl);
    tap_ok(made && sh("%s", cmd) == 0,
           "%s: made, clean, and qemu-img map shows %u separate data runs", name, ncl);
    reads_as(name, ref, cs + cs / 2 + 512);
}

/* Extended L2: entry 1 of the first L2 table gets host offset 0 and an
 * allocation bitmap with subcluster 0 set. */
static void unallocated_with_allocated_subclusters(void)
{
    const char *name = "sc.qcow2";
    if (sh("qemu-img create -f qcow2 -o extended_l2=on,cluster_size=64k %s 1M && "
           "qemu-io -c 'write -P 7 0 64k' -c 'write -P 8 128k 64k' %s", name, name) != 0) {
        tap_ok(0, "%s: made", name);
        return;
    }
    uint64_t l1 = file_be64(name, 40);
    uint64_t l2 = file_be64(name, l1) & 0x00fffffffffffe00ull;
    uint64_t entry = l2 + 16 * 1;
    int poked = l2 && file_be64(name, entry) == 0 && file_be64(name, entry + 8) == 0 &&
                file_put_be64(name, entry + 8, 1) == 0;
    tap_ok(poked, "%s: L2 entry at %#" PRIx64 " made unallocated with subcluster 0 "
           "allocated", name, entry);
    tap_ok(sh("qemu-io -r -c 'read 64k 64k' %s", name) != 0 &&
           sh("qemu-io -r -c 'read -P 7 0 64k' -c 'read -P 8 128k 64k' %s", name) == 0,
           "%s: QEMU refuses to read that cluster, reads its neighbours", name);
    qi_image *img;
    qi_err err;
    if (qi_image_open(&img, path(name), NULL, &err) < 0) {
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

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    reverse_order("rev64k.qcow2", 65536, "", 12);
    reverse_order("rev-ext.qcow2", 65536, ",extended_l2=on", 12);
    /* 512 B clusters: 64 entries per L2 table, so runs also meet table ends */
    reverse_order("rev512.qcow2", 512, "", 150);
    unallocated_with_allocated_subclusters();
    if (!getenv("KEEP"))
        sh("rm -rf %s", dir);
    return tap_done();
}
