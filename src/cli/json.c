/* json.c - JSON value tree, QEMU-style rendering, buffered output (layer 7).
 *
 * qemu-img prints QAPI objects through QEMU's QDict, a hash table of 512
 * buckets (qobject/qdict.c): iteration goes bucket by bucket, and inside a
 * bucket the newest member comes first. Its JSON writer (qobject/
 * json-writer.c) pretty-prints with 4 spaces per level. To print the same
 * bytes, an object here keeps members in insertion order (the QAPI field
 * order) and the renderer sorts them by (bucket, reverse insertion) when
 * asked for QDict order. Strings are escaped as QEMU's quoted_str does.
 * The qi_outbuf part is a plain buffered writer for the `map` hot loop.
 * Calls: libc only. Invariant: a node marked failed makes every render of
 * a tree containing it return NULL, so a half-built tree is never printed. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"

enum { J_BOOL, J_INT, J_UINT, J_STR, J_ARRAY, J_OBJECT };

struct qi_json {
    int type;
    bool failed;
    bool b;
    int64_t i;
    uint64_t u;
    char *s;
    qi_json **items;   /* array elements or object values */
    char **keys;       /* object member names */
    size_t n, cap;
};

static qi_json *node(int type)
{
    qi_json *v = calloc(1, sizeof *v);
    if (v)
        v->type = type;
    return v;
}

qi_json *qi_json_object(void) { return node(J_OBJECT); }
qi_json *qi_json_array(void) { return node(J_ARRAY); }

qi_json *qi_json_string(const char *s)
{
    qi_json *v = node(J_STR);
    if (v && !(v->s = strdup(s ? s : ""))) {
        free(v);
        return NULL;
    }
    return v;
}

qi_json *qi_json_int(int64_t x)
{
    qi_json *v = node(J_INT);
    if (v)
        v->i = x;
    return v;
}

qi_json *qi_json_uint(uint64_t x)
{
    qi_json *v = node(J_UINT);
    if (v)
        v->u = x;
    return v;
}

qi_json *qi_json_bool(bool x)
{
    qi_json *v = node(J_BOOL);
    if (v)
        v->b = x;
    return v;
}

static bool grow(qi_json *c)
{
    if (c->n < c->cap)
        return true;
    size_t cap = c->cap ? c->cap * 2 : 8;
    qi_json **items = realloc(c->items, cap * sizeof *items);
    if (!items)
        return false;
    c->items = items;
    if (c->type == J_OBJECT) {
        char **keys = realloc(c->keys, cap * sizeof *keys);
        if (!keys)
            return false;
        c->keys = keys;
    }
    c->cap = cap;
    return true;
}

void qi_json_set(qi_json *obj, const char *key, qi_json *val)
{
    char *k = NULL;
    if (!obj) {
        qi_json_free(val);
        return;
    }
    if (!val || !grow(obj) || !(k = strdup(key))) {
        obj->failed = true;
        qi_json_free(val);
        return;
    }
    obj->keys[obj->n] = k;
    obj->items[obj->n++] = val;
}

void qi_json_push(qi_json *arr, qi_json *val)
{
    if (!arr) {
        qi_json_free(val);
        return;
    }
    if (!val || !grow(arr)) {
        arr->failed = true;
        qi_json_free(val);
        return;
    }
    arr->items[arr->n++] = val;
}

void qi_json_free(qi_json *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->n; i++) {
        qi_json_free(v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->s);
    free(v);
}

/* ---- growable string ---- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool failed;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_puts(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        sb_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static void sb_indent(sbuf *b, int level)
{
    sb_add(b, "\n", 1);
    for (int i = 0; i < level; i++)
        sb_add(b, "    ", 4);
}

static char *sb_finish(sbuf *b)
{
    if (b->failed || !b->p) {
        free(b->p);
        return b->failed ? NULL : strdup("");
    }
    return b->p;
}

/* ---- QEMU string escaping ---- */

/* One code point of (modified) UTF-8 at S, as QEMU's mod_utf8_codepoint
 * decodes it (util/unicode.c): -1 for anything invalid (overlong forms
 * except C0 80, surrogates, noncharacters, beyond U+10FFFF). *END is set
 * past the bytes consumed. */
static int utf8_codepoint(const unsigned char *s, const unsigned char **end)
{
    static const int min_cp[5] = { 0x80, 0x800, 0x10000, 0x200000, 0x4000000 };
    const unsigned char *p = s;
    unsigned byte = *p++, mask, len = 0;
    int cp;
    if (byte < 0x80) {
        cp = (int)byte;
    } else if (byte >= 0xFE || !(byte & 0x40)) {
        cp = -1;
    } else {
        for (mask = 0x80; byte & mask; mask >>= 1)
            len++;
        cp = (int)(byte & (mask - 1));
        for (unsigned i = 1; i < len; i++) {
            byte = *p; /* a NUL stops the sequence: (0 & 0xC0) != 0x80 */
            if ((byte & 0xC0) != 0x80) {
                *end = p;
                return -1;
            }
            p++;
            cp = (cp << 6) | (int)(byte & 0x3F);
        }
        if (cp > 0x10FFFF || (cp >= 0xFDD0 && cp <= 0xFDEF) ||
            (cp & 0xFFFE) == 0xFFFE || (cp >= 0xD800 && cp <= 0xDFFF) ||
            (cp < min_cp[len - 2] && !(cp == 0 && len == 2)))
            cp = -1;
    }
    *end = p;
    return cp;
}

static void sb_quoted(sbuf *b, const char *str)
{
    const unsigned char *p = (const unsigned char *)str, *end;
    sb_add(b, "\"", 1);
    while (*p) {
        const unsigned char *run = p;
        /* fast path: printable ASCII that needs no escape */
        while (*p >= 0x20 && *p < 0x7F && *p != '"' && *p != '\\')
            p++;
        sb_add(b, (const char *)run, (size_t)(p - run));
        if (!*p)
            break;
        int cp = utf8_codepoint(p, &end);
        p = end;
        switch (cp) {
        case '"': sb_puts(b, "\\\""); break;
        case '\\': sb_puts(b, "\\\\"); break;
        case '\b': sb_puts(b, "\\b"); break;
        case '\f': sb_puts(b, "\\f"); break;
        case '\n': sb_puts(b, "\\n"); break;
        case '\r': sb_puts(b, "\\r"); break;
        case '\t': sb_puts(b, "\\t"); break;
        default:
            if (cp < 0)
                cp = 0xFFFD;
            if (cp > 0xFFFF)
                sb_printf(b, "\\u%04X\\u%04X", 0xD800 + ((cp - 0x10000) >> 10),
                          0xDC00 + ((cp - 0x10000) & 0x3FF));
            else if (cp < 0x20 || cp >= 0x7F)
                sb_printf(b, "\\u%04X", (unsigned)cp);
            else
                sb_add(b, (const char *)&(char){ (char)cp }, 1);
        }
    }
    sb_add(b, "\"", 1);
}

/* ---- member order ---- */

/* QEMU's QDict bucket of KEY: tdb_hash(key) % 512 (qobject/qdict.c). */
static unsigned qdict_bucket(const char *key)
{
    size_t n = strlen(key);
    uint32_t value = (uint32_t)(0x238F13AFu * (uint32_t)n);
    for (size_t i = 0; key[i]; i++)
        value += (uint32_t)(unsigned char)key[i] << (i * 5 % 24);
    return (1103515243u * value + 12345u) % 512u;
}

/* Indices of OBJ's members in print order, malloc'd (NULL if no memory). */
static size_t *member_order(const qi_json *obj, bool qdict)
{
    size_t *ord = malloc((obj->n ? obj->n : 1) * sizeof *ord);
    unsigned *bucket = malloc((obj->n ? obj->n : 1) * sizeof *bucket);
    if (!ord || !bucket) {
        free(ord);
        free(bucket);
        return NULL;
    }
    for (size_t i = 0; i < obj->n; i++) {
        ord[i] = i;
        bucket[i] = qdict ? qdict_bucket(obj->keys[i]) : 0;
    }
    if (qdict) {
        /* insertion sort: objects are small; later members first in a bucket */
        for (size_t i = 1; i < obj->n; i++) {
            size_t x = ord[i], j = i;
            while (j > 0 && (bucket[ord[j - 1]] > bucket[x] ||
                             (bucket[ord[j - 1]] == bucket[x] && ord[j - 1] < x))) {
                ord[j] = ord[j - 1];
                j--;
            }
            ord[j] = x;
        }
    }
    free(bucket);
    return ord;
}

static bool tree_ok(const qi_json *v)
{
    if (v->failed)
        return false;
    for (size_t i = 0; i < v->n; i++)
        if (!tree_ok(v->items[i]))
            return false;
    return true;
}

static void render_scalar(sbuf *b, const qi_json *v)
{
    switch (v->type) {
    case J_BOOL: sb_puts(b, v->b ? "true" : "false"); break;
    case J_INT: sb_printf(b, "%lld", (long long)v->i); break;
    case J_UINT: sb_printf(b, "%llu", (unsigned long long)v->u); break;
    default: sb_quoted(b, v->s); break;
    }
}

/* json-writer.c shape: the first member goes on a new line, the others
 * after ",\n" (or ", " when not pretty); the closing bracket on its own
 * line at the outer level, also for an empty container. */
static void render(sbuf *b, const qi_json *v, unsigned flags, int level)
{
    bool pretty = flags & QI_JSON_PRETTY;
    size_t *ord = NULL;
    if (v->type != J_OBJECT && v->type != J_ARRAY) {
        render_scalar(b, v);
        return;
    }
    if (v->type == J_OBJECT && !(ord = member_order(v, flags & QI_JSON_QDICT_ORDER))) {
        b->failed = true;
        return;
    }
    sb_add(b, v->type == J_OBJECT ? "{" : "[", 1);
    for (size_t i = 0; i < v->n; i++) {
        size_t k = ord ? ord[i] : i;
        if (i)
            sb_add(b, ",", 1);
        if (pretty)
            sb_indent(b, level + 1);
        else if (i)
            sb_add(b, " ", 1);
        if (ord) {
            sb_quoted(b, v->keys[k]);
            sb_add(b, ": ", 2);
        }
        render(b, v->items[k], flags, level + 1);
    }
    if (pretty)
        sb_indent(b, level);
    sb_add(b, v->type == J_OBJECT ? "}" : "]", 1);
    free(ord);
}

char *qi_json_render(const qi_json *v, unsigned flags)
{
    sbuf b = { 0 };
    if (!v || !tree_ok(v))
        return NULL;
    render(&b, v, flags, 0);
    return sb_finish(&b);
}

/* block/qapi.c dump_qobject/dump_qdict/dump_qlist. */
static void dump(sbuf *b, const qi_json *v, int indent)
{
    size_t *ord = NULL;
    if (v->type != J_OBJECT && v->type != J_ARRAY) {
        if (v->type == J_STR)
            sb_puts(b, v->s);
        else
            render_scalar(b, v);
        return;
    }
    if (v->type == J_OBJECT && !(ord = member_order(v, true))) {
        b->failed = true;
        return;
    }
    for (size_t i = 0; i < v->n; i++) {
        const qi_json *c = v->items[ord ? ord[i] : i];
        bool composite = c->type == J_OBJECT || c->type == J_ARRAY;
        for (int k = 0; k < indent; k++)
            sb_add(b, "    ", 4);
        if (ord) {
            for (const char *p = v->keys[ord[i]]; *p; p++)
                sb_add(b, *p == '-' ? " " : p, 1);
        } else {
            sb_printf(b, "[%zu]", i);
        }
        sb_add(b, composite ? ":\n" : ": ", 2);
        dump(b, c, indent + 1);
        if (!composite)
            sb_add(b, "\n", 1);
    }
    free(ord);
}

char *qi_json_dump_human(const qi_json *v, int indent)
{
    sbuf b = { 0 };
    if (!v || !tree_ok(v))
        return NULL;
    dump(&b, v, indent);
    return sb_finish(&b);
}

/* ---- integers ---- */

char *qi_json_fmt_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

char *qi_json_fmt_i64(char *p, int64_t v)
{
    if (v < 0) {
        *p++ = '-';
        return qi_json_fmt_u64(p, (uint64_t)0 - (uint64_t)v);
    }
    return qi_json_fmt_u64(p, (uint64_t)v);
}

/* ---- buffered output ---- */

int qi_outbuf_init(qi_outbuf *b, int fd, size_t cap)
{
    b->fd = fd;
    b->len = 0;
    b->err = 0;
    b->cap = cap < 4096 ? 4096 : cap;
    b->buf = malloc(b->cap);
    return b->buf ? 0 : -1;
}

int qi_outbuf_flush(qi_outbuf *b)
{
    size_t done = 0;
    while (done < b->len && !b->err) {
        ssize_t w = write(b->fd, b->buf + done, b->len - done);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            b->err = errno;
            break;
        }
        done += (size_t)w;
    }
    b->len = 0;
    return b->err ? -1 : 0;
}

char *qi_outbuf_reserve(qi_outbuf *b, size_t n)
{
    if (b->cap - b->len < n)
        qi_outbuf_flush(b);
    return b->buf + b->len;
}

void qi_outbuf_commit(qi_outbuf *b, const char *p)
{
    b->len = (size_t)(p - b->buf);
}

void qi_outbuf_write(qi_outbuf *b, const void *data, size_t n)
{
    const char *s = data;
    while (n) {
        size_t k = n < b->cap ? n : b->cap;
        char *p = qi_outbuf_reserve(b, k);
        memcpy(p, s, k);
        b->len += k;
        s += k;
        n -= k;
    }
}

void qi_outbuf_puts(qi_outbuf *b, const char *s) { qi_outbuf_write(b, s, strlen(s)); }

void qi_outbuf_free(qi_outbuf *b)
{
    free(b->buf);
    b->buf = NULL;
    b->len = b->cap = 0;
}
