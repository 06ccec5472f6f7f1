/* Engine tests of image.c, rw.c and map.c on images made by qemu-img and
 * qemu-io (the oracle): open errors, backing chains (loops, depth limit,
 * missing files, shorter backing files), QEMU's locks, snapshot views, and
 * the cache rule that a sequential read loads each L2 table once. Expected
 * bytes come from `qemu-img convert -O raw`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <signal.h>
#include <time.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "image.h"
#include "tap.h"
#include "testutil.h"

/* Read the whole guest view (or snapshot SNAP >= 0) and compare with REF. */
static void same_as(const char *img_name, int snap, const char *ref, const char *what)
{
    qi_image *img;
    qi_err err;
    size_t len;
    uint8_t *want = tu_slurp(ref, &len), *got = NULL;
    if (qi_image_open(&img, tu_path(img_name), NULL, &err) < 0) {
        tap_ok(0, "%s: open failed: %s", what, err.message);
        free(want);
        return;
    }
    got = malloc(len ? len : 1);
    int rc = snap < 0 ? qi_image_read(img, got, 0, len)
                      : qi_image_read_snapshot(img, (uint32_t)snap, got, 0, len);
    tap_ok(rc == 0 && want && !memcmp(got, want, len), "%s", what);
    qi_image_close(img);
    free(want);
    free(got);
}

static int open_err(const char *name, qi_err *err, unsigned flags)
{
    qi_image *img = NULL;
    qi_open_opts o = QI_OPEN_OPTS_INIT;
    o.flags = flags;
    int rc = qi_image_open(&img, tu_path(name), &o, err);
    qi_image_close(img);
    return rc;
}

static void backing_chains(void)
{
    qi_err err;
    tu_sh("qemu-img create -f qcow2 la.qcow2 1M && qemu-img create -f qcow2 -b la.qcow2 "
          "-F qcow2 lb.qcow2 1M && qemu-img rebase -u -b lb.qcow2 -F qcow2 la.qcow2");
    tap_ok(open_err("lb.qcow2", &err, 0) == QI_ECORRUPT &&
           !strcmp(err.structure, "backing chain") && strstr(err.message, "loop"),
           "backing loop refused: %s", err.message);
    tu_sh("qemu-img create -f qcow2 d0.qcow2 1M && for i in $(seq 1 70); do "
          "qemu-img create -f qcow2 -u -b d$((i-1)).qcow2 -F qcow2 d$i.qcow2 1M; done");
    tap_ok(open_err("d70.qcow2", &err, 0) == QI_ECORRUPT && strstr(err.message, "deeper"),
           "70-deep chain refused at the depth limit: %s", err.message);
    tap_is_u64((uint64_t)open_err("d60.qcow2", &err, 0), 0, "60-deep chain opens");
    tu_sh("qemu-img create -f qcow2 -u -b nothere.qcow2 -F qcow2 miss.qcow2 1M");
    tap_ok(open_err("miss.qcow2", &err, 0) < 0 && strstr(err.message, "nothere.qcow2"),
           "missing backing file named: %s", err.message);
    tap_is_u64((uint64_t)open_err("miss.qcow2", &err, QI_OPEN_NO_BACKING), 0,
               "opens without its backing chain when asked");
    /* a 1 MiB raw base under a 3 MiB top in a subdirectory: relative name */
    tu_sh("mkdir -p sub && qemu-img create -f raw sub/base.raw 1M && "
          "qemu-io -f raw -c 'write -P 0x5a 0 1M' sub/base.raw && "
          "qemu-img create -f qcow2 -b base.raw -F raw sub/top.qcow2 3M && "
          "qemu-io -c 'write -P 0x6b 512k 1M' sub/top.qcow2 && "
          "qemu-img convert -O raw sub/top.qcow2 top.ref");
    same_as("sub/top.qcow2", -1, "top.ref", "shorter raw backing: zeros past its end");
    qi_image *img;
    if (qi_image_open(&img, tu_path("sub/top.qcow2"), NULL, &err) == 0) {
        tap_is_str(qi_image_backing_name(img), "base.raw", "backing name as stored");
        tap_is_str(qi_image_backing_full_name(img), tu_path("sub/base.raw"),
                   "backing name resolved next to the image");
        tap_is_str(qi_image_backing_format(img), "raw", "backing format extension");
        tap_is_str(qi_image_format(qi_image_backing(img)), "raw", "backing opened raw");
        qi_image_close(img);
    } else {
        tap_ok(0, "open sub/top.qcow2: %s", err.message);
    }
}

/* The qemu-io process that holds lk.qcow2 open for writing in locks(). It
 * is killed by kill_holder() at the end of locks() and at exit, and by the
 * kernel (PR_SET_PDEATHSIG) if this test dies any other way. */
static pid_t lock_holder;

static void kill_holder(void)
{
    if (lock_holder > 0) {
        kill(lock_holder, SIGKILL);
        waitpid(lock_holder, NULL, 0);
        lock_holder = 0;
    }
}

/* Start `qemu-io -c 'sleep 600000' NAME` (600 s) with its output in
 * NAME.log; returns its pid, or -1. */
static pid_t start_holder(const char *name)
{
    char log[600];
    pid_t parent = getpid(), pid;
    snprintf(log, sizeof log, "%s.log", tu_path(name));
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127);
        execlp("qemu-io", "qemu-io", "-f", "qcow2", "-c", "sleep 600000", tu_path(name),
               (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* 1 if the oracle sees the lock: qemu-img info on NAME is refused with
 * QEMU's own lock error. */
static int lock_refused(const char *name)
{
    return tu_sh("qemu-img info %s 2>&1 | grep -q 'Failed to get shared \"write\" lock'",
                 name) == 0;
}

/* 1 if /proc/locks shows an OFD lock on NAME's inode (the kernel's view;
 * looking does not take a lock, unlike qemu-img info, whose own shared lock
 * would make a qemu-io that is still starting fail to get "write"). */
static int ofd_locked(const char *name)
{
    struct stat st;
    char line[256], want[64];
    int found = 0;
    FILE *f;
    if (stat(tu_path(name), &st) < 0 || !(f = fopen("/proc/locks", "r")))
        return 0;
    snprintf(want, sizeof want, ":%llu ", (unsigned long long)st.st_ino);
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, "OFDLCK") && strstr(line, want);
    fclose(f);
    return found;
}

/* Wait until the oracle sees the lock that PID (qemu-io) takes on NAME, for
 * at most 60 s however loaded the machine is: first in /proc/locks, then
 * qemu-img info must be refused. Returns 1 when it is, 0 with WHY set when
 * qemu-io exited first or the time ran out. */
static int wait_for_lock(pid_t pid, const char *name, char *why, size_t n)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        if (ofd_locked(name) && lock_refused(name))
            return 1;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            lock_holder = 0;
            snprintf(why, n, "qemu-io exited (status %d) before it held the lock",
                     WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
            return 0;
        }
        clock_gettime(CLOCK_MONOTONIC, &t);
        if (t.tv_sec - t0.tv_sec >= 60) {
            snprintf(why, n, "qemu-io did not hold the lock within 60 s "
                     "(qemu-img info still opens the image)");
            return 0;
        }
        usleep(50000);
    }
}

static void locks(void)
{
    qi_err err;
    char why[200] = "qemu-img create failed";
    int held = 0;
    atexit(kill_holder);
    if (tu_sh("qemu-img create -f qcow2 lk.qcow2 1M") == 0) {
        snprintf(why, sizeof why, "cannot start qemu-io");
        lock_holder = start_holder("lk.qcow2");
        if (lock_holder > 0)
            held = wait_for_lock(lock_holder, "lk.qcow2", why, sizeof why);
    }
    if (!tap_ok(held, "setup: qemu-io holds the write lock on lk.qcow2 (qemu-img info is "
                "refused)%s%s", held ? "" : ": ", held ? "" : why)) {
        size_t len;
        char *log = (char *)tu_slurp("lk.qcow2.log", &len);
        if (log && len)
            tap_diag("qemu-io: %.*s", (int)(len > 300 ? 300 : len), log);
        free(log);
    } else {
        tap_ok(open_err("lk.qcow2", &err, 0) == QI_EBUSY && strstr(err.message, "write"),
               "read-only open refused while QEMU writes: %s", err.message);
        tap_is_u64((uint64_t)open_err("lk.qcow2", &err, QI_OPEN_FORCE_SHARE), 0,
                   "force-share (-U) reads anyway");
        tap_ok(lock_refused("lk.qcow2"), "qemu-io still held the lock after the checks");
    }
    kill_holder();
    tap_is_u64((uint64_t)open_err("lk.qcow2", &err, 0), 0, "opens after QEMU is gone");
}

static void snapshots_and_cache(void)
{
    qi_image *img;
    qi_err err;
    tu_sh("qemu-img create -f qcow2 -o cluster_size=512 sn.qcow2 8M && "
          "qemu-io -c 'write -P 0x11 0 8M' sn.qcow2 && qemu-img snapshot -c one sn.qcow2 && "
          "qemu-io -c 'write -P 0x22 1M 2M' -c 'discard 6M 512' "
          "-c 'write -c -P 0x33 6M 512' sn.qcow2 && "
          "qemu-img convert -O raw sn.qcow2 sn.ref && "
          "qemu-img convert -l snapshot.name=one -O raw sn.qcow2 sn1.ref");
    same_as("sn.qcow2", -1, "sn.ref", "active view after snapshot and COW");
    same_as("sn.qcow2", 0, "sn1.ref", "snapshot 'one' view as qemu-img convert -l");
    if (qi_image_open(&img, tu_path("sn.qcow2"), NULL, &err) < 0) {
        tap_ok(0, "open sn.qcow2: %s", err.message);
        return;
    }
    uint32_t n;
    const qi_snapshot *s = qi_meta_snapshots(img, &n);
    tap_ok(n == 1 && !strcmp(s[0].name, "one") && !strcmp(s[0].id, "1"),
           "snapshot table: id 1, name one");
    /* 8 MiB / (512 B * 64 entries) = 256 L2 tables in the active L1 */
    size_t len = 8u << 20;
    uint8_t *buf = malloc(len);
    uint64_t before = img->l2_cache->reads;
    for (size_t off = 0; off < len; off += 4096)
        qi_image_read(img, buf + off, off, 4096);
    tap_is_u64(img->l2_cache->reads - before, 256,
               "a sequential read in 4 KiB pieces loads each of 256 L2 tables once");
    uint64_t rc;
    tap_ok(qi_meta_refcount(img, 0, &rc) == 0 && rc == 1, "header cluster refcount 1");
    qi_l1_entry l1;
    qi_meta_l1_get(img, 32, &l1); /* guest 1 MiB = 32 * 64 * 512 */
    tap_ok(qi_meta_refcount(img, l1.l2_offset, &rc) == 0 && rc == 1 && l1.copied,
           "L2 table for guest 1 MiB, rewritten after the snapshot: refcount 1, COPIED");
    qi_meta_l1_get(img, 200, &l1);
    tap_ok(qi_meta_refcount(img, l1.l2_offset, &rc) == 0 && rc == 2 && !l1.copied,
           "an L2 table shared with the snapshot: refcount 2, COPIED clear");
    free(buf);
    qi_image_close(img);
}

/* Raw header edits (qi_meta_header_set, qi_meta_poke into the header): the
 * bytes land at the field's offset (read back from the file), a header that
 * no longer validates refuses everything but raw edits with the validation
 * error, and a raw edit that makes it valid ends that state; an image with
 * the corrupt bit opens read-write only with QI_OPEN_REPAIR, where guest
 * writes wait until the bit is clear. */
static void header_edits(void)
{
    qi_image *img = NULL;
    qi_err err;
    qi_open_opts o = QI_OPEN_OPTS_INIT;
    uint64_t old = 0;
    uint8_t b[512], c40[4] = { 0, 0, 0, 40 }, c16[4] = { 0, 0, 0, 16 }, was[4];
    qi_l1_entry l1;
    if (tu_sh("qemu-img create -f qcow2 he.qcow2 4M && qemu-io -c 'write -P 7 0 64k' he.qcow2")) {
        tap_ok(0, "he.qcow2 made");
        return;
    }
    o.flags = QI_OPEN_RW;
    if (qi_image_open(&img, tu_path("he.qcow2"), &o, &err) < 0) {
        tap_ok(0, "open he.qcow2 rw: %s", err.message);
        return;
    }
    int rc = qi_meta_header_set(img, "cluster_bits", 40, &old);
    const qi_err *he = qi_image_header_error(img);
    tap_ok(rc == 0 && old == 16 && tu_file_be("he.qcow2", 20, 4) == 40 && he &&
           he->code == QI_ECORRUPT && strstr(he->message, "cluster_bits 40"),
           "cluster_bits 40: on disk, old value 16, the image broken: %s", he ? he->message : "");
    tap_ok(qi_image_read(img, b, 0, 512) == QI_ECORRUPT &&
           qi_meta_l1_get(img, 0, &l1) == QI_ECORRUPT &&
           qi_image_write(img, b, 0, 512) == QI_ECORRUPT &&
           qi_meta_set_refcount(img, 0, 1, &old) == QI_ECORRUPT &&
           strstr(qi_image_error(img)->message, "cluster_bits 40"),
           "broken: read, L1 entry, write and set_refcount refused with the validation error");
    rc = qi_meta_header_set(img, "cluster_bits", 16, &old);
    tap_ok(rc == 0 && old == 40 && !qi_image_header_error(img) &&
           qi_image_read(img, b, 0, 512) == 0 && b[0] == 7 && b[511] == 7,
           "cluster_bits 16 again: valid, reads work");
    rc = qi_meta_poke(img, 20, c40, 4, was);
    tap_ok(rc == 0 && qi_image_header_error(img) && !memcmp(was, c16, 4) &&
           qi_meta_poke(img, 20, c16, 4, was) == 0 && !qi_image_header_error(img) &&
           qi_image_read(img, b, 0, 512) == 0 && b[0] == 7,
           "the same break and repair through qi_meta_poke");
    tap_ok(qi_meta_header_set(img, "cluster_bits", 1ull << 32, &old) == QI_EINVAL &&
           qi_meta_header_set(img, "compression_type", 256, &old) == QI_EINVAL &&
           qi_meta_header_set(img, "nope", 0, &old) == QI_EINVAL &&
           tu_file_be("he.qcow2", 20, 4) == 16, "too wide or unknown: refused, nothing written");
    /* the corrupt bit set by hand: guest writes refused until it is clear */
    rc = qi_meta_header_set(img, "incompatible_features", QI_INCOMPAT_CORRUPT, &old);
    tap_ok(rc == 0 && qi_image_write(img, b, 0, 512) == QI_ECORRUPT &&
           strstr(qi_image_error(img)->message, "marked corrupt; raw edits and repair only"),
           "corrupt bit set: a guest write is refused: %s", qi_image_error(img)->message);
    qi_image_close(img);
    img = NULL;
    tap_ok(open_err("he.qcow2", &err, QI_OPEN_RW) == QI_ECORRUPT &&
           strstr(err.message, "marked corrupt"), "marked corrupt: read-write open refused");
    o.flags = QI_OPEN_RW | QI_OPEN_REPAIR;
    if (qi_image_open(&img, tu_path("he.qcow2"), &o, &err) < 0) {
        tap_ok(0, "open he.qcow2 for repair: %s", err.message);
        return;
    }
    tap_ok(qi_image_write(img, b, 0, 512) == QI_ECORRUPT &&
           qi_meta_header_set(img, "incompatible_features", 0, &old) == 0 &&
           old == QI_INCOMPAT_CORRUPT && qi_image_write(img, b, 0, 512) == 0 &&
           qi_image_flush(img) == 0, "QI_OPEN_REPAIR: write refused, bit cleared, write works");
    qi_image_close(img);
    tap_ok(tu_sh("qemu-img check he.qcow2") == 0, "he.qcow2: qemu-img check clean");
}

int main(void)
{
    qi_err err;
    if (tu_scratch("image") < 0)
        return 1;
    tap_ok(open_err("absent.qcow2", &err, 0) == QI_ENOENT &&
           strstr(err.file, "absent.qcow2"), "missing file: ENOENT naming it");
    tu_sh("printf 'not an image at all' > junk.qcow2");
    tap_ok(open_err("junk.qcow2", &err, 0) == QI_ECORRUPT && !strcmp(err.structure, "header"),
           "non-qcow2 file refused as qcow2: %s", err.message);
    tap_is_u64((uint64_t)open_err("junk.qcow2", &err, QI_OPEN_PROBE), 0,
               "probing opens it as raw");
    backing_chains();
    locks();
    snapshots_and_cache();
    header_edits();
    tu_cleanup();
    return tap_done();
}
