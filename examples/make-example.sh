#!/bin/sh
# make-example.sh [OUT] - make the example image the README uses
# (default examples/example.qcow2). Run by `make examples`.
#
# 64 MiB, 64 KiB clusters, made with qemu-img and qemu-io only:
#   0 .. 1 MiB         pattern 0xaa       (normal data clusters)
#   4 MiB .. +256 KiB  pattern 0x55
#   8 MiB .. +1 MiB    zero write          (zero clusters, no data)
#   16 MiB .. +128 KiB pattern 0x11, compressed (zlib)
#   snapshot "before-update", taken after the writes above
#   0 .. 64 KiB        pattern 0xbb, written after the snapshot (COW: the
#                      snapshot still reads 0xaa there)
# The snapshot's date is set to a fixed time (SOURCE_DATE_EPOCH if set),
# and the compressed clusters are written one per request (qemu-io
# compresses the clusters of one request in parallel, in any order), so
# the same qemu-img version makes the same bytes every time.
set -eu

out=${1:-$(dirname "$0")/example.qcow2}
epoch=${SOURCE_DATE_EPOCH:-1700000000}
tmp=$out.tmp
rm -f "$tmp"

qemu-img create -q -f qcow2 "$tmp" 64M
qemu-io -f qcow2 \
    -c 'write -q -P 0xaa 0 1M' \
    -c 'write -q -P 0x55 4M 256k' \
    -c 'write -q -z 8M 1M' \
    -c 'write -q -c -P 0x11 16M 64k' \
    -c 'write -q -c -P 0x11 16448k 64k' \
    "$tmp"
qemu-img snapshot -c before-update "$tmp"
qemu-io -f qcow2 -c 'write -q -P 0xbb 0 64k' "$tmp"

# snapshot table: header bytes 64-71 give its offset; entry bytes 16-19 are
# the date in seconds, 20-23 the nanoseconds (qcow2 spec, snapshot table)
snap=$(od -An -tu8 -j64 -N8 --endian=big "$tmp" | tr -d ' ')
hex=$(printf '%08x00000000' "$epoch")
bytes=
while [ -n "$hex" ]; do
    bytes="$bytes$(printf '\\%03o' "0x${hex%"${hex#??}"}")"
    hex=${hex#??}
done
printf "$bytes" | dd of="$tmp" bs=1 seek=$((snap + 16)) conv=notrunc status=none

qemu-img check -q "$tmp"
mv "$tmp" "$out"
echo "made $out"
