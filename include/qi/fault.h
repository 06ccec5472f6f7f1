/* qinspect public API: fault injection for crash tests (tests/crash/).
 *
 * Process-wide. After qi_fault_arm(N, drop) the first N writes to image
 * files (pwrite or truncate) happen; the next one and everything after it
 * fail with QI_EIO and change nothing, as if the machine stopped there;
 * with DROP, the disk cache is lost at that moment too: every write not yet
 * followed by a sync (fdatasync) is undone. qi_fault_crash() makes the stop
 * happen now. The CLI arms this from the environment variable
 * QINSPECT_FAULT="N[,drop]" and reports the number of writes performed on
 * stderr at exit ("qinspect: fault injection: W writes[, stopped]"). */
#ifndef QI_FAULT_H
#define QI_FAULT_H

#include <stdbool.h>
#include <stdint.h>

void qi_fault_arm(uint64_t limit, bool drop_unsynced);
/* Undo unsynced writes (with DROP); returns 0 or QI_EIO. */
int qi_fault_crash(void);
/* Writes performed since qi_fault_arm. */
uint64_t qi_fault_writes(void);
/* Whether the injected stop has happened. */
bool qi_fault_tripped(void);

#endif
