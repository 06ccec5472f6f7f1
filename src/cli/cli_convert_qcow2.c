/* cli_convert_qcow2.c - `qinspect convert -O qcow2`: the guest view of an
 * image written to a new qcow2 image (layer 7).
 *
 * What is written follows qemu-img convert 7.2:
 *  - the target is created from -o (size: the source's), or opened with -n;
 *    with -B it has that backing file, and only what the source's top image
 *    holds is copied (its backing chain is what the new backing file
 *    stands for); without -B the backing chain is flattened;
 *  - ranges the source maps as zeros are not written to a new image
 *    without backing file (it reads zeros already); otherwise (-n, -B)
 *    they are zeroed (zero clusters);
 *  - data is written in runs of -S blocks that are not all zero (default
 *    4 KiB), so a target cluster is allocated when one of its blocks holds
 *    data; -S 0 writes everything, zeros included (fully allocated);
 *  - -c: each target cluster that is not all zero is compressed and stored
 *    with qi_image_write_compressed (uncompressed when it does not shrink).
 *    Worker threads (-m, default the online CPUs) compress; the main thread
 *    reads the source and writes the results in guest order. The work goes
 *    through a ring of SLOTS slots of SLOT_CLUSTERS clusters each (source
 *    bytes and their compressed form): the main thread fills slot s after
 *    it has written what that slot held before (s - SLOTS), so memory stays
 *    bounded and the writes stay in order;
 *  - -p: a progress line on a terminal (percent, rate, time left);
 *  - the target is opened QI_OPEN_UNSAFE (no fdatasync), as qemu-img's
 *    default cache=unsafe for the image it converts to;
 *  - on failure the target is left as it is (qemu-img does the same).
 * Calls: include/qi, opts.h, cli.h, POSIX threads. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "qi/compress.h"
#include "cli.h"
#include "convert.h"
#include "opts.h"

#define CHUNK (2u << 20)          /* bytes read at once (uncompressed) */
#define GAP (64u << 10)           /* zero gaps read along between data runs */
#define SLOT_CLUSTERS 8u          /* clusters per compression job */
#define CB_STOP 1

/* One compression job: SLOT_CLUSTERS clusters of source data at guest
 * offset OFF (N bytes), and each cluster's compressed length (0: did not
 * shrink, -1: all zero). */
enum { SLOT_EMPTY, SLOT_READY, SLOT_BUSY, SLOT_DONE };
typedef struct slot {
    int state;
    uint64_t seq;
    uint64_t off;
    size_t n;
    uint8_t *in, *out;
    long clen[SLOT_CLUSTERS];
} slot;

typedef struct qconv {
    const qi_cli_convert_args *a;
    qi_image *src, *dst;
    int snap;
    uint64_t size;                /* virtual size of the target */
    uint64_t data_end;            /* of a snapshot: its disk size (beyond: zeros) */
    uint32_t cs;
    bool zero_init;               /* the target reads zeros where not written */
    bool top_only;                /* -B: the source's backing chain is not copied */
    uint8_t *buf;                 /* CHUNK bytes (uncompressed path) */
    uint64_t span_start, span_end;
    int ctype;                    /* target compression type */
    /* compression pipeline */
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    pthread_t *thr;
    unsigned nthr;
    slot *slots;
    unsigned nslots;
    uint64_t seq_fill, seq_write, seq_take; /* next to fill / write / compress */
    bool quit, failed;
    /* progress */
    bool show;
    uint64_t done_bytes;
    double t0, last;
} qconv;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- progress (-p, terminal only) ---- */

static void progress(qconv *q, uint64_t pos, bool final)
{
    double t = now(), el = t - q->t0, pct, rate;
    if (!q->show || (!final && t - q->last < 0.2))
        return;
    q->last = t;
    pct = q->size ? 100.0 * (double)pos / (double)q->size : 100.0;
    rate = el > 0 ? (double)pos / el : 0;
    if (final) {
        printf("\r    (100.00/100%%) %.1f MiB/s, %.1f s          \n", rate / 1048576, el);
    } else {
        double left = rate > 0 ? (double)(q->size - pos) / rate : 0;
        printf("\r    (%.2f/100%%) %.1f MiB/s, %d:%02d left   ", pct, rate / 1048576,
               (int)left / 60, (int)left % 60);
    }
    fflush(stdout);
}

static bool is_zero(const uint8_t *p, size_t n)
{
    static const uint8_t z[4096];
    while (n) {
        size_t k = n < sizeof z ? n : sizeof z;
        if (memcmp(p, z, k))
            return false;
        p += k;
        n -= k;
    }
    return true;
}

static int dst_error(qconv *q, int rc)
{
    return qi_cli_engine_error(qi_image_error(q->dst), rc);
}

static int read_src(qconv *q, uint8_t *buf, uint64_t off, size_t n)
{
    int rc = q->snap < 0 ? qi_image_read(q->src, buf, off, n)
                         : qi_image_read_snapshot(q->src, (uint32_t)q->snap, buf, off, n);
    if (rc < 0)
        return qi_cli_engine_error(qi_image_error(q->src), rc);
    return QI_CLI_OK;
}

/* Zero [OFF, OFF+N) of the target unless it reads zeros already. */
static int put_zero(qconv *q, uint64_t off, uint64_t n)
{
    int rc;
    if (q->zero_init || !n)
        return QI_CLI_OK;
    /* qemu-img lets the target unmap unless -S 0 asked for allocation */
    if ((rc = qi_image_zero(q->dst, off, n, q->a->sparse != 0)) < 0)
        return dst_error(q, rc);
    return QI_CLI_OK;
}

/* ---- uncompressed output ---- */

/* Bytes [FROM, TO) of BUF (guest offset OFF): written, or zeroed if ZERO. */
static int put_run(qconv *q, const uint8_t *buf, uint64_t off, size_t from, size_t to,
                   bool zero)
{
    int rc;
    if (to <= from)
        return QI_CLI_OK;
    if (zero)
        return put_zero(q, off + from, to - from);
    if ((rc = qi_image_write(q->dst, buf + from, off + from, to - from)) < 0)
        return dst_error(q, rc);
    return QI_CLI_OK;
}

/* Write the N bytes of BUF at OFF: runs of -S blocks that are not all
 * zero (blocks aligned to guest offsets); the runs of zero blocks between
 * them are zeroed, each with one request, where the target does not read
 * zeros already (qemu-img's write_zeroes). */
static int write_runs(qconv *q, const uint8_t *buf, uint64_t off, size_t n)
{
    size_t bs = q->a->sparse, i = 0, run = 0;
    bool run_zero = false;
    int rc;
    if (!bs)
        return (rc = qi_image_write(q->dst, buf, off, n)) < 0 ? dst_error(q, rc) : QI_CLI_OK;
    while (i < n) {
        size_t blen = bs - (size_t)((off + i) % bs);
        bool zero;
        if (blen > n - i)
            blen = n - i;
        zero = is_zero(buf + i, blen);
        if (i > run && zero != run_zero && (rc = put_run(q, buf, off, run, i, run_zero)) != QI_CLI_OK)
            return rc;
        if (i == run || zero != run_zero) {
            run = i;
            run_zero = zero;
        }
        i += blen;
    }
    return put_run(q, buf, off, run, n, run_zero);
}

/* A read of the source on its own thread, so that it overlaps the write of
 * the previous chunk (qemu-img overlaps them with its parallel requests).
 * Only this thread touches the source image meanwhile, only the main
 * thread the target; errors are reported by the main thread after join. */
typedef struct readjob {
    qconv *q;
    uint8_t *buf;
    uint64_t off;
    size_t n;
    int rc;
} readjob;

static void *read_main(void *arg)
{
    readjob *j = arg;
    qconv *q = j->q;
    j->rc = q->snap < 0 ? qi_image_read(q->src, j->buf, j->off, j->n)
                        : qi_image_read_snapshot(q->src, (uint32_t)q->snap, j->buf, j->off, j->n);
    return NULL;
}

/* Copy [START, END) in CHUNK pieces through two buffers: chunk k+1 is read
 * on a thread while chunk k is written. */
static int copy_plain(qconv *q, uint64_t start, uint64_t end)
{
    uint8_t *bufs[2] = { q->buf, q->buf + CHUNK };
    size_t n = end - start < CHUNK ? (size_t)(end - start) : CHUNK;
    int cur = 0, rc;
    if (start >= end)
        return QI_CLI_OK;
    if ((rc = read_src(q, bufs[0], start, n)) != QI_CLI_OK)
        return rc;
    for (;;) {
        uint64_t next = start + n;
        readjob j = { q, bufs[!cur], next, 0, 0 };
        pthread_t t;
        bool ahead = false;
        if (next < end) {
            j.n = end - next < CHUNK ? (size_t)(end - next) : CHUNK;
            ahead = pthread_create(&t, NULL, read_main, &j) == 0;
        }
        rc = write_runs(q, bufs[cur], start, n);
        if (ahead)
            pthread_join(t, NULL);
        if (rc != QI_CLI_OK)
            return rc;
        q->done_bytes += n;
        progress(q, next, false);
        if (next >= end)
            return QI_CLI_OK;
        if (!ahead)
            read_main(&j);
        if (j.rc < 0)
            return qi_cli_engine_error(qi_image_error(q->src), j.rc);
        start = next;
        n = j.n;
        cur = !cur;
    }
}

/* ---- compressed output ---- */

static void *worker(void *arg)
{
    qconv *q = arg;
    qi_compressor *c = NULL;
    bool bad = qi_compressor_new(&c, q->ctype, q->cs) < 0;
    pthread_mutex_lock(&q->mu);
    for (;;) {
        slot *s = &q->slots[q->seq_take % q->nslots];
        while (!q->quit && !(s->state == SLOT_READY && s->seq == q->seq_take)) {
            pthread_cond_wait(&q->work, &q->mu);
            s = &q->slots[q->seq_take % q->nslots];
        }
        if (q->quit)
            break;
        s->state = SLOT_BUSY;
        q->seq_take++;
        pthread_mutex_unlock(&q->mu);
        for (size_t k = 0; k * q->cs < s->n; k++) {
            const uint8_t *in = s->in + k * q->cs;
            if (q->a->sparse && is_zero(in, q->cs))
                s->clen[k] = -1;
            else
                s->clen[k] = bad ? QI_ENOMEM : qi_compressor_run(c, in, s->out + k * q->cs);
        }
        pthread_mutex_lock(&q->mu);
        s->state = SLOT_DONE;
        pthread_cond_broadcast(&q->done);
    }
    pthread_mutex_unlock(&q->mu);
    qi_compressor_free(c);
    return NULL;
}

/* Write slot S (its compression done) to the target, in guest order. */
static int write_slot(qconv *q, slot *s)
{
    for (size_t k = 0; k * q->cs < s->n; k++) {
        uint64_t off = s->off + k * q->cs;
        size_t len = s->n - k * q->cs < q->cs ? s->n - k * q->cs : q->cs;
        int rc;
        if (s->clen[k] == -1) {
            if ((rc = put_zero(q, off, len)) != QI_CLI_OK)
                return rc;
            continue;
        }
        if (s->clen[k] < 0)
            return qi_cli_error("%s: compression failed: %s", q->a->dst,
                                qi_strerror((int)s->clen[k]));
        rc = qi_image_write_compressed(q->dst, off, s->in + k * q->cs, len,
                                       s->out + k * q->cs, (size_t)s->clen[k]);
        if (rc < 0)
            return dst_error(q, rc);
    }
    q->done_bytes += s->n;
    progress(q, s->off + s->n, false);
    return QI_CLI_OK;
}

/* Wait for the oldest job still to be written, and write it. */
static int drain_one(qconv *q)
{
    slot *s = &q->slots[q->seq_write % q->nslots];
    int rc;
    pthread_mutex_lock(&q->mu);
    while (s->state != SLOT_DONE)
        pthread_cond_wait(&q->done, &q->mu);
    pthread_mutex_unlock(&q->mu);
    rc = write_slot(q, s);
    pthread_mutex_lock(&q->mu);  /* workers look at every slot's state */
    s->state = SLOT_EMPTY;
    pthread_mutex_unlock(&q->mu);
    q->seq_write++;
    return rc;
}

/* Queue [OFF, OFF+N) (cluster aligned, N <= SLOT_CLUSTERS clusters; the
 * last cluster of the image may be cut) for compression. */
static int queue(qconv *q, uint64_t off, size_t n)
{
    slot *s = &q->slots[q->seq_fill % q->nslots];
    int rc;
    if (q->seq_fill - q->seq_write == q->nslots && (rc = drain_one(q)) != QI_CLI_OK)
        return rc;
    if (n % q->cs)
        memset(s->in + n, 0, q->cs - n % q->cs);  /* QEMU pads the last cluster */
    if ((rc = read_src(q, s->in, off, n)) != QI_CLI_OK)
        return rc;
    pthread_mutex_lock(&q->mu);  /* workers read seq under the lock */
    s->off = off;
    s->n = n;
    s->seq = q->seq_fill++;
    s->state = SLOT_READY;
    pthread_cond_broadcast(&q->work);
    pthread_mutex_unlock(&q->mu);
    return QI_CLI_OK;
}

static int copy_compressed(qconv *q, uint64_t start, uint64_t end)
{
    uint64_t job = (uint64_t)SLOT_CLUSTERS * q->cs;
    int rc;
    while (start < end) {
        uint64_t n = end - start < job ? end - start : job;
        if ((rc = queue(q, start, (size_t)n)) != QI_CLI_OK)
            return rc;
        start += n;
    }
    return QI_CLI_OK;
}

static int pipeline_start(qconv *q)
{
    unsigned want = q->a->threads;
    if (!want) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        want = n < 1 ? 1 : n > 16 ? 16 : (unsigned)n;
    }
    q->nslots = 2 * want + 1;
    if (!(q->slots = calloc(q->nslots, sizeof *q->slots)) ||
        !(q->thr = calloc(want, sizeof *q->thr)))
        return qi_cli_error("out of memory");
    for (unsigned i = 0; i < q->nslots; i++)
        if (!(q->slots[i].in = malloc(2 * (size_t)SLOT_CLUSTERS * q->cs)))
            return qi_cli_error("out of memory");
        else
            q->slots[i].out = q->slots[i].in + (size_t)SLOT_CLUSTERS * q->cs;
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->work, NULL);
    pthread_cond_init(&q->done, NULL);
    for (; q->nthr < want; q->nthr++)
        if (pthread_create(&q->thr[q->nthr], NULL, worker, q))
            break;
    if (!q->nthr)
        return qi_cli_error("cannot start a compression thread");
    return QI_CLI_OK;
}

/* Write what is still queued (when RC is OK), then stop the threads. */
static int pipeline_stop(qconv *q, int rc)
{
    if (!q->slots)
        return rc;
    if (q->nthr) {
        while (rc == QI_CLI_OK && q->seq_write < q->seq_fill)
            rc = drain_one(q);
        pthread_mutex_lock(&q->mu);
        q->quit = true;
        pthread_cond_broadcast(&q->work);
        pthread_mutex_unlock(&q->mu);
        for (unsigned i = 0; i < q->nthr; i++)
            pthread_join(q->thr[i], NULL);
        pthread_cond_destroy(&q->work);
        pthread_cond_destroy(&q->done);
        pthread_mutex_destroy(&q->mu);
    }
    for (unsigned i = 0; i < q->nslots; i++)
        free(q->slots[i].in);
    free(q->slots);
    free(q->thr);
    return rc;
}

/* ---- walking the source ---- */

static int copy_span(qconv *q, uint64_t start, uint64_t end)
{
    if (end <= start)
        return QI_CLI_OK;
    return q->a->compress ? copy_compressed(q, start, end) : copy_plain(q, start, end);
}

static int flush_span(qconv *q)
{
    int rc = copy_span(q, q->span_start, q->span_end);
    q->span_start = q->span_end = 0;
    return rc;
}

/* Map callback: zero runs are zeroed (or skipped), runs the new backing
 * file stands for (-B) are skipped, data runs gather into spans of whole
 * target clusters. */
static int map_cb(void *payload, const qi_map_ext *e)
{
    qconv *q = payload;
    uint64_t cs = q->cs, start, end;
    if (q->top_only && e->depth > 0)
        return 0;
    /* -S 0 writes zeros as data too (qemu-img: fully allocated output) */
    if ((e->zero || !e->data) && (q->a->sparse || q->top_only)) {
        if (!e->zero && q->top_only)
            return 0;
        /* a whole-cluster zero range outside the pending span */
        start = (e->start + cs - 1) / cs * cs;
        end = (e->start + e->length) / cs * cs;
        if (start < q->span_end)
            start = q->span_end;
        if (q->zero_init || end <= start)
            return 0;
        if (flush_span(q) != QI_CLI_OK || put_zero(q, start, end - start) != QI_CLI_OK)
            return CB_STOP;
        return 0;
    }
    start = e->start / cs * cs;
    end = (e->start + e->length + cs - 1) / cs * cs;
    if (end > q->size)
        end = q->size;
    if (q->span_end > q->span_start && start <= q->span_end + GAP) {
        q->span_end = end > q->span_end ? end : q->span_end;
        return 0;
    }
    if (flush_span(q) != QI_CLI_OK)
        return CB_STOP;
    q->span_start = start;
    q->span_end = end;
    return 0;
}

static int copy_all(qconv *q)
{
    int rc;
    if (q->snap >= 0)
        return copy_span(q, 0, q->data_end);
    rc = qi_image_map(q->src, 0, q->size, map_cb, q);
    if (rc == CB_STOP)
        return QI_CLI_ERR;
    if (rc < 0)
        return qi_cli_engine_error(qi_image_error(q->src), rc);
    return flush_span(q);
}

/* ---- the target ---- */

static int create_target(qconv *q)
{
    const qi_cli_convert_args *a = q->a;
    qi_cli_opts o = QI_CLI_OPTS_INIT;
    qi_create_opts c = QI_CREATE_OPTS_INIT;
    qi_open_opts oo = { QI_OPEN_RW | QI_OPEN_UNSAFE, 0, 0, NULL };
    qi_err err = { 0 };
    char msg[512] = "";
    int rc = QI_CLI_ERR;
    if (a->opts && (qi_cli_opts_add(&o, a->opts, msg, sizeof msg) < 0 ||
                    qi_cli_opts_parse(&o, msg, sizeof msg) < 0 ||
                    qi_cli_opts_to_create(&o, &c, msg, sizeof msg) < 0)) {
        rc = qi_cli_error("%s: error while converting qcow2: %s", a->dst, msg);
        goto out;
    }
    c.size = q->size;
    if (a->backing)
        c.backing_file = a->backing;
    if (a->backing_fmt)
        c.backing_fmt = a->backing_fmt;
    if (c.backing_fmt && !c.backing_file) {
        rc = qi_cli_error("%s: error while converting qcow2: Backing format cannot be used "
                          "without backing file", a->dst);
        goto out;
    }
    if (qi_image_create(&q->dst, a->dst, &c, &oo, &err) < 0) {
        rc = qi_cli_error("%s: error while converting qcow2: %s", a->dst, err.message);
        goto out;
    }
    /* -B or -o backing_file=: qemu-img's target_has_backing */
    q->zero_init = !c.backing_file;
    q->top_only = c.backing_file != NULL;
    rc = QI_CLI_OK;
out:
    qi_cli_opts_free(&o);
    return rc;
}

static int open_target(qconv *q)
{
    if (q->a->no_create) {
        if (!(q->dst = qi_cli_open(q->a->dst, QI_OPEN_RW | QI_OPEN_UNSAFE | QI_OPEN_PROBE)))
            return QI_CLI_ERR;
        q->zero_init = false;
        q->top_only = q->a->backing != NULL;
        return QI_CLI_OK;
    }
    return create_target(q);
}

int qi_cli_convert_qcow2(const qi_cli_convert_args *a, qi_image *src, int snap,
                         uint64_t size, uint64_t data_end)
{
    qconv q = { .a = a, .src = src, .snap = snap, .size = size, .data_end = data_end };
    const qi_header *h;
    int rc;
    if ((rc = open_target(&q)) != QI_CLI_OK)
        return rc;
    q.cs = qi_image_cluster_size(q.dst);
    h = qi_meta_header(q.dst);
    q.ctype = h ? h->compression_type : QI_COMPRESSION_ZLIB;
    q.show = a->progress && !a->quiet && isatty(STDOUT_FILENO);
    q.t0 = q.last = now();
    if (q.cs == 0)
        rc = qi_cli_error("%s: not a qcow2 image", a->dst);
    else if (a->compress)
        rc = pipeline_start(&q);
    else if (!(q.buf = malloc(2 * (size_t)CHUNK)))
        rc = qi_cli_error("out of memory");
    if (rc == QI_CLI_OK)
        rc = copy_all(&q);
    rc = pipeline_stop(&q, rc);
    if (rc == QI_CLI_OK && (rc = qi_image_flush(q.dst)) < 0)
        rc = dst_error(&q, rc);
    if (rc == QI_CLI_OK)
        progress(&q, q.size, true);
    free(q.buf);
    qi_image_close(q.dst);
    return rc;
}
