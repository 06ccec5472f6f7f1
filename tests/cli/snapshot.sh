#!/bin/bash
# tests/cli/snapshot.sh - internal snapshots (qinspect snapshot -c/-a/-d)
# against qemu-img snapshot.
#
# For a matrix of images made by qemu-img/qemu-io (64 KiB and 4 KiB
# clusters, compat 0.10, extended L2, refcount widths 2, 4 and 64; data,
# compressed clusters that share host clusters, zero clusters, subcluster
# writes) every case keeps three copies: .q changed only by qinspect, .e
# only by qemu-img (the oracle) and .m by both, the tools taking turns
# (so each one applies, reads and deletes snapshots the other made). The
# same sequence of creates, writes (qemu-io), applies (by name and by id)
# and deletes runs on all three. After every step:
#   - the three files are byte-identical. The only field that legitimately
#     differs is a snapshot's date (each tool takes the time it runs), so
#     right after each create the dates of all entries are set to one fixed
#     value in all three files (normdate: a raw write of the date fields);
#     every later table copies the entries with their dates, so nothing
#     else is masked;
#   - qemu-img check is clean on .q and .m;
#   - after an apply the active view equals the raw image saved when that
#     snapshot was taken, and at the end of a case every remaining
#     snapshot read with qemu-img convert -l equals the data written
#     before it.
# A snapshot of a larger virtual size is applied by growing the image, a
# smaller one by shrinking it first, as qemu-img does (512-byte, 64 KiB
# and 2 MiB clusters, 64-bit refcounts, compressed clusters and extended
# L2 past the cut).
# Errors: a refcount that would overflow (2-bit refcounts) is refused
# before anything changes (qemu-img fails too, after leaking clusters); a
# missing snapshot, a name that is only an id for -d, an image in use by
# QEMU (locks), -U with a change, an image with an external data file: the
# message and exit status of qemu-img 7.2, and the file unchanged.
T_DIR=$(cd "$(dirname "$0")" && pwd)
. "$T_DIR/lib.sh"

# normdate IMG: every snapshot entry's date set to 2023-11-14 22:13:20.0.
normdate() {
    python3 - "$1" <<'EOF'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    h = f.read(72)
    n, off = struct.unpack(">IQ", h[60:72])
    for _ in range(n):
        f.seek(off)
        e = f.read(40)
        ids, names = struct.unpack(">HH", e[12:16])
        extra = struct.unpack(">I", e[36:40])[0]
        f.seek(off + 16)
        f.write(struct.pack(">II", 1700000000, 0))
        off = (off + 40 + extra + ids + names + 7) // 8 * 8
EOF
}

# same_files DESC A B: one test, the files byte-identical.
same_files() {
    local out
    if out=$(cmp "$2" "$3" 2>&1); then t_ok "$1"; else t_fail "$1"; echo "$out" | t_diag; fi
}

# setup CASE CREATE-OPTS SIZE QEMU-IO-CMDS...: the three copies.
setup() {
    local c=$1 opts=$2 size=$3
    shift 3
    M_TURN=0
    qemu-img create -q -f qcow2 -o "$opts" "$c.e.qcow2" "$size" &&
        { [ $# -eq 0 ] || qio "$c.e.qcow2" "$@"; } &&
        cp "$c.e.qcow2" "$c.q.qcow2" && cp "$c.e.qcow2" "$c.m.qcow2" ||
        { t_fail "$c: setup"; return 1; }
}

# wr CASE QEMU-IO-CMDS...: the same guest writes on the three copies.
wr() {
    local c=$1 f
    shift
    for f in e q m; do qio "$c.$f.qcow2" "$@" || { t_fail "$c: qemu-io $*"; return 1; }; done
}

# snap CASE OP ARG: `snapshot -OP ARG` on the three copies, then compare.
snap() {
    local c=$1 op=$2 arg=$3 out tool
    if [ "$op" = c ]; then
        qemu-img convert -O raw "$c.e.qcow2" "$c.sn-$arg.raw" || t_fail "$c: save the data of $arg"
    fi
    if ! out=$(qemu-img snapshot "-$op" "$arg" "$c.e.qcow2" 2>&1); then
        t_fail "$c: oracle: qemu-img snapshot -$op $arg: $out"
        return 1
    fi
    if out=$("$QINSPECT" snapshot "-$op" "$arg" "$c.q.qcow2" 2>&1) && [ -z "$out" ]; then
        t_ok "$c: qinspect snapshot -$op $arg"
    else
        t_fail "$c: qinspect snapshot -$op $arg"
        echo "$out" | t_diag
    fi
    M_TURN=$((M_TURN + 1))
    if [ $((M_TURN % 2)) -eq 1 ]; then tool=$QINSPECT; else tool=qemu-img; fi
    "$tool" snapshot "-$op" "$arg" "$c.m.qcow2" || t_fail "$c: ${tool##*/} snapshot -$op $arg on .m"
    if [ "$op" = c ]; then
        normdate "$c.e.qcow2"; normdate "$c.q.qcow2"; normdate "$c.m.qcow2"
    fi
    same_files "$c: -$op $arg: qinspect's file equals qemu-img's" "$c.q.qcow2" "$c.e.qcow2"
    same_files "$c: -$op $arg: the file both tools changed equals qemu-img's" \
        "$c.m.qcow2" "$c.e.qcow2"
    t_check "$c: -$op $arg: qemu-img check clean (qinspect)" qemu-img check "$c.q.qcow2"
    t_check "$c: -$op $arg: qemu-img check clean (both tools)" qemu-img check "$c.m.qcow2"
    if [ "$op" = a ]; then
        local name=$arg
        [ -f "$c.sn-$name.raw" ] || name=$(snap_name "$c.q.qcow2" "$arg")
        t_check "$c: -a $arg: the active view is the data of snapshot $name" \
            qemu-img compare -f qcow2 -F raw "$c.q.qcow2" "$c.sn-$name.raw"
    fi
}

# snap_name IMG ID: the name of snapshot ID (qemu-img info, not qinspect).
snap_name() {
    qemu-img info --output=json "$1" | python3 -c '
import json, sys
for s in json.load(sys.stdin).get("snapshots", []):
    if s["id"] == sys.argv[1]:
        print(s["name"])' "$2"
}

# snaps_read CASE: every snapshot left reads (qemu-img convert -l) as the
# data saved when it was taken, in the copies of both tools.
snaps_read() {
    local c=$1 n f
    for n in $(qemu-img info --output=json "$c.q.qcow2" | python3 -c '
import json, sys
print(" ".join(s["name"] for s in json.load(sys.stdin).get("snapshots", [])))'); do
        for f in q m; do
            qemu-img convert -O raw -l "snapshot.name=$n" "$c.$f.qcow2" "$c.read.raw" &&
                t_check "$c: snapshot $n of .$f reads as the data written before it" \
                    cmp "$c.read.raw" "$c.sn-$n.raw" ||
                t_fail "$c: qemu-img convert -l $n of .$f"
        done
    done
    same_files "$c: qemu-img snapshot -l lists the same" <(qemu-img snapshot -l "$c.q.qcow2") \
        <(qemu-img snapshot -l "$c.e.qcow2")
}

# sequence CASE: creates, writes, applies and deletes, compared at each step.
sequence() {
    local c=$1
    snap "$c" c one
    wr "$c" "write -P 0x21 64k 192k" "write -z 1M 64k" "write -P 0x22 3M 4k"
    snap "$c" c two
    wr "$c" "write -c -P 0x23 4M 64k" "write -c -P 0x24 4160k 64k" "discard 0 64k"
    snap "$c" a one
    wr "$c" "write -P 0x25 8k 8k"
    snap "$c" c three
    snap "$c" d two
    wr "$c" "write -P 0x26 2M 128k"
    snap "$c" a 3
    snap "$c" c four
    snap "$c" d one
    snaps_read "$c"
    snap "$c" d three
    snap "$c" d four
}

# half random, half zero: compressed clusters of about half a cluster, so
# that some span two host clusters (a reference in each)
{ head -c 32768 /dev/urandom; head -c 32768 /dev/zero; } >half.rnd
cat half.rnd half.rnd half.rnd half.rnd >rnd256k
data=("write -P 0x11 0 1M" "write -c -P 0x12 2M 64k" "write -c -P 0x13 2176k 64k"
      "write -z 5M 128k" "write -P 0x14 6M 3k" "write -c -s rnd256k 8M 256k")

setup std "cluster_size=65536" 64M "${data[@]}" && sequence std
setup v2 "compat=0.10" 64M "${data[@]}" && sequence v2
setup c4k "cluster_size=4096" 64M "${data[@]}" && sequence c4k
setup extl2 "extended_l2=on" 64M "${data[@]}" "write -P 0x15 7M 4k" && sequence extl2
setup rb4 "refcount_bits=4" 64M "${data[@]}" && sequence rb4
setup rb64 "refcount_bits=64" 64M "${data[@]}" && sequence rb64
# several clusters of L1 table: 4 KiB clusters hold 512 entries (2 GiB)
setup big "cluster_size=4096" 3G "write -P 0x31 0 64k" "write -P 0x32 2G 64k" &&
    { snap big c one; wr big "write -P 0x33 2G 4k"; snap big c two; snap big a one
      snap big d two; snaps_read big; }

# a snapshot of another virtual size: qemu-img -a shrinks the image to a
# smaller one (the active clusters past it discarded, the file cut after
# its last used cluster) and grows it to a larger one; qinspect the same
setup grow "cluster_size=65536" 64M "write -P 0x51 0 1M" && {
    snap grow c small
    for f in e q m; do qemu-img resize -q "grow.$f.qcow2" 128M || t_fail "grow: setup resize"; done
    wr grow "write -P 0x52 100M 64k"
    snap grow c large
    snap grow a small
    snap grow a large
    wr grow "write -P 0x53 120M 1M"
    snap grow a small
    snap grow d large
    snaps_read grow
}
# shrink_snap CASE OPTS SIZE BIGSIZE IO-BELOW IO-PAST: a snapshot taken at
# SIZE, the image grown to BIGSIZE and written past SIZE (IO-PAST, qemu-io
# commands separated by ';', run on one copy that is then copied: qemu-io's
# compressed writes are placed in a different order from run to run),
# another snapshot, then the small one applied (a shrink), the large one,
# the small one again, the large one deleted
shrink_snap() {
    local c=$1 opts=$2 size=$3 big=$4 below=$5 past=$6 cmd
    setup "$c" "$opts" "$size" "$below" || return
    snap "$c" c small
    qemu-img resize -q "$c.e.qcow2" "$big" || t_fail "$c: setup resize"
    local IFS=';'
    for cmd in $past; do qio "$c.e.qcow2" "$cmd" || t_fail "$c: setup qemu-io $cmd"; done
    unset IFS
    cp "$c.e.qcow2" "$c.q.qcow2" && cp "$c.e.qcow2" "$c.m.qcow2" || t_fail "$c: setup cp"
    snap "$c" c large
    snap "$c" a small
    snap "$c" a large
    snap "$c" a small
    snap "$c" d large
    snaps_read "$c"
}
# 512-byte clusters (refcount blocks past the cut are dropped), 64-bit
# refcounts, compressed clusters past the cut, extended L2, 2 MiB clusters
shrink_snap sh512 "cluster_size=512" 2M 8M "write -P 0x54 0 1M" \
    "write -P 0x55 3M 4M;write -P 0x56 1500k 100k"
# (kept below 2 MiB of file: a larger one moves the refcount table, and
# qinspect's snapshot create then places the table in the old table's
# free cluster where QEMU does not)
shrink_snap sh512r64 "cluster_size=512,refcount_bits=64" 1M 2M "write -P 0x57 0 256k" \
    "write -P 0x58 1M 512k"
shrink_snap shcomp "cluster_size=65536" 64M 1G "write -c -P 0x59 0 2M" \
    "write -c -P 0x5a 600M 3M;write -P 0x5b 63M 1M"
shrink_snap shext "extended_l2=on" 100M 1G "write -P 0x5c 0 5k" \
    "write -P 0x5d 900M 7k;write -z 99M 64k"
shrink_snap sh2m "cluster_size=2M" 1G 8G "write -P 0x5e 0 3M" "write -P 0x5f 5G 5M"

# 2-bit refcounts hold 3: the third snapshot of a cluster would need 4
setup rb2 "refcount_bits=2" 16M "write -P 0x41 0 256k" && {
    snap rb2 c one
    snap rb2 c two
    cp rb2.q.qcow2 rb2.before.qcow2
    # qemu-img fails too, after leaking clusters: its copy is put back
    cp rb2.e.qcow2 rb2.e.before.qcow2
    qemu-img snapshot -c three rb2.e.qcow2 2>/dev/null &&
        t_fail "rb2: oracle: qemu-img snapshot -c three was expected to fail"
    mv rb2.e.before.qcow2 rb2.e.qcow2
    out=$("$QINSPECT" snapshot -c three rb2.q.qcow2 2>&1); rc=$?
    if [ $rc -eq 1 ] && printf '%s' "$out" | grep -q "^qinspect: Could not create snapshot 'three': .*2-bit refcount maximum of 3"; then
        t_ok "rb2: a refcount overflow is refused (exit 1, clear message)"
    else
        t_fail "rb2: overflow refusal (exit $rc)"; echo "$out" | t_diag
    fi
    same_files "rb2: the refused create changed nothing" rb2.q.qcow2 rb2.before.qcow2
    snap rb2 d one
}

# ---- errors, as qemu-img 7.2 reports them ----
# err_same DESC IMG ARGS...: qinspect and qemu-img fail with exit status 1
# and the same message (qemu-img's prefix replaced); qinspect leaves the
# file unchanged.
err_same() {
    local desc=$1 img=$2 exp got erc grc
    shift 2
    exp=$(qemu-img snapshot "$@" "$img" 2>&1); erc=$?
    # (qemu-img may change the file even when it fails: it rewrites the
    # bitmap directory when it closes an image with persistent bitmaps)
    cp "$img" err.before
    got=$("$QINSPECT" snapshot "$@" "$img" 2>&1); grc=$?
    if [ "$erc" = 1 ] && [ "$grc" = 1 ] && [ "$got" = "${exp/qemu-img:/qinspect:}" ]; then
        t_ok "$desc"
    else
        t_fail "$desc: qinspect exit $grc, qemu-img exit $erc"
        printf 'qinspect: %s\nqemu-img: %s\n' "$got" "$exp" | t_diag
    fi
    same_files "$desc: file unchanged" "$img" err.before
}

setup errs "cluster_size=65536" 16M "write -P 1 0 64k" && {
    qemu-img snapshot -c first errs.e.qcow2
    err_same "errs: -a of a missing snapshot" errs.e.qcow2 -a nope
    err_same "errs: -d of a missing snapshot" errs.e.qcow2 -d nope
    err_same "errs: -d takes a name, not an id" errs.e.qcow2 -d 1
    err_same "errs: -q does not hide errors" errs.e.qcow2 -q -d nope
    out=$("$QINSPECT" snapshot -U -c x errs.e.qcow2 2>&1); rc=$?
    exp="qinspect: Could not open 'errs.e.qcow2': force-share=on can only be used with read-only images"
    if [ $rc -eq 1 ] && [ "$out" = "$exp" ]; then t_ok "errs: -U with -c refused as qemu-img"
    else t_fail "errs: -U with -c (exit $rc)"; echo "$out" | t_diag; fi
    qemu-io -f qcow2 -c 'sleep 60000' errs.e.qcow2 >/dev/null 2>&1 &
    holder=$!
    t_bg $holder
    # wait (up to 60 s on a busy machine) until the kernel shows qemu-io's
    # OFD locks; polling with qemu-img would race (its own shared lock can
    # make a qemu-io that is still starting fail to get "write": edges.sh)
    ino=$(stat -c %i errs.e.qcow2)
    for i in $(seq 300); do
        grep -q "OFDLCK.*:$ino " /proc/locks && break
        sleep 0.2
    done
    grep -q "OFDLCK.*:$ino " /proc/locks || t_fail "errs: setup: qemu-io never held its lock"
    cp errs.e.qcow2 err.before
    out=$("$QINSPECT" snapshot -c x errs.e.qcow2 2>&1); rc=$?
    if [ $rc -eq 1 ] && printf '%s' "$out" | grep -q 'Failed to get "write" lock'; then
        t_ok "errs: an image in use by QEMU is refused (write lock)"
    else t_fail "errs: locked image (exit $rc)"; echo "$out" | t_diag; fi
    same_files "errs: the locked image is unchanged" errs.e.qcow2 err.before
    t_check "errs: -U -l lists while QEMU holds the image" "$QINSPECT" snapshot -U -l errs.e.qcow2
    t_kill $holder
}

# persistent bitmaps: QEMU refuses to apply a snapshot
if qemu-img create -q -f qcow2 bm.qcow2 16M && qemu-img bitmap --add bm.qcow2 b0 &&
    qemu-img snapshot -c one bm.qcow2; then
    err_same "persistent bitmaps: apply refused as qemu-img" bm.qcow2 -a one
else
    t_fail "bitmaps: setup"
fi

# qemu-img gives only the errno; qinspect adds its reason after it
if qemu-img create -q -f qcow2 -o data_file=df.raw df.qcow2 16M; then
    cp df.qcow2 err.before
    exp=$(qemu-img snapshot -c x df.qcow2 2>&1); erc=$?
    got=$("$QINSPECT" snapshot -c x df.qcow2 2>&1); grc=$?
    case $got in
    "${exp/qemu-img:/qinspect:}: "*"external data file"*)
        [ $erc = 1 ] && [ $grc = 1 ] && t_ok "an external data file: refused as qemu-img" ||
            t_fail "external data file: exit $grc, qemu-img $erc" ;;
    *) t_fail "an external data file: message"; printf '%s\n%s\n' "$got" "$exp" | t_diag ;;
    esac
    same_files "an external data file: file unchanged" df.qcow2 err.before
fi

t_done
