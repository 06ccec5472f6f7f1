/* refwalk.h - walking every reference to host clusters (layer 4). */
#ifndef QI_REFWALK_H
#define QI_REFWALK_H
#include "image.h"

/* Call CB for every reference the image holds (the list qemu-img check
 * builds its refcounts from): header, active L1 table and its L1/L2
 * entries, each snapshot's L1 table and entries, refcount table and
 * blocks, snapshot table, bitmap directory. Entries of unallocated or
 * plain-zero clusters are not references. Invalid entries stop the walk
 * with the recorded error. */
int qi_refwalk(qi_image *img, qi_ref_cb cb, void *payload);

/* Only the references of the snapshot table, the bitmap directory, the
 * bitmap tables and their data clusters (for check.c, which walks the L1/L2
 * tables and the refcount structures itself, judging each entry). */
int qi_refwalk_fixed(qi_image *img, qi_ref_cb cb, void *payload);
#endif
