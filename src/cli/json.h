/* json.h - small JSON writer for the batch subcommands (layer 7).
 *
 * Two tools:
 *  - a value tree (qi_json) rendered the way qemu-img 7.2 renders its QAPI
 *    objects: members of an object in QEMU's QDict iteration order, pretty
 *    printed with 4-space indentation (`qemu-img info --output=json`), or
 *    dumped as "key: value" lines (`qemu-img info` "Format specific
 *    information"). Builders never fail loudly: an allocation failure marks
 *    the tree and qi_json_render returns NULL.
 *  - a buffered output writer (qi_outbuf) for hot loops such as `map`:
 *    reserve space, format integers into it, write in large chunks. */
#ifndef QI_CLI_JSON_H
#define QI_CLI_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct qi_json qi_json;

/* Constructors. Each returns a new node owned by the caller (or by the
 * container it is added to), or NULL when out of memory. */
qi_json *qi_json_object(void);
qi_json *qi_json_array(void);
qi_json *qi_json_string(const char *s);
qi_json *qi_json_int(int64_t v);
qi_json *qi_json_uint(uint64_t v);
qi_json *qi_json_bool(bool v);

/* Add member KEY (copied) to OBJ, taking ownership of VAL. A NULL VAL or an
 * allocation failure marks OBJ as failed (rendering then returns NULL). */
void qi_json_set(qi_json *obj, const char *key, qi_json *val);

/* Append VAL to ARR, taking ownership; failures mark ARR as failed. */
void qi_json_push(qi_json *arr, qi_json *val);

/* Free a tree; NULL is a no-op. */
void qi_json_free(qi_json *v);

/* qi_json_render flags */
#define QI_JSON_PRETTY 0x1u      /* newlines and 4-space indentation */
#define QI_JSON_QDICT_ORDER 0x2u /* members in QEMU QDict order, else insertion */

/* Render V as JSON text (no trailing newline). Strings are escaped as QEMU
 * escapes them: control and non-ASCII characters as \uXXXX, invalid UTF-8
 * as \uFFFD. Returns a malloc'd string the caller frees, or NULL when V (or
 * a child) failed to build or memory ran out. */
char *qi_json_render(const qi_json *v, unsigned flags);

/* Render V the way qemu-img's human output dumps a QAPI object
 * (block/qapi.c dump_qobject): "key: value" lines, dashes in keys shown as
 * spaces, nested containers indented by 4 spaces per level starting at
 * INDENT levels, members in QDict order. Returns a malloc'd string or NULL. */
char *qi_json_dump_human(const qi_json *v, int indent);

/* Buffered writer to a file descriptor. */
typedef struct qi_outbuf {
    int fd;
    char *buf;
    size_t len, cap;
    int err;        /* errno of the first failed write, 0 if none */
} qi_outbuf;

/* Set up B to write to FD through a CAP-byte buffer (CAP >= 4096).
 * Returns 0 or -1 when out of memory. */
int qi_outbuf_init(qi_outbuf *b, int fd, size_t cap);

/* Pointer to at least N free bytes (N <= cap), flushing first if needed;
 * advance with qi_outbuf_commit. Never NULL: after a write error the
 * buffer is reused and B->err stays set. */
char *qi_outbuf_reserve(qi_outbuf *b, size_t n);

/* Mark the bytes up to P (inside the last reservation) as written. */
void qi_outbuf_commit(qi_outbuf *b, const char *p);

/* Append N bytes / a NUL-terminated string. */
void qi_outbuf_write(qi_outbuf *b, const void *data, size_t n);
void qi_outbuf_puts(qi_outbuf *b, const char *s);

/* Write the buffered bytes. Returns 0, or -1 with B->err set (also when
 * an earlier write failed). */
int qi_outbuf_flush(qi_outbuf *b);

/* Release the buffer (does not flush or close the descriptor). */
void qi_outbuf_free(qi_outbuf *b);

/* Format V in decimal at P (at least 20 bytes free); returns the end. */
char *qi_json_fmt_u64(char *p, uint64_t v);

/* Same for a signed value (at least 21 bytes free). */
char *qi_json_fmt_i64(char *p, int64_t v);

#endif
