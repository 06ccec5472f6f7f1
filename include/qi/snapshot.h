/* qinspect public API: internal snapshots (create, apply, delete).
 *
 * The list itself is qi_meta_snapshots (meta.h); it reflects every change
 * made here as soon as the call returns. All three operations follow
 * QEMU 7.2's block/qcow2-snapshot.c semantics and produce the same file
 * bytes as `qemu-img snapshot` (except the date), in an order that is
 * crash safe: a crash at any write leaves at most leaked clusters, and the
 * guest data of the active image and of every snapshot is the state before
 * or the state after. They need an image opened read-write (QI_ERDONLY),
 * flush the image first, and refuse an image with an external data file
 * (QI_ENOTSUP: no internal snapshots there, as QEMU). */
#ifndef QI_SNAPSHOT_H
#define QI_SNAPSHOT_H

#include <stdint.h>

#include "qi/image.h"

/* How qi_snapshot_find matches KEY. */
#define QI_SNAP_BY_ID   0x1u
#define QI_SNAP_BY_NAME 0x2u

/* Index into qi_meta_snapshots of the first snapshot whose id is KEY (with
 * QI_SNAP_BY_ID), else of the first whose name is KEY (QI_SNAP_BY_NAME):
 * QEMU looks up `-a` by id then name, `-d` (qemu-img) by name only.
 * Returns 0 and *index, or QI_ENOENT (recorded: "snapshot not found"). */
int qi_snapshot_find(qi_image *img, const char *key, unsigned how, uint32_t *index);

/* Create a snapshot of the active state named NAME (duplicate names are
 * allowed, as in QEMU; the id is one more than the largest numeric id).
 * The entry holds the date now (microseconds, as qemu-img), VM clock 0, no
 * VM state, and the 24 bytes of extra data QEMU 7.2 writes (64-bit VM
 * state size, disk size = virtual size, icount 0). Every cluster the
 * active L1 reaches gains one reference (a compressed cluster counts once
 * for each host cluster it touches), COPIED is cleared in the active
 * tables, the snapshot table is written anew and the old one freed.
 * Before anything is written, the refcounts are checked: if one would
 * exceed the width (1- and 2-bit refcounts easily do), nothing changes and
 * QI_ENOSPC says which cluster. qemu-img fails there too, but only after
 * writing the snapshot's L1 table and part of the increments
 * ("Could not create snapshot: -22 (Invalid argument)", leaked clusters).
 * Returns 0, QI_EINVAL (NAME longer than 65535 bytes), QI_ENOSPC (also:
 * 65536 snapshots, a 64 MiB table), QI_ERDONLY, QI_ENOTSUP, QI_ECORRUPT,
 * QI_EIO, QI_ENOMEM. */
int qi_snapshot_create(qi_image *img, const char *name);

/* Make snapshot ID_OR_NAME (id first, then name) the active state: the
 * virtual size becomes the snapshot's disk size as qi_image_resize makes
 * it (a smaller one shrinks the image first, as `qemu-img snapshot -a`
 * does: the active clusters past it are discarded, the file cut after its
 * last used cluster; resize's refusals apply), the active L1 grows to the
 * snapshot's L1 size if it
 * is smaller, the snapshot's clusters gain a reference, the active L1
 * takes the snapshot's entries, the old active state's clusters lose one
 * (freed at 0), and COPIED is set again where a refcount is 1. An image
 * with persistent bitmaps is refused (QI_EBUSY), as QEMU refuses it.
 * Returns 0, QI_ENOENT, QI_EBUSY, QI_ENOTSUP, QI_ENOSPC, QI_ERDONLY,
 * QI_ECORRUPT, QI_EIO, QI_ENOMEM. */
int qi_snapshot_apply(qi_image *img, const char *id_or_name);

/* Delete snapshot ID_OR_NAME (id first, then name): the snapshot table is
 * written anew without it, then its clusters lose one reference (freed at
 * 0), its L1 table is freed and COPIED is set again in the active tables
 * where a refcount returns to 1. qi_snapshot_delete_at takes the index
 * (< the number of snapshots). Returns 0, QI_ENOENT, QI_ENOTSUP,
 * QI_ERDONLY, QI_ECORRUPT, QI_EIO, QI_ENOMEM. */
int qi_snapshot_delete(qi_image *img, const char *id_or_name);
int qi_snapshot_delete_at(qi_image *img, uint32_t index);

#endif
