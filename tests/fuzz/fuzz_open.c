/* fuzz_open.c - libFuzzer entry point: open, read, map and walk an image.
 *
 * Not built by `make`. Build and run with clang (libFuzzer), for example:
 *   clang -std=c11 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined \
 *       -Iinclude -Isrc/engine tests/fuzz/fuzz_open.c \
 *       $(find src/engine -name '*.c') -lz -lzstd -o fuzz_open
 *   cp -r tests/fuzz/seeds corpus
 *   ./fuzz_open -max_len=262144 corpus
 * A crash found this way goes into tests/fuzz/seeds/ (named after what it
 * hits), so the replay driver (replay.c, run by `make check`) keeps it fixed.
 *
 * The input is written to a memfd and opened as /proc/self/fd/N, without
 * the backing chain (a fuzzed backing name may point anywhere). The walk is
 * the same as replay.c's, with smaller bounds so each input stays fast. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "qi/qi.h"

#define CHUNK (1u << 20)
#define MAX_READ (16ull << 20)
#define MAX_META (1u << 16)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_run(void *payload, const qi_map_ext *e)
{
    (void)e;
    return ++*(uint64_t *)payload > MAX_META;
}

static void walk(qi_image *img, uint8_t *buf)
{
    uint64_t budget = MAX_META, runs = 0, rc;
    const qi_header *h = qi_meta_header(img);
    uint32_t l2n = qi_meta_l2_entries(img), n = 0;
    for (uint32_t i = 0; h && i < h->l1_size && budget; i++, budget--) {
        qi_l1_entry e1;
        if (qi_meta_l1_get(img, i, &e1) < 0)
            break;
        for (uint32_t j = 0; e1.l2_offset && j < l2n && budget; j++, budget--) {
            qi_l2_entry e2;
            if (qi_meta_l2_get(img, e1.l2_offset, j, &e2) < 0)
                break;
        }
    }
    for (uint64_t off = 0; off < qi_image_file_size(img) && budget; off += 512, budget--)
        if (qi_meta_refcount(img, off, &rc) < 0)
            break;
    const qi_snapshot *s = qi_meta_snapshots(img, &n);
    for (uint32_t i = 0; i < n && qi_image_size(img); i++)
        (void)qi_image_read_snapshot(img, i, buf, 0,
                                     qi_image_size(img) < 4096 ? qi_image_size(img) : 4096);
    uint64_t end = qi_image_size(img) < MAX_READ ? qi_image_size(img) : MAX_READ;
    for (uint64_t off = 0; off < end; off += CHUNK)
        if (qi_image_read(img, buf, off, end - off < CHUNK ? end - off : CHUNK) < 0)
            break;
    (void)qi_image_map(img, 0, qi_image_size(img), on_run, &runs);
    (void)s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static uint8_t *buf;
    char path[64];
    qi_open_opts o = QI_OPEN_OPTS_INIT;
    qi_image *img = NULL;
    qi_err err;
    int fd = memfd_create("qi-fuzz", 0);
    if (fd < 0)
        return 0;
    if (!buf && !(buf = malloc(CHUNK)))
        abort();
    if (write(fd, data, size) != (ssize_t)size) {
        close(fd);
        return 0;
    }
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    o.flags = QI_OPEN_NO_BACKING | QI_OPEN_NO_LOCK;
    if (qi_image_open(&img, path, &o, &err) == 0) {
        walk(img, buf);
        qi_image_close(img);
    }
    close(fd);
    return 0;
}
