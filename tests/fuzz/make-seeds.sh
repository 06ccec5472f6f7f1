#!/bin/sh
# make-seeds.sh [DIR] - (re)make the fuzz seed corpus in DIR
# (default tests/fuzz/seeds). The seeds are committed; rerun this only to
# change the corpus. Each seed is a small image (< 64 KiB) made by qemu-img
# and qemu-io, some with bytes poked at exact offsets, so a fuzzer starts
# from every structure the engine parses: v2 and v3 headers, extensions,
# 512 B .. 16 KiB clusters, zlib and zstd compressed clusters, zero
# clusters, refcount widths 1 and 64, extended L2, snapshots, bitmaps, a
# backing chain, an external data file, and a few damaged images.
set -eu

dir=${1:-$(dirname "$0")/seeds}
mkdir -p "$dir"
cd "$dir"
rm -f ./*.qcow2 ./*.raw

mk() { qemu-img create -q -f qcow2 "$@"; }
io() { f=$1; shift; for c in "$@"; do set -- "$@" -c "$c"; shift; done; qemu-io -f qcow2 "$@" "$f" >/dev/null; }
# off56 FILE OFFSET: bits 9-55 of the big-endian u64 at OFFSET (the cluster
# offset of a header field, L1 or L2 entry; the top byte is left out so
# the value fits sh arithmetic)
off56() { echo $(( $(printf '%d' "0x$(od -An -tx1 -j"$2" -N8 "$1" | tr -d ' \n' | cut -c3-)") & 0xfffffffffe00 )); }
# poke FILE OFFSET HEXBYTES: write bytes at an exact offset (iotests poke_file)
poke() {
    _s= _h=$3
    while [ -n "$_h" ]; do
        _s="$_s$(printf '\\%03o' "0x${_h%"${_h#??}"}")"
        _h=${_h#??}
    done
    printf "$_s" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# 512 B clusters: data, zero, compressed, discard, and a snapshot
mk -o cluster_size=512 c512.qcow2 64k
io c512.qcow2 'write -P 0xaa 0 1536' 'write -z 4k 1k' 'write -c -P 0x55 8k 512' \
    'write -P 0x11 16k 2k' 'discard 16k 512'
qemu-img snapshot -c s1 c512.qcow2
io c512.qcow2 'write -P 0x22 0 512'

# version 2 (compat=0.10), 4 KiB clusters, two snapshots
mk -o compat=0.10,cluster_size=4096 v2.qcow2 256k
io v2.qcow2 'write -P 0x33 0 8k' 'write -c -P 0x44 64k 4k'
qemu-img snapshot -c one v2.qcow2
io v2.qcow2 'write -P 0x34 4k 4k'
qemu-img snapshot -c two v2.qcow2

# zstd compressed clusters
mk -o cluster_size=4096,compression_type=zstd zstd.qcow2 256k
io zstd.qcow2 'write -c -P 0x66 0 4k' 'write -c -P 0x67 4k 4k' 'write -P 0x68 12k 4k'

# refcount widths 1 and 64, lazy refcounts
mk -o cluster_size=1024,refcount_bits=1 rc1.qcow2 64k
io rc1.qcow2 'write -P 0x77 0 3k'
mk -o cluster_size=1024,refcount_bits=64,lazy_refcounts=on rc64.qcow2 64k
io rc64.qcow2 'write -P 0x78 1k 2k' 'write -z 8k 1k'

# extended L2 (needs >= 16 KiB clusters): zero subclusters only. Header,
# reftable, refblock, L1 and L2 are five 16 KiB clusters, so this seed is
# 80 KiB, the one exception to the 64 KiB rule.
mk -o cluster_size=16384,extended_l2=on extl2.qcow2 256k
io extl2.qcow2 'write -z 0 2k' 'write -z 32k 1k'

# persistent dirty bitmap
mk -o cluster_size=1024 bitmap.qcow2 64k
qemu-img bitmap --add bitmap.qcow2 b0
io bitmap.qcow2 'write -P 0x12 0 1k'

# backing chain: raw base, qcow2 middle, qcow2 top (relative names)
head -c 32768 /dev/zero | tr '\0' '\001' > base.raw   # shorter than mid
mk -o cluster_size=1024 -b base.raw -F raw mid.qcow2 64k
io mid.qcow2 'write -P 0x21 1k 1k'
mk -o cluster_size=1024 -b mid.qcow2 -F qcow2 top.qcow2 128k
io top.qcow2 'write -P 0x31 2k 1k'

# external data file (relative name, next to the image)
mk -o cluster_size=1024,data_file=data.raw datafile.qcow2 16k
io datafile.qcow2 'write -P 0x41 0 2k'

# damaged images: an L2 entry with a reserved bit, a compressed
# descriptor running past the end of the file, a corrupt deflate stream,
# an unknown incompatible feature bit
mk -o cluster_size=512 bad-l2.qcow2 16k
io bad-l2.qcow2 'write -P 0x51 0 1k'
l2=$(off56 bad-l2.qcow2 "$(off56 bad-l2.qcow2 40)")
poke bad-l2.qcow2 "$l2" 82                                # L2[0]: COPIED + bit 57
mk -o cluster_size=512 bad-comp.qcow2 16k
io bad-comp.qcow2 'write -c -P 0x52 0 512' 'write -c -P 0x53 512 512'
l2=$(off56 bad-comp.qcow2 "$(off56 bad-comp.qcow2 40)")
poke bad-comp.qcow2 $((l2 + 5)) 7f                        # L2[0]: offset past EOF
# 512 B clusters: x = 61, so the byte offset is bits 0-55 (fmt 4.3)
c=$(printf '%d' "0x$(od -An -tx1 -j$((l2 + 9)) -N7 bad-comp.qcow2 | tr -d ' \n')")
poke bad-comp.qcow2 "$c" ffffffffffffffff                 # L2[1]: bad deflate
mk -o cluster_size=8192 feature.qcow2 64k     # > 4 KiB: has a feature name table
poke feature.qcow2 72 0000000000000020                    # incompatible bit 5

ls -l "$PWD"
