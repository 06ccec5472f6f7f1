/* cli_resize.c - `qinspect resize`: change an image's virtual size (layer 7).
 *
 * `qinspect resize [-f FMT] [-q] [--shrink] FILE [+|-]SIZE` takes SIZE as
 * qemu-img resize does: the last argument (so that "-1G" is not an option),
 * with the k/M/G/T/P/E suffixes, "+SIZE"/"-SIZE" relative to the size now;
 * a smaller size needs --shrink (qemu-img's refusal and warning without). Opens FILE read-write
 * with its backing chain, calls qi_image_resize, flushes, and prints
 * "Image resized." as qemu-img does (-q: nothing). --undo FILE and
 * --dry-run as every writing command (cli_undo.c). Calls: include/qi,
 * cli.h helpers. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static int do_resize(const char *path, unsigned flags, const char *arg, bool quiet,
                     bool shrink, const qi_cli_write *w)
{
    qi_image *img;
    uint64_t n, size;
    int rc;
    char sign = (arg[0] == '+' || arg[0] == '-') ? arg[0] : 0;
    if (qi_cli_parse_size(arg + (sign != 0), &n) < 0)
        return qi_cli_usage_error("resize", "invalid size '%s' (bytes, or a number with "
                                  "a k, M, G, T, P or E suffix, optionally after + or -)",
                                  arg);
    if (!(img = qi_cli_open_write(path, flags, w)))
        return QI_CLI_ERR;
    size = qi_image_size(img);
    /* qemu-img's check: a size of 0 or below */
    if ((sign == '-' && n >= size) || (!sign && n == 0)) {
        qi_image_close(img);
        return qi_cli_error("New image size must be positive");
    }
    if (sign == '-')
        n = size - n;
    if (sign == '+' && n > UINT64_MAX - size) {
        qi_image_close(img);
        return qi_cli_error("%s: the size %" PRIu64 " + %" PRIu64 " is beyond 2^64",
                            path, size, n);
    }
    if (sign == '+')
        n += size;
    /* qemu-img's refusal and warning, word for word */
    if (n < size && !shrink) {
        qi_image_close(img);
        qi_cli_error("Use the --shrink option to perform a shrink operation.");
        fprintf(stderr, "qinspect: warning: Shrinking an image will delete all data beyond "
                "the shrunken image's end. Before performing such an operation, make "
                "sure there is no important data there.\n");
        return QI_CLI_ERR;
    }
    if ((rc = qi_image_resize(img, n)) < 0 || (rc = qi_image_flush(img)) < 0) {
        qi_cli_engine_error(qi_image_error(img), rc);
        qi_image_close(img);
        return QI_CLI_ERR;
    }
    if (w->dry_run)
        return qi_cli_close_write(img, w, stdout);
    qi_image_close(img);
    if (!quiet)
        printf("Image resized.\n");
    return fflush(stdout) ? qi_cli_error("write error on standard output") : QI_CLI_OK;
}

int qi_cli_resize(int argc, char **argv)
{
    static const struct option lopts[] = {
        { "format", required_argument, NULL, 'f' },
        { "help", no_argument, NULL, 'h' },
        { "shrink", no_argument, NULL, 'S' },
        { "undo", required_argument, NULL, 'u' },
        { "dry-run", no_argument, NULL, 'n' },
        { NULL, 0, NULL, 0 },
    };
    static const char extra[] =
        "  SIZE: bytes or k/M/G/T/P/E (powers of 1024); +SIZE adds to the size now.\n"
        "  -SIZE subtracts; the new size must be a multiple of 512.\n"
        "  --shrink: allow a smaller size (refused without it, as qemu-img does);\n"
        "  the clusters past the new end are freed and the file is cut.\n"
        "  -q: print nothing on success.\n"
        "  --undo FILE: save the bytes the resize overwrites to FILE first\n"
        "  (restore with 'qinspect undo FILE IMAGE'); --dry-run: write nothing,\n"
        "  print every change the resize would make.\n";
    qi_cli_write w = { NULL, false };
    unsigned flags = QI_OPEN_RW | QI_OPEN_PROBE;
    bool quiet = false, shrink = false;
    const char *size;
    int c;

    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")))
        return qi_cli_help("resize", extra);
    if (argc < 3)
        return qi_cli_usage_error("resize", "expected FILE and SIZE");
    /* the size is the last argument, so that a negative one is no option */
    size = argv[--argc];
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hf:q", lopts, NULL)) != -1) {
        switch (c) {
        case 'q': quiet = true; break;
        case 'S': shrink = true; break;
        case 'u': w.undo = optarg; break;
        case 'n': w.dry_run = true; break;
        case 'f':
            if (qi_cli_parse_format(optarg, &flags) < 0)
                return qi_cli_usage_error("resize", "unknown format '%s' (raw or qcow2)",
                                          optarg);
            break;
        case 'h':
            return qi_cli_help("resize", extra);
        case ':':
            return qi_cli_usage_error("resize", "option '%s' needs an argument",
                                      argv[optind - 1]);
        default:
            return qi_cli_usage_error("resize", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return qi_cli_usage_error("resize", "expected one FILE argument before SIZE");
    return do_resize(argv[optind], flags, size, quiet, shrink, &w);
}
