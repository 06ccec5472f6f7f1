/* cli_map.c - `qinspect map`: the guest allocation map (layer 7).
 *
 * Prints the runs qi_image_map reports in the two formats of qemu-img 7.2
 * (qemu-img.c img_map/dump_map_entry). JSON: one record per run with the
 * keys start, length, depth, present, zero, data and, when the data sits
 * at a known host offset, offset; 7.2 has no "compressed" key, so it is
 * printed only with --compressed (QEMU 8.2 prints it always, after "data").
 * Human: the data runs as "Offset Length Mapped to File" rows; like
 * qemu-img it fails on the first data run without a host offset
 * (compressed cluster). Images can have millions of runs, so records are
 * formatted by hand into a large buffer and written in big chunks: no stdio
 * call per field. Calls: include/qi, json.c (qi_outbuf), cli.h helpers. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "json.h"

#define OUTBUF_BYTES (1u << 20)
#define MAP_CB_STOP 1 /* callback result: stop, error already printed */

typedef struct map_ctx {
    qi_outbuf out;
    bool json, compressed;
    uint64_t records;
} map_ctx;

#define PUT_LIT(p, s) (memcpy((p), (s), sizeof(s) - 1), (p) + sizeof(s) - 1)

static char *put_bool(char *p, bool v)
{
    return v ? PUT_LIT(p, "true") : PUT_LIT(p, "false");
}

/* `{ "start": S, "length": L, "depth": D, "present": B, "zero": B,
 * "data": B[, "compressed": B][, "offset": O]}` preceded by ",\n" after the
 * first record, as qemu-img's printf/puts sequence writes it. */
static void json_record(map_ctx *m, const qi_map_ext *e)
{
    char *p = qi_outbuf_reserve(&m->out, 256);
    if (m->records)
        p = PUT_LIT(p, ",\n");
    p = PUT_LIT(p, "{ \"start\": ");
    p = qi_json_fmt_u64(p, e->start);
    p = PUT_LIT(p, ", \"length\": ");
    p = qi_json_fmt_u64(p, e->length);
    p = PUT_LIT(p, ", \"depth\": ");
    p = qi_json_fmt_i64(p, e->depth);
    p = PUT_LIT(p, ", \"present\": ");
    p = put_bool(p, e->present);
    p = PUT_LIT(p, ", \"zero\": ");
    p = put_bool(p, e->zero);
    p = PUT_LIT(p, ", \"data\": ");
    p = put_bool(p, e->data);
    if (m->compressed) {
        p = PUT_LIT(p, ", \"compressed\": ");
        p = put_bool(p, e->compressed);
    }
    if (e->has_offset) {
        p = PUT_LIT(p, ", \"offset\": ");
        p = qi_json_fmt_u64(p, e->offset);
    }
    *p++ = '}';
    qi_outbuf_commit(&m->out, p);
}

/* "%#-16" PRIx64: 0x-prefixed lowercase hex, plain "0" for zero, padded
 * to 16 columns. */
static char *put_hex16(char *p, uint64_t v)
{
    static const char digits[] = "0123456789abcdef";
    char tmp[16];
    int n = 0, w;
    char *start = p;
    if (v) {
        *p++ = '0';
        *p++ = 'x';
    }
    do {
        tmp[n++] = digits[v & 15];
        v >>= 4;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    for (w = (int)(p - start); w < 16; w++)
        *p++ = ' ';
    return p;
}

static int human_record(map_ctx *m, const qi_map_ext *e)
{
    if (e->data && !e->has_offset) {
        qi_outbuf_flush(&m->out);
        qi_cli_error("File contains external, encrypted or compressed clusters.");
        return MAP_CB_STOP;
    }
    if (e->data && !e->zero) {
        const char *f = e->file ? e->file : "";
        size_t fl = strlen(f);
        char *p = qi_outbuf_reserve(&m->out, 64);
        p = put_hex16(p, e->start);
        p = put_hex16(p, e->length);
        p = put_hex16(p, e->offset);
        qi_outbuf_commit(&m->out, p);
        qi_outbuf_write(&m->out, f, fl);
        qi_outbuf_write(&m->out, "\n", 1);
    }
    return 0;
}

static int map_cb(void *payload, const qi_map_ext *e)
{
    map_ctx *m = payload;
    int rc = 0;
    if (m->json)
        json_record(m, e);
    else
        rc = human_record(m, e);
    m->records++;
    return rc;
}

static int run_map(qi_image *img, map_ctx *m, uint64_t start, uint64_t len)
{
    uint64_t size = qi_image_size(img), from = start < size ? start : size;
    int rc;
    if (len > size - from)
        len = size - from;
    qi_outbuf_puts(&m->out, m->json ? "[" : "Offset          Length          Mapped to       File\n");
    rc = qi_image_map(img, from, len, map_cb, m);
    if (rc == MAP_CB_STOP)
        return QI_CLI_ERR;
    if (rc < 0) {
        qi_outbuf_flush(&m->out);
        return qi_cli_engine_error(qi_image_error(img), rc);
    }
    if (m->json) {
        /* qemu-img prints its empty first entry, at the offset asked for,
         * when nothing was mapped */
        if (!m->records) {
            qi_map_ext empty = { .start = start };
            json_record(m, &empty);
        }
        qi_outbuf_puts(&m->out, "]\n");
    }
    if (qi_outbuf_flush(&m->out) < 0)
        return qi_cli_error("write error on standard output: %s", strerror(m->out.err));
    return QI_CLI_OK;
}

int qi_cli_map(int argc, char **argv)
{
    enum { OPT_START = 256, OPT_MAXLEN, OPT_COMPRESSED, OPT_FORCE };
    static const struct option lopts[] = {
        { "output", required_argument, NULL, 'o' },
        { "force-share", no_argument, NULL, 'U' },
        { "format", required_argument, NULL, 'f' },
        { "start-offset", required_argument, NULL, OPT_START },
        { "max-length", required_argument, NULL, OPT_MAXLEN },
        { "compressed", no_argument, NULL, OPT_COMPRESSED },
        { "force", no_argument, NULL, OPT_FORCE },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    unsigned flags = QI_OPEN_PROBE;
    uint64_t start = 0, len = UINT64_MAX;
    map_ctx m = { 0 };
    int c, rc, out;
    qi_image *img;

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hf:U", lopts, NULL)) != -1) {
        switch (c) {
        case 'o':
            if ((out = qi_cli_parse_output(optarg)) < 0)
                return qi_cli_usage_error("map", "--output must be human or json, not '%s'", optarg);
            m.json = out == 1;
            break;
        case 'U': flags |= QI_OPEN_FORCE_SHARE; break;
        case 'f':
            if (qi_cli_parse_format(optarg, &flags) < 0)
                return qi_cli_usage_error("map", "unknown format '%s' (raw or qcow2)", optarg);
            break;
        case OPT_START:
        case OPT_MAXLEN:
            if (qi_cli_parse_size(optarg, c == OPT_START ? &start : &len) < 0)
                return qi_cli_usage_error("map", "invalid %s '%s'",
                                          c == OPT_START ? "start offset" : "length", optarg);
            break;
        case OPT_COMPRESSED: m.compressed = true; break;
        case OPT_FORCE: flags |= QI_OPEN_FORCE; break;
        case 'h':
            return qi_cli_help("map", "  --compressed  add the \"compressed\" key of QEMU 8.2 to JSON "
                                      "records\n" QI_CLI_FORCE_HELP);
        case ':': return qi_cli_usage_error("map", "option '%s' needs an argument", argv[optind - 1]);
        default: return qi_cli_usage_error("map", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return qi_cli_usage_error("map", "expected one FILE argument");
    if (!(img = qi_cli_open(argv[optind], flags)))
        return QI_CLI_ERR;
    if (qi_outbuf_init(&m.out, STDOUT_FILENO, OUTBUF_BYTES) < 0) {
        qi_image_close(img);
        return qi_cli_error("out of memory");
    }
    fflush(stdout);
    rc = run_map(img, &m, start, len);
    qi_outbuf_free(&m.out);
    qi_image_close(img);
    return rc;
}
