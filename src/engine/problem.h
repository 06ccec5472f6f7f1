/* problem.h - the problem table (layer 5).
 *
 * The records and their accessors are public (include/qi/check.h); this
 * header only exists so the engine side of the check (a later issue) and
 * the unit test include the table the usual way. */
#ifndef QI_PROBLEM_H
#define QI_PROBLEM_H
#include "qi/check.h"
#endif
