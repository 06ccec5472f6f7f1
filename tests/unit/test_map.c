/* Tests of map.c over cluster.c's runs: qi_image_map must report the same
 * records as `qemu-img map --output=json` (the oracle), field by field, on
 * images whose layout decides how runs merge:
 * - guest clusters written in reverse order (descending host offsets: no
 *   two may merge) next to a contiguous write (one record);
 * - the same with extended L2 and with 512-byte clusters (runs meet L2
 *   table ends);
 * - zero clusters that keep their host offsets, compressed clusters, and
 *   subclusters of all three states. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "tap.h"
#include "testutil.h"

typedef struct rec {
    uint64_t start, length, offset;
    int depth;
    bool present, zero, data, has_offset;
} rec;

typedef struct recs {
    rec *r;
    size_t n, cap;
} recs;

static void push(recs *v, const rec *r)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? 2 * v->cap : 64;
        v->r = realloc(v->r, v->cap * sizeof *v->r);
    }
    v->r[v->n++] = *r;
}

/* Value of "KEY": in the object text [P, END), as a number or a boolean;
 * -1 (and *found = false) when absent. */
static uint64_t field(const char *p, const char *end, const char *key, bool *found)
{
    char pat[40];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *k = strstr(p, pat);
    *found = k && k < end;
    if (!*found)
        return (uint64_t)-1;
    k += strlen(pat);
    while (*k == ' ')
        k++;
    if (!strncmp(k, "true", 4))
        return 1;
    if (!strncmp(k, "false", 5))
        return 0;
    return strtoull(k, NULL, 10);
}

/* The records of `qemu-img map --output=json` in file NAME. */
static int parse_qemu_map(const char *name, recs *v)
{
    size_t len;
    char *text = (char *)tu_slurp(name, &len);
    if (!text)
        return -1;
    int bad = 0;
    for (char *p = strchr(text, '{'); p; p = strchr(p + 1, '{')) {
        char *end = strchr(p, '}');
        bool fs, fl, fd, fp, fz, fa;
        rec r = { 0 };
        if (!end)
            break;
        r.start = field(p, end, "start", &fs);
        r.length = field(p, end, "length", &fl);
        r.depth = (int)field(p, end, "depth", &fd);
        r.present = field(p, end, "present", &fp) == 1;
        r.zero = field(p, end, "zero", &fz) == 1;
        r.data = field(p, end, "data", &fa) == 1;
        r.offset = field(p, end, "offset", &r.has_offset);
        if (!r.has_offset)
            r.offset = 0;
        bad |= !(fs && fl && fd && fp && fz && fa);
        push(v, &r);
    }
    free(text);
    return bad || !v->n ? -1 : 0;
}

static int on_ext(void *p, const qi_map_ext *e)
{
    rec r = { .start = e->start, .length = e->length, .depth = e->depth,
              .present = e->present, .zero = e->zero, .data = e->data,
              .has_offset = e->has_offset, .offset = e->has_offset ? e->offset : 0 };
    push(p, &r);
    return 0;
}

static bool rec_eq(const rec *a, const rec *b)
{
    return a->start == b->start && a->length == b->length && a->depth == b->depth &&
           a->present == b->present && a->zero == b->zero && a->data == b->data &&
           a->has_offset == b->has_offset && a->offset == b->offset;
}

static void describe(const char *who, const rec *r)
{
    tap_diag("  %s: start %" PRIu64 " length %" PRIu64 " depth %d present %d zero %d "
             "data %d offset %s%" PRIu64, who, r->start, r->length, r->depth, r->present,
             r->zero, r->data, r->has_offset ? "" : "(none) ", r->offset);
}

/* Make NAME with MAKE (run in the test directory), then compare the maps.
 * MIN_RECORDS guards the layout: fewer records than that means the image
 * no longer has the fragmentation the test is about. */
static void same_map(const char *name, const char *make, size_t min_records)
{
    char json[80];
    recs want = { 0 }, got = { 0 };
    qi_image *img;
    qi_err err;
    snprintf(json, sizeof json, "%s.json", name);
    if (tu_sh("%s && qemu-img check %s && qemu-img map --output=json %s >%s", make, name,
              name, json) != 0 || parse_qemu_map(json, &want) < 0) {
        tap_ok(0, "%s: made, clean, and mapped by qemu-img", name);
        free(want.r);
        return;
    }
    if (qi_image_open(&img, tu_path(name), NULL, &err) < 0) {
        tap_ok(0, "%s: open: %s", name, err.message);
        free(want.r);
        return;
    }
    int rc = qi_image_map(img, 0, qi_image_size(img), on_ext, &got);
    size_t i = 0;
    while (i < want.n && i < got.n && rec_eq(&want.r[i], &got.r[i]))
        i++;
    if (rc < 0)
        tap_diag("%s: %s", name, qi_image_error(img)->message);
    if (rc == 0 && (i < want.n || i < got.n)) {
        tap_diag("%s: record %zu of %zu (qemu-img) / %zu (qinspect) differs:", name, i,
                 want.n, got.n);
        if (i < want.n)
            describe("qemu-img", &want.r[i]);
        if (i < got.n)
            describe("qinspect", &got.r[i]);
    }
    tap_ok(rc == 0 && i == want.n && i == got.n && want.n >= min_records,
           "%s: %zu map records equal qemu-img map's", name, want.n);
    qi_image_close(img);
    free(want.r);
    free(got.r);
}

/* NCL clusters of size CS written last to first, then 4 clusters in one
 * write: NCL records plus one. Commands go through a file (qemu-io reads
 * them from stdin), there are too many for one command line. */
static void reverse_order(const char *name, unsigned cs, const char *opts, unsigned ncl)
{
    char make[600];
    if (tu_reverse_cmds(cs, ncl) < 0) {
        tap_ok(0, "%s: qemu-io commands written", name);
        return;
    }
    snprintf(make, sizeof make, "qemu-img create -f qcow2 -o cluster_size=%u%s %s %u && "
             "qemu-io %s <cmds", cs, opts, name, (ncl + 8) * cs, name);
    same_map(name, make, ncl + 1);
}

int main(void)
{
    if (tu_scratch("map") < 0)
        return 1;
    reverse_order("rev64k.qcow2", 65536, "", 12);
    reverse_order("rev-ext.qcow2", 65536, ",extended_l2=on", 12);
    reverse_order("rev512.qcow2", 512, "", 150);
    same_map("zalloc.qcow2", "qemu-img create -f qcow2 zalloc.qcow2 8M && "
             "qemu-io -c 'write -P 3 1M 512k' -c 'write -P 1 0 1M' -c 'write -z 64k 128k' "
             "-c 'write -z 1M 128k' -c 'write -zu 2M 64k' zalloc.qcow2", 6);
    same_map("comp.qcow2", "qemu-img create -f qcow2 comp.qcow2 8M && "
             "qemu-io -c 'write -c -P 1 0 256k' -c 'write -P 2 256k 64k' "
             "-c 'write -c -P 3 1M 128k' comp.qcow2", 4);
    same_map("subc.qcow2", "qemu-img create -f qcow2 -o extended_l2=on subc.qcow2 4M && "
             "qemu-io -c 'write -P 1 4k 4k' -c 'write -P 2 0 2k' -c 'write -z 8k 4k' "
             "-c 'write -P 3 20k 40k' -c 'write -P 4 128k 64k' -c 'write -P 5 64k 8k' "
             "subc.qcow2", 6);
    tu_cleanup();
    return tap_done();
}
