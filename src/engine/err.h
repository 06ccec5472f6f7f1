/* err.h - recording errors in a qi_err record (layer 0). */
#ifndef QI_ERR_H
#define QI_ERR_H

#include "qi/error.h"

/* Fill E (may be NULL) with CODE, the file, the structure and the offset
 * (QI_NO_OFFSET for none) and a printf-style message. Returns CODE, so a
 * detecting site can write `return qi_err_set(...)`. */
int qi_err_set(qi_err *e, const char *file, int code, const char *structure,
               uint64_t offset, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Copy SRC into DST (both may be NULL) and return SRC's code. */
int qi_err_copy(qi_err *dst, const qi_err *src);

/* Clear E. */
void qi_err_clear(qi_err *e);

#endif
