/* rw.h - guest reads through a view (layer 4). */
#ifndef QI_RW_H
#define QI_RW_H
#include "cluster.h"

/* Read LEN guest bytes at OFF through view V (raw images ignore V). */
int qi_rw_read(qi_image *img, const qi_l1view *v, uint8_t *buf, uint64_t off,
               size_t len);

/* Before a guest write of LEN bytes at OFF (WHAT names it in errors):
 * refuses what writes do not handle and a range beyond the virtual size,
 * sets the lazy-refcounts dirty bit on the first change, notes the range in
 * the persistent bitmaps. For cwrite.c. Returns 0 or a recorded QI_E*. */
int qi_rw_write_begin(qi_image *img, const char *what, uint64_t off, uint64_t len);
/* After a guest write that returned RC: settles a long list of deferred
 * decrements, sets the corrupt bit on QI_ECORRUPT. Returns RC or the
 * settle's error. */
int qi_rw_write_end(qi_image *img, int rc);
#endif
