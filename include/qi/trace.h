/* qinspect public API: tracing the on-disk writes (img:trace).
 *
 * Between qi_trace_start and qi_trace_stop every write the engine makes to
 * an image file is recorded in order: the structure written (header, L1
 * table, L2 table, refcount block, refcount table, data cluster, COW
 * cluster), the file and byte range, and for metadata the 64-bit words
 * that changed (old -> new, read from the file just before the write);
 * each sync is a "barrier" record. This is the crash table made visible:
 * the order shown is the order a crash could cut. Process-wide; tracing
 * does not nest. */
#ifndef QI_TRACE_H
#define QI_TRACE_H

#include <stddef.h>
#include <stdint.h>

#define QI_TRACE_MAX_CHANGES 64     /* words kept per record; more are counted */

typedef struct qi_trace_change {
    uint64_t offset;                /* file offset of the 8-byte word */
    uint64_t old_value, new_value;  /* big-endian words as numbers */
} qi_trace_change;

typedef struct qi_trace_rec {
    char structure[32];             /* "barrier" for a sync, "truncate" */
    char file[256];
    uint64_t offset, length;        /* truncate: offset = the new length */
    uint32_t n_changes;             /* words that changed (may exceed the kept) */
    qi_trace_change changes[QI_TRACE_MAX_CHANGES];
} qi_trace_rec;

/* Start recording. Returns 0, or QI_EINVAL when already recording. */
int qi_trace_start(void);

/* Stop; *recs (free with free()) holds *n records. *recs is NULL and the
 * return QI_ENOMEM when memory ran out while recording. */
int qi_trace_stop(qi_trace_rec **recs, size_t *n);

#endif
