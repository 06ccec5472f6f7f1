/* cli_undo.c - `qinspect undo`, and the --undo / --dry-run options every
 * writing command shares (layer 7).
 *
 * `qinspect undo [--force] UNDOFILE IMAGE` restores IMAGE from an undo file
 * written by a run with --undo (qi_undo_restore, include/qi/undo.h). The
 * helpers below open an image for writing with an undo file or as a dry
 * run, and print a dry run's changes: one line per write (structure, file,
 * offset, old -> new in hex for ranges up to 16 bytes, sizes and the number
 * of bytes that differ for longer ones), or a JSON "changes" array.
 * Calls: include/qi, cli.h, json.h. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "json.h"
#include "qi/undo.h"

qi_image *qi_cli_open_write(const char *path, unsigned flags, const qi_cli_write *w)
{
    qi_open_opts o = QI_OPEN_OPTS_INIT;
    qi_err err;
    qi_image *img = NULL;
    memset(&err, 0, sizeof err);
    o.flags = flags | QI_OPEN_RW | (w && w->dry_run ? QI_OPEN_DRY_RUN : 0);
    o.undo_path = w ? w->undo : NULL;
    if (w && w->dry_run && w->undo) {
        qi_cli_error("--dry-run writes nothing: it takes no --undo file");
        return NULL;
    }
    int rc = qi_image_open(&img, path, &o, &err);
    if (rc < 0)
        return qi_cli_open_failed(&err, rc, path);
    return img;
}

const char *qi_cli_default_undo(const char *image, char *buf, size_t n)
{
    char stamp[32];
    time_t t = time(NULL);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || !strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm))
        snprintf(stamp, sizeof stamp, "%lld", (long long)t);
    if ((size_t)snprintf(buf, n, "%s.qinspect-undo-%s", image, stamp) >= n)
        return NULL;
    return buf;
}

static const char *kind_name(int kind)
{
    return kind == QI_CHANGE_TRUNCATE ? "truncate" : kind == QI_CHANGE_DISCARD ? "discard"
                                                                                : "write";
}

static void hex(FILE *f, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        fprintf(f, "%02x", p ? p[i] : 0);
}

typedef struct printer {
    FILE *f;
    size_t n;
} printer;

static int print_change(void *payload, const qi_change *c)
{
    printer *pr = payload;
    FILE *f = pr->f;
    pr->n++;
    if (c->kind == QI_CHANGE_TRUNCATE) {
        fprintf(f, "  %s: file size %" PRIu64 " -> %" PRIu64 "\n", c->file, c->old_size,
                c->new_size);
        return 0;
    }
    fprintf(f, "  %s: %s%s at %#" PRIx64 ": ", c->file, c->structure,
            c->kind == QI_CHANGE_DISCARD ? " (discard)" : "", c->offset);
    if (c->len <= 16) {
        hex(f, c->old_bytes, c->len);
        fputs(" -> ", f);
        hex(f, c->new_bytes, c->len);
        fprintf(f, " (%zu bytes)\n", c->len);
        return 0;
    }
    size_t diff = 0, first = c->len;
    for (size_t i = 0; i < c->len; i++)
        if (c->old_bytes[i] != (c->new_bytes ? c->new_bytes[i] : 0) && diff++ == 0)
            first = i;
    fprintf(f, "%zu bytes, %zu differ", c->len, diff);
    if (diff)
        fprintf(f, " (first at %#" PRIx64 ")", c->offset + first);
    fputc('\n', f);
    return 0;
}

int qi_cli_close_write(qi_image *img, const qi_cli_write *w, FILE *f)
{
    printer pr = { f, 0 };
    if (!w || !w->dry_run) {
        qi_image_close(img);
        return QI_CLI_OK;
    }
    fprintf(f, "Dry run: nothing was written. The changes it would make:\n");
    qi_image_close_dry_run(img, print_change, &pr);
    fprintf(f, "%zu change%s.\n", pr.n, pr.n == 1 ? "" : "s");
    return fflush(f) ? qi_cli_error("write error on standard output") : QI_CLI_OK;
}

static qi_json *hex_json(const uint8_t *p, size_t n)
{
    char *s = malloc(2 * n + 1);
    qi_json *j;
    if (!s)
        return NULL;
    for (size_t i = 0; i < n; i++)
        snprintf(s + 2 * i, 3, "%02x", p ? p[i] : 0);
    s[2 * n] = '\0';
    j = qi_json_string(s);
    free(s);
    return j;
}

static int json_change(void *payload, const qi_change *c)
{
    qi_json *o = qi_json_object();
    qi_json_set(o, "kind", qi_json_string(kind_name(c->kind)));
    qi_json_set(o, "file", qi_json_string(c->file));
    qi_json_set(o, "structure", qi_json_string(c->structure));
    if (c->kind == QI_CHANGE_TRUNCATE) {
        qi_json_set(o, "old-size", qi_json_uint(c->old_size));
        qi_json_set(o, "new-size", qi_json_uint(c->new_size));
    } else {
        qi_json_set(o, "offset", qi_json_uint(c->offset));
        qi_json_set(o, "length", qi_json_uint(c->len));
        if (c->len <= QI_CLI_JSON_HEX_MAX) {
            qi_json_set(o, "old", hex_json(c->old_bytes, c->len));
            qi_json_set(o, "new", hex_json(c->new_bytes, c->len));
        }
    }
    qi_json_push(payload, o);
    return 0;
}

qi_json *qi_cli_changes_json(qi_image *img)
{
    qi_json *a = qi_json_array();
    if (a)
        qi_image_dry_run_changes(img, json_change, a);
    return a;
}

static int do_undo(const char *undo, const char *image, bool force, bool quiet)
{
    qi_undo_report r;
    qi_err err;
    int rc = qi_undo_restore(undo, image, force, &r, &err);
    if (rc < 0)
        return qi_cli_engine_error(&err, rc);
    if (!quiet) {
        if (!r.writer_finished)
            printf("Note: the undo file has no end record (the writing run stopped "
                   "early); only the file's identity was checked.\n");
        if (r.resumed)
            printf("Note: an earlier undo had started and not finished; done now.\n");
        if (r.forced)
            printf("Note: the image did not match the undo file; restored anyway "
                   "(--force).\n");
        printf("Image restored: %" PRIu64 " ranges, %" PRIu64 " bytes written back.\n",
               r.records, r.bytes);
    }
    return fflush(stdout) ? qi_cli_error("write error on standard output") : QI_CLI_OK;
}

int qi_cli_undo(int argc, char **argv)
{
    static const struct option lopts[] = {
        { "force", no_argument, NULL, 'F' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    static const char extra[] =
        "  Restores IMAGE (and its external data file) byte for byte, and its size,\n"
        "  as they were before the run that wrote UNDOFILE (--undo of a writing\n"
        "  command). Refuses when IMAGE is another file or changed since that run's\n"
        "  last write; --force restores anyway. A crash during undo leaves an image\n"
        "  that running the same undo again restores.\n"
        "  -q: print nothing on success.\n";
    bool force = false, quiet = false;
    int c;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hq", lopts, NULL)) != -1) {
        switch (c) {
        case 'F': force = true; break;
        case 'q': quiet = true; break;
        case 'h': return qi_cli_help("undo", extra);
        default:
            return qi_cli_usage_error("undo", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 2)
        return qi_cli_usage_error("undo", "expected UNDOFILE and IMAGE");
    return do_undo(argv[optind], argv[optind + 1], force, quiet);
}
