/* cli_convert.c - `qinspect convert`: the guest view of an image as a raw
 * file (layer 7).
 *
 * Writes every guest byte of SRC (qcow2 or raw, backing chain honoured, or
 * one internal snapshot's view) to DST, which is created or truncated and
 * sized first so that everything not written stays a hole. Speed comes from
 * few, large requests: the allocation map (qi_image_map) says which ranges
 * read as zeros, and those are never read; the remaining ranges are
 * gathered into spans of up to CHUNK bytes (small zero gaps between data
 * runs are read along, as that is cheaper than another request), read in
 * pieces of PIECE bytes with one qi_image_read each, and written with one
 * pwrite per run of 4 KiB blocks that are not all zero (qemu-img convert's
 * default -S 4k). Reading and writing overlap: the main thread reads a
 * piece and finds its data runs (the zero scan, while the piece is still in
 * the CPU's cache), and a writer thread writes the runs of the pieces
 * queued before it (a ring of pieces; the main thread only reuses a piece
 * after the writer has finished with it, and it alone calls the engine).
 * The two halves then cost about the same: copying into the page cache is
 * the larger part of a convert, and the writer does nothing else.
 * Runs that qi_image_map places in the source file itself, uncompressed
 * and inside the file (a plain image's data, or a raw source), are not
 * read at all: the file is mapped read-only and the writer writes straight
 * from the mapping, so each byte is copied once (into the output's page
 * cache) instead of twice; the writer drops the pages of each piece from
 * the mapping once written, so at most the ring's bytes stay mapped.
 * qcow2 output is cli_convert_qcow2.c; this file parses the options for
 * both. Calls: include/qi, cli.h helpers, POSIX file I/O and threads. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "convert.h"

#define CHUNK (4u << 20)      /* largest span; two buffers of this size */
#define GAP (64u << 10)       /* zero gaps up to this size are read along */
#define BLOCK 4096u           /* sparse detection granularity (-S 4k) */
#define CONV_CB_STOP 1

/* Hand-off between the reader (main thread) and the writer thread: the two
 * CHUNK buffers are cut into NPIECE pieces of up to PIECE bytes, used in
 * turn as a ring. The reader fills the piece after the last one queued and
 * waits only when every piece is queued; the writer takes them in order. A
 * piece small enough to stay in the writer's cache makes its second pass
 * (the zero scan and the copy into the page cache) cheap. */
#define PIECE (256u << 10)    /* bytes read into one piece */
#define NPIECE (2 * (CHUNK / PIECE))
#define MAXRUN 64             /* data runs a job lists (-S 4k: 32 at most) */
/* A queued piece of N bytes for guest offset OFF, and its data runs
 * [at, at + len) (offsets in the piece) found by the main thread; NRUN -1
 * when there were more than MAXRUN (a small -S): the writer scans it. */
typedef struct wjob {
    uint64_t off;
    size_t n;
    const uint8_t *src;       /* the bytes in the source mapping, or NULL:
                               * in the ring piece */
    int nrun;
    uint32_t at[MAXRUN], len[MAXRUN];
} wjob;
typedef struct wslot {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool running;             /* the thread exists */
    bool quit;
    bool failed;              /* a write failed (message printed) */
    bool reader_waits, writer_waits; /* who sleeps on cv */
    unsigned head, tail;      /* pieces head..tail-1 are queued, head in use */
    wjob job[NPIECE];
} wslot;

typedef struct conv {
    qi_image *img;
    const char *src, *dst;
    int fd;
    uint8_t *bufs[2];
    size_t piece;             /* piece size: PIECE, or CHUNK for a large -S */
    wslot w;
    uint64_t size;            /* guest bytes to convert */
    size_t sparse;            /* block size for hole detection, 0 = none */
    int snap;                 /* snapshot index, -1 for the active view */
    uint64_t span_start, span_end; /* pending span, empty when equal */
    const char *map_file;     /* the source file mapped (as map names it) */
    uint8_t *map;             /* its mapping, NULL if none (yet) */
    uint64_t map_len;
    bool map_failed;          /* mapping refused: read everything */
} conv;

static bool block_is_zero(const uint8_t *p, size_t n)
{
    const uint64_t *w = (const uint64_t *)(const void *)p;
    uint64_t acc = 0;
    size_t i;
    /* most data blocks differ from zero in their first bytes */
    if (n >= 16 && (w[0] | w[1]))
        return false;
    for (i = 0; i + 8 <= n / 8; i += 8)
        acc |= w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7];
    for (; i < n / 8; i++)
        acc |= w[i];
    for (size_t k = n & ~(size_t)7; k < n; k++)
        acc |= p[k];
    return acc == 0;
}

static int write_all(conv *c, const uint8_t *p, size_t n, uint64_t off)
{
    while (n) {
        ssize_t w = pwrite(c->fd, p, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return qi_cli_error("%s: write failed at offset %" PRIu64 ": %s", c->dst, off,
                                strerror(errno));
        }
        p += w;
        off += (uint64_t)w;
        n -= (size_t)w;
    }
    return 0;
}

/* Write the N bytes of BUF that belong at guest offset OFF, leaving
 * aligned all-zero blocks as holes. */
static int write_sparse(conv *c, const uint8_t *buf, uint64_t off, size_t n)
{
    size_t i = 0, run = 0;
    bool in_data = false;
    if (!c->sparse)
        return write_all(c, buf, n, off);
    while (i < n) {
        /* blocks are aligned to guest offsets, as qemu-img's are */
        size_t blen = c->sparse - (size_t)((off + i) % c->sparse);
        if (blen > n - i)
            blen = n - i;
        bool zero = block_is_zero(buf + i, blen);
        if (!zero && !in_data) {
            run = i;
            in_data = true;
        } else if (zero && in_data) {
            if (write_all(c, buf + run, i - run, off + run) < 0)
                return -1;
            in_data = false;
        }
        i += blen;
    }
    if (in_data && write_all(c, buf + run, n - run, off + run) < 0)
        return -1;
    return 0;
}

/* The data runs of the N bytes of BUF for guest offset OFF into J, as
 * write_sparse would write them. */
static void find_runs(const conv *c, const uint8_t *buf, uint64_t off, size_t n, wjob *j)
{
    size_t i = 0, run = 0;
    bool in_data = false;
    *j = (wjob){ .off = off, .n = n };
    if (!c->sparse) {
        j->at[0] = 0, j->len[0] = (uint32_t)n, j->nrun = 1;
        return;
    }
    for (; i < n; i += c->sparse - (size_t)((off + i) % c->sparse)) {
        size_t blen = c->sparse - (size_t)((off + i) % c->sparse);
        bool zero = block_is_zero(buf + i, blen > n - i ? n - i : blen);
        if (!zero && !in_data) {
            run = i;
            in_data = true;
        } else if (zero && in_data) {
            if (j->nrun == MAXRUN) {
                j->nrun = -1;
                return;
            }
            j->at[j->nrun] = (uint32_t)run, j->len[j->nrun++] = (uint32_t)(i - run);
            in_data = false;
        }
    }
    if (in_data && j->nrun == MAXRUN)
        j->nrun = -1;
    else if (in_data)
        j->at[j->nrun] = (uint32_t)run, j->len[j->nrun++] = (uint32_t)(n - run);
}

/* Write job J of piece BUF (or of its bytes in the source mapping). */
static int run_job(conv *c, const uint8_t *buf, const wjob *j)
{
    int rc = 0;
    if (j->src)
        buf = j->src;
    if (j->nrun < 0)
        rc = write_sparse(c, buf, j->off, j->n);
    for (int k = 0; rc == 0 && k < j->nrun; k++)
        rc = write_all(c, buf + j->at[k], j->len[k], j->off + j->at[k]);
    if (j->src) {
        /* whole pages only: a page shared with the next piece refaults
         * from the page cache if it is still needed */
        uintptr_t a = ((uintptr_t)j->src + 4095) & ~(uintptr_t)4095;
        uintptr_t b = ((uintptr_t)j->src + j->n) & ~(uintptr_t)4095;
        if (b > a)
            (void)madvise((void *)a, b - a, MADV_DONTNEED);
    }
    return rc;
}

/* Address of ring piece I. */
static uint8_t *piece_buf(const conv *c, unsigned i)
{
    size_t per = CHUNK / c->piece;
    i %= (unsigned)(2 * per);
    return c->bufs[i / per] + (i % per) * c->piece;
}

static unsigned ring_size(const conv *c)
{
    return (unsigned)(2 * (CHUNK / c->piece));
}

static void *writer_main(void *arg)
{
    conv *c = arg;
    wslot *w = &c->w;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->head == w->tail && !w->quit) {
            w->writer_waits = true;
            pthread_cond_wait(&w->cv, &w->mu);
            w->writer_waits = false;
        }
        if (w->head == w->tail)
            break;
        const wjob *j = &w->job[w->head % NPIECE];  /* the reader leaves it alone */
        bool skip = w->failed; /* after a failure, only drain */
        pthread_mutex_unlock(&w->mu);
        bool bad = !skip && run_job(c, piece_buf(c, w->head), j) < 0;
        pthread_mutex_lock(&w->mu);
        w->failed |= bad;
        w->head++;
        if (w->reader_waits)
            pthread_cond_signal(&w->cv);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Wait until at most LEFT pieces are queued; returns -1 if a write failed. */
static int writer_wait(wslot *w, unsigned left)
{
    bool failed;
    pthread_mutex_lock(&w->mu);
    while (w->tail - w->head > left) {
        w->reader_waits = true;
        pthread_cond_wait(&w->cv, &w->mu);
        w->reader_waits = false;
    }
    failed = w->failed;
    pthread_mutex_unlock(&w->mu);
    return failed ? -1 : 0;
}

static void writer_start(conv *c)
{
    wslot *w = &c->w;
    if (pthread_mutex_init(&w->mu, NULL))
        return;
    if (pthread_cond_init(&w->cv, NULL)) {
        pthread_mutex_destroy(&w->mu);
        return;
    }
    /* without a thread, submit() writes synchronously */
    w->running = pthread_create(&w->thread, NULL, writer_main, c) == 0;
    if (!w->running) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
    }
}

/* Finish all writes; returns -1 if one failed. */
static int writer_stop(conv *c)
{
    wslot *w = &c->w;
    int rc;
    if (!w->running)
        return w->failed ? -1 : 0;
    rc = writer_wait(w, 0);
    pthread_mutex_lock(&w->mu);
    w->quit = true;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    w->running = false;
    return rc;
}

/* Queue the piece the reader just filled (N bytes for guest offset OFF) and
 * make sure the next one is free. */
static int submit(conv *c, uint64_t off, size_t n, const uint8_t *src)
{
    wslot *w = &c->w;
    const uint8_t *buf = src ? src : piece_buf(c, w->tail);
    if (!w->running) {
        wjob j;
        find_runs(c, buf, off, n, &j);
        j.src = src;
        if (run_job(c, buf, &j) < 0)
            return w->failed = true, -1;
        return 0;
    }
    /* the job slot is free: its piece is (writer_wait below) */
    find_runs(c, buf, off, n, &w->job[w->tail % NPIECE]);
    w->job[w->tail % NPIECE].src = src;
    pthread_mutex_lock(&w->mu);
    w->tail++;
    if (w->writer_waits)
        pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    return writer_wait(w, ring_size(c) - 1);
}

/* Read and write [START, END) piece by piece. */
static int copy_range(conv *c, uint64_t start, uint64_t end)
{
    while (start < end) {
        size_t n = end - start < c->piece ? (size_t)(end - start) : c->piece;
        uint8_t *buf = piece_buf(c, c->w.tail);
        int rc = c->snap < 0 ? qi_image_read(c->img, buf, start, n)
                             : qi_image_read_snapshot(c->img, (uint32_t)c->snap, buf,
                                                      start, n);
        if (rc < 0)
            return qi_cli_engine_error(qi_image_error(c->img), rc), -1;
        if (submit(c, start, n, NULL) < 0)
            return -1;
        start += n;
    }
    return 0;
}

/* Map the source file FILE read-only (once); false if it cannot be, or
 * if FILE is another file than the one mapped. */
static bool map_source(conv *c, const char *file)
{
    struct stat st;
    int fd;
    void *p;
    if (c->map)
        return !strcmp(file, c->map_file);
    if (c->map_failed)
        return false;
    c->map_failed = true;
    if ((fd = open(file, O_RDONLY | O_CLOEXEC)) < 0)
        return false;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        (p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0)) == MAP_FAILED) {
        close(fd);
        return false;
    }
    /* no MADV_SEQUENTIAL: pages seen through such a mapping do not count
     * as used, so the source would be the first thing reclaimed (and read
     * from disk by the next convert) */
    close(fd);
    c->map = p;
    c->map_len = (uint64_t)st.st_size;
    c->map_file = file;
    c->map_failed = false;
    return true;
}

/* Extent E written straight from the source mapping, piece by piece; 1 if
 * E is not such a run (the caller reads it), 0 done, -1 failed. */
static int copy_mapped(conv *c, const qi_map_ext *e)
{
    if (c->snap >= 0 || e->depth != 0 || e->compressed || !e->has_offset || !e->file ||
        e->offset > UINT64_MAX - e->length || !map_source(c, e->file) ||
        e->offset + e->length > c->map_len)
        return 1;
    for (uint64_t k = 0; k < e->length;) {
        size_t n = e->length - k < c->piece ? (size_t)(e->length - k) : c->piece;
        if (submit(c, e->start + k, n, c->map + e->offset + k) < 0)
            return -1;
        k += n;
    }
    return 0;
}

static int flush_span(conv *c)
{
    int rc = 0;
    if (c->span_end > c->span_start)
        rc = copy_range(c, c->span_start, c->span_end);
    c->span_start = c->span_end = 0;
    return rc;
}

/* Map callback: runs that read as zeros are skipped; others join the
 * pending span when they are close to it and the span stays small. */
static int conv_cb(void *payload, const qi_map_ext *e)
{
    conv *c = payload;
    uint64_t end = e->start + e->length;
    int rc;
    if (e->zero || !e->data)
        return 0;
    if ((rc = copy_mapped(c, e)) <= 0)
        return rc < 0 ? CONV_CB_STOP : 0;
    if (c->span_end > c->span_start && e->start <= c->span_end + GAP &&
        end - c->span_start <= CHUNK) {
        c->span_end = end;
        return 0;
    }
    if (flush_span(c) < 0)
        return CONV_CB_STOP;
    c->span_start = e->start;
    c->span_end = end;
    return 0;
}

/* Index of the snapshot SPEC names: "snapshot.id=ID", "snapshot.name=NAME",
 * both joined by a comma, or a bare ID-or-NAME (id first, as
 * bdrv_snapshot_load_tmp_by_id_or_name). -1 if none matches. */
static int find_snapshot(const qi_image *img, const char *spec)
{
    uint32_t n = 0;
    const qi_snapshot *sn = qi_meta_header(img) ? qi_meta_snapshots(img, &n) : NULL;
    char id[256] = "", name[256] = "";
    bool keyed = !strncmp(spec, "snapshot.", 9);
    if (keyed) {
        char tmp[600];
        snprintf(tmp, sizeof tmp, "%s", spec);
        for (char *save = NULL, *t = strtok_r(tmp, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (!strncmp(t, "snapshot.id=", 12))
                snprintf(id, sizeof id, "%s", t + 12);
            else if (!strncmp(t, "snapshot.name=", 14))
                snprintf(name, sizeof name, "%s", t + 14);
            else
                return -1;
        }
        for (uint32_t i = 0; sn && i < n; i++)
            if ((!*id || !strcmp(sn[i].id, id)) && (!*name || !strcmp(sn[i].name, name)))
                return (int)i;
        return -1;
    }
    for (uint32_t i = 0; sn && i < n; i++)
        if (!strcmp(sn[i].id, spec))
            return (int)i;
    for (uint32_t i = 0; sn && i < n; i++)
        if (!strcmp(sn[i].name, spec))
            return (int)i;
    return -1;
}

static int convert_data(conv *c)
{
    int rc;
    if (c->snap >= 0)
        return copy_range(c, 0, c->size) < 0 ? QI_CLI_ERR : QI_CLI_OK;
    rc = qi_image_map(c->img, 0, c->size, conv_cb, c);
    if (rc == CONV_CB_STOP)
        return QI_CLI_ERR;
    if (rc < 0)
        return qi_cli_engine_error(qi_image_error(c->img), rc);
    return flush_span(c) < 0 ? QI_CLI_ERR : QI_CLI_OK;
}

static int convert(conv *c)
{
    int rc;
    int fd = open(c->dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return qi_cli_error("%s: cannot create: %s", c->dst, strerror(errno));
    if (ftruncate(fd, (off_t)c->size) < 0) {
        close(fd);
        return qi_cli_error("%s: cannot set size to %" PRIu64 ": %s", c->dst, c->size,
                            strerror(errno));
    }
    /* Reopen, as qemu-img does (create, close, open): ext4 flushes a file
     * truncated to 0 on its first close (auto_da_alloc), which would make
     * the final close wait for the writeback of everything written. */
    close(fd);
    c->fd = open(c->dst, O_WRONLY | O_CLOEXEC);
    if (c->fd < 0)
        return qi_cli_error("%s: cannot open: %s", c->dst, strerror(errno));
    if (!(c->bufs[0] = aligned_alloc(4096, CHUNK)) || !(c->bufs[1] = aligned_alloc(4096, CHUNK)))
        return qi_cli_error("out of memory");
    c->piece = c->sparse > PIECE ? CHUNK : PIECE;
    writer_start(c);
    rc = convert_data(c);
    if (writer_stop(c) < 0)
        rc = QI_CLI_ERR;
    return rc;
}

/* Join -o arguments with ',' as qemu-img does. */
static int add_opts(qi_cli_convert_args *a, const char *arg)
{
    size_t old = a->opts ? strlen(a->opts) + 1 : 0;
    char *p = realloc(a->opts, old + strlen(arg) + 1);
    if (!p)
        return qi_cli_error("out of memory");
    if (old)
        p[old - 1] = ',';
    strcpy(p + old, arg);
    a->opts = p;
    return QI_CLI_OK;
}

static int parse_opt(int ch, const char *arg, qi_cli_convert_args *a, unsigned *flags)
{
    uint64_t v;
    char *end;
    long m;
    switch (ch) {
    case 'f':
        if (qi_cli_parse_format(arg, flags) < 0)
            return qi_cli_usage_error("convert", "Unknown file format '%s' (raw or qcow2)", arg);
        return QI_CLI_OK;
    case 'O':
        if (strcmp(arg, "qcow2") && strcmp(arg, "raw"))
            return qi_cli_usage_error("convert", "Unknown file format '%s' (raw or qcow2)", arg);
        a->qcow2 = !strcmp(arg, "qcow2");
        return QI_CLI_OK;
    case 'U': *flags |= QI_OPEN_FORCE_SHARE; return QI_CLI_OK;
    case 'X': *flags |= QI_OPEN_FORCE; return QI_CLI_OK;
    case 'l': a->snap = arg; return QI_CLI_OK;
    case 'B': a->backing = arg; return QI_CLI_OK;
    case 'F': a->backing_fmt = arg; return QI_CLI_OK;
    case 'o': return add_opts(a, arg);
    case 'c': a->compress = true; return QI_CLI_OK;
    case 'p': a->progress = true; return QI_CLI_OK;
    case 'q': a->quiet = true; return QI_CLI_OK;
    case 'n': a->no_create = true; return QI_CLI_OK;
    case 'W': return QI_CLI_OK;   /* writes in guest order are allowed out of order too */
    case 'S':
        if (qi_cli_parse_size(arg, &v) < 0)
            return qi_cli_error("Invalid buffer size for sparse output specified. You may use "
                                "k, M, G, T, P or E suffixes for\nqinspect: kilobytes, "
                                "megabytes, gigabytes, terabytes, petabytes and exabytes.");
        if (v % 512 || v > (16u << 20))
            return qi_cli_error("Invalid buffer size for sparse output specified. Valid sizes "
                                "are multiples of 512 up to 16777216. Select 0 to disable "
                                "sparse detection (fully allocates output).");
        a->sparse = v;
        return QI_CLI_OK;
    case 'm':
        errno = 0;
        m = strtol(arg, &end, 10);
        if (errno || *end || end == arg || m < 1 || m > 16)
            return qi_cli_error("Invalid number of coroutines. Allowed number of coroutines "
                                "is between 1 and 16");
        a->threads = (unsigned)m;
        return QI_CLI_OK;
    }
    return QI_CLI_USAGE;
}

static int parse_args(int argc, char **argv, qi_cli_convert_args *a, unsigned *flags)
{
    static const struct option lopts[] = {
        { "force-share", no_argument, NULL, 'U' },
        { "force", no_argument, NULL, 'X' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    int ch, rc;
    optind = 0;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, ":hf:O:Ul:S:co:pqnWm:B:F:", lopts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            qi_cli_help("convert",
                "  -O FMT       output format: raw (default) or qcow2\n"
                "  -o OPTS      qcow2 options as qemu-img create -o (cluster_size=,\n"
                "               compression_type=zlib|zstd, compat=, refcount_bits=, ...)\n"
                "  -c           compressed clusters (qcow2), compressed by -m threads\n"
                "  -m N         compressing threads, 1..16 (default: online CPUs)\n"
                "  -B FILE      new image with backing FILE (-F FMT): only the source's\n"
                "               own clusters are copied\n"
                "  -n           write into the existing DST (not created)\n"
                "  -l SNAPSHOT  snapshot.name=NAME, snapshot.id=ID or ID_OR_NAME\n"
                "  -S SIZE      hole granularity (default 4k, 0 = no holes)\n"
                "  -p           progress on a terminal; -q quiet; -W accepted\n"
                QI_CLI_FORCE_HELP);
            return -1;
        case ':': return qi_cli_usage_error("convert", "option '%s' needs an argument", argv[optind - 1]);
        case '?': return qi_cli_usage_error("convert", "unknown option '%s'", argv[optind - 1]);
        default:
            if ((rc = parse_opt(ch, optarg, a, flags)) != QI_CLI_OK)
                return rc;
        }
    }
    if (argc - optind != 2)
        return qi_cli_usage_error("convert", "expected SRC and DST arguments");
    a->src = argv[optind];
    a->dst = argv[optind + 1];
    return QI_CLI_OK;
}

/* The combinations qemu-img convert refuses, with its messages. */
static int check_args(const qi_cli_convert_args *a)
{
    if (a->no_create && a->opts)
        return qi_cli_error("-o has no effect when skipping image creation");
    if (a->backing && !a->qcow2)
        return qi_cli_error("Backing file not supported for file format 'raw'");
    if (a->compress && !a->qcow2)
        return qi_cli_error("Compression not supported for this file format");
    if (a->backing && !a->backing_fmt && !a->no_create)
        return qi_cli_error("Use of backing file requires explicit backing format");
    if (!a->qcow2 && a->no_create)
        return qi_cli_error("convert: -n with raw output is not supported yet");
    return QI_CLI_OK;
}

/* Index of the snapshot SPEC of C->img into C->snap; the size converted is
 * at most the snapshot's disk size. */
static int pick_snapshot(conv *c, const char *spec, uint64_t *full)
{
    uint32_t n = 0;
    const qi_snapshot *sn;
    if ((c->snap = find_snapshot(c->img, spec)) < 0)
        return qi_cli_error("%s: snapshot '%s' not found", c->src, spec);
    /* qemu-img keeps the current virtual size; past the snapshot's own
     * disk size nothing is mapped, so that part stays a hole */
    sn = qi_meta_snapshots(c->img, &n);
    *full = c->size;
    if (sn[c->snap].has_disk_size && sn[c->snap].disk_size < c->size)
        c->size = sn[c->snap].disk_size;
    return QI_CLI_OK;
}

int qi_cli_convert(int argc, char **argv)
{
    conv c = { .fd = -1, .sparse = BLOCK, .snap = -1 };
    qi_cli_convert_args a = { .sparse = BLOCK };
    unsigned flags = QI_OPEN_PROBE;
    uint64_t full = 0;
    int rc = parse_args(argc, argv, &a, &flags);
    if (rc < 0) {
        free(a.opts);
        return QI_CLI_OK; /* --help */
    }
    if (rc != QI_CLI_OK || (rc = check_args(&a)) != QI_CLI_OK)
        goto out;
    c.src = a.src;
    c.dst = a.dst;
    c.sparse = (size_t)a.sparse;
    if (!(c.img = qi_cli_open(c.src, flags))) {
        rc = QI_CLI_ERR;
        goto out;
    }
    c.size = full = qi_image_size(c.img);
    if (a.snap && (rc = pick_snapshot(&c, a.snap, &full)) != QI_CLI_OK)
        goto out;
    if (a.qcow2) {
        rc = qi_cli_convert_qcow2(&a, c.img, c.snap, full, c.size);
        goto out;
    }
    if (a.opts) {
        rc = qi_cli_error("convert: -o is not supported with raw output yet");
        goto out;
    }
    rc = convert(&c);
    if (rc == QI_CLI_OK && full > c.size && ftruncate(c.fd, (off_t)full) < 0)
        rc = qi_cli_error("%s: cannot set size: %s", c.dst, strerror(errno));
out:
    if (c.fd >= 0 && close(c.fd) < 0 && rc == QI_CLI_OK)
        rc = qi_cli_error("%s: close failed: %s", c.dst, strerror(errno));
    free(c.bufs[0]);
    free(c.bufs[1]);
    if (c.map)
        munmap(c.map, (size_t)c.map_len);
    free(a.opts);
    qi_image_close(c.img);
    return rc;
}
