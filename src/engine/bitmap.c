/* bitmap.c - persistent dirty bitmaps kept in step with guest writes
 * (layer 3).
 *
 * QEMU keeps the bitmaps of an image it opened read-write in memory: at
 * open it sets in_use on them, so that a crash leaves them marked
 * inconsistent; every guest write, write-zeroes and discard sets the bits
 * of the granules it touches; a clean close writes the bits back and
 * clears in_use (docs/interop/qcow2.txt, "Bitmaps extension"). This file
 * does the same for the bitmaps that track writes: flag auto, and not
 * in_use when the image was opened. A disabled bitmap (no auto) and one
 * already in_use (inconsistent) are left exactly as they are.
 *
 * Differences from QEMU that a clean close does not show: in_use is set at
 * the first write, not at open, and only on the bitmaps that track writes;
 * the bits are written back in place (a table entry 0, all zeros, gets a
 * new cluster once a bit in it is set; an allocated entry is rewritten in
 * its cluster; an entry 1, all ones, stays) where QEMU writes new tables
 * and a new directory.
 *
 * Invariants:
 *  1. No guest byte changes on disk while a tracking bitmap is on disk
 *     without in_use: note_write sets in_use and syncs before it returns,
 *     and every write path calls it first.
 *  2. in_use is cleared only once every bit marked so far is on disk
 *     (data clusters and tables written and synced first).
 *  3. A new bitmap data cluster is counted (refcount blocks flushed and
 *     synced) before a bitmap table entry points at it.
 * Calls: refcount, cache, format, bio, mem. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "bitmap.h"
#include "endian.h"
#include "mem.h"
#include "refcount.h"

/* QEMU's limits (block/qcow2-bitmap.c): the bits of one bitmap fill at
 * most 512 MiB of clusters; flags other than in_use and auto are refused. */
#define MAX_PHYS_BYTES (1ull << 29)
#define KNOWN_FLAGS (QI_BITMAP_IN_USE | QI_BITMAP_AUTO)
#define ENTRY_RESERVED 0xff000000000001feull
#define ENTRY_OFFSET 0x00fffffffffffe00ull
#define ENTRY_ALL_ONES 1ull

typedef struct track {
    qi_bitmap *b;           /* its directory entry (img->bitmaps) */
    uint64_t *table;        /* bitmap table, host order */
    uint8_t **chunk;        /* bits behind table entry i, once touched */
    uint8_t *dirty;         /* chunk i changed since the last flush */
    bool table_dirty;
} track;

struct qi_bitmaps {
    uint32_t n;
    bool armed;             /* in_use set on disk on every tracked bitmap */
    track *t;
};

void qi_bitmap_free(struct qi_bitmaps *bm)
{
    if (!bm)
        return;
    for (uint32_t i = 0; i < bm->n; i++) {
        track *t = &bm->t[i];
        for (uint32_t j = 0; t->chunk && j < t->b->table_size; j++)
            free(t->chunk[j]);
        free(t->chunk);
        free(t->dirty);
        free(t->table);
    }
    free(bm->t);
    free(bm);
}

/* Table entries of a bitmap of granularity 2^GBITS over the virtual size:
 * one cluster holds cluster_size * 8 bits. */
static uint64_t table_entries(const qi_image *img, uint32_t gbits)
{
    uint64_t bits = (img->size >> gbits) + ((img->size & ((1ull << gbits) - 1)) != 0);
    uint64_t per = (uint64_t)img->g.cluster_size * 8;
    return (bits + per - 1) / per;
}

/* The directory entry of B as QEMU checks it before using a bitmap
 * (check_dir_entry, bitmap_list_load). DIR is the directory read from
 * DIR_OFF. */
static int check_entry(qi_image *img, const uint8_t *dir, uint64_t dir_off,
                       const qi_bitmap *b)
{
    const uint8_t *e = dir + (b->entry_offset - dir_off);
    uint64_t at = b->entry_offset;
    const char *st = "bitmap directory";
    if (qi_be32(e + 20))
        return qi_corrupt(img, st, at + 20, "bitmap '%s' has %" PRIu32 " bytes of extra "
                          "data (QEMU refuses them)", b->name, qi_be32(e + 20));
    if (b->type != 1)
        return qi_corrupt(img, st, at + 16, "bitmap '%s' has type %u (1 = dirty "
                          "tracking is the only one)", b->name, b->type);
    if (b->flags & ~KNOWN_FLAGS)
        return qi_corrupt(img, st, at + 12, "bitmap '%s' has flags %#" PRIx32 " (QEMU "
                          "knows only in_use and auto)", b->name, b->flags);
    if (!b->table_size || !b->table_offset || (b->table_offset & (img->g.cluster_size - 1)) ||
        (uint64_t)b->table_size * img->g.cluster_size > MAX_PHYS_BYTES)
        return qi_corrupt(img, st, at, "bitmap '%s': table of %" PRIu32 " entries at %#"
                          PRIx64 " (must be nonzero, cluster aligned, bits at most 512 "
                          "MiB)", b->name, b->table_size, b->table_offset);
    if (!(b->flags & QI_BITMAP_IN_USE) &&
        b->table_size != table_entries(img, b->granularity_bits))
        return qi_corrupt(img, st, at + 8, "bitmap '%s': table of %" PRIu32 " entries, "
                          "the virtual size needs %" PRIu64, b->name, b->table_size,
                          table_entries(img, b->granularity_bits));
    return 0;
}

/* Read and check B's table (QEMU's check_table_entry; also: inside the
 * file). With T, keep it there and check that the table and data
 * clusters are ours alone (refcount 1), as they are rewritten in place. */
static int load_table(qi_image *img, const qi_bitmap *b, track *t)
{
    uint64_t bytes = 8ull * b->table_size, *tab = NULL, rc1;
    uint8_t *raw = NULL;
    int rc;
    if ((rc = qi_format_check_table(&img->g, b->table_offset, bytes, true,
                                    img->file->size, img->path, "bitmap table",
                                    b->entry_offset, &img->err)) < 0)
        return rc;
    if (!(raw = qi_mem_alloc_capped(b->table_size, 8, QI_MEM_CAP)) ||
        !(tab = qi_mem_alloc_capped(b->table_size, 8, QI_MEM_CAP))) {
        rc = qi_fail(img, QI_ENOMEM, "bitmap table", b->table_offset, "out of memory");
        goto out;
    }
    if ((rc = qi_bio_pread(img->file, raw, bytes, b->table_offset, &img->err,
                           "bitmap table")) < 0)
        goto out;
    for (uint32_t i = 0; i < b->table_size; i++) {
        uint64_t e = qi_be64(raw + 8 * i), off = e & ENTRY_OFFSET, where = b->table_offset + 8 * i;
        tab[i] = e;
        if ((e & ENTRY_RESERVED) || (off && ((e & ENTRY_ALL_ONES) ||
                                             (off & (img->g.cluster_size - 1)) ||
                                             off >= img->file->size))) {
            rc = qi_corrupt(img, "bitmap table", where, "bitmap '%s': entry %" PRIu32
                            " is %#018" PRIx64 " (reserved bits, or a data offset that is "
                            "unaligned, past the end of the file or with bit 0 set)",
                            b->name, i, e);
            goto out;
        }
        if (t && off && ((rc = qi_refcount_get(img, off >> img->g.cluster_bits, &rc1)) < 0 ||
                         (rc1 != 1 && (rc = qi_corrupt(img, "bitmap table", where, "bitmap '%s'"
                                  ": data cluster %#" PRIx64 " has refcount %" PRIu64
                                  ", not 1", b->name, off, rc1)) < 0)))
            goto out;
    }
    for (uint64_t c = 0; t && c < bytes; c += img->g.cluster_size) {
        uint64_t off = b->table_offset + c;
        if ((rc = qi_refcount_get(img, off >> img->g.cluster_bits, &rc1)) < 0)
            goto out;
        if (rc1 != 1) {
            rc = qi_corrupt(img, "bitmap table", off, "bitmap '%s': table cluster has "
                            "refcount %" PRIu64 ", not 1", b->name, rc1);
            goto out;
        }
    }
    if (t) {
        t->table = tab;
        tab = NULL;
    }
out:
    free(raw);
    free(tab);
    return rc;
}

/* The bitmaps extension's directory, read and checked as a whole: every
 * entry as QEMU checks it and, for each bitmap not in_use, its table; the
 * bitmaps that track writes are kept in *out. */
static int load(qi_image *img, struct qi_bitmaps **out)
{
    const qi_ext *x = NULL;
    struct qi_bitmaps *bm = NULL;
    uint8_t *dir = NULL;
    int rc = 0;
    for (uint32_t i = 0; i < img->n_exts; i++)
        if (img->exts[i].type == QI_EXT_BITMAPS)
            x = &img->exts[i];
    /* image.c validated the extension and the directory's place */
    uint64_t size = qi_be64(x->data + 8), off = qi_be64(x->data + 16);
    if (!(dir = qi_mem_alloc_capped(size, 1, QI_MEM_CAP)) ||
        !(bm = calloc(1, sizeof *bm)) ||
        !(bm->t = calloc(img->n_bitmaps, sizeof *bm->t))) {
        rc = qi_fail(img, QI_ENOMEM, "bitmap directory", off, "out of memory");
        goto out;
    }
    if ((rc = qi_bio_pread(img->file, dir, size, off, &img->err, "bitmap directory")) < 0)
        goto out;
    const qi_bitmap *last = &img->bitmaps[img->n_bitmaps - 1];
    const uint8_t *le = dir + (last->entry_offset - off);
    uint64_t end = last->entry_offset + ((24ull + qi_be32(le + 20) + qi_be16(le + 18) + 7) & ~7ull);
    if (img->n_bitmaps != qi_be32(x->data) || end != off + size) {
        rc = qi_corrupt(img, "bitmap directory", off, "%" PRIu32 " entries end at %#"
                        PRIx64 "; the extension says %" PRIu32 " entries ending at %#" PRIx64,
                        img->n_bitmaps, end, qi_be32(x->data), off + size);
        goto out;
    }
    for (uint32_t i = 0; i < img->n_bitmaps; i++) {
        qi_bitmap *b = &img->bitmaps[i];
        bool tracks = (b->flags & (QI_BITMAP_AUTO | QI_BITMAP_IN_USE)) == QI_BITMAP_AUTO;
        track *t = tracks ? &bm->t[bm->n] : NULL;
        if ((rc = check_entry(img, dir, off, b)) < 0)
            goto out;
        if (b->flags & QI_BITMAP_IN_USE)
            continue;
        if ((rc = load_table(img, b, t)) < 0)
            goto out;
        if (!t)
            continue;
        t->b = b;
        bm->n++;
        if (!(t->chunk = calloc(b->table_size, sizeof *t->chunk)) ||
            !(t->dirty = calloc(b->table_size, 1))) {
            rc = qi_fail(img, QI_ENOMEM, "bitmap table", b->table_offset, "out of memory");
            goto out;
        }
    }
    *out = bm;
    bm = NULL;
out:
    qi_bitmap_free(bm);
    free(dir);
    return rc;
}

/* Set or clear in_use on every tracked bitmap, each a 4-byte rewrite of
 * its flags, then sync. */
static int set_in_use(qi_image *img, struct qi_bitmaps *bm, bool on)
{
    int rc;
    for (uint32_t i = 0; i < bm->n; i++) {
        qi_bitmap *b = bm->t[i].b;
        uint32_t f = on ? b->flags | QI_BITMAP_IN_USE : b->flags & ~QI_BITMAP_IN_USE;
        uint8_t buf[4];
        qi_put_be32(buf, f);
        if ((rc = qi_bio_pwrite(img->file, buf, 4, b->entry_offset + 12, &img->err,
                                "bitmap directory")) < 0)
            return rc;
        b->flags = f;
    }
    return qi_bio_sync(img->file, &img->err);
}

/* The bits behind table entry I of T: zeros, or its data cluster. */
static int load_chunk(qi_image *img, track *t, uint32_t i)
{
    uint32_t cs = img->g.cluster_size;
    uint64_t off = t->table[i] & ENTRY_OFFSET;
    int rc;
    if (!(t->chunk[i] = calloc(1, cs)))
        return qi_fail(img, QI_ENOMEM, "bitmap data", off, "out of memory");
    if (off && (rc = qi_bio_pread(img->file, t->chunk[i], cs, off, &img->err,
                                  "bitmap data")) < 0) {
        free(t->chunk[i]);
        t->chunk[i] = NULL;
        return rc;
    }
    return 0;
}

/* Set bits LO..HI (inclusive) of BITS, least significant bit first in
 * each byte (the spec's order); true if any was clear. */
static bool set_bits(uint8_t *bits, uint64_t lo, uint64_t hi)
{
    bool changed = false;
    while (lo <= hi && (lo & 7)) {
        changed |= !(bits[lo / 8] & (1u << (lo & 7)));
        bits[lo / 8] |= (uint8_t)(1u << (lo & 7));
        lo++;
    }
    if (lo + 7 <= hi) {
        uint64_t n = (hi + 1 - lo) / 8;
        for (uint64_t k = 0; k < n && !changed; k++)
            changed = bits[lo / 8 + k] != 0xff;
        memset(bits + lo / 8, 0xff, n);
        lo += 8 * n;
    }
    for (; lo <= hi; lo++) {
        changed |= !(bits[lo / 8] & (1u << (lo & 7)));
        bits[lo / 8] |= (uint8_t)(1u << (lo & 7));
    }
    return changed;
}

/* Mark guest bytes [OFF, OFF+LEN) (LEN > 0) dirty in T, in memory. */
static int mark(qi_image *img, track *t, uint64_t off, uint64_t len)
{
    uint32_t gb = t->b->granularity_bits;
    uint64_t per = (uint64_t)img->g.cluster_size * 8;
    uint64_t first = off >> gb, last = (off + len - 1) >> gb;
    int rc;
    for (uint64_t i = first / per; i <= last / per; i++) {
        if (t->table[i] == ENTRY_ALL_ONES)
            continue;
        if (!t->chunk[i] && (rc = load_chunk(img, t, (uint32_t)i)) < 0)
            return rc;
        uint64_t lo = first > i * per ? first - i * per : 0;
        uint64_t hi = last < (i + 1) * per - 1 ? last - i * per : per - 1;
        if (set_bits(t->chunk[i], lo, hi))
            t->dirty[i] = 1;
    }
    return 0;
}

/* Crash table (the first write of a session, or the first after a flush):
 *   1. in_use set in the directory entry of each tracked bitmap
 *                    crash: consistent (nothing else changed yet; a bitmap
 *                    with in_use is inconsistent, as after a QEMU crash)
 *   2. sync; only then does the caller change guest data
 *                    crash: consistent, the tracked bitmaps in_use
 * Marking the bits is in memory only. */
int qi_bitmap_note_write(qi_image *img, uint64_t off, uint64_t len)
{
    int rc;
    if (!img->n_bitmaps || !len)
        return 0;
    if (!img->bm && (rc = load(img, &img->bm)) < 0)
        return rc;
    if (!img->bm->n)
        return 0;
    if (!img->bm->armed) {
        if ((rc = set_in_use(img, img->bm, true)) < 0)
            return rc;
        img->bm->armed = true;
    }
    for (uint32_t i = 0; i < img->bm->n; i++)
        if ((rc = mark(img, &img->bm->t[i], off, len)) < 0)
            return rc;
    return 0;
}

/* Write T's table (changed entries included) in one write. */
static int write_table(qi_image *img, track *t)
{
    uint64_t bytes = 8ull * t->b->table_size;
    uint8_t *raw = qi_mem_alloc_capped(t->b->table_size, 8, QI_MEM_CAP);
    int rc;
    if (!raw)
        return qi_fail(img, QI_ENOMEM, "bitmap table", t->b->table_offset, "out of memory");
    for (uint32_t i = 0; i < t->b->table_size; i++)
        qi_put_be64(raw + 8 * i, t->table[i]);
    rc = qi_bio_pwrite(img->file, raw, bytes, t->b->table_offset, &img->err,
                       "bitmap table");
    free(raw);
    if (rc == 0)
        t->table_dirty = false;
    return rc;
}

/* Crash table (the bitmaps in_use on disk throughout, until step 4):
 *   1. a new cluster (refcount 1) for each changed chunk whose table entry
 *      is 0; refcount blocks written and synced     crash: leak
 *   2. every changed chunk written: to its new cluster, or in place
 *                                                   crash: leak
 *   3. every changed table written; sync            crash: consistent
 *   4. in_use cleared on each tracked bitmap; sync  crash: consistent,
 *      each bitmap in_use or complete
 * On an image found corrupt nothing is written: the bitmaps stay in_use. */
int qi_bitmap_flush(qi_image *img)
{
    struct qi_bitmaps *bm = img->bm;
    uint32_t cs = img->g.cluster_size;
    int rc;
    if (!bm || !bm->armed || img->corrupt_seen)
        return 0;
    for (uint32_t k = 0; k < bm->n; k++) {
        track *t = &bm->t[k];
        for (uint32_t i = 0; i < t->b->table_size; i++) {
            if (!t->dirty[i] || (t->table[i] & ENTRY_OFFSET))
                continue;
            uint64_t off;
            if ((rc = qi_refcount_alloc(img, 1, &off)) < 0)
                return rc;
            t->table[i] = off;
            t->table_dirty = true;
        }
    }
    if ((rc = qi_cache_flush(img->rb_cache, &img->err)) < 0)
        return rc;
    for (uint32_t k = 0; k < bm->n; k++) {
        track *t = &bm->t[k];
        for (uint32_t i = 0; i < t->b->table_size; i++)
            if (t->dirty[i] &&
                (rc = qi_bio_pwrite(img->file, t->chunk[i], cs, t->table[i] & ENTRY_OFFSET,
                                    &img->err, "bitmap data")) < 0)
                return rc;
    }
    for (uint32_t k = 0; k < bm->n; k++)
        if (bm->t[k].table_dirty && (rc = write_table(img, &bm->t[k])) < 0)
            return rc;
    if ((rc = qi_bio_sync(img->file, &img->err)) < 0 ||
        (rc = set_in_use(img, bm, false)) < 0)
        return rc;
    for (uint32_t k = 0; k < bm->n; k++)
        memset(bm->t[k].dirty, 0, bm->t[k].b->table_size);
    bm->armed = false;
    return 0;
}
