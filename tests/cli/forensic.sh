#!/bin/bash
# tests/cli/forensic.sh - the forensic open (--force, qinspect.open(path,
# {force=true})) of images QEMU refuses, and the refusal that points to it.
#
# Every image is made by qemu-img/qemu-io, then bytes are poked at exact
# offsets read back from the header qemu-img wrote. For each damage:
#   - QEMU is the oracle of the refusal: qemu-img info must refuse the
#     image (else the case tests nothing), and a normal qinspect info must
#     refuse it too, exit 1, with a message naming the structure, the
#     offset and --force;
#   - info --force opens it, exit 0, with one warning line per damage
#     naming the structure and offset; a session with --force sees the same
#     in img.damage ({structure, offset, reason});
#   - what is not damaged reads as QEMU read it before the damage (qemu-img
#     convert of the intact image); what is damaged raises naming it;
#   - img:peek returns the file's bytes (compared with dd), bounded.
# An unreadable header (version 5) is refused even with --force, and its
# message does not offer --force.
. "$(dirname "$0")/lib.sh"

# run ARGS...: sets RC, OUT, ERR from one qinspect run.
run() {
    "$QINSPECT" "$@" >out.txt 2>err.txt
    RC=$?
    OUT=$(cat out.txt)
    ERR=$(cat err.txt)
}

# expect DESC COND: COND (a shell test string) holds after the last run.
expect() {
    if sanitizer_report err.txt; then
        t_fail "$1 (sanitizer report)"
        head -20 err.txt | t_diag
    elif eval "$2"; then
        t_ok "$1"
    else
        t_fail "$1"
        printf 'exit %s\nstdout: %s\nstderr: %s\n' "$RC" "$OUT" "$ERR" | head -20 | t_diag
    fi
}

# field IMG NAME: a header field (big-endian, offsets of the qcow2 spec)
field() {
    python3 - "$1" "$2" <<'PY'
import struct, sys
f = {'l1_size': (36, '>I'), 'l1_off': (40, '>Q'), 'rt_off': (48, '>Q'),
     'nb_snap': (60, '>I'), 'snap_off': (64, '>Q'), 'incompat': (72, '>Q')}
off, fmt = f[sys.argv[2]]
with open(sys.argv[1], 'rb') as fh:
    fh.seek(off)
    print(struct.unpack(fmt, fh.read(struct.calcsize(fmt)))[0])
PY
}

# poke IMG OFFSET FMT VALUE: pack VALUE (struct format FMT) at OFFSET
poke() {
    python3 - "$@" <<'PY'
import struct, sys
with open(sys.argv[1], 'r+b') as fh:
    fh.seek(int(sys.argv[2]))
    fh.write(struct.pack(sys.argv[3], int(sys.argv[4], 0)))
PY
}

t_check "setup: qemu-img/qemu-io make good.qcow2 (data + one snapshot)" \
    eval 'qemu-img create -q -f qcow2 good.qcow2 4M &&
          qio good.qcow2 "write -P 0x5a 0 192k" "write -P 0x33 1M 64k" &&
          qemu-img snapshot -c s1 good.qcow2 &&
          qemu-img convert -f qcow2 -O raw good.qcow2 want.raw'

L1=$(field good.qcow2 l1_off)

# mk NAME: a copy of good.qcow2 to damage
mk() { cp good.qcow2 "$1.qcow2"; }

# refused NAME STRUCT HEX: qemu-img info refuses NAME.qcow2; so does
# qinspect info, naming STRUCT and 0xHEX, and offering --force.
refused() {
    local f=$1.qcow2
    ST=$2 HX=$3
    if qemu-img info -f qcow2 "$f" >/dev/null 2>&1; then
        t_fail "$1: qemu-img info opens the image: the case damages nothing QEMU checks"
    else
        t_ok "$1: qemu-img info refuses it"
    fi
    run info "$f"
    expect "$1: info refuses it too, naming $ST at 0x$HX and --force" \
        '[ $RC -eq 1 ] && printf "%s" "$ERR" | grep -q "$ST" &&
         printf "%s" "$ERR" | grep -Eqi "0x0*$HX([^0-9a-f]|\$)" &&
         printf "%s" "$ERR" | grep -q -- "--force"'
    run info --force "$f"
    expect "$1: info --force opens it (exit 0) and warns: damage $ST at 0x$HX" \
        '[ $RC -eq 0 ] && printf "%s" "$OUT" | grep -q "^image: " &&
         printf "%s" "$ERR" | grep "warning: damage" | grep "$ST" |
             grep -Eqi "0x0*$HX([^0-9a-f]|\$)"'
}

# ---- a bad active L1 table offset (not cluster aligned) ----
mk l1bad
poke l1bad.qcow2 40 '>Q' $((L1 + 0x200))
refused l1bad "L1 table" "$(printf '%x' $((L1 + 0x200)))"
run --force l1bad.qcow2 -e '
    assert(#img.damage == 1, "one damage")
    local d = img.damage[1]
    assert(d.structure == "L1 table" and d.offset == '$((L1 + 0x200))', "structure and offset")
    assert(type(d.reason) == "string" and d.reason:find("aligned"), "reason")
    assert(not img.writable, "read-only without -w")
    local ok, e = pcall(img.read, img, 0, 512)
    assert(not ok and e.structure == "L1 table", "a read raises naming the L1 table")
    print(img.header.l1_table_offset)'
expect "l1bad: session --force: img.damage = {L1 table, offset, reason}; reads raise naming it; the header reads" \
    '[ $RC -eq 0 ] && [ "$OUT" = "$((L1 + 0x200))" ]'
dd if=l1bad.qcow2 of=want.peek bs=1 skip=$L1 count=4096 status=none
"$QINSPECT" --force l1bad.qcow2 -e 'io.stdout:write(img:peek('$L1', 4096))' >peek.bin 2>err.txt
RC=$? OUT= ERR=$(cat err.txt)
cmp -s peek.bin want.peek; C=$?
expect "l1bad: img:peek(L1 offset, 4096) returns the file's bytes (as dd)" '[ $C -eq 0 ] && [ $RC -eq 0 ]'
run convert --force -O raw l1bad.qcow2 out.raw
expect "l1bad: convert --force of the unavailable L1 fails naming the L1 table" \
    '[ $RC -eq 1 ] && printf "%s" "$ERR" | grep -q "L1 table"'

# ---- an unknown incompatible feature bit (bit 5) ----
mk incompat
poke incompat.qcow2 72 '>Q' $(( $(field good.qcow2 incompat) | 0x20 ))
refused incompat "header" "48"
run convert --force -O raw incompat.qcow2 out.raw
cmp -s out.raw want.raw; C=$?
expect "incompat: convert --force reads what qemu-img convert read before the damage" \
    '[ $C -eq 0 ] && [ $RC -eq 0 ]'

# ---- a huge l1_size ----
mk l1huge
poke l1huge.qcow2 36 '>I' 0x7fffffff
refused l1huge "header" "24"
run --force l1huge.qcow2 -e 'local ok, e = pcall(img.read, img, 0, 1)
    print(#img.damage, img.damage[1].structure, img.damage[1].offset, ok, e.structure, e.offset)'
expect "l1huge: session --force: damage header at 36; reads raise with that reason (not out of memory)" \
    '[ $RC -eq 0 ] && printf "%s" "$OUT" | grep -q "^1	header	36	false	header	36\$"'

# ---- a snapshot table QEMU refuses (nb_snapshots above the limit) ----
mk snaps
poke snaps.qcow2 60 '>I' 0x7fffffff
refused snaps "header" "3c"
run --force snaps.qcow2 -e 'print(#img.snapshots)'
expect "snaps: session --force: no snapshots are read" '[ $RC -eq 0 ] && [ "$OUT" = 0 ]'
run convert --force -O raw snaps.qcow2 out.raw
cmp -s out.raw want.raw; C=$?
expect "snaps: convert --force reads the active data as qemu-img did before the damage" \
    '[ $C -eq 0 ] && [ $RC -eq 0 ]'

# ---- refcount_order 7: the refcounts are unavailable, the data reads ----
mk rorder
poke rorder.qcow2 96 '>I' 7
refused rorder "header" "60"
run --force rorder.qcow2 -e 'local ok, e = pcall(img.refcount, img, 0)
    print(ok, e.structure, e.offset)'
expect "rorder: session --force: a refcount lookup raises naming header offset 96" \
    '[ $RC -eq 0 ] && [ "$OUT" = "false	header	96" ]'
run convert --force -O raw rorder.qcow2 out.raw
cmp -s out.raw want.raw; C=$?
expect "rorder: convert --force reads what qemu-img convert read before the damage" \
    '[ $C -eq 0 ] && [ $RC -eq 0 ]'

# ---- a missing backing file ----
t_check "setup: overlay.qcow2 over base.qcow2 (qemu-img), then base removed" \
    eval 'qemu-img create -q -f qcow2 base.qcow2 4M && qio base.qcow2 "write -P 0x11 0 1M" &&
          qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 overlay.qcow2 &&
          qio overlay.qcow2 "write -P 0x22 64k 64k" && rm base.qcow2'
if qemu-img convert -f qcow2 -O raw overlay.qcow2 q.raw >/dev/null 2>&1; then
    t_fail "overlay: qemu-img convert reads an overlay whose backing file is gone"
else
    t_ok "overlay: qemu-img convert refuses an overlay whose backing file is gone"
fi
run convert -O raw overlay.qcow2 out.raw
expect "overlay: convert refuses it too, offering --force" \
    '[ $RC -eq 1 ] && printf "%s" "$ERR" | grep -q "base.qcow2" && printf "%s" "$ERR" | grep -q -- "--force"'
run convert --force -O raw overlay.qcow2 out.raw
expect "overlay: convert --force warns about the backing file and reads the overlay's own data" \
    '[ $RC -eq 0 ] && printf "%s" "$ERR" | grep "warning: damage" | grep -q "base.qcow2"'
qemu-io -c 'read -q -P 0x22 64k 64k' -c 'read -q -P 0 0 64k' \
    -f raw out.raw >qio.txt 2>&1; C=$?
grep -qiE 'error|fail|mismatch' qio.txt && C=1
expect "overlay: the overlay's cluster is there (qemu-io read -P 0x22), the rest zeros" '[ $C -eq 0 ]'

# ---- peek bounds, healthy images ----
run --force good.qcow2 -e 'print(#img.damage, img:peek(0, 4) == "QFI\xfb", #img:peek(img.file_size - 2, 10),
    #img:peek(img.file_size + 100, 10), pcall(img.peek, img, 0, (1 << 20) + 1))'
expect "good: no damage; peek: the magic, short at the end of the file, empty past it, at most 1 MiB" \
    '[ $RC -eq 0 ] && printf "%s" "$OUT" | grep -q "^0	true	2	0	false	.*1 MiB"'
run good.qcow2 -e 'print(#img.damage)'
expect "good: a normal open has an empty img.damage" '[ $RC -eq 0 ] && [ "$OUT" = 0 ]'
run good.qcow2 -e 'local i, m = qinspect.open("l1bad.qcow2"); print(i, m)'
expect "qinspect.open of a refused image: nil and a message offering {force=true}" \
    '[ $RC -eq 0 ] && printf "%s" "$OUT" | grep -q "^nil	.*L1 table.*force=true"'

# ---- an unreadable header: refused even with --force, no offer ----
mk v5
poke v5.qcow2 4 '>I' 5
run info --force v5.qcow2
expect "v5: info --force refuses an unreadable header (version 5)" \
    '[ $RC -eq 1 ] && printf "%s" "$ERR" | grep -q "version"'
run info v5.qcow2
expect "v5: the normal refusal does not offer --force" \
    '[ $RC -eq 1 ] && ! printf "%s" "$ERR" | grep -q -- "--force"'

t_done
