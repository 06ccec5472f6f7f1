/* cli_create.c - `qinspect create`: new images as qemu-img create makes
 * them (layer 7).
 *
 * `qinspect create [-f qcow2|raw] [-o OPTS] [-b BACKING [-F FMT]] [-u] [-q]
 * FILE [SIZE]` follows qemu-img 7.2's img_create and bdrv_img_create step
 * by step, so that output, messages and exit codes are the same: -o
 * options accumulate (opts.c), "help" lists them, SIZE is parsed as
 * qemu-img parses it, the backing file is opened (unless -u) to check it
 * and to take the size from it, then the "Formatting ..." line, then the
 * engine (qi_image_create) with its own checks. Messages are qemu-img's
 * after the program name; errors about the new image are prefixed with its
 * name as qemu-img does. Calls: include/qi, cli.h helpers, opts.c. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "opts.h"

typedef struct cargs {
    const char *file, *fmt, *base, *base_fmt;
    bool quiet, unsafe;
    uint64_t size;              /* UINT64_MAX: not given */
    qi_cli_opts o;
} cargs;

/* QEMU's bdrv_get_full_backing_filename_from_filename: a relative backing
 * name is relative to the directory of the new image. */
static char *full_backing(const char *file, const char *base)
{
    const char *slash = strrchr(file, '/');
    size_t dir = (base[0] == '/' || !slash) ? 0 : (size_t)(slash - file) + 1;
    char *p = malloc(dir + strlen(base) + 1);
    if (p) {
        memcpy(p, file, dir);
        strcpy(p + dir, base);
    }
    return p;
}

/* Whether PATH starts with the qcow2 magic. */
static bool is_qcow2(const char *path)
{
    unsigned char m[4] = { 0 };
    FILE *f = fopen(path, "rb");
    if (f) {
        if (fread(m, 1, 4, f) != 4)
            m[0] = 0;
        fclose(f);
    }
    return m[0] == 'Q' && m[1] == 'F' && m[2] == 'I' && m[3] == 0xfb;
}

/* Open the backing file as bdrv_img_create does (read-only, shared) to
 * check it and, without SIZE, take its size. */
static int open_backing(cargs *a, const char *bfmt)
{
    char *path = full_backing(a->file, a->base);
    unsigned flags = QI_OPEN_FORCE_SHARE | QI_OPEN_NO_BACKING;
    qi_image *img;
    if (!path)
        return qi_cli_error("out of memory");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        qi_cli_error("%s: Could not open '%s': %s\nCould not open backing image.", a->file,
                     path, strerror(errno));
        free(path);
        return QI_CLI_ERR;
    }
    close(fd);
    if (!bfmt)
        flags |= QI_OPEN_PROBE;
    else if (!strcmp(bfmt, "raw"))
        flags |= QI_OPEN_RAW;
    else if (strcmp(bfmt, "qcow2")) {
        free(path);
        return qi_cli_error("%s: Unknown driver '%s'\nCould not open backing image.",
                            a->file, bfmt);
    }
    if ((flags & (QI_OPEN_RAW | QI_OPEN_PROBE)) == 0 && !is_qcow2(path)) {
        qi_cli_error("%s: Image is not in qcow2 format\nCould not open backing image.",
                     a->file);
        free(path);
        return QI_CLI_ERR;
    }
    if (!(img = qi_cli_open(path, flags))) {
        free(path);
        return QI_CLI_ERR;
    }
    free(path);
    if (!bfmt) {
        qi_cli_error("%s: Backing file specified without backing format\n"
                     "Detected format of %s.", a->file, qi_image_format(img));
        qi_image_close(img);
        return QI_CLI_ERR;
    }
    if (a->size == UINT64_MAX && !qi_cli_opts_get(&a->o, "size")) {
        char num[32];
        snprintf(num, sizeof num, "%" PRIu64, qi_image_size(img));
        if (qi_cli_opts_set(&a->o, "size", num) < 0) {
            qi_image_close(img);
            return qi_cli_error("out of memory");
        }
        a->o.v[a->o.n - 1].num = qi_image_size(img);
    }
    qi_image_close(img);
    return QI_CLI_OK;
}

/* bdrv_img_create up to the "Formatting" line. */
static int prepare(cargs *a)
{
    char msg[512];
    int rc = qi_cli_opts_parse(&a->o, msg, sizeof msg);
    if (rc == -1)
        return qi_cli_error("%s: %s", a->file, msg);
    if (rc < 0)
        return qi_cli_error("out of memory");
    if (!strcmp(a->fmt, "raw") && a->base)
        return qi_cli_error("%s: Backing file not supported for file format 'raw'", a->file);
    if (qi_cli_opts_get(&a->o, "size") && a->size != UINT64_MAX)
        return qi_cli_error("%s: The image size must be specified only once", a->file);
    if (a->size != UINT64_MAX) {
        char num[32];
        snprintf(num, sizeof num, "%" PRIu64, a->size);
        if (qi_cli_opts_set(&a->o, "size", num) < 0)
            return qi_cli_error("out of memory");
        a->o.v[a->o.n - 1].num = a->size;
    }
    if ((a->base && qi_cli_opts_set(&a->o, "backing_file", a->base) < 0) ||
        (a->base_fmt && qi_cli_opts_set(&a->o, "backing_fmt", a->base_fmt) < 0))
        return qi_cli_error("out of memory");
    const qi_cli_opt *b = qi_cli_opts_get(&a->o, "backing_file");
    const qi_cli_opt *bf = qi_cli_opts_get(&a->o, "backing_fmt");
    if (b && !strcmp(a->file, b->val))
        return qi_cli_error("%s: Error: Trying to create an image with the same filename "
                            "as the backing file", a->file);
    if (b && !b->val[0])
        return qi_cli_error("%s: Expected backing file name, got empty string", a->file);
    a->base = b ? b->val : NULL;
    if (b && !a->unsafe) {
        if ((rc = open_backing(a, bf ? bf->val : NULL)) != QI_CLI_OK)
            return rc;
    } else if (b && !bf) {
        return qi_cli_error("%s: Backing file specified without backing format", a->file);
    }
    if (!qi_cli_opts_get(&a->o, "size"))
        return qi_cli_error("%s: Image creation needs a size parameter", a->file);
    return QI_CLI_OK;
}

/* A raw image: the file, its length the size (qemu-img's file driver). */
static int create_raw(const cargs *a)
{
    const qi_cli_opt *p = qi_cli_opts_get(&a->o, "preallocation");
    uint64_t size = qi_cli_opts_get(&a->o, "size")->num;
    int fd, rc = 0;
    size = size > UINT64_MAX - 511 ? UINT64_MAX : (size + 511) & ~511ull; /* whole sectors */
    if (p && strcmp(p->val, "off") && strcmp(p->val, "falloc") && strcmp(p->val, "full"))
        return qi_cli_error("%s: Unsupported preallocation mode: %s", a->file, p->val);
    if ((fd = open(a->file, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0)
        return qi_cli_error("%s: Could not create '%s': %s", a->file, a->file,
                            strerror(errno));
    if (ftruncate(fd, (off_t)size) < 0)
        rc = errno;
    else if (p && strcmp(p->val, "off") && size && fallocate(fd, 0, 0, (off_t)size) < 0)
        rc = errno;   /* full: fallocated blocks read as the zeros it would write */
    if (close(fd) < 0 && !rc)
        rc = errno;
    if (rc)
        return qi_cli_error("%s: Could not resize file: %s", a->file, strerror(rc));
    return QI_CLI_OK;
}

static int create(cargs *a)
{
    qi_create_opts c = QI_CREATE_OPTS_INIT;
    qi_err err;
    char msg[512];
    int rc;
    if ((rc = prepare(a)) != QI_CLI_OK)
        return rc;
    if (!a->quiet) {
        qi_cli_opts_print(stdout, &a->o, a->file, a->fmt);
        printf("\n");
        fflush(stdout);
    }
    if (!strcmp(a->fmt, "raw"))
        return create_raw(a);
    if (qi_cli_opts_to_create(&a->o, &c, msg, sizeof msg) < 0)
        return qi_cli_error("%s: %s", a->file, msg);
    memset(&err, 0, sizeof err);
    if ((rc = qi_image_create(NULL, a->file, &c, NULL, &err)) < 0)
        return qi_cli_engine_error(&err, rc);
    return QI_CLI_OK;
}

/* qemu-img's cvtnum("image size", ...) with the range 0..INT64_MAX. */
static int parse_image_size(const char *s, uint64_t *out)
{
    int rc = qi_cli_parse_size(s, out);
    if (rc == -1) {
        qi_cli_error("Invalid image size specified. You may use k, M, G, T, P or E "
                     "suffixes for");
        return qi_cli_error("kilobytes, megabytes, gigabytes, terabytes, petabytes and "
                            "exabytes.");
    }
    if (rc < 0 || *out > (uint64_t)INT64_MAX)
        return qi_cli_error("Invalid image size specified. Must be between 0 and "
                            "9223372036854775807.");
    return QI_CLI_OK;
}

static const char create_extra[] =
    "  -f FMT     qcow2 or raw (default: raw, as qemu-img)\n"
    "  -o OPTS    key=value,... (repeatable; -o help lists them): compat=0.10|1.1,\n"
    "             cluster_size, refcount_bits, extended_l2, lazy_refcounts,\n"
    "             compression_type=zlib|zstd, data_file, data_file_raw,\n"
    "             preallocation=off|metadata|falloc|full, backing_file, backing_fmt\n"
    "  -b BACKING backing file (relative names are relative to FILE's directory)\n"
    "  -F FMT     its format (required with -b, as in qemu-img 7.2)\n"
    "  -u         do not open the backing file (SIZE is then required)\n"
    "  -q         do not print the \"Formatting ...\" line\n"
    "  SIZE       bytes, or with a k/M/G/T/P/E suffix (powers of 1024; decimals\n"
    "             such as 1.5G); rounded up to 512 bytes; taken from the backing\n"
    "             file when left out\n";

static int parse_args(cargs *a, int argc, char **argv)
{
    static const struct option lopts[] = {
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    char msg[512];
    int c, rc;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":F:b:f:ho:qu", lopts, NULL)) != -1) {
        switch (c) {
        case 'F': a->base_fmt = optarg; break;
        case 'b': a->base = optarg; break;
        case 'f': a->fmt = optarg; break;
        case 'q': a->quiet = true; break;
        case 'u': a->unsafe = true; break;
        case 'h': return qi_cli_help("create", create_extra) == QI_CLI_OK ? -1 : -2;
        case 'o':
            if ((rc = qi_cli_opts_add(&a->o, optarg, msg, sizeof msg)) == -1)
                return qi_cli_error("%s", msg), -2;
            if (rc < 0)
                return qi_cli_error("out of memory"), -2;
            break;
        case ':':
            return qi_cli_usage_error("create", "missing argument for option '%s'",
                                      argv[optind - 1]), -3;
        default:
            return qi_cli_usage_error("create", "unrecognized option '%s'",
                                      argv[optind - 1]), -3;
        }
    }
    return 0;
}

int qi_cli_create(int argc, char **argv)
{
    cargs a = { NULL, "raw", NULL, NULL, false, false, UINT64_MAX, QI_CLI_OPTS_INIT };
    int rc = parse_args(&a, argc, argv);
    if (rc < 0) {
        qi_cli_opts_free(&a.o);
        return rc == -1 ? QI_CLI_OK : rc == -2 ? QI_CLI_ERR : QI_CLI_USAGE;
    }
    bool known = !strcmp(a.fmt, "qcow2") || !strcmp(a.fmt, "raw");
    a.file = optind < argc ? argv[optind] : NULL;
    a.o.raw = !strcmp(a.fmt, "raw");
    if (a.o.list && (rc = qi_cli_opts_wants_help(&a.o)) != 0) {
        if (rc < 0)
            rc = qi_cli_error("out of memory");
        else if (!known)
            rc = qi_cli_error("Unknown file format '%s'", a.fmt);
        else {
            qi_cli_opts_help(stdout, a.o.raw, a.file != NULL);
            rc = QI_CLI_OK;
        }
    } else if (!a.file) {
        rc = qi_cli_usage_error("create", "Expecting image file name");
    } else if (++optind < argc && (rc = parse_image_size(argv[optind++], &a.size))) {
        /* message printed */
    } else if (optind < argc) {
        rc = qi_cli_usage_error("create", "Unexpected argument: %s", argv[optind]);
    } else if (!known) {
        rc = qi_cli_error("%s: Unknown file format '%s'", a.file, a.fmt);
    } else {
        rc = create(&a);
    }
    qi_cli_opts_free(&a.o);
    if (rc == QI_CLI_OK && fflush(stdout))
        rc = qi_cli_error("write error on standard output");
    return rc;
}
