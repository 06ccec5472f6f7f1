#!/bin/bash
# tests/crash/run.sh - crash tests of the write paths (SQLite's test6.c idea).
#
# Each scenario is one guest operation (a Lua chunk run in a -w session) on
# an image made by qemu-img/qemu-io. First the operation runs to the end
# with fault injection counting its writes (W). Then, for every N in 0..W-1
# and in two modes, it runs again on a fresh copy with QINSPECT_FAULT=N
# (the process stops writing at write N+1) and QINSPECT_FAULT=N,drop (and
# every write not yet synced is lost, as a disk cache would be). After each
# stop: `qemu-img check` reports no corruption (exit 0, or 3 = leaks only),
# and every guest cluster reads as before the operation or as after it
# (compared with qemu-img convert -O raw of the image before and after).
# One TAP line per scenario and mode.
# A scenario with the third argument dirty-ok runs under lazy refcounts or
# rebuilds a dirty image: there a crash may leave refcounts below the
# references by design, so the criterion is instead: qemu-img check finds
# no corruption unless the dirty bit is set; and both ways of repairing the
# image, `qemu-img check -r all` and a `qinspect -w` open (which rebuilds
# the refcounts of a dirty image), leave it clean (check exit 0), not
# dirty, every cluster old or new.
T_DIR=$(cd "$(dirname "$0")/../cli" && pwd)
CRASH_DIR=$(cd "$(dirname "$0")" && pwd)
. "$T_DIR/lib.sh"

qio() { qemu-io -f qcow2 "$@" >/dev/null || { t_fail "setup: qemu-io $*"; return 1; }; }

# writes CHUNK IMG: run CHUNK with fault injection counting, print W.
count_writes() {
    QINSPECT_FAULT=1000000000 "$QINSPECT" -w -e "$1" "$2" 2>&1 >/dev/null |
        sed -n 's/^qinspect: fault injection: \([0-9]*\) writes$/\1/p'
}

# restore NAME COPY: COPY = NAME.base, and an external data file NAME.data
# (named so in the header) back to NAME.data.orig when the image has one.
restore() {
    cp "$1.base" "$2"
    if [ -f "$1.data.orig" ]; then cp "$1.data.orig" "$1.data"; fi
}

# crash_ok NAME IMG: the criterion of a plain scenario for IMG; prints why
# not (empty when it holds).
crash_ok() {
    local name=$1 img=$2 rc out
    qemu-img check "$img" >"$name.check" 2>&1
    rc=$?
    if [ $rc -ne 0 ] && [ $rc -ne 3 ]; then
        echo "qemu-img check exit $rc: $(grep -m3 -E 'ERROR|Corrupt|corrupt' "$name.check" | tr '\n' ' ')"
        return
    fi
    qemu-img convert -O raw "$img" "$name.got" 2>/dev/null &&
        out=$(python3 "$CRASH_DIR/clusters.py" "$name.old" "$name.new" "$name.got" "$cs") ||
        echo "$out"
}

# repaired_ok NAME IMG HOW: IMG after repair by HOW is clean (exit 0, no
# leak), not dirty, each cluster old or new.
repaired_ok() {
    local name=$1 img=$2 how=$3 out
    if ! qemu-img check "$img" >"$name.check" 2>&1; then
        echo "after $how: qemu-img check: $(grep -m3 -E 'ERROR|Leaked|error' "$name.check" | tr '\n' ' ')"
    elif qemu-img info --output=json "$img" | grep -q '"dirty-flag": true'; then
        echo "after $how: still dirty"
    elif ! qemu-img convert -O raw "$img" "$name.got" 2>/dev/null ||
         ! out=$(python3 "$CRASH_DIR/clusters.py" "$name.old" "$name.new" "$name.got" "$cs"); then
        echo "after $how: $out"
    fi
}

# dirty_ok NAME IMG: the criterion of a dirty-ok scenario. With the dirty
# bit clear (a crash before the first lazy write) it is crash_ok's.
dirty_ok() {
    local name=$1 img=$2 rc why
    if ! qemu-img info --output=json "$img" | grep -q '"dirty-flag": true'; then
        crash_ok "$name" "$img"
        return
    fi
    qemu-img check "$img" >"$name.check" 2>&1
    rc=$?
    if [ $rc -ne 0 ] && [ $rc -ne 3 ] &&
       ! qemu-img info --output=json "$img" | grep -q '"dirty-flag": true'; then
        echo "qemu-img check exit $rc and the dirty bit is clear: $(grep -m3 -E 'ERROR|Corrupt|corrupt' "$name.check" | tr '\n' ' ')"
        return
    fi
    cp "$img" "$name.fix"
    if ! qemu-img check -r all "$name.fix" >"$name.check" 2>&1; then
        echo "qemu-img check -r all failed: $(tail -3 "$name.check" | tr '\n' ' ')"
        return
    fi
    why=$(repaired_ok "$name" "$name.fix" "qemu-img check -r all")
    [ -n "$why" ] && { echo "$why"; return; }
    cp "$img" "$name.fix"
    if ! "$QINSPECT" -w -e '' "$name.fix" >"$name.check" 2>&1; then
        echo "qinspect -w open failed: $(head -3 "$name.check" | tr '\n' ' ')"
        return
    fi
    repaired_ok "$name" "$name.fix" "a qinspect -w open"
}

# copied_ok NAME IMG: the criterion of the snapshot scenarios. qemu-img
# check counts a COPIED flag missing on an active entry whose refcount is 1
# as a corruption, but it is the safe direction (STYLE convention 7: the
# cluster is copied on the next write instead of written in place), and
# snapshot create (COPIED cleared before the refcounts go up) and delete
# (refcounts down to 1 before COPIED is set again) cannot avoid a moment
# with it: COPIED and the refcount live in different clusters. QEMU's own
# order has the unsafe direction there (COPIED set with refcount 2). So:
# every error qemu-img check reports is of that safe kind (an entry without
# bit 63, refcount=1), `qemu-img check -r all` leaves the image clean, and
# crash_ok holds for the repaired image.
copied_ok() {
    local name=$1 img=$2 rc bad
    qemu-img check "$img" >"$name.check" 2>&1
    rc=$?
    if [ $rc -eq 2 ]; then
        bad=$(grep -E 'ERROR|Corrupt|corrupt' "$name.check" | grep -vE \
            '^ERROR OFLAG_COPIED (data|L2) cluster: (l1_index=[0-9]+ )?l[12]_entry=[0-7]?[0-9a-f]{0,15} refcount=1$' |
            grep -v 'Data may be corrupted, or further writes to the image may corrupt it' |
            grep -vE '^[0-9]+ errors were found on the image')
        [ -n "$bad" ] && { echo "qemu-img check: $(echo "$bad" | head -3 | tr '\n' ' ')"; return; }
        cp "$img" "$name.fix"
        qemu-img check -q -r all "$name.fix" >/dev/null 2>&1
        qemu-img check "$name.fix" >"$name.check" 2>&1 ||
            { echo "after qemu-img check -r all: $(grep -m3 -E 'ERROR|Leak' "$name.check" | tr '\n' ' ')"; return; }
        img=$name.fix
    fi
    crash_ok "$name" "$img"
}

# repair_ok NAME IMG: the criterion of the repair scenarios (check -r on a
# damaged image): every error qemu-img check reports after the crash was
# there before the repair (NAME.base.err) or is COPIED missing at refcount
# 1 (the safe direction, as copied_ok); `qemu-img check -r all` then leaves
# the image clean, and crash_ok holds for it (the guest data is the same).
repair_ok() {
    local name=$1 img=$2 bad
    qemu-img check "$img" >"$name.check" 2>&1
    bad=$(grep -E '^ERROR' "$name.check" | grep -vxF -f "$name.base.err" | grep -vE \
        '^ERROR OFLAG_COPIED (data|L2) cluster: (l1_index=[0-9]+ )?l[12]_entry=[0-7]?[0-9a-f]{0,15} refcount=1$')
    [ -n "$bad" ] && { echo "qemu-img check, new errors: $(echo "$bad" | head -3 | tr '\n' ' ')"; return; }
    cp "$img" "$name.fix"
    # damage qemu-img cannot repair (an entry past the end of the file):
    # running our repair again must finish it
    if [ "${REPAIR_AGAIN:-}" ]; then
        "$QINSPECT" check -r all "$name.fix" >/dev/null 2>&1
    else
        qemu-img check -q -r all "$name.fix" >/dev/null 2>&1
    fi
    qemu-img check "$name.fix" >"$name.check" 2>&1 ||
        { echo "after ${REPAIR_AGAIN:+qinspect}${REPAIR_AGAIN:-qemu-img} check -r all: $(grep -m3 -E 'ERROR|Leak' "$name.check" | tr '\n' ' ')"; return; }
    crash_ok "$name" "$name.fix"
}

# scenario NAME CHUNK [CHECK | dirty-ok] [copied-ok | repair-ok]: BASE is $NAME.base (made by the
# caller). CHECK, a command, is also run after each stop as CHECK BASE IMG
# OLD GOT (OLD, GOT: raw guest data before and after), and after the
# uninterrupted run with --closed appended. dirty-ok: the criterion of lazy
# refcounts (dirty_ok) instead of crash_ok.
# CRASH_ONLY="name ..." runs only those scenarios.
scenario() {
    local name=$1 chunk=$2 mode=${3:-} crit=${4:-} extra="" w n fmode cs fails why what out
    case " ${CRASH_ONLY:-$name} " in *" $name "*) ;; *) return ;; esac
    if [ -n "$mode" ] && [ "$mode" != dirty-ok ]; then extra=$mode; mode=""; fi
    # the unit a crash may leave old or new: the cluster, or with extended
    # L2 entries the subcluster (a write over several subclusters of one
    # cluster lands in place before the bitmap says they are allocated)
    cs=$(qemu-img info -U --output=json "$name.base" | python3 -c 'import json,sys
i = json.load(sys.stdin)
print(i["cluster-size"] // (32 if i.get("format-specific", {}).get("data", {}).get("extended-l2") else 1))')
    if [ -f "$name.data.orig" ]; then cp "$name.data.orig" "$name.data"; fi
    qemu-img convert -O raw "$name.base" "$name.old" || { t_fail "$name: setup convert"; return; }
    restore "$name" "$name.full"
    w=$(count_writes "$chunk" "$name.full")
    if [ -z "$w" ] || [ "$w" -lt 1 ]; then
        t_fail "$name: the operation writes (W=$w)"
        return
    fi
    qemu-img check -q "$name.full" && qemu-img convert -O raw "$name.full" "$name.new" ||
        { t_fail "$name: the uninterrupted operation leaves a clean image"; return; }
    [ -z "$extra" ] || out=$($extra "$name.base" "$name.full" "$name.old" "$name.new" --closed) ||
        { t_fail "$name: the uninterrupted operation passes $extra"; printf '%s\n' "$out" | t_diag; return; }
    what="no corruption"
    [ "$mode" = dirty-ok ] && what="corruption only under the dirty bit, both repairs clean"
    [ "$crit" = copied-ok ] && what="no corruption but COPIED missing at refcount 1 (check -r all clean)"
    if [ "$crit" = repair-ok ]; then
        what="no new corruption but COPIED missing at refcount 1 (check -r all clean)"
        qemu-img check "$name.base" 2>&1 | grep -E '^ERROR' >"$name.base.err"
        echo 'no line' >>"$name.base.err"
    fi
    for fmode in "" ",drop"; do
        fails=""
        for n in $(seq 0 $((w - 1))); do
            restore "$name" "$name.img"
            QINSPECT_FAULT="$n$fmode" "$QINSPECT" -w -e "$chunk" "$name.img" >/dev/null 2>&1
            if [ "$mode" = dirty-ok ]; then why=$(dirty_ok "$name" "$name.img")
            elif [ "$crit" = copied-ok ]; then why=$(copied_ok "$name" "$name.img")
            elif [ "$crit" = repair-ok ]; then why=$(repair_ok "$name" "$name.img")
            else why=$(crash_ok "$name" "$name.img"); fi
            [ -n "$why" ] && fails="$fails
N=$n: $why"
            if [ -n "$extra" ] && [ -z "$why" ]; then
                out=$($extra "$name.base" "$name.img" "$name.old" "$name.got" 2>&1) ||
                    fails="$fails
N=$n: $out"
            fi
        done
        if [ -z "$fails" ]; then
            t_ok "$name: a crash at each of the $w writes${fmode:+ (unsynced writes lost)} leaves $what, each cluster old or new"
        else
            t_fail "$name: a crash at each of the $w writes${fmode:+ (unsynced writes lost)} leaves $what, each cluster old or new"
            printf '%s\n' "$fails" | sed '/^$/d' | head -12 | t_diag
        fi
    done
}

# allocating writes into an empty image: new L2 table, data, refcounts
qemu-img create -q -f qcow2 alloc.base 16M
scenario alloc 'img:write(70000, string.rep("a", 200000))'

# whole-cluster runs (write_run: one allocation and one write for clusters
# without a host cluster), broken by an allocated cluster and a zero-alloc
# one, past a refcount block's range (4 KiB clusters, 2048 per block), and
# over zero subclusters with extended L2
qemu-img create -q -f qcow2 -o cluster_size=4096 runs.base 32M
qio -c 'write -P 0x21 40k 4k' -c 'write -P 0x22 60k 4k' -c 'write -z 60k 4k' -c 'write -z 100k 8k' runs.base
scenario runs 'img:write(0, string.rep("r", 9 << 20)) img:write(12 << 20, string.rep("s", 8192))'
qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=32k runsx.base 8M
qio -c 'write -z 64k 64k' -c 'write -P 0x23 200k 4k' runsx.base
scenario runsx 'img:write(32768, string.rep("t", 1 << 20))'

# writes in place (clusters already ours, COPIED set)
qemu-img create -q -f qcow2 inplace.base 16M
qio -c 'write -P 0x11 0 1M' inplace.base
scenario inplace 'img:write(1000, string.rep("b", 300000))'

# copy-on-write from the backing file (partial clusters)
qemu-img create -q -f raw back.raw 16M
qemu-io -f raw -c 'write -P 0x21 0 16M' back.raw >/dev/null
qemu-img create -q -f qcow2 -b back.raw -F raw cowback.base
scenario cowback 'img:write(100, string.rep("c", 150000))'

# copy-on-write from clusters a qemu-img snapshot shares (L2 table copied)
qemu-img create -q -f qcow2 shared.base 16M
qio -c 'write -P 0x31 0 2M' shared.base
qemu-img snapshot -c s1 shared.base
scenario shared 'img:write(5000, string.rep("d", 140000))'

# copy-on-write from compressed clusters (decompress, merge, write)
qemu-img create -q -f qcow2 comp.base 16M
qio -c 'write -c -P 0x41 0 64k' -c 'write -c -P 0x42 64k 64k' -c 'write -c -P 0x43 128k 64k' comp.base
scenario comp 'img:write(30000, string.rep("e", 100000))'

# zero clusters, plain and allocated
qemu-img create -q -f qcow2 zero.base 16M
qio -c 'write -P 0x51 0 512k' -c 'write -z 0 128k' -c 'write -z -u 256k 128k' zero.base
scenario zero 'img:write(60000, string.rep("f", 300000))'

# 512-byte clusters: a new refcount block (self-describing) on the way.
# A block counts 256 clusters; qemu-io's data fills the first block almost
# to its end, so the write's clusters need the second one.
qemu-img create -q -f qcow2 -o cluster_size=512 small.base 2M
qio -c 'write -P 0x61 0 110k' small.base
scenario small 'img:write(200000, string.rep("g", 16000))'

# growth of the refcount table: 64-bit refcounts in 512-byte clusters give
# a one-cluster table 64 blocks of 64 clusters (2 MiB); qemu-io fills it
# nearly to that end, and the write needs clusters past it
qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=64 grow.base 4M
qio -c 'write -P 0x61 0 1975k' grow.base
scenario grow 'img:write(3 << 20, string.rep("h", 8000))'

# compressed writes (img:write_compressed, QEMU's write_compressed): byte
# packing after the previous compressed cluster, data running on into the
# next host cluster, the uncompressed fallback (random data), a plain zero
# cluster as target. MIX(seed): a cluster of 28000 repeated bytes and 37536
# random ones (about 38 KB compressed, so the next one spans two clusters).
CW_LIB='local function rnd(n, s) math.randomseed(s) local t = {} for i = 1, n do t[i] = string.char(math.random(0, 255)) end return table.concat(t) end
local function mix(s, cs) cs = cs or 65536 local h = cs * 28000 // 65536 return string.rep(rnd(7, s), h // 7 + 1):sub(1, h) .. rnd(cs - h, s + 1) end '
qemu-img create -q -f qcow2 cwrite.base 16M
qio -c 'write -P 0x71 0 128k' -c 'write -z 1M 64k' cwrite.base
scenario cwrite "$CW_LIB"'img:write_compressed(256 << 10, mix(1)) img:write_compressed(320 << 10, mix(2))
img:write_compressed(384 << 10, rnd(65536, 3)) img:write_compressed(448 << 10, string.rep("z", 65536))
img:write_compressed(1 << 20, mix(4)) img:write_compressed(15 << 20, mix(5))'
# 512-byte clusters: two compressed clusters share a host cluster or span
# two, and a new refcount block is needed on the way (as scenario small)
qemu-img create -q -f qcow2 -o cluster_size=512 cwsmall.base 2M
qio -c 'write -P 0x61 0 110k' cwsmall.base
scenario cwsmall "$CW_LIB"'for i = 0, 23 do img:write_compressed(200192 + 512 * i, mix(10 + i, 512)) end'
# zstd with extended L2 entries, into an L2 table a snapshot shares (the
# table is copied first); the compressed entry's bitmap is zero
qemu-img create -q -f qcow2 -o compression_type=zstd,extended_l2=on cwzstd.base 16M
qio -c 'write -P 0x81 0 256k' cwzstd.base
qemu-img snapshot -c s1 cwzstd.base
scenario cwzstd "$CW_LIB"'img:write_compressed(512 << 10, mix(20)) img:write_compressed(576 << 10, mix(21))
img:write_compressed(16 << 20 - 65536, string.rep("q", 65536))'

# zero (keeping and unmapping) and discard over data, compressed and
# shared clusters
qemu-img create -q -f qcow2 zdisc.base 16M
qio -c 'write -c -P 0x71 0 64k' -c 'write -P 0x72 64k 1M' zdisc.base
qemu-img snapshot -c s1 zdisc.base
scenario zdisc 'img:zero(0, 196608) img:zero(262144, 131072, {unmap=true}) img:discard(458752, 196608)'

# extended L2: a write over partial subclusters of clusters with unallocated
# (backing), zero and allocated subclusters, zeroing whole and partial
# subclusters, a discard (each guest cluster is touched by one operation:
# the check wants every cluster old or new)
qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=32k -b back.raw -F raw extl2.base 4M
qio -c 'write -P 0x81 0 40k' -c 'write -z 100k 30k' -c 'write -P 0x82 200k 3k' extl2.base
scenario extl2 'img:write(1000, string.rep("i", 70000)) img:write(120000, string.rep("j", 90000))
                img:zero(300000, 5000) img:zero(400000, 70000) img:discard(655360, 98304)'

# an external data file: data at the guest offset, no refcounts; with
# data_file_raw zeroes and discards also reach the data file
qemu-img create -q -f qcow2 -o data_file=dfile.data dfile.base 4M
qio -c 'write -P 0x91 0 100k' dfile.base
mv dfile.data dfile.data.orig
scenario dfile 'img:write(50000, string.rep("k", 100000)) img:zero(196608, 65536) img:discard(262144, 65536)'
qemu-img create -q -f qcow2 -o data_file=draw.data,data_file_raw=on draw.base 4M
qio -c 'write -P 0x92 0 300k' draw.base
mv draw.data draw.data.orig
scenario draw 'img:write(50000, string.rep("l", 100000)) img:zero(196608, 65536) img:discard(262144, 65536)'

# a header edit between writes: the cached changes of the first write are
# written back before the header's bytes, the second write runs on the
# caches made when the header was read again. The edit turns lazy refcounts
# on (compatible bit 0): the second write must set the dirty bit before it
# relaxes the order of L2 tables and refcount blocks (dirty-ok: corruption
# only under the dirty bit; before the edit none at all)
qemu-img create -q -f qcow2 hdrset.base 16M
qio -c 'write -P 0x81 0 64k' hdrset.base
scenario hdrset 'img:write(70000, string.rep("i", 200000)) img.header.compatible_features = 1 img:write(400000, string.rep("j", 70000))' dirty-ok
# the same with an edit that changes nothing in how writes are made
qemu-img create -q -f qcow2 hdrset2.base 16M
qio -c 'write -P 0x81 0 64k' hdrset2.base
scenario hdrset2 'img:write(70000, string.rep("i", 200000)) img.header.autoclear_features = 0 img:write(400000, string.rep("j", 70000))'
# persistent dirty bitmaps: in_use set before the first guest write, the
# bits written back and in_use cleared at flush and close. After a stop each
# bitmap that tracks writes is in_use (inconsistent) or has the bit of every
# granule whose data changed; the disabled one never changes.
qemu-img create -q -f qcow2 bitmaps.base 4M
qemu-img bitmap --add bitmaps.base pre
qio -c 'write -P 0x81 0 200k' bitmaps.base
qemu-img bitmap --add -g 512 bitmaps.base b512
qemu-img bitmap --add --disable bitmaps.base dis
scenario bitmaps 'img:write(70000, string.rep("i", 100000)) img:zero(1 << 20, 65536)
    img:discard(2 << 20, 131072) img:flush() img:write(3 << 20, string.rep("j", 5000))' \
    "python3 $CRASH_DIR/bitmaps_ok.py"
# growing the image: the L1 table moves to new clusters (refcount blocks
# first, then the table, then the header's l1_size + l1_table_offset, then
# the old table freed), then the size field; and a write past the old end
# in the same chunk. 512-byte clusters: one L1 cluster maps 2 MiB, so the
# new table takes 4 clusters.
qemu-img create -q -f qcow2 -o cluster_size=512 resize.base 1M
qio -c 'write -P 0x81 0 200k' -c 'write -P 0x82 1000k 24k' resize.base
scenario resize 'img:resize(8 << 20) img:write((5 << 20) + 1000, string.rep("r", 20000))'
# an L1 table longer than a refcount block's range (64 clusters here): the
# run is found over ranges without blocks, their blocks go after it
qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=64 longrun.base 1M
qio -c 'write -P 0x13 0 200k' longrun.base
scenario longrun 'img:resize(256 << 20) img:write((200 << 20) + 1000, string.rep("r", 3000))'
# ---- lazy refcounts and the dirty bit (criterion: dirty-ok) ----
# allocating writes, then copy-on-write of clusters a snapshot shares and a
# discard, on a lazy_refcounts image: L2 tables may reach the disk before
# the refcount blocks, under the dirty bit
qemu-img create -q -f qcow2 -o lazy_refcounts=on lazy.base 16M
qio -c 'write -P 0x81 0 1M' lazy.base
qemu-img snapshot -c s1 lazy.base
scenario lazy 'img:write(2 << 20, string.rep("i", 200000)) img:write(5000, string.rep("j", 140000))
    img:discard(512 * 1024, 128 * 1024)' dirty-ok
# two rounds with a flush between (the dirty bit cleared and set again)
qemu-img create -q -f qcow2 -o lazy_refcounts=on,cluster_size=4k lazy2.base 8M
scenario lazy2 'img:write(0, string.rep("k", 50000)) img:flush() img:write(3 << 20, string.rep("l", 20000))' dirty-ok

# the rebuild at a read-write open of a dirty image (qemu-io aborted under
# lazy refcounts)
qemu-img create -q -f qcow2 -o lazy_refcounts=on rebuild.base 16M
(qemu-io -f qcow2 -c 'write -P 0x91 0 300k' -c 'write -P 0x92 3M 1M' -c abort rebuild.base \
    >/dev/null 2>&1; true) 2>/dev/null
qemu-img info --output=json rebuild.base | grep -q '"dirty-flag": true' ||
    t_fail "rebuild: setup: qemu-io abort left the image dirty"
scenario rebuild '' dirty-ok
# the rebuild adding a refcount block: 512-byte clusters, the table entry of
# range 1 (clusters 256..511, in use) cleared, the dirty bit set by hand
qemu-img create -q -f qcow2 -o cluster_size=512,lazy_refcounts=on rebuildblk.base 4M
qio -c 'write -P 0x93 0 200k' rebuildblk.base
python3 - <<'EOF'
import struct
f = open('rebuildblk.base', 'r+b'); d = f.read(80)
rt = struct.unpack('>Q', d[48:56])[0]
f.seek(rt + 8); f.write(struct.pack('>Q', 0))
f.seek(72); f.write(struct.pack('>Q', struct.unpack('>Q', d[72:80])[0] | 1))
EOF
scenario rebuildblk '' dirty-ok

# shrink (resize --shrink): full discard past the cut (an empty L2 table for
# a kept L1 entry without one), L1 entries zeroed, the L2 tables freed,
# refcount blocks past the cut dropped from the table (512-byte clusters:
# a block covers 128 KiB), the file cut, the header size; a crash leaves
# the old size or the new one, the data below the cut as it was
qemu-img create -q -f qcow2 -o cluster_size=512 shrink.base 4M
qio -c 'write -P 0x83 0 200k' -c 'write -P 0x84 1100k 300k' -c 'write -P 0x85 3M 512k' shrink.base
scenario shrink 'img:resize((1 << 20) + 512, {shrink=true})'
# 4 KiB clusters with compressed clusters past the cut and a snapshot
# (the shared L2 tables past the cut are copied before their entries go)
qemu-img create -q -f qcow2 -o cluster_size=4096 shrinksnap.base 8M
qio -c 'write -P 0x86 0 256k' -c 'write -c -P 0x87 3M 64k' -c 'write -P 0x88 6M 128k' shrinksnap.base
qemu-img snapshot -c one shrinksnap.base
qio -c 'write -P 0x89 64k 64k' -c 'write -P 0x8a 6M 16k' shrinksnap.base
scenario shrinksnap 'img:resize(1500 << 10, {shrink=true})'

# ---- qinspect create: a crash leaves no qcow2 image, or the complete one ----
# create_scenario NAME ARGS...: `qinspect create ARGS NAME.qcow2 SIZE...` (the
# file name is the last but one argument given) stopped at each write, in
# both modes. After each stop, either `qemu-img info -f qcow2` refuses the
# file (no qcow2 magic: the header cluster, written last, is not there) or
# the file is byte for byte the uninterrupted create's and `qemu-img check`
# is clean. Also: the uninterrupted create equals qemu-img create's bytes.
create_scenario() {
    local name=$1 w n fmode fails why img
    shift
    case " ${CRASH_ONLY:-$name} " in *" $name "*) ;; *) return ;; esac
    img=$name.qcow2
    rm -f "$img"
    qemu-img create -q "$@" "$img.ref" "${CREATE_SIZE:-64M}" || { t_fail "$name: setup"; return; }
    w=$(QINSPECT_FAULT=1000000000 "$QINSPECT" create -q "$@" "$img" "${CREATE_SIZE:-64M}" 2>&1 |
        sed -n 's/^qinspect: fault injection: \([0-9]*\) writes$/\1/p')
    if [ -z "$w" ] || [ "$w" -lt 2 ] || ! cmp -s "$img" "$img.ref"; then
        t_fail "$name: the uninterrupted create writes (W=$w) qemu-img create's bytes"
        return
    fi
    cp "$img" "$img.full"
    for fmode in "" ",drop"; do
        fails=""
        for n in $(seq 0 $((w - 1))); do
            rm -f "$img"
            QINSPECT_FAULT="$n$fmode" "$QINSPECT" create -q "$@" "$img" "${CREATE_SIZE:-64M}" \
                >/dev/null 2>&1
            if ! qemu-img info -f qcow2 "$img" >/dev/null 2>&1; then
                why=""
            elif ! cmp -s "$img" "$img.full"; then
                why="a qcow2 image that is not the complete one"
            elif ! qemu-img check -q "$img" >/dev/null 2>&1; then
                why="qemu-img check is not clean"
            else
                why=""
            fi
            [ -n "$why" ] && fails="$fails
N=$n: $why"
        done
        if [ -z "$fails" ]; then
            t_ok "$name: a crash at each of the $w writes of create${fmode:+ (unsynced writes lost)} leaves no qcow2 image or the complete one"
        else
            t_fail "$name: a crash at each of the $w writes of create${fmode:+ (unsynced writes lost)} leaves no qcow2 image or the complete one"
            printf '%s\n' "$fails" | sed '/^$/d' | head -12 | t_diag
        fi
    done
}
create_scenario create -f qcow2
create_scenario creategrow -f qcow2 -o cluster_size=512,refcount_bits=64
create_scenario createmeta -f qcow2 -o cluster_size=4096,preallocation=metadata
CREATE_SIZE=9M create_scenario createfull -f qcow2 -o preallocation=full,cluster_size=2M

# ---- internal snapshots (snapshot.c) ----
# Each: every cluster of the active view old or new (clusters.py), and every
# snapshot reads as before, a new one as the active state it was made of
# (snapshots_ok.py). The images hold data, compressed clusters that share a
# host cluster, zero clusters, and snapshots made by qemu-img, so the trees
# share L2 tables and data clusters.
SNAPCHK="python3 $CRASH_DIR/snapshots_ok.py"
snapbase() {  # snapbase NAME CREATE-OPTS: a 4 MiB image, two snapshots, writes after each
    qemu-img create -q -f qcow2 -o "$2" "$1.base" 4M &&
        qio -c 'write -P 0x91 0 300k' -c 'write -c -P 0x92 1M 64k' -c 'write -c -P 0x93 1088k 64k' \
            -c 'write -z 2M 64k' "$1.base" &&
        qemu-img snapshot -c one "$1.base" &&
        qio -c 'write -P 0x94 64k 64k' -c 'write -c -P 0x95 3M 64k' "$1.base" &&
        qemu-img snapshot -c two "$1.base" &&
        qio -c 'write -P 0x96 2M 8k' -c 'discard 1M 64k' "$1.base"
}
# create: the L1 copy, COPIED cleared, refcounts +1, new table, header
snapbase snapc cluster_size=65536 &&
    scenario snapc 'img:snapshot_create("three")' "$SNAPCHK" copied-ok
# create with 4 KiB clusters: several L2 tables, a multi-cluster table
snapbase snapc4k cluster_size=4096 &&
    scenario snapc4k 'img:snapshot_create("three") img:write(5000, string.rep("s", 9000))' "$SNAPCHK" copied-ok
# apply: snapshot +1, active L1 replaced, old tree -1 (freed, punched), COPIED
# set; no moment with COPIED out of step with a refcount: the strict criterion
snapbase snapa cluster_size=4096 &&
    scenario snapa 'img:snapshot_apply("one")' "$SNAPCHK"
# apply of a smaller snapshot: the image shrinks to its size first (the
# snapshot's own reads are not compared: qemu-img shows a snapshot at the
# image's size, which a crash may leave either way)
snapbase snapas cluster_size=4096 &&
    qemu-img resize -q snapas.base 8M && qio -c 'write -P 0x97 6M 100k' -c 'write -P 0x98 3M 8k' snapas.base &&
    scenario snapas 'img:snapshot_apply("one")'
# delete: new table, header, tree -1, L1 freed, COPIED set where refcounts return to 1
snapbase snapd cluster_size=4096 &&
    scenario snapd 'img:snapshot_delete("two")' "$SNAPCHK" copied-ok
snapbase snapd1 cluster_size=65536 &&
    scenario snapd1 'img:snapshot_delete("one") img:snapshot_delete("two")' "$SNAPCHK" copied-ok
# a version 2 image: create, apply and delete in one session
snapbase snapv2 compat=0.10 &&
    scenario snapv2 'img:snapshot_create("three") img:snapshot_apply("one") img:snapshot_delete("two")' "$SNAPCHK" copied-ok

# check -r all (repair.c): each repair path on a small damaged image
# (4 KiB clusters), poked at exact offsets (tests/cli/poke.py)
POKE="python3 $CRASH_DIR/../cli/poke.py"
repbase() {
    local name=$1 op; shift
    qemu-img create -q -f qcow2 -o cluster_size=4096 "$name.base" 2M &&
        qio -c 'write -P 0x61 0 40k' -c 'write -P 0x62 1M 12k' "$name.base" || return 1
    if [ "${SNAP:-}" ]; then
        qemu-img snapshot -c one "$name.base" && qio -c 'write -P 0x63 16k 8k' "$name.base" || return 1
    fi
    for op in "$@"; do
        # shellcheck disable=SC2086
        $POKE "$name.base" $op || return 1
    done
}
REPAIR='img:check{repair="all"}'
# leaks lowered (a refcount too high, an L2 entry dropped)
repbase rleak "refcount-of 0 1" "l2 0x100000 zero" && scenario rleak "$REPAIR" "" repair-ok
# refcounts too low raised (a shared cluster of a snapshot)
SNAP=1 repbase rraise "refcount-of 0x8000 -1" && scenario rraise "$REPAIR" "" repair-ok
# COPIED both ways in L2 and L1, with a leak lowered to 1 under a missing COPIED
SNAP=1 repbase rcopied "l2 0x8000 set" "l2 0x100000 clear" "l1 0 clear" "refcount-of 0x4000 1" "l2 0x4000 clear" &&
    scenario rcopied "$REPAIR" "" repair-ok
# refcount table entry zeroed, refcount block zeroed: the structure rebuilt
repbase rrt "rt 0 0" && scenario rrt "$REPAIR" "" repair-ok
repbase rrb "refblock-zero 0" && scenario rrb "$REPAIR" "" repair-ok
# step 0: an L2 entry past the end of the file made a zero cluster, with a
# leak lowered after it (qemu-img -r all cannot repair that entry: the
# image is finished by running check -r all again)
repbase reof "l2 0x101000 eof" "refcount-of 0 1" &&
    REPAIR_AGAIN=1 scenario reof "$REPAIR" "" repair-ok

t_done
