#!/bin/bash
# tests/cli/matrix.sh - differential tests of info/map/convert/snapshot -l
# against qemu-img over an image matrix made with qemu-img and qemu-io:
# cluster sizes 512 B..2 MiB, compat 0.10/1.1, every refcount width, zlib and
# zstd compression, extended L2, lazy refcounts (and a dirty image), backing
# chains (raw and qcow2 bases, relative names, shorter bases), external data
# files (raw and not), internal snapshots (and their views), raw images,
# preallocation, bitmaps, odd and zero sizes. For every image, qinspect's
# output must equal qemu-img's (lib.sh check_image).
. "$(dirname "$0")/lib.sh"

mkrand rand.bin 300000
# compressible but not trivial: base64 text of random bytes
head -c 200000 /dev/urandom | base64 >text.bin

# populate IMG CLUSTER VSIZE [nocompress]: a mix of data (random, pattern,
# unaligned head and tail), zero writes (with and without unmap), discards,
# compressed clusters (one of them partly overwritten), scattered writes
# across many L2 tables, and for small clusters a run of alternating
# data/unallocated clusters.
populate() {
    local img=$1 c=$2 vs=$3 comp=${4:-} s
    s=$((vs / 8))
    local cmds=(
        "write -s rand.bin 0 $((2 * c + 1000))"
        "write -P 0x11 $((3 * c + 512)) $((c / 2))"
        "write -z $((5 * c)) $((2 * c))"
        "write -s rand.bin $((8 * c)) $((3 * c))"
        "write -z -u $((9 * c)) $c"
        "discard $((10 * c)) $c"
        "write -P 0x22 $((s + 300)) 4096"
        "write -s text.bin $((2 * s + 100)) 70000"
        "write -z $((3 * s)) $((2 * c))"
        "write -s rand.bin $((vs - 5000)) 5000"
    )
    if [ -z "$comp" ]; then
        cmds+=(
            "write -c -s text.bin $((4 * s)) $((2 * c))"
            "write -c -P 0x33 $((4 * s + 2 * c)) $c"
            "write -P 0x44 $((4 * s + 2 * c + 100)) 50"
            "write -c -P 0x55 $((4 * s + 4 * c)) $c"
        )
    fi
    if [ "$c" -le 4096 ]; then
        for i in $(seq 0 2 80); do cmds+=("write -P $i $((5 * s + i * c)) $c"); done
    fi
    qio "$img" "${cmds[@]}"
}

# mk NAME CLUSTER VSIZE OPTS [nocompress]: create, populate, check.
mk() {
    local name=$1 c=$2 vs=$3 opts=$4 comp=${5:-}
    if ! qemu-img create -q -f qcow2 -o "cluster_size=$c${opts:+,$opts}" "$name" "$vs" ||
        ! populate "$name" "$c" "$vs" "$comp"; then
        t_fail "$name: could not build the image with qemu-img/qemu-io"
        return
    fi
    check_image "$name" "$name ($c-byte clusters${opts:+, $opts})"
}

# ---- cluster sizes x compat ----
for c in 512 4096 65536 2097152; do
    case $c in 512) vs=4M ;; 4096) vs=16M ;; *) vs=64M ;; esac
    vsb=$(qemu-img create -q -f raw sz.tmp "$vs" && stat -c %s sz.tmp)
    rm -f sz.tmp
    for compat in 0.10 1.1; do
        mk "c$c-v$compat.qcow2" "$c" "$vsb" "compat=$compat"
    done
done

# ---- refcount widths (16 is the default, covered above) ----
for rb in 1 2 4 8 32 64; do
    comp=
    [ "$rb" = 1 ] && comp=nocompress # compressed clusters may share a host cluster
    mk "rb$rb.qcow2" 4096 $((8 << 20)) "refcount_bits=$rb" $comp
done
mk "rb64-64k.qcow2" 65536 $((32 << 20)) "refcount_bits=64"

# ---- compression types ----
mk "zstd-4k.qcow2" 4096 $((16 << 20)) "compression_type=zstd"
mk "zstd-64k.qcow2" 65536 $((64 << 20)) "compression_type=zstd"
mk "zlib-64k.qcow2" 65536 $((64 << 20)) "compression_type=zlib"

# ---- extended L2 (32 subclusters per cluster) ----
for c in 16384 65536 2097152; do
    sc=$((c / 32))
    name="extl2-$c.qcow2"
    vs=$((64 << 20))
    if qemu-img create -q -f qcow2 -o "cluster_size=$c,extended_l2=on" "$name" $vs &&
        populate "$name" $c $vs &&
        qio "$name" "write -P 0x66 $((20 * c + sc)) $sc" \
            "write -P 0x67 $((20 * c + 5 * sc + 17)) $((3 * sc))" \
            "write -z $((21 * c + 2 * sc)) $((4 * sc))" \
            "write -s rand.bin $((22 * c)) $c" \
            "write -z $((22 * c + 8 * sc)) $((2 * sc))" \
            "discard $((22 * c + 16 * sc)) $((4 * sc))"; then
        check_image "$name" "$name (extended L2, $c-byte clusters)"
    else
        t_fail "$name: could not build the image"
    fi
done
mk "extl2-zstd.qcow2" 65536 $((16 << 20)) "extended_l2=on,compression_type=zstd"

# ---- lazy refcounts, and an image left dirty by a crash ----
mk "lazy.qcow2" 65536 $((16 << 20)) "lazy_refcounts=on"
if qemu-img create -q -f qcow2 -o lazy_refcounts=on dirty.qcow2 16M &&
    { (qemu-io -f qcow2 -c 'write -s rand.bin 0 200k' -c 'write -P 9 1M 64k' -c abort \
        dirty.qcow2 >/dev/null 2>&1; true) 2>/dev/null; } &&
    qemu-img info --output=json dirty.qcow2 | grep -q '"dirty-flag": true'; then
    check_image dirty.qcow2 "dirty.qcow2 (lazy refcounts, dirty after abort)"
else
    t_fail "dirty.qcow2: could not build a dirty image"
fi

# ---- backing chains ----
# raw base (8M) <- qcow2 mid (12M, relative name, backing_fmt raw) <- top (16M)
qemu-img create -q -f raw base.raw 8M &&
    qio_fmt raw base.raw 'write -s rand.bin 0 1M' 'write -P 0x77 3M 64k' \
        'write -s rand.bin 7M 1M' &&
    qemu-img create -q -f qcow2 -b base.raw -F raw mid.qcow2 12M &&
    qio mid.qcow2 "write -P 0x78 512k 64k" "write -z 3M 64k" "write -s text.bin 7800k 700k" \
        "write -P 0x79 11M 32k" &&
    qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 16M &&
    qio top.qcow2 "write -P 0x7a 0 4k" "write -z 7M 64k" "discard 512k 64k" \
        "write -c -P 0x7b 5M 64k" "write -s rand.bin 15M 100k"
if [ $? = 0 ]; then
    check_image base.raw "base.raw (raw base of a chain)"
    check_image mid.qcow2 "mid.qcow2 (over a shorter raw base)"
    check_image top.qcow2 "top.qcow2 (3-deep chain, raw bottom)"
else
    t_fail "raw-based chain: could not build the images"
fi

# qcow2 base (4M, 4K clusters) <- qcow2 mid (8M, zstd) <- sub/top (16M, 512 B
# clusters, backing name "../qmid.qcow2" relative to its own directory)
mkdir -p sub
qemu-img create -q -f qcow2 -o cluster_size=4096 qbase.qcow2 4M &&
    populate qbase.qcow2 4096 $((4 << 20)) &&
    qemu-img create -q -f qcow2 -o compression_type=zstd -b qbase.qcow2 -F qcow2 qmid.qcow2 8M &&
    qio qmid.qcow2 "write -P 0x81 100k 8k" "write -z 1M 128k" "write -c -P 0x82 2M 64k" \
        "discard 0 64k" "write -s rand.bin 6M 200k" &&
    qemu-img create -q -f qcow2 -o cluster_size=512 -b ../qmid.qcow2 -F qcow2 sub/qtop.qcow2 16M &&
    qio sub/qtop.qcow2 "write -P 0x83 1000 3000" "write -z 2M 4k" "write -s rand.bin 3999k 10k" \
        "discard 100k 2k" "write -P 0x84 15M 1k"
if [ $? = 0 ]; then
    check_image qmid.qcow2 "qmid.qcow2 (qcow2 over a shorter qcow2)"
    check_image sub/qtop.qcow2 "sub/qtop.qcow2 (3-deep qcow2 chain, ../ backing name)"
else
    t_fail "qcow2 chain: could not build the images"
fi

# a version 2 image over a qcow2 base; and a backing file named without a
# format (QEMU probes it)
qemu-img create -q -f qcow2 -o compat=0.10 -b qbase.qcow2 -F qcow2 v2top.qcow2 4M &&
    qio v2top.qcow2 "write -P 0x91 0 64k" "write -z 1M 64k" "discard 2M 64k" &&
    check_image v2top.qcow2 "v2top.qcow2 (compat 0.10 over qcow2)" ||
    t_fail "v2top.qcow2: could not build the image"
# (qemu-img 7.2 refuses to write such a header: rename the backing format
# extension to an unknown type, which QEMU ignores)
qemu-img create -q -f qcow2 -b qbase.qcow2 -F qcow2 noformat.qcow2 4M &&
    rename_ext noformat.qcow2 0xe2792aca 0x7e570001 &&
    qio noformat.qcow2 "write -P 0x92 64k 64k" &&
    check_image noformat.qcow2 "noformat.qcow2 (backing file without backing_fmt)" ||
    t_fail "noformat.qcow2: could not build the image"

# ---- external data files ----
for raw in on off; do
    name="df-$raw.qcow2"
    if qemu-img create -q -f qcow2 -o "data_file=df-$raw.data,data_file_raw=$raw" "$name" 16M &&
        populate "$name" 65536 $((16 << 20)) nocompress; then
        check_image "$name" "$name (data_file, data_file_raw=$raw)"
    else
        t_fail "$name: could not build the image"
    fi
done

# ---- internal snapshots, and reading a snapshot's view ----
if qemu-img create -q -f qcow2 -o cluster_size=4096 snap.qcow2 8M &&
    populate snap.qcow2 4096 $((8 << 20)) &&
    qemu-img snapshot -c first snap.qcow2 &&
    qio snap.qcow2 "write -P 0xa1 0 64k" "write -z 1M 1M" "discard 2M 512k" &&
    qemu-img snapshot -c second snap.qcow2 &&
    qio snap.qcow2 "write -s text.bin 100k 300k" "write -c -P 0xa2 7M 8k"; then
    check_image snap.qcow2 "snap.qcow2 (two internal snapshots)"
    t_check "snap.qcow2: convert -l snapshot.name=first equals qemu-img" \
        same_convert snap.qcow2 -l snapshot.name=first
    t_check "snap.qcow2: convert -l snapshot.id=2 equals qemu-img" \
        same_convert snap.qcow2 -l snapshot.id=2
    t_check "snap.qcow2: convert -l second (bare name) equals qemu-img" \
        same_convert snap.qcow2 -l second
else
    t_fail "snap.qcow2: could not build the image"
fi

# a snapshot taken before the image grew (qemu-img keeps the current size),
# and a snapshot in an image with a backing file
if qemu-img create -q -f qcow2 grown.qcow2 4M &&
    qio grown.qcow2 "write -P 0xd1 0 1M" "write -P 0xd2 3M 1M" &&
    qemu-img snapshot -c small grown.qcow2 &&
    qemu-img resize -q grown.qcow2 12M &&
    qio grown.qcow2 "write -P 0xd3 512k 1M" "write -P 0xd4 10M 64k"; then
    check_image grown.qcow2 "grown.qcow2 (resized after a snapshot)"
    t_check "grown.qcow2: convert -l small equals qemu-img" same_convert grown.qcow2 -l small
else
    t_fail "grown.qcow2: could not build the image"
fi
if qemu-img snapshot -c topsnap top.qcow2 &&
    qio top.qcow2 "write -P 0xd5 0 1M" "discard 5M 64k"; then
    check_image top.qcow2 "top.qcow2 (chain, after a snapshot)"
    t_check "top.qcow2: convert -l topsnap (snapshot over a backing chain) equals qemu-img" \
        same_convert top.qcow2 -l topsnap
else
    t_fail "top.qcow2 snapshot: could not build the image"
fi

# ---- raw images, preallocation, odd and zero sizes, bitmaps ----
qemu-img create -q -f raw sparse.raw 8M &&
    qio_fmt raw sparse.raw 'write -s rand.bin 1M 100k' 'write -P 0 3M 64k' \
        'write -P 5 8180k 12k' &&
    check_image sparse.raw "sparse.raw (raw image with holes)" ||
    t_fail "sparse.raw: could not build the image"
for pre in metadata falloc full; do
    qemu-img create -q -f qcow2 -o preallocation=$pre "pre-$pre.qcow2" 8M &&
        qio "pre-$pre.qcow2" "write -P 0xb1 1M 64k" "write -z 2M 64k" &&
        check_image "pre-$pre.qcow2" "pre-$pre.qcow2 (preallocation=$pre)" ||
        t_fail "pre-$pre.qcow2: could not build the image"
done
qemu-img create -q -f qcow2 odd.qcow2 5000000 &&
    qio odd.qcow2 "write -s rand.bin 4900000 99840" "write -P 3 0 100" &&
    check_image odd.qcow2 "odd.qcow2 (size not a cluster multiple)" ||
    t_fail "odd.qcow2: could not build the image"
# a raw file whose length is not a multiple of 512 (QEMU rounds the size
# up to whole sectors), alone and as a backing file
cat rand.bin rand.bin rand.bin rand.bin | head -c 1000001 >odd.raw &&
    check_image odd.raw "odd.raw (raw, 1000001 bytes)" ||
    t_fail "odd.raw: could not build the image"
qemu-img create -q -f qcow2 -b odd.raw -F raw oddtop.qcow2 &&
    qio oddtop.qcow2 "write -P 0x3c 4096 4096" &&
    check_image oddtop.qcow2 "oddtop.qcow2 (over a 1000001-byte raw file)" ||
    t_fail "oddtop.qcow2: could not build the image"
# the corrupt bit set (QEMU still reads such an image read-only)
qemu-img create -q -f qcow2 corrupt.qcow2 4M &&
    populate corrupt.qcow2 65536 $((4 << 20)) &&
    python3 -c '
import struct, sys
with open("corrupt.qcow2", "r+b") as f:
    f.seek(72); v = struct.unpack(">Q", f.read(8))[0]
    f.seek(72); f.write(struct.pack(">Q", v | 2))' &&
    check_image corrupt.qcow2 "corrupt.qcow2 (corrupt bit set)" ||
    t_fail "corrupt.qcow2: could not build the image"
qemu-img create -q -f qcow2 empty.qcow2 0 &&
    check_image empty.qcow2 "empty.qcow2 (zero size)" ||
    t_fail "empty.qcow2: could not build the image"
qemu-img create -q -f qcow2 bitmaps.qcow2 16M &&
    qio bitmaps.qcow2 "write -P 0xc1 0 1M" &&
    qemu-img bitmap --add bitmaps.qcow2 bm0 &&
    qemu-img bitmap --add -g 131072 bitmaps.qcow2 "bm \"one\"" &&
    qemu-img bitmap --add --disable bitmaps.qcow2 bm2 &&
    check_image bitmaps.qcow2 "bitmaps.qcow2 (persistent bitmaps)" ||
    t_fail "bitmaps.qcow2: could not build the image"

t_done
