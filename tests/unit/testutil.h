/* testutil.h - scratch files and raw qcow2 bytes for the C unit tests.
 *
 * A unit test that works on image files makes them in its own scratch
 * directory, /tmp/qi-NAME-XXXXXX (libgit2's cl_git_sandbox_init idea):
 * tu_sh() runs a shell command there (qemu-img, qemu-io), tu_path() names
 * a file in it, tu_slurp() reads a file whole, and tu_file_be() /
 * tu_file_put_be() read and poke big-endian words at exact offsets (QEMU
 * iotests' poke_file). tu_cleanup() removes the directory unless KEEP is
 * set in the environment.
 *
 * The tu_raw_* functions parse a qcow2 file byte by byte as the qcow2 spec
 * lays it out (header fields, refcount table, refcount blocks of any width).
 * They are the tests' oracle, independent of qinspect: this module calls
 * libc only, never engine code, and is linked into every unit test.
 *
 *     int main(void) {
 *         if (tu_scratch("map") < 0)
 *             return 1;
 *         tu_sh("qemu-img create -f qcow2 %s 1M", "a.qcow2");
 *         qi_image_open(&img, tu_path("a.qcow2"), NULL, &err);
 *         ...
 *         tu_cleanup();
 *         return tap_done();
 *     }
 */
#ifndef QI_TESTUTIL_H
#define QI_TESTUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define TU_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define TU_PRINTF(f, a)
#endif

/* Make the scratch directory /tmp/qi-NAME-XXXXXX. Returns 0, or -1 if it
 * cannot be made. Call once, before any other tu_ function. */
int tu_scratch(const char *name);

/* Remove the scratch directory and everything in it, unless the
 * environment has KEEP. Returns 0, or the nonzero status of rm -rf. */
int tu_cleanup(void);

/* Run the printf-formatted shell command in the scratch directory, its
 * output discarded. Returns the status from system(3). */
int tu_sh(const char *fmt, ...) TU_PRINTF(1, 2);

/* NAME in the scratch directory. The result is one of 8 static buffers
 * used in turn, so up to 8 results may be live at once. */
char *tu_path(const char *name);

/* File NAME of the scratch directory, whole, with a NUL byte after its
 * *LEN bytes (so text can be read as a string); the caller frees it.
 * NULL and *len = 0 if it cannot be read. */
uint8_t *tu_slurp(const char *name, size_t *len);

/* The N-byte (1..8) big-endian value at OFF of file NAME; 0 if it cannot
 * be read. */
uint64_t tu_file_be(const char *name, uint64_t off, unsigned n);

/* Write V as an N-byte (1..8) big-endian value at OFF of file NAME, in
 * place. Returns 0, or -1 on any error. */
int tu_file_put_be(const char *name, uint64_t off, uint64_t v, unsigned n);

/* ---- the oracle: a qcow2 file parsed byte by byte ---- */

typedef struct tu_raw {
    uint8_t *b;                 /* the file, owned: free(r.b) */
    uint64_t len;
    unsigned cbits, order;      /* cluster_bits, refcount_order */
    uint64_t rt_off, rt_len;    /* refcount table offset and length in bytes */
    uint64_t l1_off, l1_size;
    bool extl2;                 /* incompatible feature bit 4: extended L2 */
} tu_raw;

/* The bytes of file NAME (r->b, r->len; the header fields 0). Returns 0,
 * or -1 if it cannot be read. r->b is always freed by the caller. */
int tu_raw_read(tu_raw *r, const char *name);

/* tu_raw_read, then the header fields the oracle needs (version 2: 16-bit
 * refcounts, no extended L2). Returns -1 if the file cannot be read or is
 * shorter than a v3 header, or the cluster bits or refcount order are
 * outside what the spec allows. */
int tu_raw_load(tu_raw *r, const char *name);

/* The N-byte (1..8) big-endian value at OFF; 0 past the end of the file. */
uint64_t tu_raw_be(const tu_raw *r, uint64_t off, unsigned n);

/* Refcount entries per refcount block. */
uint64_t tu_raw_per_block(const tu_raw *r);

/* Refcount of host cluster K: refcount table entry -> refcount block ->
 * entry of 2^order bits (below 8 bits packed from the least significant
 * bit of each byte, from 8 bits on big-endian). 0 past the table or in a
 * missing block. */
uint64_t tu_raw_refcount(const tu_raw *r, uint64_t k);

/* Write the qemu-io command file "cmds" in the scratch directory: NCL
 * clusters of CS bytes written from the last to the first (pattern 1 + i %
 * 250), then one four-cluster write (pattern 251) at cluster NCL + 2, so
 * guest order and host order are reversed. Returns 0, or -1 when the file
 * cannot be written. */
int tu_reverse_cmds(unsigned cs, unsigned ncl);

#endif
