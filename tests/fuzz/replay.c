/* replay.c - regression driver for the fuzz corpus (after zstd
 * tests/fuzz/regression_driver.c and libgit2 fuzzers/standalone_driver.c).
 *
 * For each file on the command line: open it with the public engine API,
 * read the whole guest disk in 1 MiB chunks, walk the map, read every L1
 * and L2 entry (active and of each snapshot) through qi_meta_*, every
 * refcount table entry and the refcount of every host cluster, and read
 * each snapshot's view. Errors from the engine are expected (most inputs
 * are damaged on purpose) and only reported as "# " lines; the test is that
 * none of this crashes, trips ASan/UBSan, or hangs. Prints one TAP line per
 * file, "ok N - FILE", and the plan at the end.
 *
 * Work per file is bounded so a hostile header (virtual size 2^62, four
 * million L1 entries) cannot turn a replay into a day-long run: guest reads
 * stop after REPLAY_MAX_READ bytes and metadata walks after REPLAY_MAX_META
 * entries. Option -n opens without the backing chain (for corpora from a
 * fuzzer, whose backing names may point anywhere). Uses only include/qi. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qi/qi.h"

#define CHUNK (1u << 20)
#define REPLAY_MAX_READ (256ull << 20)
#define REPLAY_MAX_META (1u << 21)

struct walk {
    uint64_t next;      /* expected start of the next map run */
    uint64_t runs;
    int order_ok;
};

static int on_run(void *payload, const qi_map_ext *e)
{
    struct walk *w = payload;
    if (e->start != w->next || e->length == 0)
        w->order_ok = 0;
    w->next = e->start + e->length;
    w->runs++;
    return 0;
}

static void note(qi_image *img, const char *what)
{
    char line[2048];
    printf("# %s: %s\n", what, qi_err_format(qi_image_error(img), line, sizeof line));
}

/* Read [OFF, OFF+N) cluster by cluster, so every damaged cluster in a chunk
 * that failed is tried, not only the first. */
static void read_by_cluster(qi_image *img, uint8_t *buf, uint64_t off, size_t n)
{
    uint64_t cs = qi_image_cluster_size(img) ? qi_image_cluster_size(img) : 512;
    unsigned notes = 0;
    for (uint64_t o = off; o < off + n; ) {
        uint64_t len = cs - (o % cs);
        if (len > off + n - o)
            len = off + n - o;
        if (qi_image_read(img, buf, o, (size_t)len) < 0 && notes++ < 4)
            note(img, "read");
        o += len;
    }
}

static void read_all(qi_image *img, uint8_t *buf)
{
    uint64_t size = qi_image_size(img), end = size;
    if (end > REPLAY_MAX_READ)
        end = REPLAY_MAX_READ;
    for (uint64_t off = 0; off < end; off += CHUNK) {
        size_t n = end - off < CHUNK ? (size_t)(end - off) : CHUNK;
        if (qi_image_read(img, buf, off, n) < 0)
            read_by_cluster(img, buf, off, n);
    }
    /* the last bytes of a large disk too: offsets near the end take other paths */
    if (size > end && size >= CHUNK && qi_image_read(img, buf, size - CHUNK, CHUNK) < 0)
        note(img, "read tail");
}

static void walk_map(qi_image *img)
{
    struct walk w = { 0, 0, 1 };
    uint64_t size = qi_image_size(img);
    if (qi_image_map(img, 0, size, on_run, &w) < 0)
        note(img, "map");
    else if (!w.order_ok || w.next != size)
        printf("# map: runs not contiguous or not covering the disk (%" PRIu64 " runs)\n",
               w.runs);
}

/* All L2 entries of the L1 table at L1_OFF (0 = the active one). */
static void walk_tables(qi_image *img, uint64_t l1_off, uint32_t l1_size,
                        uint64_t *budget)
{
    uint32_t l2n = qi_meta_l2_entries(img);
    for (uint32_t i = 0; i < l1_size && *budget; i++, (*budget)--) {
        qi_l1_entry e1;
        int rc = l1_off ? qi_meta_l1_get_at(img, l1_off, l1_size, i, &e1)
                        : qi_meta_l1_get(img, i, &e1);
        if (rc < 0) {
            note(img, "L1");
            return;
        }
        if (!e1.l2_offset)
            continue;
        for (uint32_t j = 0; j < l2n && *budget; j++, (*budget)--) {
            qi_l2_entry e2;
            if (qi_meta_l2_get(img, e1.l2_offset, j, &e2) < 0) {
                note(img, "L2");
                break;
            }
            if (qi_meta_extended_l2(img))
                for (unsigned s = 0; s < 32; s++)
                    (void)qi_meta_subcluster(&e2, s);
            (void)qi_cluster_type_name(e2.type);
        }
    }
}

static void walk_refcounts(qi_image *img, uint64_t *budget)
{
    uint64_t n = qi_meta_reftable_size(img), raw, rc;
    uint32_t cs = qi_image_cluster_size(img);
    for (uint64_t i = 0; i < n && *budget; i++, (*budget)--)
        if (qi_meta_reftable_get(img, i, &raw) < 0) {
            note(img, "reftable");
            break;
        }
    for (uint64_t off = 0; off < qi_image_file_size(img) && *budget; off += cs, (*budget)--)
        if (qi_meta_refcount(img, off, &rc) < 0) {
            note(img, "refcount");
            break;
        }
}

static void walk_snapshots(qi_image *img, uint8_t *buf, uint64_t *budget)
{
    uint32_t n = 0;
    const qi_snapshot *s = qi_meta_snapshots(img, &n);
    for (uint32_t i = 0; i < n; i++) {
        walk_tables(img, s[i].l1_table_offset, s[i].l1_size, budget);
        uint64_t size = qi_image_size(img);
        size_t len = size < CHUNK ? (size_t)size : CHUNK;
        if (len && qi_image_read_snapshot(img, i, buf, 0, len) < 0)
            note(img, "snapshot read");
    }
}

static void walk_header(qi_image *img)
{
    uint32_t n = 0;
    const qi_header *h = qi_meta_header(img);
    const qi_ext *x = qi_meta_extensions(img, &n);
    volatile uint8_t sink = 0;
    /* touch every extension's last byte, so ASan sees a bad length */
    for (uint32_t i = 0; i < n; i++)
        if (x[i].length)
            sink ^= x[i].data[x[i].length - 1];
    (void)qi_meta_feature_names(img, &n);
    for (int bit = 0; bit < 64; bit++)
        (void)qi_meta_feature_name(img, 0, bit);
    (void)qi_meta_bitmaps(img, &n);
    (void)qi_image_backing_name(img);
    (void)qi_image_backing_full_name(img);
    (void)qi_image_backing_format(img);
    (void)qi_image_data_file_name(img);
    (void)h;
}

static void replay(const char *path, unsigned flags, uint8_t *buf)
{
    qi_open_opts o = QI_OPEN_OPTS_INIT;
    qi_image *img = NULL;
    qi_err err;
    char line[2048];
    uint64_t budget = REPLAY_MAX_META;
    o.flags = flags;
    if (qi_image_open(&img, path, &o, &err) < 0) {
        printf("# open: %s\n", qi_err_format(&err, line, sizeof line));
        return;
    }
    if (qi_meta_header(img)) {
        walk_header(img);
        walk_tables(img, 0, qi_meta_header(img)->l1_size, &budget);
        walk_refcounts(img, &budget);
        walk_snapshots(img, buf, &budget);
    }
    read_all(img, buf);
    walk_map(img);
    qi_image_close(img);
}

int main(int argc, char **argv)
{
    unsigned flags = QI_OPEN_NO_LOCK, n = 0;
    int i = 1;
    uint8_t *buf = malloc(CHUNK);
    if (!buf)
        return 2;
    if (i < argc && strcmp(argv[i], "-n") == 0) {
        flags |= QI_OPEN_NO_BACKING;
        i++;
    }
    for (; i < argc; i++) {
        replay(argv[i], flags, buf);
        printf("ok %u - %s\n", ++n, argv[i]);
        fflush(stdout);
    }
    printf("1..%u\n", n);
    free(buf);
    return 0;
}
