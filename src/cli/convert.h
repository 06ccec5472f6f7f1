/* convert.h - what `qinspect convert` parsed, shared by cli_convert.c (the
 * command, raw output) and cli_convert_qcow2.c (qcow2 output) (layer 7). */
#ifndef QI_CLI_CONVERT_H
#define QI_CLI_CONVERT_H

#include <stdbool.h>
#include <stdint.h>

#include "qi/qi.h"

typedef struct qi_cli_convert_args {
    const char *src, *dst;
    const char *snap;           /* -l, or NULL */
    const char *backing;        /* -B, or NULL */
    const char *backing_fmt;    /* -F, or NULL */
    char *opts;                 /* every -o joined with ',' (owned), or NULL */
    bool qcow2;                 /* -O qcow2 (else raw) */
    bool compress;              /* -c */
    bool progress;              /* -p */
    bool quiet;                 /* -q */
    bool no_create;             /* -n */
    uint64_t sparse;            /* -S in bytes (default 4096; 0 = none) */
    unsigned threads;           /* -m: compressing threads (0 = online CPUs) */
} qi_cli_convert_args;

/* Write the guest view of SRC (SNAP: a snapshot index, or -1 for the
 * active view) to the qcow2 image A->dst of SIZE bytes, created from A's
 * options (or opened, with -n). DATA_END <= SIZE: where a snapshot's own
 * disk size ends (beyond, the target reads zeros). Returns a QI_CLI_* exit
 * status; the message is printed. */
int qi_cli_convert_qcow2(const qi_cli_convert_args *a, qi_image *src, int snap,
                         uint64_t size, uint64_t data_end);

#endif
