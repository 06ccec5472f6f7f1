/* rw.h - guest reads through a view (layer 4). */
#ifndef QI_RW_H
#define QI_RW_H
#include "cluster.h"

/* Read LEN guest bytes at OFF through view V (raw images ignore V). */
int qi_rw_read(qi_image *img, const qi_l1view *v, uint8_t *buf, uint64_t off,
               size_t len);
#endif
