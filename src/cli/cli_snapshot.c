/* cli_snapshot.c - `qinspect snapshot`: internal snapshots (layer 7).
 *
 * `-l` prints the table exactly as `qemu-img snapshot -l` does (qemu-img.c
 * dump_snapshots with block/qapi.c bdrv_snapshot_dump); the row printer is
 * shared with `info`. `-c`, `-a` and `-d` open the image read-write (its
 * backing chain is not opened, as qemu-img) and call the engine
 * (qi_snapshot_*); failures are reported in qemu-img 7.2's words
 * ("Could not create snapshot 'x': ..."), with the engine's reason where
 * qemu-img gives only an errno. As qemu-img: `-a` finds the snapshot by id,
 * then by name; `-d` by name only; a name is cut to 255 bytes; `-U` works
 * with `-l` only. Exit status 0, or 1 on any failure. Calls: include/qi,
 * cli.h helpers. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"

void qi_cli_snapshot_dump(FILE *f, const qi_snapshot *sn)
{
    char size[64], date[64] = "", clock[64], icount[32] = "";
    if (!sn) {
        fprintf(f, "%-10s%-17s%8s%20s%13s%11s", "ID", "TAG", "VM SIZE", "DATE",
                "VM CLOCK", "ICOUNT");
        return;
    }
    time_t t = (time_t)sn->date_sec;
    struct tm tm;
    if (localtime_r(&t, &tm))
        strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S", &tm);
    uint64_t secs = sn->vm_clock_nsec / 1000000000u;
    snprintf(clock, sizeof clock, "%02d:%02d:%02d.%03d", (int)(secs / 3600),
             (int)((secs / 60) % 60), (int)(secs % 60),
             (int)((sn->vm_clock_nsec / 1000000u) % 1000u));
    if (sn->has_icount && sn->icount != UINT64_MAX)
        snprintf(icount, sizeof icount, "%" PRId64, (int64_t)sn->icount);
    fprintf(f, "%-9s %-16s %8s%20s%13s%11s", sn->id, sn->name,
            qi_cli_human_size(size, sizeof size, sn->vm_state_size), date, clock, icount);
}

static int list_snapshots(const char *path, unsigned flags)
{
    qi_image *img = qi_cli_open(path, flags);
    uint32_t n = 0;
    const qi_snapshot *sn;
    if (!img)
        return QI_CLI_ERR;
    /* a raw image has no snapshot support: qemu-img prints nothing */
    sn = qi_meta_header(img) ? qi_meta_snapshots(img, &n) : NULL;
    if (sn && n) {
        printf("Snapshot list:\n");
        qi_cli_snapshot_dump(stdout, NULL);
        printf("\n");
        for (uint32_t i = 0; i < n; i++) {
            qi_cli_snapshot_dump(stdout, &sn[i]);
            printf("\n");
        }
    }
    qi_image_close(img);
    return fflush(stdout) ? qi_cli_error("write error on standard output") : QI_CLI_OK;
}

/* "qinspect: PREFIX: <the engine's reason>", exit status 1. */
static int op_error(qi_image *img, int rc, const char *prefix)
{
    char line[2048];
    const qi_err *e = qi_image_error(img);
    if (e->code)
        qi_err_format(e, line, sizeof line);
    else
        snprintf(line, sizeof line, "%s", qi_strerror(rc));
    return qi_cli_error("%s: %s", prefix, line);
}

/* The errno QEMU reports for the same failure (qemu-img prints
 * "Could not create snapshot 'x': -95 (Operation not supported)"; a
 * refcount overflow is -22 there). */
static int qemu_errno(int rc)
{
    switch (rc) {
    case QI_ENOTSUP: return EOPNOTSUPP;
    case QI_EINVAL: case QI_ENOSPC: return EINVAL;
    case QI_ENOENT: return ENOENT;
    case QI_ENOMEM: return ENOMEM;
    case QI_ERDONLY: return EROFS;
    case QI_EBUSY: return EBUSY;
    default: return EIO;
    }
}

static int run_op(qi_image *img, int action, const char *name)
{
    char prefix[600];
    uint32_t idx;
    int rc;
    switch (action) {
    case 'c':
        rc = qi_snapshot_create(img, name);
        snprintf(prefix, sizeof prefix, "Could not create snapshot '%s': %d (%s)", name,
                 -qemu_errno(rc), strerror(qemu_errno(rc)));
        break;
    case 'a':
        snprintf(prefix, sizeof prefix, "Could not apply snapshot '%s': Failed to load "
                 "snapshot", name);
        rc = qi_snapshot_find(img, name, QI_SNAP_BY_ID | QI_SNAP_BY_NAME, &idx);
        if (rc == QI_ENOENT)
            return qi_cli_error("%s: No such file or directory", prefix);
        if (rc == 0 && (qi_meta_bitmaps(img, &idx), idx))
            return qi_cli_error("Could not apply snapshot '%s': Device has active dirty "
                                "bitmaps", name);
        if (rc == 0)
            rc = qi_snapshot_apply(img, name);
        break;
    default:
        snprintf(prefix, sizeof prefix, "Could not delete snapshot '%s'", name);
        if (qi_snapshot_find(img, name, QI_SNAP_BY_NAME, &idx) < 0)
            return qi_cli_error("%s: snapshot not found", prefix);
        rc = qi_snapshot_delete_at(img, idx);
        break;
    }
    if (rc == 0)
        rc = qi_image_flush(img);
    return rc < 0 ? op_error(img, rc, prefix) : QI_CLI_OK;
}

static int change_snapshots(const char *path, unsigned flags, int action, const char *arg,
                            const qi_cli_write *w)
{
    char name[256];
    qi_image *img;
    int ret;
    if (flags & QI_OPEN_FORCE_SHARE)
        return qi_cli_error("Could not open '%s': force-share=on can only be used with "
                            "read-only images", path);
    /* qemu-img keeps a name in a 256-byte buffer: longer ones are cut */
    snprintf(name, sizeof name, "%s", arg);
    if (!(img = qi_cli_open_write(path, flags, w)))
        return QI_CLI_ERR;
    if (!qi_meta_header(img)) {
        qi_image_close(img);
        return qi_cli_error("%s: a raw image has no internal snapshots", path);
    }
    ret = run_op(img, action, name);
    if (ret == QI_CLI_OK && w->dry_run)
        return qi_cli_close_write(img, w, stdout);
    qi_image_close(img);
    return ret;
}

int qi_cli_snapshot(int argc, char **argv)
{
    static const struct option lopts[] = {
        { "force-share", no_argument, NULL, 'U' },
        { "format", required_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' },
        { "undo", required_argument, NULL, 'u' },
        { "dry-run", no_argument, NULL, 'n' },
        { NULL, 0, NULL, 0 },
    };
    qi_cli_write w = { NULL, false };
    unsigned flags = QI_OPEN_NO_BACKING | QI_OPEN_PROBE;
    int c, action = 0;
    const char *what = NULL;
    static const char extra[] =
        "  -l: list the snapshots (-U: even while QEMU uses the image)\n"
        "  -c NAME: create a snapshot of the current state (duplicate names allowed)\n"
        "  -a NAME: apply (revert to) a snapshot, found by id, then by name\n"
        "  -d NAME: delete the snapshot with that name\n"
        "  -q: quiet (nothing is printed on success anyway)\n"
        "  --undo FILE (-c/-a/-d): save the bytes the change overwrites to FILE\n"
        "  first (restore with 'qinspect undo FILE IMAGE'); --dry-run: write\n"
        "  nothing, print every change it would make.\n";

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hlc:a:d:f:Uq", lopts, NULL)) != -1) {
        switch (c) {
        case 'l': case 'c': case 'a': case 'd':
            if (action)
                return qi_cli_usage_error("snapshot", "only one of -l, -c, -a, -d");
            action = c;
            what = optarg;
            break;
        case 'U': flags |= QI_OPEN_FORCE_SHARE; break;
        case 'q': break;
        case 'u': w.undo = optarg; break;
        case 'n': w.dry_run = true; break;
        case 'f':
            if (qi_cli_parse_format(optarg, &flags) < 0)
                return qi_cli_usage_error("snapshot", "unknown format '%s' (raw or qcow2)", optarg);
            break;
        case 'h':
            return qi_cli_help("snapshot", extra);
        case ':':
            return qi_cli_usage_error("snapshot", "option '%s' needs an argument", argv[optind - 1]);
        default:
            return qi_cli_usage_error("snapshot", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (!action)
        return qi_cli_usage_error("snapshot", "one of -l, -c, -a, -d is required");
    if (argc - optind != 1)
        return qi_cli_usage_error("snapshot", "expected one FILE argument");
    if (action == 'l' && (w.undo || w.dry_run))
        return qi_cli_usage_error("snapshot", "-l writes nothing: no --undo or --dry-run");
    if (action != 'l')
        return change_snapshots(argv[optind], flags, action, what, &w);
    return list_snapshots(argv[optind], flags);
}
