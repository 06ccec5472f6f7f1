/* mem.h - allocation with overflow-checked sizes and a cap for anything
 * sized from file contents (layer 0). */
#ifndef QI_MEM_H
#define QI_MEM_H
#include <stddef.h>
#include <stdint.h>

/* Largest single allocation sized from file contents (64 MiB: the biggest
 * table qcow2 allows is the 64 MiB snapshot table). */
#define QI_MEM_CAP ((size_t)64 << 20)

/* calloc(n * size) if the product neither overflows nor exceeds CAP; NULL
 * otherwise (the caller reports QI_ENOMEM). */
void *qi_mem_calloc_capped(uint64_t n, uint64_t size, size_t cap);

/* malloc(n * size), same checks, memory not cleared. */
void *qi_mem_alloc_capped(uint64_t n, uint64_t size, size_t cap);

/* strndup-like copy of N bytes plus a NUL; NULL on failure. */
char *qi_mem_strndup(const void *s, size_t n);

#endif
