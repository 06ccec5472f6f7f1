/* cli_check.c - `qinspect check`: the read-only consistency check (layer 7).
 *
 * Output as qemu-img 7.2 check prints it (qemu-img.c img_check,
 * dump_human_image_check): each problem's line on stderr in the order the
 * check met it, then on stdout the summary sentences, the allocation line
 * (when the image has guest clusters and some are allocated) and the image
 * end offset. JSON: every counter of the contract, even at 0, plus a
 * "findings" array of the records qi_check returns. Exit status as
 * qemu-img's: 0 clean, 1 check not completed (or could not open),
 * 2 corruptions, 3 leaks only, 63 not a qcow2 image.
 * -r leaks|all opens the image read-write (refused while QEMU holds it:
 * the lock test of the open) and repairs it (qi_repair): the repair pass's
 * lines, then, when something was repaired, qemu-img's "The following
 * inconsistencies were found and repaired" block and the check of the
 * repaired image, whose counters (plus the _fixed ones) the JSON holds and
 * whose result gives the exit status, as qemu-img's.
 * With -r, the bytes the repair overwrites go first to an undo file
 * (--undo FILE; default FILE.qinspect-undo-YYYYmmddTHHMMSSZ; restore with
 * qinspect undo), or --dry-run writes nothing and lists every change the
 * repair would make (human: after the output; JSON: a "changes" array).
 * Calls: include/qi, json.c, cli.h helpers. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "json.h"

#define EXIT_UNSUPPORTED 63

/* F's line as qemu-img prints it: "Repairing ..." for what was fixed. */
static void put_line(const qi_finding *f, bool as_fixed)
{
    const char *q = f->qemu;
    if (!q[0])
        return;
    /* the rebuild replaces what was wrong: QEMU names it as found */
    if (!strncmp(f->fix, "refcount structure rebuilt", 26))
        as_fixed = false;
    if (as_fixed && f->fixed && !strncmp(q, "ERROR", 5))
        fprintf(stderr, "Repairing%s\n", q + 5);
    else if (as_fixed && f->fixed && !strncmp(q, "Leaked", 6))
        fprintf(stderr, "Repairing%s\n", q + 6);
    else
        fprintf(stderr, "%s\n", q);
}

static bool is_compare(const qi_finding *f)
{
    return f->code == QI_PROB_REFCOUNT_LOW || f->code == QI_PROB_REFCOUNT_HIGH ||
           f->code == QI_PROB_REFCOUNT_ZERO;
}

/* A line of the old refcount structure freed after a rebuild. */
static bool is_freed(const qi_finding *f)
{
    return f->fixed && !strncmp(f->fix, "old refcount structure", 22);
}

static bool is_copied(const qi_finding *f)
{
    return f->code == QI_PROB_COPIED_SHARED || f->code == QI_PROB_COPIED_MISSING ||
           f->code == QI_PROB_COPIED_MISSING_DEDUP;
}

/* The repair pass's lines in qemu-img's order (qcow2_check_refcounts):
 * the walk's, the first comparison's, then the rebuild or the second
 * comparison (fixed ones as "Repairing"), then the COPIED pass's. */
static void print_repair_lines(const qi_check_result *r)
{
    const qi_finding *v = r->findings;
    bool rebuilt = false, compare = false;
    for (size_t i = 0; i < r->n_repair; i++) {
        if (!is_compare(&v[i]) && !is_copied(&v[i]))
            put_line(&v[i], true);
        rebuilt |= v[i].fixed && !strncmp(v[i].fix, "refcount structure rebuilt", 26);
        compare |= is_compare(&v[i]);
    }
    for (size_t i = 0; i < r->n_repair; i++)
        if (is_compare(&v[i]) && !is_freed(&v[i]))
            put_line(&v[i], false);
    if (rebuilt) {
        fprintf(stderr, "Rebuilding refcount structure\n");
        for (size_t i = 0; i < r->n_repair; i++)
            if (is_freed(&v[i]))
                put_line(&v[i], true);
    } else if (compare) {
        for (size_t i = 0; i < r->n_repair; i++)
            if (is_compare(&v[i]))
                put_line(&v[i], true);
    }
    for (size_t i = 0; i < r->n_repair; i++)
        if (is_copied(&v[i]))
            put_line(&v[i], true);
}

static void print_human(const qi_check_result *r, bool quiet)
{
    size_t first = r->n_repair;
    if (r->n_repair)
        print_repair_lines(r);
    if (r->leaks_fixed || r->corruptions_fixed) {
        if (!quiet)
            printf("The following inconsistencies were found and repaired:\n\n"
                   "    %" PRId64 " leaked clusters\n    %" PRId64 " corruptions\n\n"
                   "Double checking the fixed image now...\n", r->leaks_fixed,
                   r->corruptions_fixed);
        fflush(stdout);
        first = r->n_repair;
    }
    for (size_t i = first; i < r->n_findings; i++)
        if (r->findings[i].qemu[0])
            fprintf(stderr, "%s\n", r->findings[i].qemu);
    if (quiet)
        return;
    if (!(r->corruptions || r->leaks || r->check_errors)) {
        printf("No errors were found on the image.\n");
    } else {
        if (r->corruptions)
            printf("\n%" PRId64 " errors were found on the image.\nData may be corrupted, "
                   "or further writes to the image may corrupt it.\n", r->corruptions);
        if (r->leaks)
            printf("\n%" PRId64 " leaked clusters were found on the image.\nThis means "
                   "waste of disk space, but no harm to data.\n", r->leaks);
        if (r->check_errors)
            printf("\n%" PRId64 " internal errors have occurred during the check.\n",
                   r->check_errors);
    }
    if (r->total_clusters && r->allocated_clusters)
        printf("%" PRIu64 "/%" PRIu64 " = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% "
               "compressed clusters\n", r->allocated_clusters, r->total_clusters,
               r->allocated_clusters * 100.0 / r->total_clusters,
               r->fragmented_clusters * 100.0 / r->allocated_clusters,
               r->compressed_clusters * 100.0 / r->allocated_clusters);
    if (r->image_end_offset)
        printf("Image end offset: %" PRIu64 "\n", r->image_end_offset);
}

static qi_json *finding_json(const qi_finding *f)
{
    const qi_problem *p = qi_problem_lookup(f->code);
    qi_json *o = qi_json_object();
    qi_json_set(o, "code", qi_json_string(p ? p->name : "unknown"));
    qi_json_set(o, "severity", qi_json_string(qi_severity_name(f->severity)));
    qi_json_set(o, "structure", qi_json_string(f->structure ? f->structure : ""));
    qi_json_set(o, "offset", qi_json_uint(f->offset));
    if (f->guest_offset != QI_NO_GUEST) {
        qi_json_set(o, "guest-offset", qi_json_uint(f->guest_offset));
        qi_json_set(o, "guest-length", qi_json_uint(f->guest_length));
    }
    qi_json_set(o, "expected", qi_json_uint(f->expected));
    qi_json_set(o, "found", qi_json_uint(f->found));
    qi_json_set(o, "summary", qi_json_string(p ? p->summary : ""));
    if (f->qemu[0])
        qi_json_set(o, "qemu", qi_json_string(f->qemu));
    if (f->fixed)
        qi_json_set(o, "fixed", qi_json_bool(true));
    if (f->fix[0])
        qi_json_set(o, "fix", qi_json_string(f->fix));
    return o;
}

static int print_json(const char *path, const qi_check_result *r, qi_json *changes)
{
    qi_json *o = qi_json_object(), *a = qi_json_array();
    qi_json_set(o, "image-end-offset", qi_json_uint(r->image_end_offset));
    qi_json_set(o, "total-clusters", qi_json_uint(r->total_clusters));
    qi_json_set(o, "check-errors", qi_json_int(r->check_errors));
    qi_json_set(o, "corruptions", qi_json_int(r->corruptions));
    qi_json_set(o, "leaks", qi_json_int(r->leaks));
    qi_json_set(o, "corruptions-fixed", qi_json_int(r->corruptions_fixed));
    qi_json_set(o, "leaks-fixed", qi_json_int(r->leaks_fixed));
    qi_json_set(o, "allocated-clusters", qi_json_uint(r->allocated_clusters));
    qi_json_set(o, "fragmented-clusters", qi_json_uint(r->fragmented_clusters));
    qi_json_set(o, "compressed-clusters", qi_json_uint(r->compressed_clusters));
    qi_json_set(o, "filename", qi_json_string(path));
    qi_json_set(o, "format", qi_json_string("qcow2"));
    for (size_t i = 0; i < r->n_findings; i++)
        qi_json_push(a, finding_json(&r->findings[i]));
    qi_json_set(o, "findings", a);
    if (changes)
        qi_json_set(o, "changes", changes);
    char *s = qi_json_render(o, QI_JSON_PRETTY | QI_JSON_QDICT_ORDER);
    qi_json_free(o);
    if (!s)
        return qi_cli_error("out of memory");
    printf("%s\n", s);
    free(s);
    return QI_CLI_OK;
}

static int exit_status(int rc, const qi_check_result *r)
{
    if (rc < 0 || r->check_errors)
        return QI_CLI_ERR;
    return r->corruptions ? 2 : r->leaks ? 3 : 0;
}

/* The default undo file of a repair (qi_cli_default_undo: FILE.qinspect-
 * undo-<UTC timestamp>), with -2, -3, ... appended when a repair in the
 * same second made one (an undo file is never overwritten). */
static char *default_undo(const char *path)
{
    size_t n = strlen(path) + 64;
    char *out = malloc(n), *base = malloc(n);
    if (out && base && qi_cli_default_undo(path, base, n)) {
        snprintf(out, n, "%s", base);
        for (unsigned i = 2; access(out, F_OK) == 0 && i < 1000000; i++)
            snprintf(out, n, "%s-%u", base, i);
        free(base);
        return out;
    }
    free(out);
    free(base);
    return NULL;
}

static int run_check(const char *path, unsigned flags, unsigned repair, int json, bool quiet,
                     const qi_cli_write *w)
{
    qi_check_result res;
    qi_check_opts opts = QI_CHECK_OPTS_INIT;
    qi_image *img;
    qi_json *changes = NULL;
    int rc, status;
    opts.flags = repair;
    if (repair)
        img = qi_cli_open_write(path, flags | QI_OPEN_REPAIR | QI_OPEN_CHECK, w);
    else
        img = qi_cli_open(path, flags);
    if (!img)
        return QI_CLI_ERR;
    if (!strcmp(qi_image_format(img), "raw")) {
        qi_image_close(img);
        fprintf(stderr, "qinspect: This image format does not support checks\n");
        return EXIT_UNSUPPORTED;
    }
    rc = qi_check(img, &opts, &res);
    if (repair && w->dry_run && json)
        changes = qi_cli_changes_json(img);
    if (rc < 0) {   /* qemu-img prints the lines met, no summary */
        print_human(&res, true);
        qi_json_free(changes);
    } else if (json) {
        print_json(path, &res, changes);
    } else {
        print_human(&res, quiet);
    }
    if (rc < 0)
        qi_cli_engine_error(qi_image_error(img), rc);
    else if (res.check_errors)
        fprintf(stderr, "qinspect: Check failed\n");  /* qemu-img's last line */
    status = exit_status(rc, &res);
    qi_check_result_free(&res);
    if (repair && w->dry_run && !json) {
        if (qi_cli_close_write(img, w, stdout) != QI_CLI_OK && status == QI_CLI_OK)
            status = QI_CLI_ERR;
    } else {
        qi_image_close(img);
    }
    if (fflush(stdout) && status == QI_CLI_OK)
        status = qi_cli_error("write error on standard output");
    return status;
}

int qi_cli_check(int argc, char **argv)
{
    static const struct option lopts[] = {
        { "output", required_argument, NULL, 'o' },
        { "force-share", no_argument, NULL, 'U' },
        { "format", required_argument, NULL, 'f' },
        { "repair", required_argument, NULL, 'r' },
        { "quiet", no_argument, NULL, 'q' },
        { "dry-run", no_argument, NULL, 'n' },
        { "undo", required_argument, NULL, 'u' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    /* qemu-img check opens the backing chain too: a missing backing file
     * fails the check (exit 1) */
    unsigned flags = QI_OPEN_PROBE, repair = 0;
    int json = 0, c;
    bool quiet = false;
    const char *undo = NULL;
    bool dry_run = false;

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hf:Uqr:", lopts, NULL)) != -1) {
        switch (c) {
        case 'o':
            if ((json = qi_cli_parse_output(optarg)) < 0)
                return qi_cli_usage_error("check", "--output must be human or json, not '%s'", optarg);
            break;
        case 'U': flags |= QI_OPEN_FORCE_SHARE; break;
        case 'q': quiet = true; break;
        case 'r':
            if (!strcmp(optarg, "leaks"))
                repair = QI_CHECK_REPAIR_LEAKS;
            else if (!strcmp(optarg, "all"))
                repair = QI_CHECK_REPAIR_ALL;
            else
                return qi_cli_usage_error("check", "-r must be leaks or all, not '%s'", optarg);
            break;
        case 'n': dry_run = true; break;
        case 'u': undo = optarg; break;
        case 'f':
            if (qi_cli_parse_format(optarg, &flags) < 0)
                return qi_cli_usage_error("check", "unknown format '%s' (raw or qcow2)", optarg);
            break;
        case 'h': return qi_cli_help("check", NULL);
        case ':': return qi_cli_usage_error("check", "option '%s' needs an argument", argv[optind - 1]);
        default: return qi_cli_usage_error("check", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return qi_cli_usage_error("check", "expected one FILE argument");
    if ((dry_run || undo) && !repair)
        return qi_cli_usage_error("check", "--dry-run and --undo go with -r leaks|all");
    if (repair && (flags & QI_OPEN_FORCE_SHARE))
        return qi_cli_usage_error("check", "-U (force-share) goes only with a read-only "
                                  "check, not with -r");
    qi_cli_write w = { undo, dry_run };
    char *def = NULL;
    if (repair && !dry_run && !undo && !(w.undo = def = default_undo(argv[optind])))
        return qi_cli_error("out of memory");
    int status = run_check(argv[optind], flags, repair, json, quiet, &w);
    free(def);
    return status;
}
