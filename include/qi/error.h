/* qinspect public API: status codes and the error record.
 *
 * Every engine function that can fail returns 0 or a negative QI_E* code.
 * The place that detects a problem fills one qi_err record (the image's own,
 * or the caller's before an image exists) with the file, the structure and
 * the byte offset; callers above only pass the code up. */
#ifndef QI_ERROR_H
#define QI_ERROR_H

#include <stdint.h>
#include <stddef.h>

enum {
    QI_OK = 0,
    QI_EIO = -1,       /* read/write/open of a file failed */
    QI_ENOMEM = -2,    /* allocation failed or a size from disk exceeds a cap */
    QI_ECORRUPT = -3,  /* on-disk structure is invalid */
    QI_EINVAL = -4,    /* bad argument from the caller */
    QI_ERDONLY = -5,   /* write attempted on a read-only image */
    QI_EBUSY = -6,     /* image is locked by another program (QEMU) */
    QI_ENOTSUP = -7,   /* valid image using a feature qinspect does not support */
    QI_ENOSPC = -8,    /* no space / limit of the format reached */
    QI_ENOENT = -9,    /* file or named object does not exist */
};

#define QI_NO_OFFSET UINT64_MAX

typedef struct qi_err {
    int code;              /* QI_E* of the recorded error, 0 if none */
    char file[1024];       /* path of the file the error is about ("" if none) */
    char structure[64];    /* "header", "L1 table", "L2 table", ... ("" if none) */
    uint64_t offset;       /* byte offset in that file, or QI_NO_OFFSET */
    char message[512];     /* one line, no trailing newline */
} qi_err;

/* Name of a status code ("corrupt image", ...); never NULL. */
const char *qi_strerror(int code);

/* Symbolic name of a status code ("ECORRUPT", ...); never NULL. */
const char *qi_errname(int code);

/* Format an error record as one line:
 *   FILE: STRUCTURE at offset 0xOFF: MESSAGE
 * (parts that are absent are left out). Returns buf. */
char *qi_err_format(const qi_err *e, char *buf, size_t n);

#endif
