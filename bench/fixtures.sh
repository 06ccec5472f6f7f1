#!/bin/bash
# bench/fixtures.sh [DIR] - make the benchmark fixtures with qemu-img and
# qemu-io (data from bench/gen.py, seeded: the same bytes on every run).
#
#   DIR     default ${TMPDIR:-/tmp}/qinspect-bench-full, or ...-quick with QUICK=1
#   QUICK=1 small fixtures (the whole bench then takes about 2-3 minutes)
#
# A fixture already in DIR is kept when its stamp file (NAME.stamp) holds the
# current recipe version; when the recipe or its sizes change it is rebuilt.
# Full size needs about 10 GB in DIR (plus ~5 GB while run.sh writes outputs).
#
#   a.qcow2   64 GiB virtual (QUICK 4 GiB), 64K clusters: one extent of mixed
#             data per 64 MiB, then a shuffled qemu-io pass: writes out of guest
#             order (fragmentation), compressed clusters, zero clusters with and
#             without unmap, discards. About 4.6 GB of data (QUICK 0.3 GB).
#   b.qcow2   4K clusters, 262144 (QUICK 32768) data clusters in runs of mean
#             length 2 between holes: many small map records.
#   c.qcow2   16 GiB virtual (QUICK 2 GiB), 1 GiB (QUICK 128 MiB) of base data,
#             then 20 internal snapshots with 300 writes after each.
#   d.raw     2 GiB (QUICK 256 MiB) raw: half unique 64K blocks, half copies of
#             earlier ones, 3% holes.
#   e.qcow2   512-byte clusters, 1048576 (QUICK 131072) data clusters in runs of
#             mean length 2 between holes: a million clusters of metadata for
#             check (issue 11: "the 512 B cluster fixture with a million clusters").
#   tiny.qcow2, tiny.raw   1 MiB images for the probes of run.sh.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
    DIR=${1:-${TMPDIR:-/tmp}/qinspect-bench-quick}
    A_VSIZE=$((4 << 30)); A_WRITES=400; B_CLUSTERS=32768
    C_VSIZE=$((2 << 30)); C_EXTENTS=64; D_SIZE=$((256 << 20)); E_CLUSTERS=131072
else
    DIR=${1:-${TMPDIR:-/tmp}/qinspect-bench-full}
    A_VSIZE=$((64 << 30)); A_WRITES=6000; B_CLUSTERS=262144
    C_VSIZE=$((16 << 30)); C_EXTENTS=512; D_SIZE=$((2 << 30)); E_CLUSTERS=1048576
fi
# Bump RECIPE when a recipe below changes; gen.py's checksum is part of the
# stamp, so editing the generator rebuilds everything.
RECIPE=1
GENSUM=$(cksum <"$HERE/gen.py" | cut -d' ' -f1)
GEN=(python3 "$HERE/gen.py")
mkdir -p "$DIR"
cd "$DIR"
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# fresh NAME PARAMS...: true if NAME exists and was made by this recipe
fresh() {
    local name=$1; shift
    [ -f "$name" ] && [ "$(cat "$name.stamp" 2>/dev/null)" = "$RECIPE $GENSUM $*" ]
}
done_fixture() {
    local name=$1; shift
    mv "$name.tmp" "$name"
    echo "$RECIPE $GENSUM $*" >"$name.stamp"
    log "$name: $(du -h --apparent-size "$name" | cut -f1) apparent, $(du -h "$name" | cut -f1) on disk"
}

if ! fresh a.qcow2 "$A_VSIZE" "$A_WRITES"; then
    log "a.qcow2: raw extents"
    rm -f a.qcow2 a.qcow2.stamp
    "${GEN[@]}" extents a.raw.tmp "$A_VSIZE" $((64 << 20))
    qemu-img convert -f raw -O qcow2 -o cluster_size=65536 a.raw.tmp a.qcow2.tmp
    rm -f a.raw.tmp
    log "a.qcow2: qemu-io pass ($A_WRITES writes, compressed, zero, discard)"
    "${GEN[@]}" srcdir a.src
    "${GEN[@]}" scramble "$A_VSIZE" $((64 << 20)) a.src "$A_WRITES" |
        qemu-io -f qcow2 a.qcow2.tmp >/dev/null
    rm -rf a.src
    qemu-img check -q a.qcow2.tmp
    done_fixture a.qcow2 "$A_VSIZE" "$A_WRITES"
fi

if ! fresh b.qcow2 "$B_CLUSTERS"; then
    log "b.qcow2: $B_CLUSTERS clusters of 4 KiB in short runs"
    rm -f b.qcow2 b.qcow2.stamp
    "${GEN[@]}" runs b.raw.tmp 4096 "$B_CLUSTERS"
    qemu-img convert -f raw -O qcow2 -S 4k -o cluster_size=4096 b.raw.tmp b.qcow2.tmp
    rm -f b.raw.tmp
    qemu-img check -q b.qcow2.tmp
    done_fixture b.qcow2 "$B_CLUSTERS"
fi

if ! fresh c.qcow2 "$C_VSIZE" "$C_EXTENTS"; then
    log "c.qcow2: base data and 20 snapshots"
    rm -f c.qcow2 c.qcow2.stamp
    "${GEN[@]}" spread c.raw.tmp "$C_VSIZE" "$C_EXTENTS"
    qemu-img convert -f raw -O qcow2 -o cluster_size=65536 c.raw.tmp c.qcow2.tmp
    rm -f c.raw.tmp
    for i in $(seq -w 1 20); do
        qemu-img snapshot -c "snap$i" c.qcow2.tmp
        "${GEN[@]}" round "$C_VSIZE" "$i" | qemu-io -f qcow2 c.qcow2.tmp >/dev/null
    done
    qemu-img check -q c.qcow2.tmp
    done_fixture c.qcow2 "$C_VSIZE" "$C_EXTENTS"
fi

if ! fresh d.raw "$D_SIZE"; then
    log "d.raw: $D_SIZE bytes, half copies"
    rm -f d.raw d.raw.stamp
    "${GEN[@]}" dups d.raw.tmp "$D_SIZE" >&2
    done_fixture d.raw "$D_SIZE"
fi

if ! fresh e.qcow2 "$E_CLUSTERS"; then
    log "e.qcow2: $E_CLUSTERS clusters of 512 bytes in short runs"
    rm -f e.qcow2 e.qcow2.stamp
    "${GEN[@]}" runs e.raw.tmp 512 "$E_CLUSTERS"
    qemu-img convert -f raw -O qcow2 -S 512 -o cluster_size=512 e.raw.tmp e.qcow2.tmp
    rm -f e.raw.tmp
    qemu-img check -q e.qcow2.tmp
    done_fixture e.qcow2 "$E_CLUSTERS"
fi

if ! fresh tiny.qcow2 1; then
    rm -f tiny.raw
    "${GEN[@]}" runs tiny.raw 65536 8
    qemu-img convert -f raw -O qcow2 tiny.raw tiny.qcow2.tmp
    done_fixture tiny.qcow2 1
fi
echo "$DIR"
