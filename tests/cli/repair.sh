#!/bin/bash
# tests/cli/repair.sh - `qinspect check -r leaks|all` against `qemu-img
# check -r leaks|all` (7.2).
#
# Each case makes an image with qemu-img/qemu-io, damages it at exact
# offsets (poke.py reads them from the header and tables qemu-img wrote),
# then repairs two identical copies, one with each tool, and requires:
# the same exit status and the same counters in the JSON (corruptions,
# leaks, check-errors, corruptions-fixed, leaks-fixed; image-end-offset too
# unless the refcount structure was rebuilt, which each tool places its own
# way); `qemu-img check` clean (exit 0) on both repaired files; the guest
# data of both (qemu-img convert -O raw) byte-identical. The human output
# must be qemu-img's byte for byte: the problem lines on stderr always,
# stdout where no rebuild happens (after one, the image end offset is where
# each tool put the new structure).
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
POKE="python3 $HERE/poke.py"

# mk IMG OPTS: a 4 MiB image with data at a few places (qemu-io)
mk() {
    local img=$1; shift
    qemu-img create -q -f qcow2 "$@" "$img" 4M &&
    qemu-io -f qcow2 -c 'write -P 0x11 0 200k' -c 'write -P 0x22 1M 64k' \
        -c 'write -P 0x33 3M 8k' "$img" >/dev/null
}

# same_repair DESC IMG MODE [rebuilt]: the comparison of the file comment
same_repair() {
    local desc=$1 img=$2 mode=$3 rebuilt=${4:-} qrc mrc bad=
    rm -f m.qcow2.qinspect-undo-* mh.qcow2.qinspect-undo-*
    cp "$img" q.qcow2; cp "$img" m.qcow2; cp "$img" qh.qcow2; cp "$img" mh.qcow2
    qemu-img check -r "$mode" --output=json q.qcow2 >q.json 2>/dev/null; qrc=$?
    "$QINSPECT" check -r "$mode" --output=json m.qcow2 >m.json 2>m.err; mrc=$?
    [ "$qrc" = "$mrc" ] || bad="exit qemu-img $qrc, qinspect $mrc ($(head -2 m.err | tr '\n' ' '))"
    if ! out=$(python3 - q.json m.json "$rebuilt" <<'PY'
import json, sys
q, m = (json.load(open(p)) for p in sys.argv[1:3])
keys = ["corruptions", "leaks", "check-errors", "corruptions-fixed", "leaks-fixed",
        "total-clusters", "allocated-clusters", "compressed-clusters"]
if not sys.argv[3]:
    keys.append("image-end-offset")
bad = {k: (q.get(k, 0), m.get(k)) for k in keys if m.get(k) != q.get(k, 0)}
if bad:
    print("json differs (qemu-img, qinspect):", bad)
    sys.exit(1)
PY
    ); then bad="$bad; $out"; fi
    # -r all: both clean; -r leaks may leave corruptions (qemu-img's too):
    # then the same verdict
    qemu-img check q.qcow2 >/dev/null 2>&1; qrc=$?
    [ "$mode" = all ] && [ $qrc != 0 ] && bad="$bad; qemu-img's repair not clean"
    qemu-img check m.qcow2 >c.out 2>&1; mrc=$?
    [ "$qrc" = "$mrc" ] ||
        bad="$bad; after qinspect's repair qemu-img check exit $mrc: $(head -3 c.out | tr '\n' ' ')"
    if qemu-img convert -O raw q.qcow2 q.raw 2>/dev/null; then
        qemu-img convert -O raw m.qcow2 m.raw && cmp -s q.raw m.raw || bad="$bad; guest data differs"
    fi
    if true; then   # stdout: only without a rebuild (the image end offset)
        qemu-img check -r "$mode" qh.qcow2 >qh.out 2>qh.err
        "$QINSPECT" check -r "$mode" mh.qcow2 >mh.out 2>mh.err
        sed -i 's/^qemu-img: /PROG: /' qh.err
        sed -i 's/^qinspect: /PROG: /' mh.err
        [ -n "$rebuilt" ] || cmp -s qh.out mh.out || bad="$bad; stdout differs: $(diff qh.out mh.out | head -4 | tr '\n' ' ')"
        cmp -s qh.err mh.err || bad="$bad; stderr differs: $(diff qh.err mh.err | head -6 | tr '\n' ' ')"
    fi
    t_check "$desc (-r $mode)" test -z "$bad"
    [ -z "$bad" ] || echo "$bad" | t_diag
}

# leaks_refused DESC IMG: -r leaks where the refcount structures need a
# rebuild: qemu-img stops ("ERROR need to rebuild refcount structures",
# exit 1, nothing on stdout); so must we, without writing anything
leaks_refused() {
    local desc=$1 img=$2 qrc mrc
    rm -f m.qcow2.qinspect-undo-*
    cp "$img" q.qcow2; cp "$img" m.qcow2
    qemu-img check -r leaks q.qcow2 >q.out 2>q.err; qrc=$?
    "$QINSPECT" check -r leaks m.qcow2 >m.out 2>m.err; mrc=$?
    t_check "$desc (-r leaks needs a rebuild: exit $qrc, nothing on stdout, file unchanged)" \
        bash -c "[ $qrc = $mrc ] && [ ! -s q.out ] && [ ! -s m.out ] && cmp -s '$img' m.qcow2 &&
                 grep -q 'need to rebuild refcount structures' q.err &&
                 grep -q 'need to rebuild refcount structures' m.err"
}

# case NAME MKOPTS [rebuilt] -- POKE-OP...: one image, damaged by each
# poke op in turn, compared under -r all and -r leaks
case_() {
    local name=$1 opts=$2 rebuilt=$3 op
    shift 3
    rm -f "$name.qcow2"
    # shellcheck disable=SC2086
    mk "$name.qcow2" $opts || { t_fail "$name: setup"; return; }
    for op in "$@"; do
        # shellcheck disable=SC2086
        $POKE "$name.qcow2" $op || { t_fail "$name: poke $op"; return; }
    done
    same_repair "$name" "$name.qcow2" all "$rebuilt"
    if [ -n "$rebuilt" ]; then
        leaks_refused "$name" "$name.qcow2"
    else
        same_repair "$name" "$name.qcow2" leaks
    fi
}

H1=$(( 1 << 20 ))
# refcounts
case_ leak "" "" "refcount-of 0 1"
case_ leak-l2-dropped "" "" "l2 $H1 zero"
case_ low-and-copied "" "" "refcount-of 0 1" "l2 0 clear"
case_ zero "" rebuilt "refcount-of $H1 -1"
case_ zero-and-leak "" rebuilt "refcount-of $H1 -1" "refcount-of 0 2"
# COPIED
case_ copied-l2-missing "" "" "l2 0 clear"
case_ copied-l1-missing "" "" "l1 0 clear"
case_ copied-l2-and-l1 "" "" "l2 $H1 clear" "l1 0 clear"
# refcount structures destroyed
case_ rt-entry-zero "" rebuilt "rt 0 0"
case_ rt-entry-unaligned "" rebuilt "rt 0 0x30100"
case_ refblock-zero "" rebuilt "refblock-zero 0"
case_ rt-all-zero "-o cluster_size=512" rebuilt "rt-all-zero"
# the corrupt bit
case_ corrupt-bit "" "" corrupt
case_ corrupt-bit-leak "" "" corrupt "refcount-of 0 1"
# entries: preallocated and unaligned (QEMU makes it a zero cluster)
case_ prealloc-unaligned "" "" "l2 $H1 prealloc-unaligned"
# refcount widths and cluster sizes
for w in 1 16 64; do
    case_ "w$w-leak" "-o refcount_bits=$w" "" "l2 $H1 zero"
    case_ "w$w-zero" "-o refcount_bits=$w" rebuilt "refcount-of 0 -1"
done
case_ c512-leak "-o cluster_size=512" "" "refcount-of 0 1" "l2 $H1 zero"
case_ c512-zero "-o cluster_size=512" rebuilt "refcount-of $H1 -1"
case_ c2m-leak "-o cluster_size=2M" "" "refcount-of 0 1"
case_ c2m-zero "-o cluster_size=2M" rebuilt "refcount-of 0 -1"
case_ extl2-leak "-o extended_l2=on" "" "refcount-of 0 1" "l2 0 clear"

# a snapshot image: shared clusters (refcount 2, COPIED clear)
snapimg() {
    rm -f "$1"
    mk "$1" && qemu-img snapshot -c one "$1" &&
        qemu-io -f qcow2 -c 'write -P 0x44 64k 64k' "$1" >/dev/null
}
snapcase() {
    local name=$1 rebuilt=$2 op
    shift 2
    snapimg "$name.qcow2" || { t_fail "$name: setup"; return; }
    for op in "$@"; do
        # shellcheck disable=SC2086
        $POKE "$name.qcow2" $op || { t_fail "$name: poke $op"; return; }
    done
    same_repair "$name" "$name.qcow2" all "$rebuilt"
    if [ -n "$rebuilt" ]; then
        leaks_refused "$name" "$name.qcow2"
    else
        same_repair "$name" "$name.qcow2" leaks
    fi
}
snapcase snap-low "" "refcount-of 0 -1"
snapcase snap-copied-set "" "l2 $H1 set"
snapcase snap-copied-l1-set "" "l1 0 set"
snapcase snap-leak "" "refcount-of $H1 1"
snapcase snap-zero rebuilt "refcount-of $H1 -2"

# compressed clusters
rm -f comp.qcow2 comp0.qcow2
mk comp0.qcow2 && qemu-img convert -c -O qcow2 comp0.qcow2 comp.qcow2
cp comp.qcow2 comp-leak.qcow2; $POKE comp-leak.qcow2 refcount-of 0 1
same_repair "compressed leak" comp-leak.qcow2 all
cp comp.qcow2 comp-zero.qcow2; $POKE comp-zero.qcow2 rt 0 0
same_repair "compressed, refcount table entry 0" comp-zero.qcow2 all rebuilt

# a clean image: -r all changes nothing
mk clean.qcow2 && cp clean.qcow2 clean2.qcow2
"$QINSPECT" check -r all clean2.qcow2 >/dev/null 2>&1
t_check "clean image: -r all exits 0 and leaves the file byte-identical" cmp clean.qcow2 clean2.qcow2

# past the end of the file: qemu-img -r all leaves the corruption; ours
# makes the entry a zero cluster (it read as zeros and still does)
mk eof.qcow2 && $POKE eof.qcow2 l2 $H1 eof
cp eof.qcow2 m.qcow2
"$QINSPECT" check -r all --output=json m.qcow2 >m.json 2>/dev/null; mrc=$?
t_check "entry past EOF: exit 0, qemu-img check clean afterwards" \
    bash -c "[ $mrc = 0 ] && qemu-img check m.qcow2 >/dev/null"
t_check "entry past EOF: the finding names the guest range 0x100000+0x10000" \
    grep -q 'guest bytes 0x100000+0x10000 pointed past the end of the file' m.json
mk eofref.qcow2 && qemu-img convert -O raw eofref.qcow2 want.raw &&
    python3 -c "f=open('want.raw','r+b');f.seek(1<<20);f.write(bytes(65536))"
qemu-img convert -O raw m.qcow2 m.raw
t_check "entry past EOF: guest data as before, that cluster zeros" cmp want.raw m.raw

# extended L2, a compressed entry with a subcluster bitmap: QEMU reads it
# but does not count it, so qemu-img -r all frees its cluster and the next
# write takes it; ours clears the bitmap (it must be 0) and keeps the data
qemu-img create -q -f qcow2 -o extended_l2=on cb.qcow2 4M &&
    qemu-io -f qcow2 -c 'write -c -P 0x11 0 64k' -c 'write -P 0x22 1M 64k' cb.qcow2 >/dev/null &&
    python3 -c "
import struct; f = open('cb.qcow2', 'r+b'); h = f.read(48)
l1 = struct.unpack('>Q', h[40:48])[0]; f.seek(l1)
l2 = struct.unpack('>Q', f.read(8))[0] & 0x00fffffffffffe00
f.seek(l2 + 8); f.write(struct.pack('>Q', 1))"
cp cb.qcow2 m.qcow2; cp cb.qcow2 q.qcow2
"$QINSPECT" check -r all m.qcow2 >/dev/null 2>&1; mrc=$?
qemu-img check -r all q.qcow2 >/dev/null 2>&1
t_check "compressed entry with a bitmap: -r all exit 0, qemu-img check clean" \
    bash -c "[ $mrc = 0 ] && qemu-img check m.qcow2 >/dev/null"
t_check "compressed entry with a bitmap: data still reads after a new write (ours)" \
    bash -c "qemu-io -f qcow2 -c 'write -P 0x77 2M 64k' -c 'read -P 0x11 0 64k' m.qcow2 | grep -q 'read 65536/65536'"
t_check "compressed entry with a bitmap: after qemu-img -r all and a write it does not (what we keep)" \
    bash -c "! qemu-io -f qcow2 -c 'write -P 0x77 2M 64k' -c 'read -P 0x11 0 64k' q.qcow2 | grep -q 'read 65536/65536'"
cp cb.qcow2 m.qcow2
"$QINSPECT" check -r leaks m.qcow2 >/dev/null 2>&1
t_check "compressed entry with a bitmap: -r leaks does not free its cluster" \
    bash -c "qemu-io -f qcow2 -c 'write -P 0x77 2M 64k' -c 'read -P 0x11 0 64k' m.qcow2 | grep -q 'read 65536/65536'"

# --dry-run: byte-identical, every change listed; --undo: damage -> repair
# -> undo gives the damaged file back byte for byte; the default undo file
for what in "refcount-of 0 1" "rt 0 0"; do
    mk dr.qcow2 && $POKE dr.qcow2 $what && cp dr.qcow2 dr0.qcow2
    "$QINSPECT" check -r all --dry-run dr.qcow2 >dr.out 2>/dev/null; mrc=$?
    t_check "--dry-run ($what): exit 0, file byte-identical, changes listed" \
        bash -c "[ $mrc = 0 ] && cmp dr.qcow2 dr0.qcow2 && grep -q '^Dry run: nothing was written' dr.out &&
                 grep -qE '^[1-9][0-9]* changes?\.' dr.out"
    "$QINSPECT" check -r all --dry-run --output=json dr.qcow2 >dr.json 2>/dev/null
    t_check "--dry-run --output=json ($what): a changes array, file byte-identical" python3 -c "
import json, filecmp; j = json.load(open('dr.json'))
assert j['changes'] and filecmp.cmp('dr.qcow2', 'dr0.qcow2', shallow=False)"
    rm -f u.undo
    "$QINSPECT" check -r all --undo u.undo dr.qcow2 >/dev/null 2>&1 && qemu-img check -q dr.qcow2 &&
        "$QINSPECT" undo u.undo dr.qcow2 >/dev/null
    t_check "--undo ($what): repaired, then undo restores the damaged file byte for byte" \
        cmp dr.qcow2 dr0.qcow2
done
rm -f dr.qcow2.qinspect-undo-*
"$QINSPECT" check -r all dr.qcow2 >/dev/null 2>&1
set -- dr.qcow2.qinspect-undo-*
t_check "-r without --undo writes FILE.qinspect-undo-<timestamp>, which undoes it" \
    bash -c "[ -f '$1' ] && '$QINSPECT' undo '$1' dr.qcow2 >/dev/null && cmp dr.qcow2 dr0.qcow2"

# a dirty image (lazy refcounts, qemu-io aborted): qemu-img check -r all
# counts and repairs; the open must not rebuild first
qemu-img create -q -f qcow2 -o lazy_refcounts=on dirty.qcow2 4M
(qemu-io -f qcow2 -c 'write -P 0x91 0 300k' -c 'write -P 0x92 2M 64k' -c abort dirty.qcow2 \
    >/dev/null 2>&1; true) 2>/dev/null
if qemu-img info --output=json dirty.qcow2 | grep -q '"dirty-flag": true'; then
    same_repair "dirty bit with lazy refcounts" dirty.qcow2 all
    t_check "dirty bit cleared by the repair" bash -c \
        "! qemu-img info --output=json m.qcow2 | grep -q '\"dirty-flag\": true'"
else
    t_fail "setup: qemu-io abort left the image dirty"
fi

# a dedup image (extension 0x51494444 written by hand, docs/dedup-design.md
# §2): COPIED set at refcount 2 is cleared, COPIED missing at refcount 1 left
dedup_ext() {
    python3 - "$1" <<'PY'
import struct, sys
f = open(sys.argv[1], "r+b"); h = f.read(112)
off = struct.unpack(">I", h[100:104])[0]    # header_length: extensions follow
f.seek(off)
while True:
    t, n = struct.unpack(">II", f.read(8))
    if t == 0:
        break
    f.seek((n + 7) & ~7, 1)
f.seek(-8, 1)
f.write(struct.pack(">II", 0x51494444, 32) + bytes(32) + bytes(8))
PY
}
mk dd.qcow2 && qemu-img snapshot -c one dd.qcow2 &&
    qemu-io -f qcow2 -c 'write -P 0x55 2M 64k' dd.qcow2 >/dev/null && dedup_ext dd.qcow2 &&
    $POKE dd.qcow2 l2 0 set && $POKE dd.qcow2 l2 0x200000 clear && cp dd.qcow2 dd0.qcow2
"$QINSPECT" check -r all --output=json dd.qcow2 >dd.json 2>/dev/null
t_check "dedup: COPIED at refcount 2 cleared, COPIED missing at refcount 1 left (a note)" python3 - <<PY
import json, struct
j = json.load(open("dd.json"))
fs = j["findings"][:]
assert any(f["code"] == "copied_but_shared" and f.get("fixed") for f in fs), fs
assert any(f["code"] == "copied_missing_dedup" and not f.get("fixed") for f in fs), fs
assert j["corruptions"] == 0, j
PY
qemu-img check dd.qcow2 >dd.chk 2>&1
t_check "dedup: on disk only the missing COPIED (refcount 1) is left, as stock qemu-img sees" \
    bash -c "[ \$(grep -c OFLAG_COPIED dd.chk) = 1 ] && grep -qE 'OFLAG_COPIED data cluster: l2_entry=[0-7]?[0-9a-f]{0,15} refcount=1\$' dd.chk"

# Lua: img:check{repair="all"} on an image opened -w: qemu-img's counters
for what in "refcount-of 0 1" "rt 0 0"; do
    mk lu.qcow2 && $POKE lu.qcow2 $what && cp lu.qcow2 luq.qcow2
    qemu-img check -r all --output=json luq.qcow2 >q.json 2>/dev/null
    "$QINSPECT" -w lu.qcow2 -e 'local r = img:check{repair="all"}
        print(string.format("%d %d %d %d %d", r.corruptions, r.leaks, r.corruptions_fixed,
                            r.leaks_fixed, r.repaired))' >l.out 2>l.err
    t_check "Lua img:check{repair=\"all\"} ($what): counters as qemu-img -r all, image clean" \
        python3 -c "
import json; q = json.load(open('q.json')); c, l, cf, lf, n = map(int, open('l.out').read().split())
assert (c, l, cf, lf) == (q.get('corruptions', 0), q.get('leaks', 0), q.get('corruptions-fixed', 0),
                          q.get('leaks-fixed', 0)) and n > 0, (c, l, cf, lf, q)
import subprocess; assert subprocess.call(['qemu-img', 'check', '-q', 'lu.qcow2']) == 0"
done

# QEMU holds the image: refused, file unchanged
mk held.qcow2 && $POKE held.qcow2 refcount-of 0 1 && cp held.qcow2 held0.qcow2
if command -v qemu-system-x86_64 >/dev/null 2>&1 ||
    python3 -c 'import fcntl' 2>/dev/null; then
    # an OFD write lock on byte 100+ as QEMU's "write" permission lock (bio.c)
    python3 - held.qcow2 <<'PY' &
import fcntl, os, struct, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
# F_OFD_SETLK = 37; QEMU's lock bytes: 100 + permission bit, 200 + shared bit
lk = struct.pack("hhqqi", fcntl.F_RDLCK, 0, 100 + 1, 1, 0)
fcntl.fcntl(fd, 37, lk)
lk = struct.pack("hhqqi", fcntl.F_RDLCK, 0, 200 + 1, 1, 0)
fcntl.fcntl(fd, 37, lk)
time.sleep(30)
PY
    t_bg $!
    sleep 0.5
    "$QINSPECT" check -r all held.qcow2 >/dev/null 2>h.err; mrc=$?
    t_check "held by another process: -r all refused (exit $mrc), file unchanged" \
        bash -c "[ $mrc = 1 ] && cmp held.qcow2 held0.qcow2"
    t_kill $!
fi
t_done
