/* cli.h - batch subcommands of the qinspect binary (layer 7).
 *
 * main.c owns the command table; each cli_*.c file implements one
 * subcommand as `int qi_cli_<name>(int argc, char **argv)`, with argv[0] the
 * subcommand name. Subcommands return an exit status: QI_CLI_OK, QI_CLI_ERR
 * (message already printed on stderr) or QI_CLI_USAGE. The helpers below
 * are shared by the subcommands so that every error line and every open
 * looks the same. */
#ifndef QI_CLI_CLI_H
#define QI_CLI_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "qi/qi.h"

enum { QI_CLI_OK = 0, QI_CLI_ERR = 1, QI_CLI_USAGE = 2 };

/* Command table flags (STYLE convention 13). */
#define QI_CMD_NEEDS_IMAGE 0x1u /* takes an image argument */
#define QI_CMD_NEEDS_WRITE 0x2u /* opens its image read-write */

typedef struct qi_cli_cmd {
    const char *name;
    int (*fn)(int argc, char **argv);
    unsigned flags;
    const char *usage;   /* synopsis after "qinspect " */
    const char *summary; /* one line */
} qi_cli_cmd;

/* The command table, terminated by an entry with name NULL (main.c). */
extern const qi_cli_cmd qi_cli_commands[];

/* Subcommands (cli_info.c, cli_map.c, cli_snapshot.c, cli_convert.c). */
int qi_cli_info(int argc, char **argv);
int qi_cli_map(int argc, char **argv);
int qi_cli_snapshot(int argc, char **argv);
int qi_cli_convert(int argc, char **argv);
int qi_cli_resize(int argc, char **argv);     /* cli_resize.c */
int qi_cli_create(int argc, char **argv);     /* cli_create.c */
int qi_cli_check(int argc, char **argv);      /* cli_check.c */
int qi_cli_undo(int argc, char **argv);       /* cli_undo.c */

/* Print "qinspect: " and the formatted message on stderr, one line.
 * Returns QI_CLI_ERR. (main.c) */
int qi_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print "qinspect CMD: MESSAGE" and a pointer to --help on stderr.
 * Returns QI_CLI_USAGE. (main.c) */
int qi_cli_usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Print an engine error record as "qinspect: <qi_err_format line>"; falls
 * back to qi_strerror(CODE) when the record is empty. Returns QI_CLI_ERR.
 * (main.c) */
int qi_cli_engine_error(const qi_err *e, int code);

/* The --force line of the read commands' --help. */
#define QI_CLI_FORCE_HELP \
    "  --force      forensic open: read-only, opens any image with a readable\n" \
    "               header even where QEMU refuses; what could not be loaded is\n" \
    "               printed as warnings and stays unavailable\n"

/* Open PATH with FLAGS (QI_OPEN_*; with QI_OPEN_FORCE every damage the open
 * found is printed as a warning line); on failure print the error and return
 * NULL. The caller closes the image with qi_image_close. (main.c) */
qi_image *qi_cli_open(const char *path, unsigned flags);

/* Print "Usage: qinspect " and NAME's synopsis from the command table on
 * stdout, then EXTRA (may be NULL). Returns QI_CLI_OK. (main.c) */
int qi_cli_help(const char *name, const char *extra);

/* Apply `-f FMT` to open FLAGS: "raw" opens as raw, "qcow2" requires
 * qcow2 (no probing). Returns 0, or -1 for any other name. (main.c) */
int qi_cli_parse_format(const char *fmt, unsigned *flags);

/* Parse "human"/"json" for --output; returns 0 human, 1 json, -1 bad. (main.c) */
int qi_cli_parse_output(const char *s);

/* Parse a size as qemu-img does (QEMU's qemu_strtosz): a decimal number,
 * or 0x hex, with an optional b/k/M/G/T/P/E suffix (any case, powers of
 * 1024); a decimal fraction with a suffix other than b ("1.5G"), rounded
 * to the nearest byte; leading white space. Returns 0, -1 (not a size) or
 * -2 (2^64 or more). (main.c) */
int qi_cli_parse_size(const char *s, uint64_t *out);

/* QEMU's size_to_str: "%0.3g" with B/KiB/MiB/... chosen so that the
 * number stays below 1000 (util/cutils.c). Writes to BUF. (cli_info.c) */
char *qi_cli_human_size(char *buf, size_t n, uint64_t v);

/* Print qemu-img's snapshot table header (SN NULL) or one snapshot row,
 * without a trailing newline, as block/qapi.c bdrv_snapshot_dump does.
 * (cli_snapshot.c) */
void qi_cli_snapshot_dump(FILE *f, const qi_snapshot *sn);

/* --undo FILE and --dry-run of the writing commands (cli_undo.c). */
typedef struct qi_cli_write {
    const char *undo;    /* --undo FILE, or NULL */
    bool dry_run;        /* --dry-run */
} qi_cli_write;

/* Open PATH read-write (FLAGS | QI_OPEN_RW) with W's undo file or as a dry
 * run (W may be NULL: neither); on failure print the error, return NULL. */
/* Print the reason an open of PATH failed; returns NULL. */
qi_image *qi_cli_open_failed(qi_err *err, int rc, const char *path);

qi_image *qi_cli_open_write(const char *path, unsigned flags, const qi_cli_write *w);

/* The default undo file name of issue 11 for IMAGE:
 * "IMAGE.qinspect-undo-YYYYMMDDTHHMMSSZ" (UTC) in BUF (N bytes); NULL if
 * it does not fit. */
const char *qi_cli_default_undo(const char *image, char *buf, size_t n);

/* Close IMG; for a dry run, first print on F "Dry run: nothing was
 * written..." and one line per change (cli_undo.c format), then "N changes.".
 * Returns QI_CLI_OK or QI_CLI_ERR (F could not be written). */
int qi_cli_close_write(qi_image *img, const qi_cli_write *w, FILE *f);

/* A dry run's changes so far (call after qi_image_flush) as a JSON array of
 * {kind: write|discard|truncate, file, structure, offset, length, old, new}
 * (old/new: hex, present up to QI_CLI_JSON_HEX_MAX bytes) or, for a
 * truncate, {kind, file, structure, old-size, new-size}. Empty for a real
 * run. The caller owns it (a json.h tree). */
#define QI_CLI_JSON_HEX_MAX 65536
struct qi_json;
struct qi_json *qi_cli_changes_json(qi_image *img);

#endif
