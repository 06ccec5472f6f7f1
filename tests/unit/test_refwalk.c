/* Tests of refwalk.c: on images that `qemu-img check` calls clean, counting
 * every reference the walk reports (per cluster its range touches) must give
 * exactly the refcount stored on disk for every cluster of the file. The
 * oracle is QEMU's own refcounts, confirmed by qemu-img check. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "refwalk.h"
#include "tap.h"

static char dir[] = "/tmp/qi-refwalk-XXXXXX";

static int sh(const char *cmd)
{
    char full[4096];
    snprintf(full, sizeof full, "cd %s && (%s) >/dev/null 2>&1", dir, cmd);
    return system(full);
}

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

typedef struct owners { int n, l2; } owners;
static int on_owner(void *p, const qi_ref *r)
{
    owners *o = p;
    o->n++;
    o->l2 += r->kind == QI_REF_L2_ENTRY;
    return 0;
}

static void check_image(const char *name, const char *make)
{
    char path[600], cmd[2048];
    qi_image *img;
    qi_err err;
    snprintf(cmd, sizeof cmd, "%s && qemu-img check %s", make, name);
    if (sh(cmd) != 0) {
        tap_ok(0, "%s: made and clean by qemu-img check", name);
        return;
    }
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (qi_image_open(&img, path, NULL, &err) < 0) {
        tap_ok(0, "%s: open: %s", name, err.message);
        return;
    }
    counts c = { 0 };
    c.bits = img->g.cluster_bits;
    c.clusters = (img->file->size + img->g.cluster_size - 1) >> c.bits;
    c.n = calloc(c.clusters, sizeof *c.n);
    int rc = qi_refwalk(img, count, &c);
    uint64_t bad = 0, first_bad = UINT64_MAX;
    for (uint64_t k = 0; k < c.clusters; k++) {
        uint64_t r;
        if (qi_meta_refcount(img, k << c.bits, &r) < 0 || r != c.n[k]) {
            if (first_bad == UINT64_MAX)
                first_bad = k;
            bad++;
        }
    }
    tap_ok(rc == 0 && bad == 0 && c.past_end == 0,
           "%s: references counted per cluster equal QEMU's refcounts "
           "(%" PRIu64 " clusters, %" PRIu64 " differ, first %" PRIu64 ")",
           name, c.clusters, bad, first_bad);
    free(c.n);
    qi_image_close(img);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    check_image("plain.qcow2", "qemu-img create -f qcow2 plain.qcow2 64M && "
                "qemu-io -c 'write -P 1 0 1M' -c 'write -z 2M 64k' -c 'write -c -P 2 4M 256k' "
                "-c 'write -P 3 40M 64k' plain.qcow2");
    check_image("snaps.qcow2", "qemu-img create -f qcow2 -o cluster_size=4096 "
                "snaps.qcow2 16M && qemu-io -c 'write -P 1 0 2M' -c 'write -c -P 5 8M 64k' "
                "snaps.qcow2 && qemu-img snapshot -c a snaps.qcow2 && "
                "qemu-io -c 'write -P 2 1M 2M' snaps.qcow2 && qemu-img snapshot -c b snaps.qcow2 && "
                "qemu-io -c 'write -P 3 0 4k' -c 'discard 8M 64k' snaps.qcow2");
    check_image("small.qcow2", "qemu-img create -f qcow2 -o cluster_size=512 small.qcow2 4M && "
                "qemu-io -c 'write -P 1 0 100k' -c 'write -c -P 2 1M 8k' small.qcow2 && "
                "qemu-img snapshot -c s small.qcow2 && qemu-io -c 'write -P 4 0 1k' small.qcow2");
    check_image("rb4.qcow2", "qemu-img create -f qcow2 -o refcount_bits=4,cluster_size=4k "
                "rb4.qcow2 8M && qemu-io -c 'write -P 1 0 1M' -c 'write -c -P 2 2M 64k' rb4.qcow2");
    check_image("df.qcow2", "qemu-img create -f qcow2 -o data_file=df.data df.qcow2 8M && "
                "qemu-io -c 'write -P 1 0 1M' df.qcow2");
    check_image("ext.qcow2", "qemu-img create -f qcow2 -o extended_l2=on ext.qcow2 8M && "
                "qemu-io -c 'write -P 1 4k 4k' -c 'write -z 1M 8k' ext.qcow2 && "
                "qemu-img bitmap --add ext.qcow2 bm");

    /* owners of a data cluster shared by the active image and a snapshot */
    char path[600];
    qi_image *img;
    qi_err err;
    snprintf(path, sizeof path, "%s/snaps.qcow2", dir);
    if (qi_image_open(&img, path, NULL, &err) == 0) {
        uint64_t l2, rc = 0;
        uint32_t idx;
        qi_l2_entry e;
        owners o = { 0 };
        /* guest 512 KiB: written before snapshot a and never again, so the
         * active image and both snapshots reach it */
        qi_meta_l2_lookup(img, 512u << 10, &l2, &idx, &e);
        qi_meta_refcount(img, e.host_offset, &rc);
        qi_meta_owners(img, e.host_offset, on_owner, &o);
        tap_ok(rc == 3 && o.l2 == 3 && o.n == 3,
               "cluster at guest 512 KiB: refcount %" PRIu64 ", %d L2-entry owners", rc, o.l2);
        qi_image_close(img);
    } else {
        tap_ok(0, "open snaps.qcow2: %s", err.message);
    }
    if (!getenv("KEEP")) {
        char cmd[600];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd) != 0)
            tap_diag("cleanup failed");
    }
    return tap_done();
}
