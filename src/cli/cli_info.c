/* cli_info.c - `qinspect info`: image facts as qemu-img info prints them
 * (layer 7).
 *
 * Builds one JSON tree with the fields and key names of QEMU 7.2's QAPI
 * ImageInfo (block/qapi.c bdrv_query_image_info, qcow2_get_specific_info)
 * and renders it either as qemu-img's pretty JSON or as its human text
 * (bdrv_image_info_dump). Fields are added in QAPI order; json.c prints
 * them in QEMU's QDict order, so both renderings come from the same tree.
 * Opens the image without its backing chain, as qemu-img info does (with
 * --backing-chain, each backing file in turn the same way), and reads no
 * guest data. Calls: include/qi, json.c, the shared helpers in
 * cli.h. */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "json.h"

char *qi_cli_human_size(char *buf, size_t n, uint64_t v)
{
    static const char *const suffixes[] = { "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei" };
    int i;
    /* util/cutils.c size_to_str: the exponent of val*1024/1000 picks the
     * unit, so the integer part stays below 1000 */
    frexp((double)v / (1000.0 / 1024.0), &i);
    i = (i - 1) / 10;
    if (i < 0)
        i = 0;
    if (i > 6)
        i = 6;
    snprintf(buf, n, "%0.3g %sB", (double)v / (double)(1ull << (i * 10)), suffixes[i]);
    return buf;
}

static qi_json *snapshot_list(const qi_image *img)
{
    uint32_t n = 0;
    const qi_snapshot *sn = qi_meta_snapshots(img, &n);
    qi_json *list = qi_json_array();
    for (uint32_t i = 0; i < n; i++) {
        qi_json *o = qi_json_object();
        qi_json_set(o, "id", qi_json_string(sn[i].id));
        qi_json_set(o, "name", qi_json_string(sn[i].name));
        qi_json_set(o, "vm-state-size", qi_json_int((int64_t)sn[i].vm_state_size));
        qi_json_set(o, "date-sec", qi_json_int(sn[i].date_sec));
        qi_json_set(o, "date-nsec", qi_json_int(sn[i].date_nsec));
        qi_json_set(o, "vm-clock-sec", qi_json_int((int64_t)(sn[i].vm_clock_nsec / 1000000000u)));
        qi_json_set(o, "vm-clock-nsec", qi_json_int((int64_t)(sn[i].vm_clock_nsec % 1000000000u)));
        /* QEMU stores "no icount" as -1 and then leaves the key out */
        if (sn[i].has_icount && sn[i].icount != UINT64_MAX)
            qi_json_set(o, "icount", qi_json_int((int64_t)sn[i].icount));
        qi_json_push(list, o);
    }
    return list;
}

/* Qcow2BitmapInfo list (qcow2-bitmap.c qcow2_get_bitmap_info_list): name,
 * granularity and the user-visible flags in-use and auto. */
static qi_json *bitmap_list(const qi_bitmap *bm, uint32_t n)
{
    qi_json *list = qi_json_array();
    for (uint32_t i = 0; i < n; i++) {
        qi_json *o = qi_json_object(), *flags = qi_json_array();
        qi_json_set(o, "name", qi_json_string(bm[i].name));
        qi_json_set(o, "granularity", qi_json_int((int64_t)1 << bm[i].granularity_bits));
        if (bm[i].flags & QI_BITMAP_IN_USE)
            qi_json_push(flags, qi_json_string("in-use"));
        if (bm[i].flags & QI_BITMAP_AUTO)
            qi_json_push(flags, qi_json_string("auto"));
        qi_json_set(o, "flags", flags);
        qi_json_push(list, o);
    }
    return list;
}

/* ImageInfoSpecificQCow2 (qcow2.c qcow2_get_specific_info): a version 2
 * image reports only compat, refcount-bits and the compression type. */
static qi_json *qcow2_specific_data(const qi_image *img)
{
    const qi_header *h = qi_meta_header(img);
    qi_json *data = qi_json_object();
    if (h->version == 2) {
        qi_json_set(data, "compat", qi_json_string("0.10"));
    } else {
        const char *df = qi_image_data_file_name(img);
        qi_json_set(data, "compat", qi_json_string("1.1"));
        if (df)
            qi_json_set(data, "data-file", qi_json_string(df));
        if (h->incompatible_features & QI_INCOMPAT_DATA_FILE)
            qi_json_set(data, "data-file-raw",
                        qi_json_bool(h->autoclear_features & QI_AUTOCLEAR_DATA_FILE_RAW));
        qi_json_set(data, "extended-l2", qi_json_bool(qi_meta_extended_l2(img)));
        qi_json_set(data, "lazy-refcounts",
                    qi_json_bool(h->compatible_features & QI_COMPAT_LAZY_REFCOUNTS));
        qi_json_set(data, "corrupt",
                    qi_json_bool(h->incompatible_features & QI_INCOMPAT_CORRUPT));
    }
    if (h->crypt_method == 1) {
        qi_json *enc = qi_json_object();
        qi_json_set(enc, "format", qi_json_string("aes"));
        qi_json_set(data, "encrypt", enc);
    }
    qi_json_set(data, "refcount-bits", qi_json_int(qi_meta_refcount_bits(img)));
    if (h->version > 2) {
        uint32_t nbm = 0;
        const qi_bitmap *bm = qi_meta_bitmaps(img, &nbm);
        if (bm && nbm)
            qi_json_set(data, "bitmaps", bitmap_list(bm, nbm));
    }
    qi_json_set(data, "compression-type",
                qi_json_string(h->compression_type == 1 ? "zstd" : "zlib"));
    return data;
}

/* ImageInfoSpecific: {"type": "qcow2", "data": {...}} */
static qi_json *qcow2_specific(const qi_image *img)
{
    qi_json *spec = qi_json_object();
    qi_json_set(spec, "type", qi_json_string("qcow2"));
    qi_json_set(spec, "data", qcow2_specific_data(img));
    return spec;
}

/* The ImageInfo tree of IMG (NULL when out of memory). */
static qi_json *image_info(const qi_image *img)
{
    const qi_header *h = qi_meta_header(img);
    const char *bname = qi_image_backing_name(img);
    uint32_t nsn = 0;
    qi_json *o = qi_json_object();
    qi_json_set(o, "filename", qi_json_string(qi_image_path(img)));
    qi_json_set(o, "format", qi_json_string(qi_image_format(img)));
    qi_json_set(o, "dirty-flag",
                qi_json_bool(h && (h->incompatible_features & QI_INCOMPAT_DIRTY)));
    qi_json_set(o, "actual-size", qi_json_int((int64_t)qi_image_allocated_bytes(img)));
    qi_json_set(o, "virtual-size", qi_json_int((int64_t)qi_image_size(img)));
    if (qi_image_cluster_size(img))
        qi_json_set(o, "cluster-size", qi_json_int(qi_image_cluster_size(img)));
    if (h && h->crypt_method)
        qi_json_set(o, "encrypted", qi_json_bool(true));
    if (bname && *bname) {
        const char *full = qi_image_backing_full_name(img);
        const char *fmt = qi_image_backing_format(img);
        qi_json_set(o, "backing-filename", qi_json_string(bname));
        if (full)
            qi_json_set(o, "full-backing-filename", qi_json_string(full));
        if (fmt && *fmt)
            qi_json_set(o, "backing-filename-format", qi_json_string(fmt));
    }
    if (h && qi_meta_snapshots(img, &nsn) && nsn)
        qi_json_set(o, "snapshots", snapshot_list(img));
    if (h)
        qi_json_set(o, "format-specific", qcow2_specific(img));
    return o;
}

static void print_human(const qi_image *img, const qi_json *spec_data)
{
    const qi_header *h = qi_meta_header(img);
    const char *bname = qi_image_backing_name(img);
    char vsize[64], dsize[64];
    uint32_t nsn = 0;
    const qi_snapshot *sn = h ? qi_meta_snapshots(img, &nsn) : NULL;
    printf("image: %s\nfile format: %s\nvirtual size: %s (%" PRIu64 " bytes)\n"
           "disk size: %s\n", qi_image_path(img), qi_image_format(img),
           qi_cli_human_size(vsize, sizeof vsize, qi_image_size(img)), qi_image_size(img),
           qi_cli_human_size(dsize, sizeof dsize, qi_image_allocated_bytes(img)));
    if (h && h->crypt_method)
        printf("encrypted: yes\n");
    if (qi_image_cluster_size(img))
        printf("cluster_size: %" PRIu32 "\n", qi_image_cluster_size(img));
    if (h && (h->incompatible_features & QI_INCOMPAT_DIRTY))
        printf("cleanly shut down: no\n");
    if (bname && *bname) {
        const char *full = qi_image_backing_full_name(img);
        const char *fmt = qi_image_backing_format(img);
        printf("backing file: %s", bname);
        if (!full)
            printf(" (cannot determine actual path)");
        else if (strcmp(bname, full))
            printf(" (actual path: %s)", full);
        printf("\n");
        if (fmt && *fmt)
            printf("backing file format: %s\n", fmt);
    }
    if (sn && nsn) {
        printf("Snapshot list:\n");
        qi_cli_snapshot_dump(stdout, NULL);
        printf("\n");
        for (uint32_t i = 0; i < nsn; i++) {
            qi_cli_snapshot_dump(stdout, &sn[i]);
            printf("\n");
        }
    }
    if (spec_data) {
        char *text = qi_json_dump_human(spec_data, 1);
        printf("Format specific information:\n%s", text ? text : "");
        free(text);
    }
}

/* Open PATH and, with CHAIN, each backing file in turn, each on its own
 * without its backing chain (qemu-img.c collect_image_info_list: the name
 * is the resolved backing name, the format the header's or probed).
 * Fills IMGS (at most QI_MAX_BACKING_DEPTH + 1); returns the count, or -1
 * after printing an error (images opened so far are in IMGS[0..*N)). */
static int open_chain(const char *path, unsigned flags, bool chain, qi_image **imgs, int *n)
{
    const char *name = path;
    *n = 0;
    for (;;) {
        qi_image *img = qi_cli_open(name, flags);
        if (!img)
            return -1;
        imgs[(*n)++] = img;
        name = chain ? qi_image_backing_full_name(img) : NULL;
        if (!name)
            return *n;
        for (int i = 0; i < *n; i++)
            if (!strcmp(qi_image_path(imgs[i]), name))
                return qi_cli_error("Backing file '%s' creates an infinite loop.", name), -1;
        if (*n > QI_MAX_BACKING_DEPTH)
            return qi_cli_error("%s: backing chain deeper than %d", path,
                                QI_MAX_BACKING_DEPTH), -1;
        const char *fmt = qi_image_backing_format(img);
        flags &= ~(QI_OPEN_RAW | QI_OPEN_PROBE);
        if (!fmt || !*fmt)
            flags |= QI_OPEN_PROBE;
        else if (qi_cli_parse_format(fmt, &flags) < 0)
            return qi_cli_error("%s: unsupported backing file format '%s'", name, fmt), -1;
    }
}

/* Print the info of IMGS[0..N) as JSON (one object, or a list for a
 * chain) or as human text (blank lines between images). */
static int print_info(qi_image **imgs, int n, bool json, bool chain)
{
    qi_json *tree = NULL;
    char *text = NULL;
    int rc = QI_CLI_OK;
    if (json) {
        tree = chain ? qi_json_array() : image_info(imgs[0]);
        for (int i = 0; chain && i < n; i++)
            qi_json_push(tree, image_info(imgs[i]));
        if (!(text = qi_json_render(tree, QI_JSON_PRETTY | QI_JSON_QDICT_ORDER)))
            rc = qi_cli_error("out of memory");
        else
            printf("%s\n", text);
        free(text);
        qi_json_free(tree);
    }
    for (int i = 0; !json && i < n; i++) {
        tree = qi_meta_header(imgs[i]) ? qcow2_specific_data(imgs[i]) : NULL;
        if (i)
            printf("\n");
        print_human(imgs[i], tree);
        qi_json_free(tree);
    }
    if (fflush(stdout) && rc == QI_CLI_OK)
        rc = qi_cli_error("write error on standard output");
    return rc;
}

int qi_cli_info(int argc, char **argv)
{
    static const struct option lopts[] = {
        { "output", required_argument, NULL, 'o' },
        { "force-share", no_argument, NULL, 'U' },
        { "format", required_argument, NULL, 'f' },
        { "backing-chain", no_argument, NULL, 'B' },
        { "force", no_argument, NULL, 'F' },
        { "help", no_argument, NULL, 'h' },
        { NULL, 0, NULL, 0 },
    };
    /* as qemu-img info: no backing chain, no data file, no key */
    unsigned flags = QI_OPEN_NO_BACKING | QI_OPEN_PROBE | QI_OPEN_INFO;
    int json = 0, c, rc, n = 0;
    bool chain = false;
    qi_image *imgs[QI_MAX_BACKING_DEPTH + 1];

    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hf:U", lopts, NULL)) != -1) {
        switch (c) {
        case 'o':
            if ((json = qi_cli_parse_output(optarg)) < 0)
                return qi_cli_usage_error("info", "--output must be human or json, not '%s'", optarg);
            break;
        case 'U': flags |= QI_OPEN_FORCE_SHARE; break;
        case 'B': chain = true; break;
        case 'F': flags |= QI_OPEN_FORCE; break;
        case 'f':
            if (qi_cli_parse_format(optarg, &flags) < 0)
                return qi_cli_usage_error("info", "unknown format '%s' (raw or qcow2)", optarg);
            break;
        case 'h': return qi_cli_help("info", QI_CLI_FORCE_HELP);
        case ':': return qi_cli_usage_error("info", "option '%s' needs an argument", argv[optind - 1]);
        default: return qi_cli_usage_error("info", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return qi_cli_usage_error("info", "expected one FILE argument");
    rc = open_chain(argv[optind], flags, chain, imgs, &n) < 0
             ? QI_CLI_ERR : print_info(imgs, n, json == 1, chain);
    while (n)
        qi_image_close(imgs[--n]);
    return rc;
}
