/* bitmap.h - persistent dirty bitmaps kept in step with guest writes
 * (layer 3). */
#ifndef QI_BITMAP_H
#define QI_BITMAP_H
#include <stdint.h>
#include "image.h"

/* Before a guest write, zero or discard of LEN bytes at guest offset OFF
 * (already checked against the virtual size): on the first one, validate
 * the bitmap directory and the tables of the bitmaps that track writes
 * (flag auto, not in_use at open), and set in_use on each of them on disk
 * (synced) before anything else is written; then set the bits of every
 * granule the range touches, in memory. A no-op without bitmaps or for
 * LEN 0. Returns 0; QI_ECORRUPT (a directory or table QEMU would refuse:
 * nothing written), QI_EIO, QI_ENOSPC, QI_ENOMEM. */
int qi_bitmap_note_write(qi_image *img, uint64_t off, uint64_t len);

/* Write the bits marked since in_use was set, then clear in_use (crash
 * table at the function). A no-op when no write was noted since the last
 * flush. Returns 0, QI_EIO, QI_ENOSPC, QI_ECORRUPT, QI_ENOMEM. */
int qi_bitmap_flush(qi_image *img);

/* Free the in-memory bitmap state (nothing written); NULL-safe. */
void qi_bitmap_free(struct qi_bitmaps *bm);
#endif
