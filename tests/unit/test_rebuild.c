/* Tests of rebuild.c (qi_rebuild_refcounts) on images made by qemu-img and
 * qemu-io, damaged by poking refcounts at exact offsets. The offsets come
 * from testutil.c's raw parse of the file (refcount table, refcount
 * blocks, L1/L2 tables as the spec lays them out), not from qinspect, and
 * qemu-img check is the oracle before (it must see the damage: exit 2) and
 * after (exit 0: no error, no leak). The counts of changed refcounts are
 * the pokes made here:
 * - v3 and v2 (compat 0.10, no dirty bit to set): one data cluster's
 *   refcount 1 -> 0 (raised back) and one 1 -> 3 (lowered), the header's
 *   dirty bit clear afterwards; a second rebuild changes nothing;
 * - a read-only image is refused (QI_ERDONLY), file unchanged;
 * - a cluster with two references under 1-bit refcounts cannot be counted:
 *   QI_ECORRUPT naming the cluster, file unchanged. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "rebuild.h"
#include "tap.h"
#include "testutil.h"

/* Host offset of guest cluster G's data (first L2 table only). */
static uint64_t data_cluster(const tu_raw *r, uint64_t g)
{
    uint64_t l2 = tu_raw_be(r, r->l1_off, 8) & 0x00fffffffffffe00ull;
    return l2 ? tu_raw_be(r, l2 + 8 * g, 8) & 0x00fffffffffffe00ull : 0;
}

/* File offset of the refcount entry of host cluster K (16-bit refcounts). */
static uint64_t refcount_site(const tu_raw *r, uint64_t k)
{
    uint64_t per = tu_raw_per_block(r);
    uint64_t block = tu_raw_be(r, r->rt_off + 8 * (k / per), 8) & ~511ull;
    return block + 2 * (k % per);
}

static int check_exit(const char *name)
{
    int st = tu_sh("qemu-img check -q %s >/dev/null 2>&1", name);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void damaged_case(const char *name, const char *opts)
{
    tu_raw r = { 0 };
    qi_image *img = NULL;
    qi_err err;
    qi_open_opts o = QI_OPEN_OPTS_INIT;
    qi_rebuild_stats st, st2;
    tu_sh("qemu-img create -q -f qcow2 -o %s %s 8M && qemu-io -f qcow2 -c 'write -P 7 0 1M' %s",
          opts, name, name);
    if (tu_raw_load(&r, name) < 0 || r.order != 4) {
        tap_ok(0, "%s: setup: a 16-bit refcount image", name);
        free(r.b);
        return;
    }
    uint64_t a = data_cluster(&r, 2) >> r.cbits, b = data_cluster(&r, 5) >> r.cbits;
    tu_file_put_be(name, refcount_site(&r, a), 0, 2);
    tu_file_put_be(name, refcount_site(&r, b), 3, 2);
    tap_ok(a && b && check_exit(name) == 2, "%s: setup: qemu-img check sees the pokes "
           "(clusters %" PRIu64 " and %" PRIu64 ")", name, a, b);
    o.flags = QI_OPEN_RW;
    if (qi_image_open(&img, tu_path(name), &o, &err) < 0) {
        tap_ok(0, "%s: open: %s", name, err.message);
        free(r.b);
        return;
    }
    int rc = qi_rebuild_refcounts(img, &st);
    tap_ok(rc == 0 && st.raised == 1 && st.lowered == 1 && st.blocks == 0,
           "%s: one refcount raised, one lowered (rc %d, %" PRIu64 ", %" PRIu64 ")",
           name, rc, st.raised, st.lowered);
    rc = qi_rebuild_refcounts(img, &st2);
    tap_ok(rc == 0 && st2.raised == 0 && st2.lowered == 0, "%s: a second rebuild changes "
           "nothing (rc %d, %" PRIu64 ", %" PRIu64 ")", name, rc, st2.raised, st2.lowered);
    qi_image_close(img);
    tap_ok(check_exit(name) == 0, "%s: qemu-img check is clean afterwards", name);
    tap_ok(r.b[4 + 3] == 2 || (tu_file_be(name, 72, 8) & 1) == 0,
           "%s: the dirty bit is clear", name);
    free(r.b);
}

static void refused_cases(void)
{
    tu_raw r = { 0 };
    qi_image *img = NULL;
    qi_err err;
    qi_open_opts o = QI_OPEN_OPTS_INIT;
    size_t n1, n2;
    uint8_t *before, *after;
    int rc;
    /* read-only */
    tu_sh("qemu-img create -q -f qcow2 ro.qcow2 8M && qemu-io -f qcow2 -c 'write 0 64k' ro.qcow2");
    before = tu_slurp("ro.qcow2", &n1);
    if (qi_image_open(&img, tu_path("ro.qcow2"), NULL, &err) == 0) {
        rc = qi_rebuild_refcounts(img, NULL);
        tap_ok(rc == QI_ERDONLY, "read-only image: QI_ERDONLY (%d)", rc);
        qi_image_close(img);
    } else {
        tap_ok(0, "ro.qcow2: open: %s", err.message);
    }
    after = tu_slurp("ro.qcow2", &n2);
    tap_ok(before && after && n1 == n2 && !memcmp(before, after, n1), "read-only: unchanged");
    free(before);
    free(after);

    /* two references to one cluster under 1-bit refcounts */
    tu_sh("qemu-img create -q -f qcow2 -o refcount_bits=1 w1.qcow2 8M && "
          "qemu-io -f qcow2 -c 'write -P 1 0 128k' w1.qcow2");
    if (tu_raw_load(&r, "w1.qcow2") < 0) {
        tap_ok(0, "w1.qcow2: setup");
        return;
    }
    uint64_t l2 = tu_raw_be(&r, r.l1_off, 8) & 0x00fffffffffffe00ull;
    uint64_t d = data_cluster(&r, 0);
    tu_file_put_be("w1.qcow2", l2 + 8 * 1, (1ull << 63) | d, 8);
    free(r.b);
    before = tu_slurp("w1.qcow2", &n1);
    o.flags = QI_OPEN_RW;
    if (qi_image_open(&img, tu_path("w1.qcow2"), &o, &err) == 0) {
        char want[64];
        snprintf(want, sizeof want, "cluster %#" PRIx64 " has 2 references", d);
        rc = qi_rebuild_refcounts(img, NULL);
        const qi_err *e = qi_image_error(img);
        tap_ok(rc == QI_ECORRUPT && strstr(e->message, want) &&
               strstr(e->message, "1-bit"), "two references, 1-bit refcounts: refused "
               "(%d: %s)", rc, e->message);
        qi_image_close(img);
    } else {
        tap_ok(0, "w1.qcow2: open: %s", err.message);
    }
    after = tu_slurp("w1.qcow2", &n2);
    tap_ok(before && after && n1 == n2 && !memcmp(before, after, n1),
           "1-bit overflow: the file is unchanged");
    free(before);
    free(after);
}

int main(void)
{
    if (tu_scratch("rebuild") < 0)
        return 1;
    damaged_case("v3.qcow2", "compat=1.1");
    damaged_case("v2.qcow2", "compat=0.10");
    refused_cases();
    tu_cleanup();
    return tap_done();
}
