/* check.h - the check's counting pass, shared with the repair (layer 5). */
#ifndef QI_CHECK_PRIV_H
#define QI_CHECK_PRIV_H
#include <stdbool.h>
#include <stdint.h>
#include "qi/check.h"
#include "image.h"

/* The read-only check without the cache flush: RES filled as qi_check
 * fills it. NO_REFSTRUCT: the refcount table and its blocks are not counted
 * (nor judged), for a rebuild that replaces them. COUNT (may be NULL):
 * on success *COUNT owns the references per host cluster (free()), *N
 * entries (at least the file's clusters). Returns 0 or QI_E* as qi_check. */
int qi_check_count(qi_image *img, qi_check_result *res, bool no_refstruct,
                   uint32_t **count, uint64_t *n);
#endif
