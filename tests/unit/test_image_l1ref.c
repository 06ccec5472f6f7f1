/* Tests of the L1 table references (cluster.c views, STYLE convention 6
 * applied to L1 tables), linked with layer 4 and below: a view keeps the
 * table it was taken from alive and unchanged while the image replaces
 * its own tables (another snapshot viewed, L1 growth by a resize, the
 * header read again after a raw edit). Under ASan a borrowed pointer would
 * be a use after free here. Expected entries are read from the file bytes
 * (testutil), never from qinspect. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "image.h"
#include "refwalk.h"
#include "tap.h"
#include "testutil.h"

#define IMG "r.qcow2"

/* Byte offset of snapshot table entry N (the spec's variable-size entries:
 * 40 fixed bytes, extra data, id, name, padded to 8). */
static uint64_t snap_entry(unsigned n)
{
    uint64_t p = tu_file_be(IMG, 64, 8);
    for (unsigned i = 0; i < n; i++) {
        uint64_t len = 40 + tu_file_be(IMG, p + 36, 4) + tu_file_be(IMG, p + 12, 2) +
                       tu_file_be(IMG, p + 14, 2);
        p += (len + 7) & ~7ull;
    }
    return p;
}

/* A reference walk whose callback views another snapshot's L1 (as a Lua
 * callback may): the walk's own view must stay valid. Counts the L1
 * entries of snapshot 0 the walk reports and checks their raw values. */
typedef struct walk {
    qi_image *img;
    uint64_t e_s0;
    unsigned s0_entries, s0_wrong, views;
} walk;

static int on_ref(void *payload, const qi_ref *r)
{
    walk *w = payload;
    qi_l1view v;
    if (r->kind == QI_REF_L1_ENTRY && r->snapshot == 0) {
        w->s0_entries++;
        w->s0_wrong += r->raw != w->e_s0;
    }
    /* replace the kept snapshot table under the walk's feet: view the
     * other snapshot (from snapshot 0's L1 table range on, before the walk
     * reads that table's entries) */
    if (qi_cluster_view_snapshot(w->img, r->snapshot == 0 ? 1 : 0, &v) == 0) {
        w->views++;
        qi_cluster_view_put(w->img, &v);
    }
    return 0;
}

static int on_map(void *payload, const qi_map_ext *e)
{
    (void)e;
    ++*(unsigned *)payload;
    return 0;
}

int main(void)
{
    qi_open_opts o = QI_OPEN_OPTS_INIT;
    qi_image *img = NULL;
    qi_err err;
    qi_l1view a, b;
    uint64_t old;
    if (tu_scratch("l1ref") < 0)
        return 1;
    if (tu_sh("qemu-img create -q -f qcow2 %s 1M && qemu-io -c 'write -P 1 0 64k' %s && "
              "qemu-img snapshot -c s1 %s && qemu-io -c 'write -P 2 0 64k' %s && "
              "qemu-img snapshot -c s2 %s && qemu-io -c 'write -P 3 0 64k' %s",
              IMG, IMG, IMG, IMG, IMG, IMG) != 0) {
        tap_ok(0, "setup: qemu-img / qemu-io");
        return tap_done();
    }
    uint64_t s0 = snap_entry(0), s1 = snap_entry(1);
    uint64_t e_s0 = tu_file_be(IMG, tu_file_be(IMG, s0, 8), 8);
    uint64_t e_s1 = tu_file_be(IMG, tu_file_be(IMG, s1, 8), 8);
    uint64_t e_act = tu_file_be(IMG, tu_file_be(IMG, 40, 8), 8);
    if (!e_s0 || !e_s1 || !e_act || e_s0 == e_s1) {
        tap_ok(0, "setup: three different L2 tables (%#" PRIx64 " %#" PRIx64 " %#" PRIx64
               ")", e_s0, e_s1, e_act);
        return tap_done();
    }
    o.flags = QI_OPEN_RW;
    if (qi_image_open(&img, tu_path(IMG), &o, &err) < 0) {
        tap_ok(0, "open: %s", err.message);
        return tap_done();
    }

    /* a snapshot view held while another snapshot is viewed */
    int rc = qi_cluster_view_snapshot(img, 0, &a);
    int rc2 = qi_cluster_view_snapshot(img, 1, &b);
    tap_ok(rc == 0 && rc2 == 0 && a.size == 1 && b.size == 1 && a.tab != b.tab,
           "two snapshot views");
    tap_ok(a.tab->e[0] == e_s0, "the first view still reads snapshot 0's entry "
           "(%#" PRIx64 ") after snapshot 1 was viewed", e_s0);
    tap_ok(b.tab->e[0] == e_s1, "the second reads snapshot 1's (%#" PRIx64 ")", e_s1);
    tap_ok(a.tab->refs == 1 && qi_cluster_l1_refs(img, true) == 2,
           "the dropped table is the view's alone; the kept one has 2 references");
    qi_cluster_view_put(img, &a);
    qi_cluster_view_put(img, &b);
    tap_ok(a.tab == NULL && qi_cluster_l1_refs(img, true) == 1, "put: the image's own "
           "reference is left");

    /* an active view held across L1 growth (resize to 1 GiB: 2 entries) */
    rc = qi_cluster_view_active(img, &a);
    rc2 = qi_image_resize(img, 1ull << 30);
    tap_ok(rc == 0 && rc2 == 0 && tu_file_be(IMG, 36, 4) == 2, "resize grew the L1 "
           "to 2 entries (rc %d, %d)", rc, rc2);
    tap_ok(a.size == 1 && a.tab->size == 1 && a.tab->e[0] == e_act, "a view taken "
           "before still reads the old table's entry 0 (%#" PRIx64 ")", e_act);
    rc = qi_cluster_view_active(img, &b);
    tap_ok(rc == 0 && b.size == 2 && b.tab->e[0] == e_act && b.tab->e[1] == 0 &&
           b.tab->off == tu_file_be(IMG, 40, 8), "a new view sees the grown table");
    qi_cluster_view_put(img, &a);
    qi_cluster_view_put(img, &b);

    /* in-place changes of the active table are seen by its views */
    uint64_t l2 = 0;
    rc = qi_cluster_view_active(img, &a);
    rc2 = qi_cluster_l2_for_write(img, 1, &l2);
    tap_ok(rc == 0 && rc2 == 0 && l2 && a.tab->e[1] == tu_file_be(IMG, a.l1_off + 8, 8) &&
           (a.tab->e[1] & 0x00fffffffffffe00ull) == l2, "an entry linked while a view "
           "is held shows through the view (%#" PRIx64 ")", a.tab->e[1]);
    qi_cluster_view_put(img, &a);
    tap_ok(qi_cluster_l1_refs(img, false) == 1, "l2_for_write puts its views");

    /* an active view held across the header read again after a raw edit */
    rc = qi_cluster_view_active(img, &a);
    uint64_t e1 = a.tab->e[1];
    rc2 = qi_meta_header_set(img, "compatible_features", 0, &old);
    tap_ok(rc == 0 && rc2 == 0 && qi_cluster_l1_refs(img, false) == 0,
           "header edit: the image dropped its table (rc %d, %d)", rc, rc2);
    tap_ok(a.size == 2 && a.tab->refs == 1 && a.tab->e[0] == e_act && a.tab->e[1] == e1,
           "the view still reads its entries after the reload");
    rc = qi_cluster_view_active(img, &b);
    tap_ok(rc == 0 && b.tab != a.tab && b.tab->e[1] == e1, "a new view reads the "
           "table again");
    qi_cluster_view_put(img, &b);
    qi_cluster_view_put(img, &a);

    /* every engine path that takes a view puts it (a view not put is what
     * the assert at close catches; counted here instead of aborting) */
    uint8_t buf[4096];
    qi_l1_entry l1e;
    qi_l2_entry l2e;
    uint32_t idx;
    rc = qi_image_read(img, buf, 0, sizeof buf);
    tap_ok(rc == 0 && buf[0] == 3 && qi_cluster_l1_refs(img, false) == 1,
           "qi_image_read puts its view");
    rc = qi_image_read_snapshot(img, 0, buf, 0, sizeof buf);
    tap_ok(rc == 0 && buf[0] == 1 && qi_cluster_l1_refs(img, true) == 1,
           "qi_image_read_snapshot puts its view");
    rc = qi_image_read_snapshot(img, 1, buf, 2ull << 30, 1);
    tap_ok(rc == QI_EINVAL && qi_cluster_l1_refs(img, true) == 1,
           "... also when it refuses a read beyond the size");
    rc = qi_meta_l1_get(img, 0, &l1e);
    tap_ok(rc == 0 && l1e.raw == e_act && qi_cluster_l1_refs(img, false) == 1,
           "qi_meta_l1_get puts its view");
    rc = qi_meta_l1_get_at(img, tu_file_be(IMG, s0, 8), 1, 0, &l1e);
    tap_ok(rc == 0 && l1e.raw == e_s0 && qi_cluster_l1_refs(img, true) == 1,
           "qi_meta_l1_get_at puts its view");
    uint64_t l2o;
    rc = qi_meta_l2_lookup(img, 0, &l2o, &idx, &l2e);
    tap_ok(rc == 0 && qi_cluster_l1_refs(img, false) == 1, "qi_meta_l2_lookup puts");
    rc = qi_image_write(img, buf, 4096 + 512, 512);
    tap_ok(rc == 0 && qi_cluster_l1_refs(img, false) == 1, "qi_image_write (COW) puts");
    rc = qi_image_zero(img, 65536 + 512, 1024, false);
    tap_ok(rc == 0 && qi_cluster_l1_refs(img, false) == 1, "qi_image_zero puts");
    rc = qi_image_discard(img, 0, 65536);
    tap_ok(rc == 0 && qi_cluster_l1_refs(img, false) == 1, "qi_image_discard puts");
    unsigned runs = 0;
    rc = qi_image_map(img, 0, 1ull << 30, on_map, &runs);
    tap_ok(rc == 0 && runs && qi_cluster_l1_refs(img, false) == 1, "qi_image_map puts");
    walk w = { img, e_s0, 0, 0, 0 };
    rc = qi_refwalk(img, on_ref, &w);
    tap_ok(rc == 0 && w.s0_entries == 1 && w.s0_wrong == 0 && w.views > 10,
           "a reference walk whose callback views other snapshots reads snapshot 0's "
           "L1 entry right (%u views, %u wrong)", w.views, w.s0_wrong);
    tap_ok(qi_cluster_l1_refs(img, false) == 1 && qi_cluster_l1_refs(img, true) == 1,
           "... and puts its views");
    rc = qi_image_flush(img);
    tap_ok(rc == 0 && tu_sh("qemu-img check -U -q %s", IMG) == 0, "qemu-img check is "
           "clean");

    qi_image_close(img);
    tu_cleanup();
    return tap_done();
}
