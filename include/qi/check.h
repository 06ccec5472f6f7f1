/* qinspect public API: the problem table.
 *
 * Every problem qinspect can name has one record here: a stable code, a
 * short name used as the key in Lua (qinspect.problems) and JSON, a
 * severity, a one-line summary and a plain-language explanation of the rule
 * behind it. The C side and the Lua side (explain(), help) read the same
 * records, so the wording lives in one place (STYLE convention 13).
 * Below the table: the read-only check (qi_check), with qemu-img check's
 * counters and a vector of findings. */
#ifndef QI_CHECK_H
#define QI_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct qi_image qi_image;

typedef enum qi_severity {
    QI_SEV_NOTE = 0,        /* allowed state worth knowing about */
    QI_SEV_LEAK,            /* wastes space, never loses data */
    QI_SEV_CORRUPTION,      /* a read or a write may go wrong */
} qi_severity;

typedef enum qi_problem_code {
    QI_PROB_L1_RESERVED = 1,
    QI_PROB_L2_RESERVED,
    QI_PROB_REFTABLE_RESERVED,
    QI_PROB_L2_TABLE_UNALIGNED,
    QI_PROB_DATA_UNALIGNED,
    QI_PROB_REFBLOCK_UNALIGNED,
    QI_PROB_TABLE_UNALIGNED,
    QI_PROB_COPIED_SHARED,
    QI_PROB_COPIED_MISSING,
    QI_PROB_COPIED_MISSING_DEDUP,
    QI_PROB_COMPRESSED_COPIED,
    QI_PROB_SUBCLUSTER_BOTH,
    QI_PROB_SUBCLUSTER_UNALLOCATED,
    QI_PROB_COMPRESSED_BITMAP,
    QI_PROB_PAST_EOF,
    QI_PROB_REFCOUNT_ZERO,
    QI_PROB_REFCOUNT_LOW,
    QI_PROB_REFCOUNT_HIGH,
    QI_PROB_REFCOUNT_OVERFLOW,
    QI_PROB_REFBLOCK_REFCOUNT,
    QI_PROB_REFBLOCK_PAST_EOF,
    QI_PROB_SUBCLUSTER_UNALLOC_ENTRY,
    QI_PROB_COMPRESSED_DATA_FILE,
    QI_PROB_READ_ERROR,
    QI_PROB_SNAPSHOT_INCOMPLETE,
} qi_problem_code;

typedef struct qi_problem {
    qi_problem_code code;
    const char *name;           /* snake_case key, stable */
    qi_severity severity;
    const char *summary;        /* one line, no final period */
    const char *explanation;    /* the rule and why it matters, plain words */
} qi_problem;

/* The record of CODE, or NULL if there is none. */
const qi_problem *qi_problem_lookup(qi_problem_code code);

/* The record named NAME, or NULL. */
const qi_problem *qi_problem_find(const char *name);

/* Iteration: records 0 .. qi_problem_count() - 1 in table order. */
size_t qi_problem_count(void);
const qi_problem *qi_problem_at(size_t i);

/* Whether IMG carries the dedup header extension (docs/dedup-design.md
 * section 5): COPIED missing at refcount 1 is then a note, not corruption. */
bool qi_check_is_dedup(const qi_image *img);

/* What `check -r` does about problem CODE (one sentence), or NULL. */
const char *qi_problem_repair(qi_problem_code code);

/* "note", "leak" or "corruption". */
const char *qi_severity_name(qi_severity s);


/* The check (check.c): QEMU's qcow2_check_refcounts rules; with a repair
 * flag, the repair (repair.c) as qemu-img check -r leaks|all makes it. */
#define QI_CHECK_REPAIR_LEAKS 0x1u  /* -r leaks: refcounts above the
                                     * references lowered; COPIED fixed only
                                     * when nothing else is wrong */
#define QI_CHECK_REPAIR_ALL   0x2u  /* -r all: leaks, refcounts too low,
                                     * COPIED, preallocated unaligned entries,
                                     * damaged refcount structures rebuilt,
                                     * entries past the end of the file made
                                     * zero clusters (qemu-img leaves them) */
#define QI_CHECK_KEEP_COUNTS 0x100u /* RES keeps the references counted per
                                    * host cluster (counts, n_counts) */
typedef struct qi_check_opts {
    unsigned flags;             /* QI_CHECK_REPAIR_*, QI_CHECK_KEEP_COUNTS */
} qi_check_opts;
#define QI_CHECK_OPTS_INIT { 0 }

#define QI_NO_GUEST UINT64_MAX  /* qi_finding.guest_offset: none */

typedef struct qi_finding {
    qi_problem_code code;
    qi_severity severity;       /* as counted: a dedup note is QI_SEV_NOTE */
    const char *structure;      /* static string: "L2 entry", "refcount block", ... */
    uint64_t offset;            /* host offset of the entry or structure */
    uint64_t guest_offset;      /* first guest byte affected, or QI_NO_GUEST */
    uint64_t guest_length;
    uint64_t expected, found;   /* e.g. references vs refcount */
    char qemu[160];             /* the line qemu-img check prints for it
                                 * (no newline), "" when qemu-img is silent */
    bool fixed;                 /* a repair changed the image for it */
    char fix[160];              /* what the repair did or kept, "" none */
} qi_finding;

typedef struct qi_check_result {
    /* qemu-img check's counters (BdrvCheckResult) */
    int64_t corruptions, leaks, check_errors;
    int64_t corruptions_fixed, leaks_fixed;
    uint64_t image_end_offset;
    uint64_t total_clusters, allocated_clusters;
    uint64_t fragmented_clusters, compressed_clusters;
    qi_finding *findings;       /* in the order qemu-img prints its lines */
    size_t n_findings;
    uint32_t *counts;           /* QI_CHECK_KEEP_COUNTS: references per host
                                 * cluster, counted as qemu-img check counts */
    uint64_t n_counts;
    size_t n_repair;            /* after a repair: findings[0 .. n_repair)
                                 * are the repair pass's (as qemu-img prints
                                 * them while repairing), the rest the check
                                 * of the repaired image, whose counters
                                 * RES holds (plus the two _fixed ones) */
    size_t cap_findings;
} qi_check_result;

/* Check IMG read-only (nothing is written): rebuild every refcount in
 * memory from the metadata and compare, as qemu-img check does. RES is
 * filled (zeroed first); free it with qi_check_result_free even on error.
 * Returns 0 when the check completed (problems are in RES), or a negative
 * QI_E* when it could not (recorded in the image's error; res->check_errors
 * counts it): QI_ENOMEM (the count array would need more than
 * QI_CHECK_MAX_BYTES), QI_EIO, QI_EINVAL (raw image). */
int qi_check(qi_image *img, const qi_check_opts *opts, qi_check_result *res);
void qi_check_result_free(qi_check_result *res);

/* The findings of RES about one place, for explain(): CB is called for
 * each finding whose offset is SITE (an entry's or a structure's own
 * place; QI_NO_GUEST: none), and, when TARGET is not QI_NO_GUEST, for each
 * finding about the
 * refcount of the host cluster holding TARGET (what the entry points at).
 * *REFS (may be NULL) receives the references to that cluster the check
 * counted (RES made with QI_CHECK_KEEP_COUNTS; 0 otherwise). A nonzero
 * return of CB stops and is returned. */
int qi_check_findings_at(const qi_check_result *res, uint32_t cluster_bits, uint64_t site,
                         uint64_t target, int (*cb)(void *payload, const qi_finding *f),
                         void *payload, uint64_t *refs);
/* The repair (repair.c; qi_check with a QI_CHECK_REPAIR_* flag calls it):
 * for an image opened read-write (QI_OPEN_RW | QI_OPEN_CHECK, and
 * QI_OPEN_REPAIR for one marked corrupt). What it changes, in this order,
 * each step synced before the next (crash tables in repair.c):
 *   0. (all) unaligned preallocated-zero L2 entries become zero clusters
 *      (as QEMU); L2 entries past the end of the file become zero clusters
 *      (QEMU leaves them: they read as zeros, and still do; the finding
 *      names the guest range whose data was lost before the repair);
 *   1. damaged refcount structures (all): a new refcount table and blocks
 *      written past the end of the file, then the header switched to them;
 *      else refcounts too low raised (all), then COPIED cleared where the
 *      refcount is above 1, then refcounts too high lowered (leaks, all),
 *      then COPIED set where the refcount is 1 (not on a dedup image, where
 *      COPIED missing is allowed);
 *   2. dirty and corrupt bits cleared when the image is clean afterwards.
 * Then the image is checked again: RES holds that check's counters with
 * corruptions_fixed and leaks_fixed as qemu-img counts them. Nothing that
 * reads data differently is changed. Returns 0 (RES says what is left) or
 * QI_E*: QI_ERDONLY, QI_EIO, QI_ENOSPC, QI_ENOMEM. */
int qi_repair(qi_image *img, const qi_check_opts *opts, qi_check_result *res);

/* Memory budget of the in-memory refcounts: 4 bytes per host cluster. */
#define QI_CHECK_MAX_BYTES ((size_t)1 << 30)

#endif
