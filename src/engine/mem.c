/* mem.c - checked allocation (layer 0).
 *
 * Sizes that come from an image are multiplied with an overflow check and
 * compared with a cap before any allocation, so a hostile l1_size or table
 * size is an error and never a huge malloc. Calls: libc only. */
#include <stdlib.h>
#include <string.h>

#include "mem.h"

static int checked_size(uint64_t n, uint64_t size, size_t cap, size_t *out)
{
    uint64_t total;
    if (__builtin_mul_overflow(n, size, &total) || total > cap)
        return -1;
    *out = total ? (size_t)total : 1;
    return 0;
}

void *qi_mem_calloc_capped(uint64_t n, uint64_t size, size_t cap)
{
    size_t total;
    if (checked_size(n, size, cap, &total) < 0)
        return NULL;
    return calloc(1, total);
}

void *qi_mem_alloc_capped(uint64_t n, uint64_t size, size_t cap)
{
    size_t total;
    if (checked_size(n, size, cap, &total) < 0)
        return NULL;
    return malloc(total);
}

char *qi_mem_strndup(const void *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p)
        return NULL;
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}
