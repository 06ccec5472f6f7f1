/* testutil.c - the unit-test helpers declared in testutil.h (test support,
 * not engine).
 *
 * State is the scratch directory's name, set once by tu_scratch(), and the
 * buffers tu_path() returns. Calls: libc only, never engine code, so the
 * raw parsing here stays an oracle independent of qinspect's own. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "testutil.h"

static char dir[64];

int tu_scratch(const char *name)
{
    snprintf(dir, sizeof dir, "/tmp/qi-%s-XXXXXX", name);
    return mkdtemp(dir) ? 0 : -1;
}

int tu_cleanup(void)
{
    char cmd[300];
    if (getenv("KEEP"))
        return 0;
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd);
}

int tu_sh(const char *fmt, ...)
{
    char cmd[4096], full[4200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "cd %s && (%s) >/dev/null 2>&1", dir, cmd);
    return system(full);
}

char *tu_path(const char *name)
{
    static char buf[8][600];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

uint8_t *tu_slurp(const char *name, size_t *len)
{
    FILE *f = fopen(tu_path(name), "rb");
    uint8_t *p = NULL;
    off_t size;
    *len = 0;
    if (!f)
        return NULL;
    if (fseeko(f, 0, SEEK_END) == 0 && (size = ftello(f)) >= 0 &&
        fseeko(f, 0, SEEK_SET) == 0 && (p = malloc((size_t)size + 1))) {
        if (fread(p, 1, (size_t)size, f) == (size_t)size) {
            p[size] = 0;
            *len = (size_t)size;
        } else {
            free(p);
            p = NULL;
        }
    }
    fclose(f);
    return p;
}

uint64_t tu_file_be(const char *name, uint64_t off, unsigned n)
{
    uint8_t b[8] = { 0 };
    uint64_t v = 0;
    FILE *f = fopen(tu_path(name), "rb");
    if (f && n <= 8 && fseeko(f, (off_t)off, SEEK_SET) == 0 && fread(b, 1, n, f) == n)
        for (unsigned i = 0; i < n; i++)
            v = v << 8 | b[i];
    if (f)
        fclose(f);
    return v;
}

int tu_file_put_be(const char *name, uint64_t off, uint64_t v, unsigned n)
{
    uint8_t b[8];
    if (n < 1 || n > 8)
        return -1;
    for (unsigned i = 0; i < n; i++)
        b[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    FILE *f = fopen(tu_path(name), "r+b");
    int ok = f && fseeko(f, (off_t)off, SEEK_SET) == 0 && fwrite(b, 1, n, f) == n;
    if (f && fclose(f) != 0)
        ok = 0;
    return ok ? 0 : -1;
}

int tu_raw_read(tu_raw *r, const char *name)
{
    size_t len;
    memset(r, 0, sizeof *r);
    r->b = tu_slurp(name, &len);
    r->len = len;
    return r->b ? 0 : -1;
}

int tu_raw_load(tu_raw *r, const char *name)
{
    if (tu_raw_read(r, name) < 0)
        return -1;
    uint32_t version = (uint32_t)tu_raw_be(r, 4, 4);
    r->cbits = (unsigned)tu_raw_be(r, 20, 4);
    r->l1_size = tu_raw_be(r, 36, 4);
    r->l1_off = tu_raw_be(r, 40, 8);
    r->rt_off = tu_raw_be(r, 48, 8);
    r->rt_len = tu_raw_be(r, 56, 4) << r->cbits;
    r->order = version >= 3 ? (unsigned)tu_raw_be(r, 96, 4) : 4;
    r->extl2 = version >= 3 && (tu_raw_be(r, 72, 8) & 16);
    return r->len >= 104 && r->order <= 6 && r->cbits >= 9 && r->cbits <= 21 ? 0 : -1;
}

uint64_t tu_raw_be(const tu_raw *r, uint64_t off, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = v << 8 | (off + i < r->len ? r->b[off + i] : 0);
    return v;
}

uint64_t tu_raw_per_block(const tu_raw *r)
{
    return (8ull << r->cbits) >> r->order;
}

uint64_t tu_raw_refcount(const tu_raw *r, uint64_t k)
{
    unsigned w = 1u << r->order;
    uint64_t per_block = tu_raw_per_block(r), ti = k / per_block, bi = k % per_block;
    if (ti >= r->rt_len / 8)
        return 0;
    uint64_t blk = tu_raw_be(r, r->rt_off + 8 * ti, 8) & ~511ull;
    if (!blk)
        return 0;
    if (w >= 8)
        return tu_raw_be(r, blk + bi * (w / 8), w / 8);
    return (tu_raw_be(r, blk + bi * w / 8, 1) >> (bi * w % 8)) & ((1u << w) - 1);
}

int tu_reverse_cmds(unsigned cs, unsigned ncl)
{
    FILE *f = fopen(tu_path("cmds"), "w");
    if (!f)
        return -1;
    for (unsigned i = ncl; i-- > 0;)
        fprintf(f, "write -P %u %u %u\n", 1 + i % 250, i * cs, cs);
    fprintf(f, "write -P 251 %u %u\n", (ncl + 2) * cs, 4 * cs);
    return fclose(f) == 0 ? 0 : -1;
}
