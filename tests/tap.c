/* tap.c - the TAP producer declared in tap.h (test support, not engine).
 *
 * State is three counters: checks run, failed and skipped. Every line is
 * flushed at once so a test that crashes still shows how far it got.
 * Calls: libc only. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tap.h"

static unsigned n_run, n_failed, n_skipped;

static int report(int cond, const char *fmt, va_list ap)
{
    cond = cond != 0;
    n_run++;
    if (!cond)
        n_failed++;
    printf("%sok %u - ", cond ? "" : "not ", n_run);
    vprintf(fmt, ap);
    putchar('\n');
    fflush(stdout);
    return cond;
}

static int check(int cond, const char *fmt, ...) TAP_PRINTF(2, 3);
static int check(int cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cond = report(cond, fmt, ap);
    va_end(ap);
    return cond;
}

int tap_ok(int cond, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cond = report(cond, fmt, ap);
    va_end(ap);
    return cond;
}

void tap_diag(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("# ", stdout);
    vprintf(fmt, ap);
    putchar('\n');
    fflush(stdout);
    va_end(ap);
}

int tap_is_u64(uint64_t got, uint64_t want, const char *name)
{
    if (check(got == want, "%s", name))
        return 1;
    tap_diag("     got: %" PRIu64 " (%#" PRIx64 ")", got, got);
    tap_diag("expected: %" PRIu64 " (%#" PRIx64 ")", want, want);
    return 0;
}

int tap_is_str(const char *got, const char *want, const char *name)
{
    int same = (got == NULL && want == NULL) ||
               (got != NULL && want != NULL && strcmp(got, want) == 0);
    if (check(same, "%s", name))
        return 1;
    tap_diag("     got: %s%s%s", got ? "'" : "", got ? got : "NULL", got ? "'" : "");
    tap_diag("expected: %s%s%s", want ? "'" : "", want ? want : "NULL", want ? "'" : "");
    return 0;
}

int tap_is_mem(const void *got, const void *want, size_t len, const char *name)
{
    const unsigned char *g = got, *w = want;
    size_t i = 0;
    if (g && w)
        while (i < len && g[i] == w[i])
            i++;
    if (check(g && w && i == len, "%s", name))
        return 1;
    if (!g || !w) {
        tap_diag("%s buffer is NULL", g ? "expected" : "got");
        return 0;
    }
    tap_diag("first difference at byte %zu of %zu: got 0x%02x, expected 0x%02x",
             i, len, g[i], w[i]);
    return 0;
}

void tap_skip(unsigned n, const char *reason)
{
    while (n--) {
        n_run++;
        n_skipped++;
        printf("ok %u # SKIP %s\n", n_run, reason);
    }
    fflush(stdout);
}

int tap_done(void)
{
    printf("1..%u\n", n_run);
    if (n_failed)
        printf("# failed %u of %u\n", n_failed, n_run);
    if (n_skipped)
        printf("# skipped %u of %u (tests/run.sh counts a skip as a failure)\n",
               n_skipped, n_run);
    fflush(stdout);
    return n_failed ? 1 : 0;
}
