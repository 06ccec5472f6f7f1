/* err.c - the single place where errors are recorded (layer 0).
 *
 * Every engine failure is recorded once, by the site that detects it, into a
 * qi_err record: status code, file path, structure name, byte offset and a
 * one-line message. Callers above pass the status code up unchanged. In debug
 * builds (QI_DEBUG) the recording site is remembered in the message so a
 * failing test points at the check that fired. Calls: libc only. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <inttypes.h>

#include "err.h"

static const struct {
    int code;
    const char *name, *text;
} codes[] = {
    { QI_OK, "OK", "success" },
    { QI_EIO, "EIO", "I/O error" },
    { QI_ENOMEM, "ENOMEM", "out of memory or size limit exceeded" },
    { QI_ECORRUPT, "ECORRUPT", "corrupt image" },
    { QI_EINVAL, "EINVAL", "invalid argument" },
    { QI_ERDONLY, "ERDONLY", "image is read-only" },
    { QI_EBUSY, "EBUSY", "image is locked by another process" },
    { QI_ENOTSUP, "ENOTSUP", "not supported" },
    { QI_ENOSPC, "ENOSPC", "no space left or format limit reached" },
    { QI_ENOENT, "ENOENT", "no such file or object" },
};

const char *qi_strerror(int code)
{
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (codes[i].code == code)
            return codes[i].text;
    return "unknown error";
}

const char *qi_errname(int code)
{
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (codes[i].code == code)
            return codes[i].name;
    return "EUNKNOWN";
}

static void copy_str(char *dst, size_t n, const char *src)
{
    if (!src)
        src = "";
    size_t l = strlen(src);
    if (l >= n)
        l = n - 1;
    memcpy(dst, src, l);
    dst[l] = 0;
}

int qi_err_set(qi_err *e, const char *file, int code, const char *structure,
               uint64_t offset, const char *fmt, ...)
{
    if (!e)
        return code;
    va_list ap;
    e->code = code;
    copy_str(e->file, sizeof e->file, file);
    copy_str(e->structure, sizeof e->structure, structure);
    e->offset = offset;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return code;
}

int qi_err_copy(qi_err *dst, const qi_err *src)
{
    if (dst && src && dst != src)
        *dst = *src;
    return src ? src->code : 0;
}

void qi_err_clear(qi_err *e)
{
    if (e)
        memset(e, 0, sizeof *e);
}

char *qi_err_format(const qi_err *e, char *buf, size_t n)
{
    size_t used = 0;
    int w;
    if (!n)
        return buf;
    buf[0] = 0;
#define PUT(...) do { \
        w = snprintf(buf + used, n - used, __VA_ARGS__); \
        if (w > 0) used += (size_t)w < n - used ? (size_t)w : n - used - 1; \
    } while (0)
    if (e->file[0])
        PUT("%s: ", e->file);
    if (e->structure[0]) {
        PUT("%s", e->structure);
        if (e->offset != QI_NO_OFFSET)
            PUT(" at offset 0x%" PRIx64, e->offset);
        PUT(": ");
    } else if (e->offset != QI_NO_OFFSET) {
        PUT("offset 0x%" PRIx64 ": ", e->offset);
    }
    PUT("%s", e->message[0] ? e->message : qi_strerror(e->code));
#undef PUT
    return buf;
}
