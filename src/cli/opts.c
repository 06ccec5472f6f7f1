/* opts.c - qemu-style `-o key=val,...` image options (layer 7).
 *
 * Parses the option list the way qemu-img 7.2 does (QemuOpts), keeps every
 * value as given for the "Formatting ..." line, and turns the options into
 * a qi_create_opts. The option table below is QEMU's list for the qcow2
 * format followed by the file protocol's, in QEMU's order: that order is
 * the order of the "Formatting" line; `-o help` sorts it by name. Calls:
 * include/qi, cli.h (size parsing), libc. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "opts.h"

enum otype { T_STR, T_BOOL, T_SIZE, T_NUM };

/* where an option belongs */
#define F_QCOW2 0x1u   /* the qcow2 format's options */
#define F_RAW   0x2u   /* the raw format's options */
#define F_FILE  0x4u   /* the file protocol's options */

typedef struct odesc {
    const char *name;
    enum otype type;
    unsigned where;
    const char *def;   /* printed when not given (qcow2 only) */
    const char *help;
    const char *raw_help; /* help text in the raw/file list, if different */
} odesc;

static const odesc table[] = {
    { "encryption", T_BOOL, F_QCOW2, NULL,
      "Encrypt the image with format 'aes'. (Deprecated in favor of encrypt.format=aes)",
      NULL },
    { "encrypt.format", T_STR, F_QCOW2, NULL,
      "Encrypt the image, format choices: 'aes', 'luks'", NULL },
    { "encrypt.key-secret", T_STR, F_QCOW2, NULL,
      "ID of secret providing qcow AES key or LUKS passphrase", NULL },
    { "encrypt.cipher-alg", T_STR, F_QCOW2, NULL, "Name of encryption cipher algorithm",
      NULL },
    { "encrypt.cipher-mode", T_STR, F_QCOW2, NULL, "Name of encryption cipher mode", NULL },
    { "encrypt.ivgen-alg", T_STR, F_QCOW2, NULL, "Name of IV generator algorithm", NULL },
    { "encrypt.ivgen-hash-alg", T_STR, F_QCOW2, NULL,
      "Name of IV generator hash algorithm", NULL },
    { "encrypt.hash-alg", T_STR, F_QCOW2, NULL, "Name of encryption hash algorithm", NULL },
    { "encrypt.iter-time", T_NUM, F_QCOW2, NULL,
      "Time to spend in PBKDF in milliseconds", NULL },
    { "cluster_size", T_SIZE, F_QCOW2, "65536", "qcow2 cluster size", NULL },
    { "extended_l2", T_BOOL, F_QCOW2, "off", "Extended L2 tables", NULL },
    { "preallocation", T_STR, F_QCOW2 | F_FILE, NULL,
      "Preallocation mode (allowed values: off, metadata, falloc, full)",
      "Preallocation mode (allowed values: off, falloc, full)" },
    { "compression_type", T_STR, F_QCOW2, "zlib",
      "Compression method used for image cluster compression", NULL },
    { "size", T_SIZE, F_QCOW2 | F_RAW | F_FILE, NULL, "Virtual disk size", NULL },
    { "compat", T_STR, F_QCOW2, NULL, "Compatibility level (v2 [0.10] or v3 [1.1])", NULL },
    { "backing_file", T_STR, F_QCOW2, NULL, "File name of a base image", NULL },
    { "backing_fmt", T_STR, F_QCOW2, NULL, "Image format of the base image", NULL },
    { "data_file", T_STR, F_QCOW2, NULL, "File name of an external data file", NULL },
    { "data_file_raw", T_BOOL, F_QCOW2, NULL,
      "The external data file must stay valid as a raw image", NULL },
    { "lazy_refcounts", T_BOOL, F_QCOW2, "off", "Postpone refcount updates", NULL },
    { "refcount_bits", T_NUM, F_QCOW2, "16", "Width of a reference count entry in bits",
      NULL },
    { "nocow", T_BOOL, F_FILE, NULL, "Turn off copy-on-write (valid only on btrfs)", NULL },
    { "extent_size_hint", T_SIZE, F_FILE, NULL,
      "Extent size hint for the image file, 0 to disable", NULL },
};
#define NTABLE (sizeof table / sizeof table[0])

static void msgf(char *msg, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void msgf(char *msg, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, n, fmt, ap);
    va_end(ap);
}

static const odesc *find_desc(const char *key, bool raw)
{
    unsigned want = (raw ? F_RAW : F_QCOW2) | F_FILE;
    for (size_t i = 0; i < NTABLE; i++)
        if (!strcmp(table[i].name, key) && (table[i].where & want))
            return &table[i];
    return NULL;
}

/* qemu-img's is_valid_option_list: not empty, no empty option at either end
 * (a trailing ",," is an escaped comma, a trailing "," or ",,," is not). */
static bool valid_list(const char *s)
{
    size_t len = strlen(s), i;
    if (!len || s[0] == ',')
        return false;
    for (i = len; i > 0 && s[i - 1] == ','; i--)
        ;
    return (len - i) % 2 == 0;
}

int qi_cli_opts_add(qi_cli_opts *o, const char *arg, char *msg, size_t n)
{
    if (!valid_list(arg)) {
        msgf(msg, n, "Invalid option list: %s", arg);
        return -1;
    }
    size_t have = o->list ? strlen(o->list) : 0, add = strlen(arg);
    char *p = realloc(o->list, have + add + 2);
    if (!p)
        return -2;
    if (have)
        p[have++] = ',';
    memcpy(p + have, arg, add + 1);
    o->list = p;
    return 0;
}

static int push(qi_cli_opts *o, const char *key, size_t klen, const char *val, size_t vlen)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? 2 * o->cap : 8;
        qi_cli_opt *v = realloc(o->v, cap * sizeof *v);
        if (!v)
            return -2;
        o->v = v;
        o->cap = cap;
    }
    qi_cli_opt *e = &o->v[o->n];
    e->key = strndup(key, klen);
    e->val = strndup(val, vlen);
    e->num = 0;
    if (!e->key || !e->val) {
        free(e->key);
        free(e->val);
        return -2;
    }
    o->n++;
    return 0;
}

/* Copy the value starting at S up to an unescaped ',' (",," is a comma)
 * into a new string at *OUT; returns the position after it. */
static const char *take_value(const char *s, char **out)
{
    size_t n = 0;
    char *v = malloc(strlen(s) + 1);
    if (!v)
        return NULL;
    for (;;) {
        if (*s == ',' && s[1] == ',') {
            v[n++] = ',';
            s += 2;
        } else if (*s == ',' || !*s) {
            break;
        } else {
            v[n++] = *s++;
        }
    }
    v[n] = '\0';
    *out = v;
    return s;
}

/* Split the joined list into key/value pairs. */
static int split(qi_cli_opts *o)
{
    const char *s = o->list;
    while (s && *s) {
        const char *eq = strpbrk(s, "=,");
        char *val = NULL;
        int rc;
        if (eq && *eq == '=') {
            const char *next = take_value(eq + 1, &val);
            if (!next)
                return -2;
            rc = push(o, s, (size_t)(eq - s), val, strlen(val));
            s = next;
        } else {
            /* "key" is key=on, "nokey" key=off (QemuOpts' short form) */
            size_t klen = eq ? (size_t)(eq - s) : strlen(s);
            if ((klen == 4 && !strncmp(s, "help", 4)) || (klen == 1 && *s == '?'))
                o->help = true;
            if (klen > 2 && !strncmp(s, "no", 2))
                rc = push(o, s + 2, klen - 2, "off", 3);
            else
                rc = push(o, s, klen, "on", 2);
            s += klen;
        }
        free(val);
        if (rc < 0)
            return rc;
        if (*s == ',')
            s++;
    }
    return 0;
}

/* QEMU's parse_uint_full with base 0: decimal, 0x hex or 0 octal, no sign
 * but '+', leading white space allowed. */
static int parse_num(const char *s, uint64_t *out)
{
    char *end;
    const char *p = s;
    while (*p == ' ' || (*p >= '\t' && *p <= '\r'))
        p++;
    if (*p == '-' || !*p)
        return -1;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 0);
    if (errno || end == p || *end)
        return -1;
    *out = v;
    return 0;
}

static bool parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = { "on", "yes", "true", "y" };
    static const char *const no[] = { "off", "no", "false", "n" };
    for (size_t i = 0; i < 4; i++) {
        if (!strcmp(s, yes[i]))
            return *out = true, true;
        if (!strcmp(s, no[i]))
            return *out = false, true;
    }
    return false;
}

static int check_value(qi_cli_opt *e, const odesc *d, char *msg, size_t n)
{
    bool b;
    switch (d->type) {
    case T_STR:
        return 0;
    case T_BOOL:
        if (parse_bool(e->val, &b))
            return 0;
        msgf(msg, n, "Parameter '%s' expects 'on' or 'off'", e->key);
        return -1;
    case T_NUM:
        if (parse_num(e->val, &e->num) == 0)
            return 0;
        msgf(msg, n, "Parameter '%s' expects a number", e->key);
        return -1;
    case T_SIZE:
        if (qi_cli_parse_size(e->val, &e->num) == 0)
            return 0;
        msgf(msg, n, "Parameter '%s' expects a non-negative number below 2^64\n"
             "Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
             "and exabytes, respectively.", e->key);
        return -1;
    }
    return 0;
}

int qi_cli_opts_wants_help(qi_cli_opts *o)
{
    if (!o->split) {
        int rc = split(o);
        if (rc < 0)
            return rc;
        o->split = true;
    }
    return o->help;
}

int qi_cli_opts_parse(qi_cli_opts *o, char *msg, size_t n)
{
    int rc = qi_cli_opts_wants_help(o);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    for (size_t i = 0; i < o->n; i++) {
        const odesc *d = find_desc(o->v[i].key, o->raw);
        if (!d) {
            msgf(msg, n, "Invalid parameter '%s'", o->v[i].key);
            return -1;
        }
        if ((rc = check_value(&o->v[i], d, msg, n)) < 0)
            return rc;
    }
    return 0;
}

const qi_cli_opt *qi_cli_opts_get(const qi_cli_opts *o, const char *key)
{
    for (size_t i = o->n; i > 0; i--)
        if (!strcmp(o->v[i - 1].key, key))
            return &o->v[i - 1];
    return NULL;
}

int qi_cli_opts_set(qi_cli_opts *o, const char *key, const char *val)
{
    return push(o, key, strlen(key), val, strlen(val));
}

static void print_one(FILE *f, const odesc *d, const qi_cli_opts *o, bool raw)
{
    const qi_cli_opt *e = qi_cli_opts_get(o, d->name);
    if (e && (d->type == T_SIZE || d->type == T_NUM)) {
        fprintf(f, " %s=%lld", d->name, (long long)e->num); /* QEMU prints PRId64 */
    } else if (e && d->type == T_STR) {
        fprintf(f, " %s=", d->name);   /* commas doubled, as given */
        for (const char *p = e->val; *p; p++)
            fputs(*p == ',' ? ",," : (char[]){ *p, 0 }, f);
    } else if (e) {
        fprintf(f, " %s=%s", d->name, e->val);
    } else if (d->def && !raw) {
        fprintf(f, " %s=%s", d->name, d->def);
    }
}

void qi_cli_opts_print(FILE *f, const qi_cli_opts *o, const char *file, const char *fmt)
{
    /* the raw format lists its size first, then the file protocol's options */
    static const char *const raw_order[] = { "size", "nocow", "preallocation",
                                             "extent_size_hint" };
    bool raw = !strcmp(fmt, "raw");
    fprintf(f, "Formatting '%s', fmt=%s", file, fmt);
    if (raw) {
        for (size_t i = 0; i < 4; i++)
            print_one(f, find_desc(raw_order[i], true), o, true);
        return;
    }
    for (size_t i = 0; i < NTABLE; i++)
        if (table[i].where & (F_QCOW2 | F_FILE))
            print_one(f, &table[i], o, false);
}

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const odesc *const *)a)->name, (*(const odesc *const *)b)->name);
}

void qi_cli_opts_help(FILE *f, bool raw, bool file_opts)
{
    static const char *const tname[] = { "str", "bool (on/off)", "size", "num" };
    const odesc *list[NTABLE];
    size_t n = 0;
    unsigned want = (raw ? F_RAW : F_QCOW2) | (file_opts ? F_FILE : 0);
    for (size_t i = 0; i < NTABLE; i++)
        if (table[i].where & want)
            list[n++] = &table[i];
    qsort(list, n, sizeof list[0], by_name);
    if (file_opts)
        fprintf(f, "Supported options:\n");
    else
        fprintf(f, "Supported %s options:\n", raw ? "raw" : "qcow2");
    for (size_t i = 0; i < n; i++) {
        char head[64];
        const char *help = list[i]->help;
        if (raw && list[i]->raw_help)
            help = list[i]->raw_help;
        snprintf(head, sizeof head, "%s=<%s>", list[i]->name, tname[list[i]->type]);
        fprintf(f, "  %-22s - %s\n", head, help);
    }
    if (!file_opts)
        fprintf(f, "\nThe protocol level may support further options.\n"
                "Specify the target filename to include those options.\n");
}

static bool opt_bool(const qi_cli_opts *o, const char *key, bool def)
{
    const qi_cli_opt *e = qi_cli_opts_get(o, key);
    bool b = def;
    if (e)
        (void)parse_bool(e->val, &b);
    return b;
}

/* QEMU 7.2's BlockdevDriver names (the ones every build has, and the
 * common optional ones): the values backing_fmt accepts. */
static bool known_driver(const char *s)
{
    static const char *const d[] = {
        "blkdebug", "blklogwrites", "blkreplay", "blkverify", "bochs", "cloop", "compress",
        "copy-before-write", "copy-on-read", "dmg", "file", "snapshot-access", "ftp", "ftps",
        "gluster", "host_cdrom", "host_device", "http", "https", "iscsi", "luks", "nbd",
        "nfs", "null-aio", "null-co", "nvme", "parallels", "preallocate", "qcow", "qcow2",
        "qed", "quorum", "raw", "rbd", "replication", "ssh", "throttle", "vdi", "vhdx",
        "vmdk", "vpc", "vvfat",
    };
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++)
        if (!strcmp(s, d[i]))
            return true;
    return false;
}

/* The enum options, checked in the order QEMU's QAPI visitor meets them. */
static int enums(const qi_cli_opts *o, qi_create_opts *c, char *msg, size_t n)
{
    static const char *const prealloc[] = { "off", "metadata", "falloc", "full" };
    const qi_cli_opt *e;
    if ((e = qi_cli_opts_get(o, "compat"))) {
        if (!strcmp(e->val, "0.10") || !strcmp(e->val, "v2"))
            c->version = 2;
        else if (!strcmp(e->val, "1.1") || !strcmp(e->val, "v3"))
            c->version = 3;
        else
            return msgf(msg, n, "Parameter 'version' does not accept value '%s'", e->val), -1;
    }
    if ((e = qi_cli_opts_get(o, "backing_fmt")) && !known_driver(e->val))
        return msgf(msg, n, "Parameter 'backing-fmt' does not accept value '%s'", e->val), -1;
    if ((e = qi_cli_opts_get(o, "preallocation"))) {
        size_t i;
        for (i = 0; i < 4 && strcmp(e->val, prealloc[i]); i++)
            ;
        if (i == 4)
            return msgf(msg, n, "Parameter 'preallocation' does not accept value '%s'",
                        e->val), -1;
        c->prealloc = (qi_prealloc)i;
    }
    if ((e = qi_cli_opts_get(o, "compression_type"))) {
        if (strcmp(e->val, "zlib") && strcmp(e->val, "zstd"))
            return msgf(msg, n, "Parameter 'compression-type' does not accept value '%s'",
                        e->val), -1;
        c->zstd = !strcmp(e->val, "zstd");
    }
    return 0;
}

int qi_cli_opts_to_create(const qi_cli_opts *o, qi_create_opts *c, char *msg, size_t n)
{
    const qi_cli_opt *e;
    if (qi_cli_opts_get(o, "encryption") && opt_bool(o, "encryption", false)) {
        msgf(msg, n, "encryption is not supported by qinspect");
        return -1;
    }
    for (size_t i = 0; i < o->n; i++)
        if (!strncmp(o->v[i].key, "encrypt.", 8)) {
            msgf(msg, n, "encryption is not supported by qinspect");
            return -1;
        }
    if (enums(o, c, msg, n) < 0)
        return -1;
    if ((e = qi_cli_opts_get(o, "size")))
        c->size = e->num;
    /* 0 means "the default" in qi_create_opts but is an invalid value when
     * given, and the fields are narrower than the option: such values
     * become 3, which qi_image_create refuses with the same message */
    if ((e = qi_cli_opts_get(o, "cluster_size")))
        c->cluster_size = (e->num == 0 || e->num > UINT32_MAX) ? 3 : (uint32_t)e->num;
    if ((e = qi_cli_opts_get(o, "refcount_bits")))
        c->refcount_bits = (e->num == 0 || e->num > 1024) ? 3 : (unsigned)e->num;
    if ((e = qi_cli_opts_get(o, "backing_file")))
        c->backing_file = e->val;
    if ((e = qi_cli_opts_get(o, "backing_fmt")))
        c->backing_fmt = e->val;
    if ((e = qi_cli_opts_get(o, "data_file")))
        c->data_file = e->val;
    c->data_file_raw = opt_bool(o, "data_file_raw", c->data_file_raw);
    c->extended_l2 = opt_bool(o, "extended_l2", c->extended_l2);
    c->lazy_refcounts = opt_bool(o, "lazy_refcounts", c->lazy_refcounts);
    return 0;
}

void qi_cli_opts_free(qi_cli_opts *o)
{
    for (size_t i = 0; i < o->n; i++) {
        free(o->v[i].key);
        free(o->v[i].val);
    }
    free(o->v);
    free(o->list);
    *o = (qi_cli_opts)QI_CLI_OPTS_INIT;
}
