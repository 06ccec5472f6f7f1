/* Unit tests for L1 table growth (cluster.c qi_cluster_grow_l1 through
 * image.c's header commit), linked with layer 4 and below.
 *
 * The sizes for a write (not exact) are QEMU's qcow2_grow_l1_table rule, a
 * fact of its code (docs/qcow2-format.md section 13 rule 5), computed here
 * by hand: from an empty table start at 1, then n = (3n + 1) / 2 until the
 * table is large enough (1 -> 2 -> 3 -> 5 -> 8 -> 12 -> 18 -> 27 -> 41).
 * Every expected header value is read from the file bytes (testutil), and
 * every state is checked clean by `qemu-img check -U`:
 * - a write-sized growth from 1 entry for 2 gives 2, then for 9 gives 12;
 *   the old entry (an L2 table qemu-io made) is kept, the table moves to a
 *   cluster-aligned offset, the header's size is unchanged;
 * - exact growth gives exactly the entries asked for;
 * - asking for no more entries than there are writes nothing;
 * - beyond 4194304 entries (QEMU's 32 MiB) fails with QI_ENOSPC and writes
 *   nothing;
 * - qi_cluster_l2_for_write for an index past the table grows it (write
 *   sizing: 20 -> 30) and links a new L2 table there. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster.h"
#include "image.h"
#include "tap.h"
#include "testutil.h"

#define IMG "g.qcow2"

static int check_clean(void)
{
    return tu_sh("qemu-img check -U -q %s", IMG) == 0;
}

int main(void)
{
    qi_open_opts o = QI_OPEN_OPTS_INIT;
    qi_image *img = NULL;
    qi_err err;
    uint64_t l2 = 0;
    size_t n0 = 0, n1 = 0;
    uint8_t *before = NULL, *after = NULL;
    if (tu_scratch("l1grow") < 0)
        return 1;
    if (tu_sh("qemu-img create -q -f qcow2 %s 100M && qemu-io -c 'write -P 7 0 64k' %s",
              IMG, IMG) != 0 || tu_file_be(IMG, 36, 4) != 1) {
        tap_ok(0, "setup: qemu-img create / qemu-io");
        return tap_done();
    }
    uint64_t e0 = tu_file_be(IMG, tu_file_be(IMG, 40, 8), 8);
    o.flags = QI_OPEN_RW;
    if (qi_image_open(&img, tu_path(IMG), &o, &err) < 0) {
        tap_ok(0, "open: %s", err.message);
        return tap_done();
    }

    int rc = qi_cluster_grow_l1(img, 2, false);
    tap_ok(rc == 0 && tu_file_be(IMG, 36, 4) == 2, "write sizing from 1 entry for 2: 2 "
           "(rc %d, l1_size %" PRIu64 ")", rc, tu_file_be(IMG, 36, 4));
    rc = qi_cluster_grow_l1(img, 9, false);
    uint64_t off = tu_file_be(IMG, 40, 8);
    tap_ok(rc == 0 && tu_file_be(IMG, 36, 4) == 12, "write sizing from 2 for 9: 12 "
           "(l1_size %" PRIu64 ")", tu_file_be(IMG, 36, 4));
    tap_ok(off && off % 65536 == 0 && tu_file_be(IMG, off, 8) == e0 &&
           tu_file_be(IMG, off + 8, 8) == 0 && tu_file_be(IMG, off + 88, 8) == 0,
           "the new table is cluster aligned, entry 0 kept, the rest zero");
    tap_ok(img->hdr.l1_size == 12 && img->hdr.l1_table_offset == off && img->l1 &&
           img->l1->e[0] == e0 && img->l1->e[11] == 0, "the in-memory header and L1 follow");
    tap_ok(tu_file_be(IMG, 24, 8) == 100 << 20, "the size field is unchanged");
    tap_ok(qi_image_flush(img) == 0 && check_clean(), "qemu-img check is clean");

    rc = qi_cluster_grow_l1(img, 20, true);
    tap_ok(rc == 0 && tu_file_be(IMG, 36, 4) == 20, "exact growth for 20: 20");
    tap_ok(qi_image_flush(img) == 0 && check_clean(), "qemu-img check is clean");

    before = tu_slurp(IMG, &n0);
    rc = qi_cluster_grow_l1(img, 20, false);
    int rc2 = qi_cluster_grow_l1(img, 3, true);
    after = tu_slurp(IMG, &n1);
    tap_ok(rc == 0 && rc2 == 0 && before && after && n0 == n1 && !memcmp(before, after, n0),
           "asking for no more entries than there are writes nothing");
    free(after);
    after = NULL;

    rc = qi_cluster_grow_l1(img, QI_MAX_L1_ENTRIES + 1ull, true);
    after = tu_slurp(IMG, &n1);
    tap_ok(rc == QI_ENOSPC && strstr(qi_image_error(img)->message, "4194304"),
           "4194305 entries: QI_ENOSPC naming the limit (rc %d: %s)", rc,
           qi_image_error(img)->message);
    tap_ok(after && n0 == n1 && !memcmp(before, after, n0), "... and nothing is written");
    free(after);
    after = NULL;
    /* write sizing overshoots the limit from 20 (QEMU fails then too):
     * 20 30 45 68 102 153 230 345 518 777 1166 1749 2624 3936 5904 8856
     * 13284 19926 29889 44834 67251 100877 151316 226974 340461 510692
     * 766038 1149057 1723586 2585379 3878069 5817104 */
    rc = qi_cluster_grow_l1(img, 3878070, false);
    tap_ok(rc == QI_ENOSPC, "write sizing past the limit (5817104 entries): QI_ENOSPC");
    rc = qi_cluster_grow_l1(img, 3878069, false);
    tap_ok(rc == 0 && tu_file_be(IMG, 36, 4) == 3878069, "write sizing for 3878069 "
           "from 20: 3878069 (rc %d: %s)", rc, qi_image_error(img)->message);
    tap_ok(qi_image_flush(img) == 0 && check_clean(), "qemu-img check is clean");
    free(before);
    before = NULL;

    /* a fresh image for the write path: grow to 20, then ask for entry 25 */
    qi_image_close(img);
    img = NULL;
    if (tu_sh("rm -f %s && qemu-img create -q -f qcow2 %s 100M", IMG, IMG) != 0 ||
        qi_image_open(&img, tu_path(IMG), &o, &err) < 0) {
        tap_ok(0, "setup: second image");
        return tap_done();
    }
    rc = qi_cluster_grow_l1(img, 20, true);
    int rc3 = qi_cluster_l2_for_write(img, 25, &l2);
    tap_ok(rc == 0 && rc3 == 0 && tu_file_be(IMG, 36, 4) == 30,
           "l2_for_write for entry 25 of 20 grows the L1 to 30 (l1_size %" PRIu64 ")",
           tu_file_be(IMG, 36, 4));
    off = tu_file_be(IMG, 40, 8);
    tap_ok(l2 && tu_file_be(IMG, off + 8 * 25, 8) == (l2 | (1ull << 63)),
           "entry 25 points at the new L2 table with COPIED");
    tap_ok(qi_image_flush(img) == 0 && check_clean(), "qemu-img check is clean");
    tap_ok(tu_file_be(IMG, 24, 8) == 100 << 20, "the size field is unchanged");
    qi_image_close(img);
    tu_cleanup();
    return tap_done();
}
