#!/bin/sh
# make-seeds.sh [DIR] - (re)make the fuzz seed corpus in DIR
# (default tests/fuzz/seeds). The seeds are committed; rerun this only to
# change the corpus. Each seed is a small image (< 64 KiB) made by qemu-img
# and qemu-io, some with bytes poked at exact offsets, so a fuzzer starts
# from every structure the engine parses: v2 and v3 headers, extensions,
# 512 B .. 16 KiB clusters, zlib and zstd compressed clusters, zero
# clusters, refcount widths 1 and 64, extended L2, snapshots, bitmaps, a
# backing chain, an external data file, and damaged images (bad tables,
# offsets, extensions, refcounts and snapshot tables). It also writes
# DIR/EXPECT, the outcome tests/fuzz/replay.c -x checks for each seed (see
# its header below): qemu-img convert's CRC-32 of every readable guest disk,
# and for each damaged seed the error, derived from the spec and from what
# QEMU does (recorded as a comment). Needs qemu-img, qemu-io and python3.
set -eu

dir=${1:-$(dirname "$0")/seeds}
mkdir -p "$dir"
cd "$dir"
rm -f ./*.qcow2 ./*.raw EXPECT

mk() { qemu-img create -q -f qcow2 "$@"; }
io() { f=$1; shift; for c in "$@"; do set -- "$@" -c "$c"; shift; done; qemu-io -f qcow2 "$@" "$f" >/dev/null; }
# off56 FILE OFFSET: bits 9-55 of the big-endian u64 at OFFSET (the cluster
# offset of a header field, L1 or L2 entry; the top byte is left out so
# the value fits sh arithmetic)
off56() { echo $(( $(printf '%d' "0x$(od -An -tx1 -j"$2" -N8 "$1" | tr -d ' \n' | cut -c3-)") & 0xfffffffffe00 )); }
# hex64 N: N as 16 hex digits (a u64 for poke); copied N: the same with
# bit 63 (COPIED) set, for an L1 or L2 entry
hex64() { printf '%016x' "$1"; }
copied() { printf '80%014x' "$1"; }
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

# ---- damaged images ----
# Each is a small qemu-img image with bytes poked at offsets read back from
# its own header and tables (fmt = ../shared/docs/qcow2-format.md). The
# outcome written for each (see `expect` below) comes from the qcow2 spec
# and from what QEMU 7.2 does with the same bytes, which `expect` records
# next to it: where QEMU only reads zeros past the end of the file, its own
# `qemu-img check` calls the reference an error, and qinspect refuses it.

# an L2 entry with a reserved bit (QEMU masks it on reads; check: "l2 entry
# with reserved bits set")
mk -o cluster_size=512 bad-l2.qcow2 16k
io bad-l2.qcow2 'write -P 0x51 0 1k'
l2=$(off56 bad-l2.qcow2 "$(off56 bad-l2.qcow2 40)")
poke bad-l2.qcow2 "$l2" 82                                # L2[0]: COPIED + bit 57
# a compressed descriptor running past the end of the file, then a corrupt
# deflate stream
mk -o cluster_size=512 bad-comp.qcow2 16k
io bad-comp.qcow2 'write -c -P 0x52 0 512' 'write -c -P 0x53 512 512'
l2=$(off56 bad-comp.qcow2 "$(off56 bad-comp.qcow2 40)")
poke bad-comp.qcow2 $((l2 + 5)) 7f                        # L2[0]: offset past EOF
# 512 B clusters: x = 61, so the byte offset is bits 0-55 (fmt 4.3)
c=$(printf '%d' "0x$(od -An -tx1 -j$((l2 + 9)) -N7 bad-comp.qcow2 | tr -d ' \n')")
poke bad-comp.qcow2 "$c" ffffffffffffffff                 # L2[1]: bad deflate
# an unknown incompatible feature bit
mk -o cluster_size=8192 feature.qcow2 64k     # > 4 KiB: has a feature name table
poke feature.qcow2 72 0000000000000020                    # incompatible bit 5

# the header's L1 table offset not cluster aligned (0x600 -> 0x680)
mk -o cluster_size=512 l1-unaligned.qcow2 16k
io l1-unaligned.qcow2 'write -P 0x71 0 1k'
poke l1-unaligned.qcow2 40 "$(hex64 $(($(off56 l1-unaligned.qcow2 40) + 0x80)))"
# l1_size one entry above QEMU's 32 MiB L1 limit (and past the end of the file)
mk -o cluster_size=512 l1-huge.qcow2 16k
io l1-huge.qcow2 'write -P 0x72 0 1k'
poke l1-huge.qcow2 36 00400001
# L1[0]: an L2 table offset that is not cluster aligned (4 KiB clusters)
mk -o cluster_size=4096 l2-unaligned.qcow2 64k
io l2-unaligned.qcow2 'write -P 0x73 0 8k'
l1=$(off56 l2-unaligned.qcow2 40)
poke l2-unaligned.qcow2 "$l1" "$(copied $(($(off56 l2-unaligned.qcow2 "$l1") + 0x200)))"
# L1[0]: an L2 table 1 MiB past the end of the file
mk -o cluster_size=512 l2-past-eof.qcow2 16k
io l2-past-eof.qcow2 'write -P 0x74 0 1k'
poke l2-past-eof.qcow2 "$(off56 l2-past-eof.qcow2 40)" 8000000000100000
# L2[0]: a data cluster offset that is not cluster aligned (4 KiB clusters)
mk -o cluster_size=4096 data-unaligned.qcow2 64k
io data-unaligned.qcow2 'write -P 0x75 0 8k'
l2=$(off56 data-unaligned.qcow2 "$(off56 data-unaligned.qcow2 40)")
poke data-unaligned.qcow2 "$l2" "$(copied $(($(off56 data-unaligned.qcow2 "$l2") + 0x200)))"
# L2[1]: a data cluster 1 MiB past the end of the file
mk -o cluster_size=512 data-past-eof.qcow2 16k
io data-past-eof.qcow2 'write -P 0x76 0 1k'
l2=$(off56 data-past-eof.qcow2 "$(off56 data-past-eof.qcow2 40)")
poke data-past-eof.qcow2 $((l2 + 8)) 8000000000100000
# refcount table entry 0 is garbage (unaligned, far past the end of the
# file); reading the guest disk needs no refcounts, so it still reads
mk -o cluster_size=512 reftable-garbage.qcow2 16k
io reftable-garbage.qcow2 'write -P 0x77 0 1k'
poke reftable-garbage.qcow2 "$(off56 reftable-garbage.qcow2 48)" 0000beefcafe1234
# the header's refcount table offset not cluster aligned (0x200 -> 0x300)
mk -o cluster_size=512 reftable-unaligned.qcow2 16k
io reftable-unaligned.qcow2 'write -P 0x78 0 1k'
poke reftable-unaligned.qcow2 48 "$(hex64 $(($(off56 reftable-unaligned.qcow2 48) + 0x100)))"
# the first header extension (the feature name table, after the 112-byte
# v3 header) claims 64 KiB, past the end of the 8 KiB cluster 0
mk -o cluster_size=8192 ext-too-long.qcow2 64k
[ "$(od -An -tx1 -j112 -N4 ext-too-long.qcow2 | tr -d ' \n')" = 6803f857 ] ||
    { echo "ext-too-long.qcow2: no feature name table at 112" >&2; exit 1; }
poke ext-too-long.qcow2 116 00010000
# the file ends 20 bytes into the only snapshot table entry (the table is
# the last thing in the file)
mk -o cluster_size=512 snap-truncated.qcow2 16k
io snap-truncated.qcow2 'write -P 0x79 0 1k'
qemu-img snapshot -c s1 snap-truncated.qcow2
so=$(off56 snap-truncated.qcow2 64)
[ $(($(wc -c < snap-truncated.qcow2) - so)) -lt 512 ] ||
    { echo "snap-truncated.qcow2: snapshot table is not at the end" >&2; exit 1; }
truncate -s $((so + 20)) snap-truncated.qcow2
# refcount_order 7 (the spec's maximum is 6)
mk -o cluster_size=512 refcount-order.qcow2 16k
io refcount-order.qcow2 'write -P 0x7a 0 1k'
poke refcount-order.qcow2 96 00000007

# ---- expectations ----
# EXPECT says what tests/fuzz/replay.c (-x) must see for each seed.
# Undamaged seeds are "clean" and carry size/crc (and snapN) computed from
# `qemu-img convert -O raw`; `qemu-img check` must find them clean.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/qi-seeds.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# crc FILE: CRC-32 (the zlib/gzip one) of FILE, as 8 hex digits
crc() { python3 -c 'import sys, zlib; print("%08x" % zlib.crc32(open(sys.argv[1], "rb").read()))' "$1"; }
# guest FILE: size= and crc= of the guest disk as qemu-img converts it,
# and snapI= for the I-th internal snapshot (table order, as qemu-img lists)
guest() {
    qemu-img convert -f qcow2 -O raw "$1" "$tmp/g.raw"
    printf 'size=%s crc=%s' "$(wc -c < "$tmp/g.raw" | tr -d ' ')" "$(crc "$tmp/g.raw")"
    i=0
    for id in $(qemu-img info --output=json "$1" | python3 -c '
import json, sys
for s in json.load(sys.stdin).get("snapshots", []): print(s["id"])'); do
        qemu-img convert -f qcow2 -l "snapshot.id=$id" -O raw "$1" "$tmp/s.raw"
        printf ' snap%d=%s' "$i" "$(crc "$tmp/s.raw")"
        i=$((i + 1))
    done
}
# active FILE: size= and crc= of the active guest disk only (for a seed
# whose snapshots qemu-img cannot name)
active() {
    qemu-img convert -f qcow2 -O raw "$1" "$tmp/g.raw"
    printf 'size=%s crc=%s' "$(wc -c < "$tmp/g.raw" | tr -d ' ')" "$(crc "$tmp/g.raw")"
}
# clean FILE: an undamaged seed
clean() {
    if ! qemu-img check -q -f qcow2 "$1"; then
        echo "$1: qemu-img check finds problems in an undamaged seed" >&2
        exit 1
    fi
    echo "$1 clean $(guest "$1")"
}
# qemu_says CMD...: CMD's status and the first line of its stderr
qemu_says() {
    if "$@" >/dev/null 2>"$tmp/err"; then echo "rc=0"; else
        echo "rc=$? \"$(head -n 1 "$tmp/err" | sed "s/^qemu-img: //; s/^Could not open '[^']*': //")\""
    fi
}
# expect FILE TOKENS...: a damaged seed and what replay must see, after a
# comment saying what QEMU does with it
expect() {
    f=$1
    shift
    if qemu-img info -f qcow2 "$f" >/dev/null 2>&1; then
        echo "# $f: qemu-img info opens it; convert -O raw" \
            "$(qemu_says qemu-img convert -f qcow2 -O raw "$f" "$tmp/x.raw");" \
            "check $(qemu_says qemu-img check -f qcow2 "$f")"
    else
        echo "# $f: qemu-img info -f qcow2 $(qemu_says qemu-img info -f qcow2 "$f")"
    fi
    echo "$f $*"
}

{
cat <<'HDR'
# EXPECT - what tests/fuzz/replay.c -x must see for each seed. Made by
# make-seeds.sh: do not edit by hand, change the script. One line per seed:
#     NAME KEY... (structure names spell spaces as _)
#   clean          every engine call succeeds (open, L1/L2, refcounts,
#                  snapshots, read, map)
#   size=N crc=X   the guest disk reads without error, is N bytes and has
#                  this CRC-32; both from `qemu-img convert -O raw`
#   snapI=X        the same for the I-th snapshot's view
#   PHASE=CODE[|CODE]:STRUCT[|STRUCT]
#                  the first error of PHASE (open, read, map, l1, l2,
#                  reftable, refcount, snapshot) has one of these codes
#                  (qi_errname) and structures; a phase other than open
#                  needs the open to succeed
# A seed without a line, or a line without its seed, fails the replay.
HDR
for f in c512 v2 zstd rc1 rc64 extl2 bitmap mid top datafile; do clean $f.qcow2; done
echo '# replay opens every file as qcow2, as qemu-img -f qcow2 does: the raw'
echo '# backing and data files are not qcow2 images (no magic, fmt 1.1)'
expect base.raw open=ECORRUPT:header
expect data.raw open=ECORRUPT:header
echo '# reserved bits must be zero (fmt 4.2): QEMU masks them, its check calls it an error'
expect bad-l2.qcow2 read=ECORRUPT:L2_table
echo '# a compressed range past the end of the file (its check: "exceeding the end of the file")'
expect bad-comp.qcow2 read=ECORRUPT:compressed_cluster\|L2_table
echo '# an unknown incompatible bit must refuse the open (fmt 2.1)'
expect feature.qcow2 open=ENOTSUP:header
expect l1-unaligned.qcow2 open=ECORRUPT:L1_table\|header
echo "# above QEMU's L1 limit (fmt 10) QEMU fails the open (EFBIG); ENOMEM is"
echo "# the API's code for a size from disk above a cap (include/qi/error.h)"
expect l1-huge.qcow2 open=ECORRUPT\|ENOMEM:L1_table\|header
expect l2-unaligned.qcow2 read=ECORRUPT:L1_table\|L2_table
expect l2-past-eof.qcow2 "$(active l2-past-eof.qcow2)"
expect data-unaligned.qcow2 read=ECORRUPT:L2_table\|data_cluster
expect data-past-eof.qcow2 read=ECORRUPT:L2_table\|data_cluster
echo '# QEMU reads the guest disk without refcounts; only refcount lookups fail'
expect reftable-garbage.qcow2 "$(guest reftable-garbage.qcow2)" \
    refcount=ECORRUPT:refcount_table\|refcount_block
expect reftable-unaligned.qcow2 open=ECORRUPT:refcount_table\|header
echo '# an extension running past the extension area fails the open (fmt 3)'
expect ext-too-long.qcow2 open=ECORRUPT:header_extension\|header
echo "# a snapshot table cut by the end of the file (fmt 7): an error for QEMU's check;"
echo "# QEMU's open reads the missing bytes as zeros"
expect snap-truncated.qcow2 "$(active snap-truncated.qcow2)"
expect refcount-order.qcow2 open=ECORRUPT:header
} > EXPECT

ls -l "$PWD"
