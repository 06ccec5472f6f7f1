#!/bin/bash
# tests/cli/resize.sh - growing an image (qinspect resize, img:resize)
# against qemu-img resize.
#
# For a matrix of images made by qemu-img/qemu-io (cluster sizes 512 B,
# 64 KiB and 2 MiB; refcount widths 1, 16 and 64; compat 0.10 and 1.1; a
# snapshot made by qemu-img snapshot -c; a resize whose new L1 table makes
# the refcount table grow; an image of size 0): the image is copied, one
# copy resized by qinspect and the other by qemu-img resize. Then
# `qemu-img check` is clean, the virtual size (qemu-img info) and the
# header's l1_size equal qemu-img's result, the guest view equals the data
# before the resize (the new range reads as zeros: qemu-img compare against
# the old raw view) and the qemu-img copy, a snapshot still reads as before,
# and after writing past the old end (img:write on one copy, qemu-io write
# on the other) both copies stay equal and clean. Shrinking (--shrink, and
# img:resize(size, {shrink=true})) is compared with qemu-img resize --shrink
# on a copy: the files byte for byte (cmp: QEMU's shrink is deterministic),
# qemu-img check clean, the guest view equal to the old one cut at the new
# size. Errors (shrinking without --shrink, a size
# that is not a multiple of 512, beyond QEMU's L1 limit, a read-only image,
# features resize does not handle) fail with a clear message and leave the
# file unchanged.
T_DIR=$(cd "$(dirname "$0")" && pwd)
. "$T_DIR/lib.sh"

qio() { qemu-io -f qcow2 "$@" >/dev/null || { t_fail "setup: qemu-io $*"; return 1; }; }

# hdr FIELD IMG: a header field read with python3 (not through qinspect).
hdr() {
    python3 - "$1" "$2" <<'EOF'
import struct, sys
d = open(sys.argv[2], "rb").read(72)
f = {"size": (24, ">Q"), "l1_size": (36, ">I"), "l1_table_offset": (40, ">Q"),
     "refcount_table_clusters": (56, ">I")}[sys.argv[1]]
print(struct.unpack(f[1], d[f[0]:f[0] + struct.calcsize(f[1])])[0])
EOF
}

vsize() { qemu-img info --output=json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])'; }

# same_value DESC A B: one test, A equal to B.
same_value() {
    if [ "$2" = "$3" ]; then t_ok "$1 ($2)"; else t_fail "$1: qinspect $2, qemu-img $3"; fi
}

# run_case NAME SIZEARG WOFF WLEN [SNAPSHOT]: NAME.qcow2 made by the caller.
# Resize a copy with qinspect and one with qemu-img to SIZEARG, compare,
# then write WLEN bytes of 0xa7 at WOFF (past the old end) on both.
run_case() {
    local name=$1 size=$2 woff=$3 wlen=$4 snap=${5:-} out
    qemu-img convert -O raw "$name.qcow2" "$name.old.raw" || { t_fail "$name: setup convert"; return; }
    [ -z "$snap" ] || qemu-img convert -O raw -l "$snap" "$name.qcow2" "$name.snap.raw" ||
        { t_fail "$name: setup convert -l"; return; }
    cp "$name.qcow2" "$name.e.qcow2"
    qemu-img resize -q "$name.e.qcow2" "$size" || { t_fail "$name: oracle: qemu-img resize $size"; return; }
    if out=$("$QINSPECT" resize "$name.qcow2" "$size" 2>&1) && [ "$out" = "Image resized." ]; then
        t_ok "$name: qinspect resize $size"
    else
        t_fail "$name: qinspect resize $size"
        printf '%s\n' "$out" | t_diag
        return
    fi
    t_check "$name: qemu-img check is clean after the resize" qemu-img check "$name.qcow2"
    same_value "$name: virtual size equals qemu-img's" "$(vsize "$name.qcow2")" "$(vsize "$name.e.qcow2")"
    same_value "$name: header l1_size equals qemu-img's" "$(hdr l1_size "$name.qcow2")" \
        "$(hdr l1_size "$name.e.qcow2")"
    t_check "$name: the old data reads the same, the new range as zeros" \
        qemu-img compare -f qcow2 -F raw "$name.qcow2" "$name.old.raw"
    t_check "$name: the guest view equals qemu-img's resized copy" \
        qemu-img compare "$name.qcow2" "$name.e.qcow2"
    if [ -n "$snap" ]; then
        # qemu-img shows a snapshot at the image's size now (zeros past its own)
        if qemu-img convert -O raw -l "$snap" "$name.qcow2" "$name.snap2.raw" &&
            qemu-img convert -O raw -l "$snap" "$name.e.qcow2" "$name.snap3.raw"; then
            t_check "$name: snapshot $snap reads as before" \
                qemu-img compare -f raw -F raw "$name.snap2.raw" "$name.snap.raw"
            t_check "$name: snapshot $snap reads as in qemu-img's copy" \
                cmp "$name.snap2.raw" "$name.snap3.raw"
        else
            t_fail "$name: qemu-img convert -l $snap after the resize"
        fi
    fi
    if out=$("$QINSPECT" -w -e "img:write($woff, string.rep('\\xa7', $wlen))" "$name.qcow2" 2>&1); then
        t_ok "$name: img:write of $wlen bytes at $woff (past the old end)"
    else
        t_fail "$name: img:write of $wlen bytes at $woff (past the old end)"
        printf '%s\n' "$out" | t_diag
    fi
    qio -c "write -P 0xa7 $woff $wlen" "$name.e.qcow2"
    t_check "$name: qemu-img check is clean after the write" qemu-img check "$name.qcow2"
    t_check "$name: qemu-img compare: equal to qemu-io's write on qemu-img's copy" \
        qemu-img compare "$name.qcow2" "$name.e.qcow2"
}

# ---- the matrix ----
for bits in 1 16 64; do
    # 512-byte clusters: one L1 entry maps 32 KiB, so the L1 grows by many
    # clusters (kept within one refcount block's range, see the errors)
    qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=$bits c512-rc$bits.qcow2 1M
    qio -c 'write -P 0x11 0 300k' -c 'write -P 0x12 1000k 24k' c512-rc$bits.qcow2
    run_case c512-rc$bits 100M $((99 << 20)) 70000
    qemu-img create -q -f qcow2 -o refcount_bits=$bits c64k-rc$bits.qcow2 100M
    qio -c 'write -P 0x21 0 1M' -c 'write -P 0x22 99M 1M' c64k-rc$bits.qcow2
    run_case c64k-rc$bits 10G $((9 << 30)) 200000
    qemu-img create -q -f qcow2 -o cluster_size=2M,refcount_bits=$bits c2m-rc$bits.qcow2 100M
    qio -c 'write -P 0x31 0 3M' c2m-rc$bits.qcow2
    run_case c2m-rc$bits 2T $((1536 << 30)) 3000000
done

# relative size, and a resize that stays within the L1 table (only the size
# field changes)
qemu-img create -q -f qcow2 rel.qcow2 1G
qio -c 'write -P 0x41 1020M 4M' rel.qcow2
run_case rel +3G $((3 << 30)) 100000
qemu-img create -q -f qcow2 same-l1.qcow2 100M
qio -c 'write -P 0x42 0 1M' same-l1.qcow2
run_case same-l1 300M $((299 << 20)) 65536

# compat 0.10 (version 2 header), 64 KiB and 512-byte clusters
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 10M
qio -c 'write -P 0x51 0 2M' v2.qcow2
run_case v2 5G $((4 << 30)) 100000
qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=512 v2-c512.qcow2 1M
qio -c 'write -P 0x52 0 500k' v2-c512.qcow2
run_case v2-c512 64M $((60 << 20)) 5000

# snapshots made by qemu-img: the snapshot keeps its own L1 table
qemu-img create -q -f qcow2 snap.qcow2 1G
qio -c 'write -P 0x61 0 4M' snap.qcow2
qemu-img snapshot -c s1 snap.qcow2
qio -c 'write -P 0x62 1M 1M' snap.qcow2
run_case snap 20G $((19 << 30)) 100000 s1

# the new L1 table lies past what one refcount table cluster covers (64-bit
# refcounts in 512-byte clusters: 2 MiB), so the refcount table grows too
qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=64 rtgrow.qcow2 4M
qio -c 'write -P 0x71 0 1975k' rtgrow.qcow2
run_case rtgrow 120M $((100 << 20)) 3000
rt=$(hdr refcount_table_clusters rtgrow.qcow2)
if [ "$rt" -gt 1 ]; then t_ok "rtgrow: the refcount table grew to $rt clusters"
else t_fail "rtgrow: the refcount table grew (still $rt cluster)"; fi

# an image of size 0 has an empty L1 table (l1_size 0)
qemu-img create -q -f qcow2 empty.qcow2 0
run_case empty 1M 4096 10000

# the Lua API: img:resize then a write in the same session, in bytes
qemu-img create -q -f qcow2 lua.qcow2 64M
qio -c 'write -P 0x81 0 1M' lua.qcow2
cp lua.qcow2 lua.e.qcow2
if out=$("$QINSPECT" -w -e 'img:resize(3 << 30) assert(img.size == 3 << 30)
    img:write((3 << 30) - 70000, string.rep("\x99", 70000))' lua.qcow2 2>&1); then
    t_ok "lua: img:resize(3 GiB), img.size follows, write at the new end"
else
    t_fail "lua: img:resize(3 GiB), img.size follows, write at the new end"
    printf '%s\n' "$out" | t_diag
fi
qemu-img resize -q lua.e.qcow2 3G
qio -c "write -P 0x99 $(((3 << 30) - 70000)) 70000" lua.e.qcow2
t_check "lua: qemu-img check is clean" qemu-img check lua.qcow2
t_check "lua: equal to qemu-img resize + qemu-io write" qemu-img compare lua.qcow2 lua.e.qcow2
same_value "lua: header l1_size equals qemu-img's" "$(hdr l1_size lua.qcow2)" "$(hdr l1_size lua.e.qcow2)"

# ---- errors: a clear message, exit status 1, the file unchanged ----

# ---- shrinking ----

# shrink_case NAME SIZEARG: NAME.qcow2 made by the caller. qemu-img resize
# --shrink on a copy, qinspect resize --shrink on the image: the same bytes.
shrink_case() {
    local name=$1 size=$2 out nsz
    qemu-img convert -O raw "$name.qcow2" "$name.old.raw" || { t_fail "$name: setup convert"; return; }
    cp "$name.qcow2" "$name.e.qcow2"
    qemu-img resize -q --shrink "$name.e.qcow2" -- "$size" ||
        { t_fail "$name: oracle: qemu-img resize --shrink $size"; return; }
    if out=$("$QINSPECT" resize --shrink "$name.qcow2" "$size" 2>&1) &&
        [ "$out" = "Image resized." ]; then
        t_ok "$name: qinspect resize --shrink $size"
    else
        t_fail "$name: qinspect resize --shrink $size"
        printf '%s\n' "$out" | t_diag
        return
    fi
    t_check "$name: qemu-img check is clean after the shrink" qemu-img check "$name.qcow2"
    nsz=$(vsize "$name.e.qcow2")
    same_value "$name: virtual size equals qemu-img's" "$(vsize "$name.qcow2")" "$nsz"
    truncate -s "$nsz" "$name.old.raw"
    t_check "$name: the data below the new size is unchanged" \
        qemu-img compare -f qcow2 -F raw "$name.qcow2" "$name.old.raw"
    t_check "$name: byte for byte qemu-img's shrunk copy" cmp "$name.qcow2" "$name.e.qcow2"
}

# 512-byte clusters, 16-bit refcounts: a refcount block covers 128 KiB, so
# the blocks past the cut are dropped; the new size inside a cluster
qemu-img create -q -f qcow2 -o cluster_size=512 s512.qcow2 8M
qio -c 'write -P 0x11 0 300k' -c 'write -P 0x12 1000k 3M' -c 'write -P 0x13 7M 1M' s512.qcow2
shrink_case s512 $((1100 * 1024 + 512))
for bits in 1 64; do
    qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=$bits s512-rc$bits.qcow2 4M
    qio -c 'write -P 0x14 0 1M' -c 'write -P 0x15 3M 1M' s512-rc$bits.qcow2
    shrink_case s512-rc$bits 2M
done
# 64 KiB clusters: an L1 entry kept without an L2 table gets an empty one
# (QEMU's discard allocates it); relative sizes
qemu-img create -q -f qcow2 s64k.qcow2 3G
qio -c 'write -P 0x21 0 1M' -c 'write -P 0x22 2560M 64k' s64k.qcow2
shrink_case s64k 1500M
qemu-img create -q -f qcow2 s64k-l2.qcow2 3G
qio -c 'write -P 0x23 0 1M' -c 'write -P 0x24 1G 1M' -c 'write -P 0x25 2G 64k' s64k-l2.qcow2
shrink_case s64k-l2 -1600M
qemu-img create -q -f qcow2 s64k-odd.qcow2 100M
qio -c 'write -P 0x26 0 10M' -c 'write -P 0x27 60M 20M' s64k-odd.qcow2
shrink_case s64k-odd $((65 * 1024 * 1024 + 4608))
# 2 MiB clusters
qemu-img create -q -f qcow2 -o cluster_size=2M s2m.qcow2 10G
qio -c 'write -P 0x31 0 5M' -c 'write -P 0x32 6G 3M' -c 'write -P 0x33 9G 1M' s2m.qcow2
shrink_case s2m 5G
# compressed clusters past the cut (and below it)
qemu-img create -q -f qcow2 scomp.qcow2 64M
qio -c 'write -c -P 0x41 0 1M' -c 'write -c -P 0x42 40M 2M' -c 'write -P 0x43 50M 1M' scomp.qcow2
shrink_case scomp 20M
# snapshots (version 3: allowed; the shared L2 tables past the cut are
# copied before their entries go, as QEMU's discard does)
qemu-img create -q -f qcow2 ssnap.qcow2 2G
qio -c 'write -P 0x61 0 4M' -c 'write -P 0x62 1500M 4M' ssnap.qcow2
qemu-img snapshot -c s1 ssnap.qcow2
qio -c 'write -P 0x63 1M 1M' -c 'write -P 0x64 1501M 64k' ssnap.qcow2
shrink_case ssnap 600M
# version 2 without snapshots; extended L2; lazy refcounts
qemu-img create -q -f qcow2 -o compat=0.10 sv2.qcow2 1G
qio -c 'write -P 0x51 0 2M' -c 'write -P 0x52 700M 2M' sv2.qcow2
shrink_case sv2 300M
qemu-img create -q -f qcow2 -o extended_l2=on sext.qcow2 1G
qio -c 'write -P 0x71 0 7k' -c 'write -P 0x72 1M 3k' -c 'write -P 0x73 600M 5k' \
    -c 'write -z 800M 64k' sext.qcow2
shrink_case sext $((1024 * 1024 + 2048))
qemu-img create -q -f qcow2 -o lazy_refcounts=on slazy.qcow2 1G
qio -c 'write -P 0x81 0 2M' -c 'write -P 0x82 900M 2M' slazy.qcow2
shrink_case slazy 500M
# refused as by qemu-img: a version 2 image with a snapshot
qemu-img create -q -f qcow2 -o compat=0.10 ssnap-v2.qcow2 8M
qemu-img snapshot -c s1 ssnap-v2.qcow2
cp ssnap-v2.qcow2 ssnap-v2-oracle.qcow2
oracle_fails "shrinking a version 2 image with a snapshot" \
    qemu-img resize --shrink ssnap-v2-oracle.qcow2 4M

# the Lua API: img:resize(size, {shrink=true})
qemu-img create -q -f qcow2 slua.qcow2 1G
qio -c 'write -P 0x91 0 1M' -c 'write -P 0x92 800M 1M' slua.qcow2
cp slua.qcow2 slua.e.qcow2
if out=$("$QINSPECT" -w -e 'img:resize(100 << 20, {shrink=true}) assert(img.size == 100 << 20)' \
    slua.qcow2 2>&1); then
    t_ok "lua: img:resize(100 MiB, {shrink=true}), img.size follows"
else
    t_fail "lua: img:resize(100 MiB, {shrink=true}), img.size follows"
    printf '%s\n' "$out" | t_diag
fi
qemu-img resize -q --shrink slua.e.qcow2 100M
t_check "lua: qemu-img check is clean after the shrink" qemu-img check slua.qcow2
t_check "lua: byte for byte qemu-img resize --shrink" cmp slua.qcow2 slua.e.qcow2

# refused NAME DESC PATTERN CMD...: CMD fails (exit 1, no sanitizer report),
# its stderr matches PATTERN, NAME.qcow2 is byte for byte unchanged.
refused() {
    local name=$1 desc=$2 pat=$3 rc
    shift 3
    cp "$name.qcow2" "$name.before"
    "$@" >"$name.out" 2>"$name.err"
    rc=$?
    if [ $rc -eq 1 ] && ! sanitizer_report "$name.err" && grep -qE "$pat" "$name.err" &&
        cmp -s "$name.qcow2" "$name.before"; then
        t_ok "$name: $desc is refused, the file unchanged"
    else
        t_fail "$name: $desc is refused, the file unchanged (exit $rc)"
        cat "$name.err" | t_diag
        cmp "$name.qcow2" "$name.before" 2>&1 | t_diag
    fi
}

# oracle_fails DESC CMD...: qemu-img refuses too (the case is an error there).
oracle_fails() {
    local desc=$1
    shift
    if "$@" >/dev/null 2>&1; then t_fail "oracle: qemu-img refuses $desc"
    else t_ok "oracle: qemu-img refuses $desc"; fi
}

qemu-img create -q -f qcow2 err.qcow2 100M
qio -c 'write -P 0x91 0 1M' err.qcow2
cp err.qcow2 err-oracle.qcow2
# a smaller size without --shrink: qemu-img's refusal and warning
refused err "shrinking (50M) without --shrink" \
    '^qinspect: Use the --shrink option to perform a shrink operation\.$' \
    "$QINSPECT" resize err.qcow2 50M
oracle_fails "shrinking without --shrink" qemu-img resize err-oracle.qcow2 50M
refused err "a relative shrink (-1M) without --shrink" "^qinspect: warning: Shrinking an \
image will delete all data beyond the shrunken image's end" "$QINSPECT" resize err.qcow2 -1M
refused err "a size of 0 (--shrink)" '^qinspect: New image size must be positive$' \
    "$QINSPECT" resize --shrink err.qcow2 0
refused err "a relative size below 0 (--shrink -200M)" '^qinspect: New image size must be positive$' \
    "$QINSPECT" resize --shrink err.qcow2 -200M
oracle_fails "--shrink to a size below 0" qemu-img resize --shrink err-oracle.qcow2 -- -200M
refused err "a size not a multiple of 512" 'not a multiple of 512' "$QINSPECT" resize err.qcow2 104858000
oracle_fails "a size not a multiple of 512" qemu-img resize err-oracle.qcow2 104858000
refused err "img:resize on a read-only image" 'image opened read-only; reopen with -w' \
    "$QINSPECT" -e 'img:resize(200 << 20)' err.qcow2
refused err "img:resize shrinking without {shrink=true}" 'use the shrink option' \
    "$QINSPECT" -w -e 'img:resize(1 << 20)' err.qcow2
# beyond QEMU's limit of 4194304 L1 entries (32 MiB): 64 KiB clusters map
# 512 MiB per entry, so 2 PiB is the most; 512-byte clusters 128 GiB
refused err "a size beyond QEMU's L1 limit (3P)" 'beyond the limit of 4194304 entries' \
    "$QINSPECT" resize err.qcow2 3P
oracle_fails "3P (L1 beyond 32 MiB)" qemu-img resize err-oracle.qcow2 3P
qemu-img create -q -f qcow2 -o cluster_size=512 big512.qcow2 1M
cp big512.qcow2 big512-oracle.qcow2
refused big512 "1T with 512-byte clusters (beyond QEMU's L1 limit)" 'beyond the limit' \
    "$QINSPECT" resize big512.qcow2 1T
oracle_fails "1T with 512-byte clusters" qemu-img resize big512-oracle.qcow2 1T
# L1 tables longer than one refcount block's range: the allocator finds
# the run over ranges without blocks and places their blocks after it, as
# QEMU does (16-bit refcounts: 256 clusters a block, the 128G table is
# 65536 clusters; 64-bit: 64 clusters a block, and the table grows too)
run_case big512 128G $((127 << 30)) 70000
qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=64 long64.qcow2 1M
qio -c 'write -P 0x13 0 200k' long64.qcow2
run_case long64 2G $((2047 << 20)) 5000

# features resize does not handle
qemu-img create -q -f qcow2 -o data_file=ext.raw ext.qcow2 10M
refused ext "an image with an external data file" 'external data file' \
    "$QINSPECT" resize ext.qcow2 20M
qemu-img create -q -f qcow2 bmp.qcow2 10M
qemu-img bitmap --add bmp.qcow2 b0 || t_fail "setup: qemu-img bitmap --add"
refused bmp "an image with a persistent bitmap" 'persistent dirty bitmaps' \
    "$QINSPECT" resize bmp.qcow2 20M
qemu-img create -q -f qcow2 -o compat=0.10 snap-v2.qcow2 8M
qio -c 'write -P 0x63 0 1M' snap-v2.qcow2
qemu-img snapshot -c s1 snap-v2.qcow2
cp snap-v2.qcow2 snap-v2-oracle.qcow2
refused snap-v2 "a version 2 image with a snapshot" 'snapshots and a version 2' \
    "$QINSPECT" resize snap-v2.qcow2 1G
refused ssnap-v2 "shrinking a version 2 image with a snapshot" 'snapshots and a version 2' \
    "$QINSPECT" resize --shrink ssnap-v2.qcow2 4M
oracle_fails "a version 2 image with a snapshot" qemu-img resize snap-v2-oracle.qcow2 1G
qemu-img create -q -f raw longback.raw 64M
qemu-img create -q -f qcow2 -b longback.raw -F raw longtop.qcow2 16M
refused longtop "an image whose backing file is longer" 'backing file' \
    "$QINSPECT" resize longtop.qcow2 32M
# exit status 2 for usage errors, like the other subcommands
for args in "err.qcow2" "err.qcow2 12Q" "err.qcow2 1G+1"; do
    "$QINSPECT" resize $args >/dev/null 2>err.usage
    rc=$?
    if [ $rc -eq 2 ] && cmp -s err.qcow2 err.before; then
        t_ok "resize $args is a usage error (exit 2)"
    else
        t_fail "resize $args is a usage error (exit $rc)"
        t_diag <err.usage
    fi
done

t_done
