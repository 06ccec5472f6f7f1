/* tap.h - a tiny TAP producer for the C unit tests (after h2o picotest).
 *
 * Each check prints one TAP line, "ok N - name" or "not ok N - name",
 * followed on failure by "# " diagnostic lines saying what was expected.
 * tap_done() prints the plan "1..N" (TAP allows the plan at the end) and
 * returns the process exit status: 0 if every check passed, 1 otherwise.
 *
 *     int main(void) {
 *         tap_ok(x == 1, "x is %d", 1);
 *         tap_is_u64(size, 65536, "cluster size");
 *         return tap_done();
 *     }
 *
 * Output goes to stdout and is flushed after every line, so a crash
 * leaves everything printed so far in the log. */
#ifndef QI_TAP_H
#define QI_TAP_H

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define TAP_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define TAP_PRINTF(f, a)
#endif

/* One check: COND nonzero passes. The name is a printf format.
 * Returns COND normalised to 0/1, so a test can stop on failure. */
int tap_ok(int cond, const char *fmt, ...) TAP_PRINTF(2, 3);

/* Equality checks that print both values when they differ. */
int tap_is_u64(uint64_t got, uint64_t want, const char *name);
int tap_is_str(const char *got, const char *want, const char *name);
int tap_is_mem(const void *got, const void *want, size_t len, const char *name);

/* A "# ..." diagnostic line (never counted). */
void tap_diag(const char *fmt, ...) TAP_PRINTF(1, 2);

/* Skip N checks with a reason: prints "ok K # SKIP reason" N times.
 * tests/run.sh counts every such line as a failure (a check that did not
 * run proves nothing), so skip only what cannot run anywhere `make check`
 * is meant to pass, and say why. */
void tap_skip(unsigned n, const char *reason);

/* Print the plan "1..N"; return 1 if any check failed, else 0. */
int tap_done(void);

#endif
