/* qinspect public API: the problem table.
 *
 * Every problem qinspect can name has one record here: a stable code, a
 * short name used as the key in Lua (qinspect.problems) and JSON, a
 * severity, a one-line summary and a plain-language explanation of the rule
 * behind it. The C side and the Lua side (explain(), help) read the same
 * records, so the wording lives in one place (STYLE convention 13). The
 * check command (a later issue) will add its findings vector here; today
 * the table lists only what explain() can detect. */
#ifndef QI_CHECK_H
#define QI_CHECK_H

#include <stddef.h>

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

/* "note", "leak" or "corruption". */
const char *qi_severity_name(qi_severity s);

#endif
