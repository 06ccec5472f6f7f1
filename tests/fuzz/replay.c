/* replay.c - regression driver for the fuzz corpus (after zstd
 * tests/fuzz/regression_driver.c and libgit2 fuzzers/standalone_driver.c).
 *
 *     fuzz_replay [-n] [-x EXPECT] FILE...
 *
 * For each FILE: open it with the public engine API, read the whole guest
 * disk in 1 MiB chunks, walk the map, read every L1 and L2 entry (active
 * and of each snapshot) through qi_meta_*, every refcount table entry and
 * the refcount of every host cluster, and read each snapshot's view. Each
 * engine error is recorded under its phase (open, l1, l2, reftable,
 * refcount, snapshot, read, map) and shown as a "# " line.
 *
 * With -x, EXPECT (tests/fuzz/seeds/EXPECT, written by make-seeds.sh) says
 * for each seed, by file name, what must happen: "clean" (no engine call
 * fails), the size and CRC-32 of the guest disk and of each snapshot's
 * view (from qemu-img convert), and for damaged seeds the code and
 * structure of the first error of a phase. A seed that misses its
 * expectation, a FILE without a line and a line without its FILE each give
 * "not ok". Without -x (a corpus from a fuzzer) the only test is that
 * nothing crashes, trips ASan/UBSan or hangs, and every file is "ok".
 * Prints one TAP line per file and the plan; exits 1 if any is "not ok".
 *
 * Work per file is bounded so a hostile header (virtual size 2^62, four
 * million L1 entries) cannot turn a replay into a day-long run: guest reads
 * stop after REPLAY_MAX_READ bytes, snapshot views after the first 1 MiB of
 * each plus REPLAY_MAX_READ in all, and metadata walks after
 * REPLAY_MAX_META entries; a CRC is only known when the whole disk (or
 * view) was read. The "# " lines of a file follow its TAP line. Option -n opens without the backing chain
 * (for corpora from a fuzzer, whose backing names may point anywhere).
 * Uses only include/qi, and zlib for crc32(). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "qi/qi.h"

#define CHUNK (1u << 20)
#define REPLAY_MAX_READ (256ull << 20)
#define REPLAY_MAX_META (1u << 21)
#define MAX_SNAP_CRC 64
#define MAX_NOTES 4

enum phase { PH_OPEN, PH_L1, PH_L2, PH_REFTABLE, PH_REFCOUNT, PH_SNAPSHOT, PH_READ,
             PH_MAP, PH_N };
static const char *const phase_name[PH_N] = {
    "open", "l1", "l2", "reftable", "refcount", "snapshot", "read", "map",
};

/* Diagnostics of the file being replayed go to DG, a memory stream printed
 * after the file's TAP line (TAP puts a test's diagnostics after it). */
static FILE *dg;

static void diag(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void diag(const char *fmt, ...)
{
    va_list ap;
    FILE *f = dg ? dg : stdout;
    fputs("# ", f);
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fputc('\n', f);
}

/* What one replay saw. */
struct seen {
    unsigned errors[PH_N];
    qi_err first[PH_N];         /* the first error of each phase */
    int opened;
    uint64_t size;
    int crc_ok;                 /* the whole guest disk read without error */
    uint32_t crc;
    uint32_t nsnap;
    int snap_ok[MAX_SNAP_CRC];
    uint32_t snap_crc[MAX_SNAP_CRC];
};

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

static void record(struct seen *s, enum phase ph, const qi_err *e, const char *what)
{
    char line[2048];
    if (s->errors[ph]++ == 0)
        s->first[ph] = *e;
    if (s->errors[ph] <= MAX_NOTES)
        diag("%s: %s", what, qi_err_format(e, line, sizeof line));
}

static void note(qi_image *img, struct seen *s, enum phase ph, const char *what)
{
    record(s, ph, qi_image_error(img), what);
}

/* Read [OFF, OFF+N) cluster by cluster, so every damaged cluster in a chunk
 * that failed is tried, not only the first. */
static void read_by_cluster(qi_image *img, struct seen *s, uint8_t *buf, uint64_t off,
                            size_t n)
{
    uint64_t cs = qi_image_cluster_size(img) ? qi_image_cluster_size(img) : 512;
    for (uint64_t o = off; o < off + n; ) {
        uint64_t len = cs - (o % cs);
        if (len > off + n - o)
            len = off + n - o;
        if (qi_image_read(img, buf, o, (size_t)len) < 0)
            note(img, s, PH_READ, "read");
        o += len;
    }
}

static void read_all(qi_image *img, struct seen *s, uint8_t *buf)
{
    uint64_t size = qi_image_size(img), end = size;
    uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
    if (end > REPLAY_MAX_READ)
        end = REPLAY_MAX_READ;
    for (uint64_t off = 0; off < end; off += CHUNK) {
        size_t n = end - off < CHUNK ? (size_t)(end - off) : CHUNK;
        if (qi_image_read(img, buf, off, n) < 0)
            read_by_cluster(img, s, buf, off, n);
        else
            crc = (uint32_t)crc32(crc, buf, (uInt)n);
    }
    s->crc_ok = end == size && s->errors[PH_READ] == 0;
    s->crc = crc;
    /* the last bytes of a large disk too: offsets near the end take other paths */
    if (size > end && size >= CHUNK && qi_image_read(img, buf, size - CHUNK, CHUNK) < 0)
        note(img, s, PH_READ, "read tail");
}

static void walk_map(qi_image *img, struct seen *s)
{
    struct walk w = { 0, 0, 1 };
    uint64_t size = qi_image_size(img);
    if (qi_image_map(img, 0, size, on_run, &w) < 0) {
        note(img, s, PH_MAP, "map");
    } else if (!w.order_ok || w.next != size) {
        qi_err e = { .code = 0, .offset = QI_NO_OFFSET };
        snprintf(e.message, sizeof e.message,
                 "runs not contiguous or not covering the disk (%" PRIu64 " runs)", w.runs);
        record(s, PH_MAP, &e, "map");
    }
}

/* All L2 entries of the L1 table at L1_OFF (0 = the active one); errors go
 * to PH_L1/PH_L2, or to SNAP_PH for a snapshot's table. */
static void walk_tables(qi_image *img, struct seen *s, uint64_t l1_off, uint32_t l1_size,
                        uint64_t *budget)
{
    uint32_t l2n = qi_meta_l2_entries(img);
    for (uint32_t i = 0; i < l1_size && *budget; i++, (*budget)--) {
        qi_l1_entry e1;
        int rc = l1_off ? qi_meta_l1_get_at(img, l1_off, l1_size, i, &e1)
                        : qi_meta_l1_get(img, i, &e1);
        if (rc < 0) {
            note(img, s, l1_off ? PH_SNAPSHOT : PH_L1, l1_off ? "snapshot L1" : "L1");
            return;
        }
        if (!e1.l2_offset)
            continue;
        for (uint32_t j = 0; j < l2n && *budget; j++, (*budget)--) {
            qi_l2_entry e2;
            if (qi_meta_l2_get(img, e1.l2_offset, j, &e2) < 0) {
                note(img, s, l1_off ? PH_SNAPSHOT : PH_L2, l1_off ? "snapshot L2" : "L2");
                break;
            }
            if (qi_meta_extended_l2(img))
                for (unsigned b = 0; b < 32; b++)
                    (void)qi_meta_subcluster(&e2, b);
            (void)qi_cluster_type_name(e2.type);
        }
    }
}

static void walk_refcounts(qi_image *img, struct seen *s, uint64_t *budget)
{
    uint64_t n = qi_meta_reftable_size(img), raw, rc;
    uint32_t cs = qi_image_cluster_size(img);
    for (uint64_t i = 0; i < n && *budget; i++, (*budget)--)
        if (qi_meta_reftable_get(img, i, &raw) < 0) {
            note(img, s, PH_REFTABLE, "reftable");
            break;
        }
    for (uint64_t off = 0; off < qi_image_file_size(img) && *budget; off += cs, (*budget)--)
        if (qi_meta_refcount(img, off, &rc) < 0) {
            note(img, s, PH_REFCOUNT, "refcount");
            break;
        }
}

/* Read snapshot I's view: its first chunk always, the rest while *LEFT
 * bytes of the budget remain; returns 1 with its CRC in *CRC if every byte
 * was read. */
static int read_snapshot(qi_image *img, struct seen *s, uint32_t i, uint64_t size,
                         uint8_t *buf, uint64_t *left, uint32_t *crc)
{
    *crc = (uint32_t)crc32(0L, Z_NULL, 0);
    for (uint64_t off = 0; off < size; off += CHUNK) {
        size_t n = size - off < CHUNK ? (size_t)(size - off) : CHUNK;
        if (off && *left < n)
            return 0;
        *left -= *left < n ? *left : n;
        if (qi_image_read_snapshot(img, i, buf, off, n) < 0) {
            note(img, s, PH_SNAPSHOT, "snapshot read");
            return 0;
        }
        *crc = (uint32_t)crc32(*crc, buf, (uInt)n);
    }
    return 1;
}

static void walk_snapshots(qi_image *img, struct seen *s, uint8_t *buf, uint64_t *budget)
{
    uint32_t n = 0, crc;
    uint64_t left = REPLAY_MAX_READ;
    const qi_snapshot *sn = qi_meta_snapshots(img, &n);
    s->nsnap = n;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t size = sn[i].has_disk_size ? sn[i].disk_size : qi_image_size(img);
        walk_tables(img, s, sn[i].l1_table_offset, sn[i].l1_size, budget);
        int ok = read_snapshot(img, s, i, size, buf, &left, &crc);
        if (i < MAX_SNAP_CRC) {
            s->snap_ok[i] = ok;
            s->snap_crc[i] = crc;
        }
    }
}

static void walk_header(qi_image *img)
{
    uint32_t n = 0;
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
}

static void replay(const char *path, unsigned flags, uint8_t *buf, struct seen *s)
{
    qi_open_opts o = QI_OPEN_OPTS_INIT;
    qi_image *img = NULL;
    qi_err err;
    uint64_t budget = REPLAY_MAX_META;
    memset(s, 0, sizeof *s);
    o.flags = flags;
    if (qi_image_open(&img, path, &o, &err) < 0) {
        record(s, PH_OPEN, &err, "open");
        return;
    }
    s->opened = 1;
    s->size = qi_image_size(img);
    if (qi_meta_header(img)) {
        walk_header(img);
        walk_tables(img, s, 0, qi_meta_header(img)->l1_size, &budget);
        walk_refcounts(img, s, &budget);
        walk_snapshots(img, s, buf, &budget);
    }
    read_all(img, s, buf);
    walk_map(img, s);
    qi_image_close(img);
}

/* ---- expectations (-x) ---- */

struct expect {
    char *name;         /* seed file name, without directory */
    char *keys;         /* the rest of the line */
    int used;
};

static struct expect *expects;
static size_t n_expects;

static int load_expect(const char *path)
{
    char line[4096];
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f)) {
        char *name = strtok(line, " \t\n"), *rest = strtok(NULL, "\n");
        if (!name || name[0] == '#')
            continue;
        struct expect *e = realloc(expects, (n_expects + 1) * sizeof *e);
        if (!e)
            abort();
        expects = e;
        e[n_expects].name = strdup(name);
        e[n_expects].keys = strdup(rest ? rest : "");
        e[n_expects].used = 0;
        if (!e[n_expects].name || !e[n_expects].keys)
            abort();
        n_expects++;
    }
    fclose(f);
    return 0;
}

static struct expect *find_expect(const char *path)
{
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    for (size_t i = 0; i < n_expects; i++)
        if (strcmp(expects[i].name, base) == 0)
            return &expects[i];
    return NULL;
}

/* Is WORD one of the '|'-separated ALTS ('_' in ALTS stands for ' ')? */
static int one_of(const char *word, const char *alts, size_t alts_len)
{
    size_t wl = strlen(word);
    for (const char *p = alts, *end = alts + alts_len; p <= end; ) {
        const char *bar = memchr(p, '|', (size_t)(end - p));
        size_t len = (size_t)((bar ? bar : end) - p);
        if (len == wl) {
            size_t k = 0;
            while (k < len && (p[k] == '_' ? ' ' : p[k]) == word[k])
                k++;
            if (k == len)
                return 1;
        }
        if (!bar)
            break;
        p = bar + 1;
    }
    return 0;
}

/* PHASE=CODES:STRUCTS; 1 if met, else 0 with a diagnostic. */
static int check_error(const struct seen *s, int ph, const char *want)
{
    const char *colon = strchr(want, ':');
    char line[2048];
    if (!colon) {
        diag("EXPECT: %s=%s has no ':'", phase_name[ph], want);
        return 0;
    }
    if (ph != PH_OPEN && !s->opened) {
        diag("%s: expected %s, but the open failed", phase_name[ph], want);
        return 0;
    }
    if (s->errors[ph] == 0) {
        diag("%s: expected %s, got no error", phase_name[ph], want);
        return 0;
    }
    const qi_err *e = &s->first[ph];
    if (one_of(qi_errname(e->code), want, (size_t)(colon - want)) &&
        one_of(e->structure, colon + 1, strlen(colon + 1)))
        return 1;
    diag("%s: expected %s, got %s in \"%s\": %s", phase_name[ph], want,
           qi_errname(e->code), e->structure, qi_err_format(e, line, sizeof line));
    return 0;
}

static int check_clean(const struct seen *s)
{
    int ok = 1;
    for (int ph = 0; ph < PH_N; ph++)
        if (s->errors[ph]) {
            diag("clean: %u error(s) in %s", s->errors[ph], phase_name[ph]);
            ok = 0;
        }
    return ok;
}

static int check_key(const struct seen *s, const char *key)
{
    const char *eq = strchr(key, '=');
    size_t klen = eq ? (size_t)(eq - key) : strlen(key);
    unsigned long long want;
    unsigned idx;
    char *end;
    if (strcmp(key, "clean") == 0)
        return check_clean(s);
    if (eq && !s->opened) {
        for (int ph = 0; ph < PH_N; ph++)
            if (strlen(phase_name[ph]) == klen && strncmp(key, phase_name[ph], klen) == 0)
                return check_error(s, ph, eq + 1);
        diag("%s: the open failed", key);
        return 0;
    }
    if (eq && klen == 4 && strncmp(key, "size", 4) == 0) {
        want = strtoull(eq + 1, &end, 10);
        if (*end == 0 && s->size == want)
            return 1;
        diag("size: expected %s, got %" PRIu64, eq + 1, s->size);
        return 0;
    }
    if (eq && klen == 3 && strncmp(key, "crc", 3) == 0) {
        want = strtoull(eq + 1, &end, 16);
        if (*end == 0 && s->crc_ok && s->crc == want)
            return 1;
        if (s->crc_ok)
            diag("crc: expected %s, got %08" PRIx32, eq + 1, s->crc);
        else
            diag("crc: expected %s, but the guest disk did not read whole", eq + 1);
        return 0;
    }
    if (eq && sscanf(key, "snap%u=", &idx) == 1) {
        want = strtoull(eq + 1, &end, 16);
        if (idx < s->nsnap && idx < MAX_SNAP_CRC && s->snap_ok[idx] && *end == 0 &&
            s->snap_crc[idx] == want)
            return 1;
        if (idx >= s->nsnap || idx >= MAX_SNAP_CRC || !s->snap_ok[idx])
            diag("snap%u: expected %s, but the view did not read whole (%" PRIu32
                 " snapshots)", idx, eq + 1, s->nsnap);
        else
            diag("snap%u: expected %s, got %08" PRIx32, idx, eq + 1, s->snap_crc[idx]);
        return 0;
    }
    for (int ph = 0; eq && ph < PH_N; ph++)
        if (strlen(phase_name[ph]) == klen && strncmp(key, phase_name[ph], klen) == 0)
            return check_error(s, ph, eq + 1);
    diag("EXPECT: unknown key '%s'", key);
    return 0;
}

/* 1 if S meets every key of E. */
static int check_expect(const struct seen *s, const struct expect *e)
{
    char keys[4096];
    int ok = 1, n = 0;
    snprintf(keys, sizeof keys, "%s", e->keys);
    for (char *k = strtok(keys, " \t"); k; k = strtok(NULL, " \t"), n++)
        ok &= check_key(s, k);
    if (n == 0) {
        diag("EXPECT: the line for %s says nothing", e->name);
        return 0;
    }
    return ok;
}

/* Replay PATH and check it against its line of EXPECT_PATH (if any); print
 * its TAP line numbered N and its notes. Returns 1 if it passed. */
static int replay_one(const char *path, unsigned flags, uint8_t *buf,
                      const char *expect_path, unsigned n)
{
    static struct seen s;
    struct expect *e = expect_path ? find_expect(path) : NULL;
    char *notes = NULL;
    size_t notes_len = 0;
    int ok = 1;
    dg = open_memstream(&notes, &notes_len);
    replay(path, flags, buf, &s);
    if (expect_path && !e) {
        diag("no line for this seed in %s", expect_path);
        ok = 0;
    } else if (e) {
        e->used++;
        ok = check_expect(&s, e);
    }
    if (dg)
        fclose(dg);
    dg = NULL;
    printf("%sok %u - %s\n", ok ? "" : "not ", n, path);
    if (notes)
        fputs(notes, stdout);
    free(notes);
    fflush(stdout);
    return ok;
}

int main(int argc, char **argv)
{
    unsigned flags = QI_OPEN_NO_LOCK, n = 0, failed = 0;
    const char *expect_path = NULL;
    int i = 1;
    uint8_t *buf = malloc(CHUNK);
    if (!buf)
        return 2;
    for (; i < argc && argv[i][0] == '-'; i++) {
        if (strcmp(argv[i], "-n") == 0) {
            flags |= QI_OPEN_NO_BACKING;
        } else if (strcmp(argv[i], "-x") == 0 && i + 1 < argc) {
            expect_path = argv[++i];
        } else {
            fprintf(stderr, "usage: fuzz_replay [-n] [-x EXPECT] FILE...\n");
            return 2;
        }
    }
    if (expect_path && load_expect(expect_path) < 0) {
        printf("not ok 1 - cannot read %s\n1..1\n", expect_path);
        return 1;
    }
    for (; i < argc; i++)
        failed += !replay_one(argv[i], flags, buf, expect_path, ++n);
    for (size_t k = 0; k < n_expects; k++)
        if (!expects[k].used) {
            printf("not ok %u - %s: in %s but not replayed\n", ++n, expects[k].name,
                   expect_path);
            failed++;
        }
    printf("1..%u\n", n);
    for (size_t k = 0; k < n_expects; k++) {
        free(expects[k].name);
        free(expects[k].keys);
    }
    free(expects);
    free(buf);
    return failed ? 1 : 0;
}
