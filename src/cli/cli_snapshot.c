/* cli_snapshot.c - `qinspect snapshot`: internal snapshots (layer 7).
 *
 * `-l` prints the table exactly as `qemu-img snapshot -l` does (qemu-img.c
 * dump_snapshots with block/qapi.c bdrv_snapshot_dump); the row printer is
 * shared with `info`. Creating, applying and deleting snapshots need write
 * support and are refused with a clear message until the engine has it.
 * Opens the image read-only without its backing chain. Calls: include/qi,
 * cli.h helpers. */
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

int qi_cli_snapshot(int argc, char **argv)
{
    static const struct option lopts[] = {
        { "force-share", no_argument, NULL, 'U' },
        { "format", required_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    unsigned flags = QI_OPEN_NO_BACKING | QI_OPEN_PROBE;
    int c, action = 0;
    const char *what = NULL;

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hlc:a:d:f:Uq", lopts, NULL)) != -1) {
        switch (c) {
        case 'l': case 'c': case 'a': case 'd':
            if (action)
                return qi_cli_usage_error("snapshot", "only one of -l, -c, -a, -d");
            action = c;
            what = c == 'c' ? "creating" : c == 'a' ? "applying" : "deleting";
            break;
        case 'U': flags |= QI_OPEN_FORCE_SHARE; break;
        case 'q': break;
        case 'f':
            if (qi_cli_parse_format(optarg, &flags) < 0)
                return qi_cli_usage_error("snapshot", "unknown format '%s' (raw or qcow2)", optarg);
            break;
        case 'h':
            return qi_cli_help("snapshot", "  -c/-a/-d NAME: not supported yet (needs write "
                                           "support)\n");
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
    if (action != 'l')
        return qi_cli_error("snapshot: %s a snapshot is not supported yet: needs write support",
                            what);
    return list_snapshots(argv[optind], flags);
}
