/* main.c - the qinspect process edge: command table, dispatch, exit codes
 * (layer 7).
 *
 * `qinspect COMMAND ...` runs one batch subcommand from the table below
 * (STYLE convention 13: --help and the man page's SUBCOMMANDS section are
 * generated from or checked against it, see tests/cli/docs.sh). Any other
 * first argument starts a scripted or interactive Lua session
 * (qi_session_main, session.c). Exit codes: 0 success, 1 error (one line on
 * stderr), 2 usage error. Also holds the small helpers every subcommand
 * shares (error lines, opening an image, option values), so that all of
 * them report problems the same way. Calls: include/qi, the cli_*.c
 * subcommands, session.c. */
#include <errno.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "session.h"
#include "qi/fault.h"

const qi_cli_cmd qi_cli_commands[] = {
    { "info", qi_cli_info, QI_CMD_NEEDS_IMAGE,
      "info [--output=human|json] [--backing-chain] [-f FMT] [-U] [--force] FILE",
      "show image facts as qemu-img info does" },
    { "map", qi_cli_map, QI_CMD_NEEDS_IMAGE,
      "map [--output=human|json] [--compressed] [-f FMT] [-U] [--force] [--start-offset=OFF] "
      "[--max-length=LEN] FILE",
      "list guest ranges and where their data lives, as qemu-img map" },
    { "check", qi_cli_check, QI_CMD_NEEDS_IMAGE,
      "check [-f FMT] [--output=human|json] [-q] [-U] [--explain] [-r leaks|all] [--dry-run]\n"
      "            [--undo FILE] FILE",
      "check refcounts and metadata as qemu-img check (exit 0/1/2/3/63); -r repairs" },
    { "snapshot", qi_cli_snapshot, QI_CMD_NEEDS_IMAGE,
      "snapshot -l|-c NAME|-a NAME|-d NAME [-f FMT] [-U] [-q] [--undo FILE|--dry-run] FILE",
      "list, create, apply or delete internal snapshots as qemu-img snapshot" },
    { "convert", qi_cli_convert, QI_CMD_NEEDS_IMAGE,
      "convert [-f FMT] [-O raw|qcow2] [-o OPTS] [-c] [-m N] [-B FILE [-F FMT]] [-n] [-U]\n"
      "            [--force] [-S SIZE] [-l SNAPSHOT] [-p] [-q] [-W] SRC DST",
      "write the guest view of SRC to DST: a sparse raw file or a qcow2 image (-c compressed)" },
    { "create", qi_cli_create, 0,
      "create [-f qcow2|raw] [-o OPTS] [-b BACKING [-F FMT]] [-u] [-q] FILE [SIZE]",
      "make a new image as qemu-img create does" },
    { "resize", qi_cli_resize, QI_CMD_NEEDS_IMAGE | QI_CMD_NEEDS_WRITE,
      "resize [-f FMT] [-q] [--shrink] [--undo FILE|--dry-run] FILE [+|-]SIZE",
      "change the virtual size as qemu-img resize (smaller: --shrink)" },
    { "undo", qi_cli_undo, QI_CMD_NEEDS_IMAGE | QI_CMD_NEEDS_WRITE,
      "undo [--force] [-q] UNDOFILE IMAGE",
      "restore an image from the undo file of a run with --undo" },
    { NULL, NULL, 0, NULL, NULL },
};

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: qinspect [-w [--undo FILE|--dry-run]] [-U] [--force] [-e CHUNK]... IMAGE [SCRIPT [ARGS...]]\n"
            "       qinspect COMMAND [OPTIONS] ARGS...\n"
            "       qinspect --help | --version\n"
            "\n"
            "Without a COMMAND, open IMAGE and run a Lua session: the REPL when\n"
            "standard input is a terminal, else the chunk read from it; -e runs\n"
            "CHUNK (repeatable), SCRIPT runs a file with ARGS in the global 'arg'.\n"
            "  -w   open IMAGE read-write (default: read-only); an image marked\n"
            "       corrupt opens for repair: raw edits only until the bit is clear;\n"
            "       the refcounts of an image with the dirty bit are rebuilt first\n"
            "  --undo FILE  with -w: save the original bytes of everything the session\n"
            "       overwrites to FILE first (restore: qinspect undo FILE IMAGE)\n"
            "  --dry-run    with -w: write nothing; print every change at the end\n"
            "       (kept in memory, at most 256 MiB). resize, snapshot -c/-a/-d and\n"
            "       check -r take --undo FILE and --dry-run too\n"
            "  -U   force share: read an image another program (QEMU) has open\n"
            "  --force  forensic open: any image with a readable header opens, even\n"
            "       where QEMU refuses (bad L1 or refcount table fields, unknown\n"
            "       incompatible bits, a bad snapshot table, a missing backing file);\n"
            "       what could not be loaded is in img.damage (printed as warnings)\n"
            "       and raises when used; img:peek(off, len) reads raw bytes.\n"
            "       Read-only unless -w. info, map and convert take --force too\n"
            "\n"
            "Commands:\n");
    for (const qi_cli_cmd *c = qi_cli_commands; c->name; c++)
        fprintf(f, "  %-10s %s\n", c->name, c->summary);
    fprintf(f, "\nCommand synopsis:\n");
    for (const qi_cli_cmd *c = qi_cli_commands; c->name; c++)
        fprintf(f, "  qinspect %s\n", c->usage);
    fprintf(f,
            "\n"
            "Run 'qinspect COMMAND --help' for one command.\n"
            "Exit status: 0 success, 1 error, 2 usage error.\n");
}

int qi_cli_error(const char *fmt, ...)
{
    va_list ap;
    fputs("qinspect: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return QI_CLI_ERR;
}

int qi_cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "qinspect %s: ", cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nTry 'qinspect %s --help' for more information.\n", cmd);
    return QI_CLI_USAGE;
}

int qi_cli_engine_error(const qi_err *e, int code)
{
    char line[2048];
    if (e && (e->code || e->message[0]))
        return qi_cli_error("%s", qi_err_format(e, line, sizeof line));
    return qi_cli_error("%s", qi_strerror(code));
}

qi_image *qi_cli_open(const char *path, unsigned flags)
{
    qi_open_opts o = QI_OPEN_OPTS_INIT;
    qi_err err;
    qi_image *img = NULL;
    memset(&err, 0, sizeof err);
    o.flags = flags;
    int rc = qi_image_open(&img, path, &o, &err);
    if (rc < 0)
        return qi_cli_open_failed(&err, rc, path);
    for (uint32_t i = 0; i < qi_image_damage_count(img); i++) {
        char line[2048];
        fprintf(stderr, "qinspect: warning: damage: %s\n",
                qi_err_format(qi_image_damage(img, i), line, sizeof line));
    }
    return img;
}

int qi_cli_help(const char *name, const char *extra)
{
    for (const qi_cli_cmd *c = qi_cli_commands; c->name; c++)
        if (!strcmp(c->name, name))
            printf("Usage: qinspect %s\n%s: %s\n", c->usage, c->name, c->summary);
    if (extra)
        fputs(extra, stdout);
    return QI_CLI_OK;
}

int qi_cli_parse_format(const char *fmt, unsigned *flags)
{
    if (!strcmp(fmt, "raw"))
        *flags = (*flags & ~QI_OPEN_PROBE) | QI_OPEN_RAW;
    else if (!strcmp(fmt, "qcow2"))
        *flags &= ~(QI_OPEN_PROBE | QI_OPEN_RAW);
    else
        return -1;
    return 0;
}

int qi_cli_parse_output(const char *s)
{
    if (!strcmp(s, "human"))
        return 0;
    if (!strcmp(s, "json"))
        return 1;
    return -1;
}

static uint64_t suffix_mul(char c)
{
    static const char suf[] = "bkmgtpe";
    const char *p = c ? strchr(suf, c | 0x20) : NULL;
    return p ? (uint64_t)1 << (10 * (p - suf)) : 0;
}

/* The fraction after the integer part at S ('.' first): its value times
 * 2^64 in *VALF; returns the end of it. "5." is 5 with no fraction. An
 * exponent is refused (NULL). */
static const char *parse_fraction(const char *s, uint64_t *valf)
{
    char *end;
    size_t n = strspn(s + 1, "0123456789");
    if (n == 0)
        return s + 1;
    errno = 0;
    double f = strtod(s, &end);
    if (errno || end != s + 1 + n)
        return NULL;
    /* f < 1; f * 2^64 rounds up to 2^64 only for fractions of 1 - 2^-54 and
     * more, which are kept just below */
    *valf = f * 0x1p64 >= 0x1p64 ? UINT64_MAX : (uint64_t)(f * 0x1p64);
    return end;
}

int qi_cli_parse_size(const char *s, uint64_t *out)
{
    const char *p = s;
    char *end;
    uint64_t valf = 0, mul;
    bool hex = false;
    while (*p == ' ' || (*p >= '\t' && *p <= '\r'))
        p++;
    if (*p == '-')
        return -1;
    errno = 0;
    unsigned long long v = strtoull(p, &end, 10);
    if (end == p)
        return -1;
    if (errno)
        return -2;
    if (v == 0 && (*end == 'x' || *end == 'X')) {
        errno = 0;
        v = strtoull(p, &end, 16);
        if (errno)
            return -2;
        if (*end == '.')
            return -1;
        hex = true;
    } else if (*end == '.') {
        const char *f = parse_fraction(end, &valf);
        if (!f)
            return -1;
        end = (char *)f;
    }
    if ((mul = suffix_mul(*end)) != 0) {
        if (hex && mul > 1)
            fprintf(stderr, "qinspect: warning: Using a multiplier suffix on hex numbers "
                    "is deprecated: %s\n", s);
        end++;
    } else {
        mul = 1;
    }
    if (*end)
        return -1;
    if (mul == 1 && valf)
        return -1; /* a fraction needs a unit */
    /* exact: 64.64 fixed point times the unit, rounding 0.5 up */
    unsigned __int128 r = (unsigned __int128)v * mul +
                          (((unsigned __int128)valf * mul + ((uint64_t)1 << 63)) >> 64);
    if (r >> 64)
        return -2;
    *out = (uint64_t)r;
    return 0;
}

/* QINSPECT_FAULT="N[,drop]": crash tests (include/qi/fault.h). */
static bool fault_from_env(void)
{
    const char *s = getenv("QINSPECT_FAULT");
    char *end;
    if (!s || !*s)
        return false;
    errno = 0;
    unsigned long long n = strtoull(s, &end, 10);
    if (errno || end == s || (*end && strcmp(end, ",drop"))) {
        fprintf(stderr, "qinspect: QINSPECT_FAULT: expected N or N,drop, not '%s'\n", s);
        exit(QI_CLI_USAGE);
    }
    qi_fault_arm(n, *end != '\0');
    return true;
}

static int run(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return QI_CLI_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return fflush(stdout) ? QI_CLI_ERR : QI_CLI_OK;
    }
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
        printf("qinspect %s\n", QI_VERSION_STRING);
        return fflush(stdout) ? QI_CLI_ERR : QI_CLI_OK;
    }
    for (const qi_cli_cmd *c = qi_cli_commands; c->name; c++)
        if (!strcmp(argv[1], c->name))
            return c->fn(argc - 1, argv + 1);
    return qi_session_main(argc, argv);
}

int main(int argc, char **argv)
{
    bool fault = fault_from_env();
    int rc = run(argc, argv);
    if (fault)
        fprintf(stderr, "qinspect: fault injection: %llu writes%s\n",
                (unsigned long long)qi_fault_writes(), qi_fault_tripped() ? ", stopped" : "");
    return rc;
}
/* Print why opening PATH failed (the path in the message even if the engine
 * left it out); returns NULL for the caller to return. */
qi_image *qi_cli_open_failed(qi_err *err, int rc, const char *path)
{
    if (!err->file[0])
        snprintf(err->file, sizeof err->file, "%s", path);
    qi_cli_engine_error(err, rc);
    return NULL;
}

