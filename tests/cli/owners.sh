#!/bin/bash
# tests/cli/owners.sh - img:owners() answers from an index built once per
# file state: it must follow every change a session makes (guest writes
# with copy-on-write, raw pokes, snapshot deletion), never answer from a
# stale index. Expected counts come from qemu-img check's refcounts of the
# same states (a clean image has exactly refcount-many references).
T_DIR=$(cd "$(dirname "$0")" && pwd)
. "$T_DIR/lib.sh"

# refcount CLUSTER IMG: the refcount qemu-img's view implies, read from the
# file with python (16-bit refcounts, one refcount block)
refcount() {
    python3 - "$1" "$2" <<'PY'
import sys
c, d = int(sys.argv[1]), open(sys.argv[2], "rb").read()
be = lambda o, n: int.from_bytes(d[o:o + n], "big")
rt = be(48, 8); cs = 1 << be(20, 4); per = cs // 2
blk = be(rt + 8 * (c // per), 8)
print(be(blk + 2 * (c % per), 2) if blk else 0)
PY
}

qemu-img create -q -f qcow2 a.qcow2 4M
qio a.qcow2 'write -P 0x11 0 128k'
qemu-img snapshot -c s1 a.qcow2
host=$(qemu-img map --output=json a.qcow2 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["offset"])')
c=$((host / 65536))
t_check "the shared data cluster has refcount 2 in the file" test "$(refcount $c a.qcow2)" = 2

out=$("$QINSPECT" -w a.qcow2 -e "
    local before = #img:owners($host)
    img:write(0, string.rep('y', 65536))
    local after = #img:owners($host)
    img:flush()
    io.write(before, ' ', after)" 2>&1)
t_check "owners before and after a copy-on-write in one session: 2 then 1 ($out)" test "$out" = "2 1"
t_check "... and qemu-img check is clean after the session" qemu-img check -q a.qcow2
t_check "the file's refcount of that cluster is 1 after the session" test "$(refcount $c a.qcow2)" = 1

l1=$(python3 -c 'd=open("a.qcow2","rb").read(); print(int.from_bytes(d[40:48],"big"))')
out=$("$QINSPECT" -w a.qcow2 -e "
    local l2 = img.l1[0].l2_offset
    local before = #img:owners(l2)
    img:poke($l1, string.rep('\0', 8))
    io.write(before, ' ', #img:owners(l2))" 2>&1)
t_check "a raw poke clearing the L1 entry: the L2 table's owners drop from 1 to 0 ($out)" test "$out" = "1 0"

qemu-img create -q -f qcow2 b.qcow2 4M
qio b.qcow2 'write -P 0x22 0 64k'
qemu-img snapshot -c s1 b.qcow2
host=$(qemu-img map --output=json b.qcow2 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["offset"])')
out=$("$QINSPECT" -w b.qcow2 -e "
    local before = #img:owners($host)
    img:snapshot_delete('s1')
    io.write(before, ' ', #img:owners($host))" 2>&1)
t_check "deleting the snapshot: the data cluster's owners drop from 2 to 1 ($out)" test "$out" = "2 1"
t_check "qemu-img check is clean after it" qemu-img check -q b.qcow2
# a change that stays in the metadata cache until a flush: a zero write
# turning an allocated cluster into a plain zero entry (unmap)
qemu-img create -q -f qcow2 c.qcow2 4M
qio c.qcow2 'write -P 0x33 0 64k'
host=$(qemu-img map --output=json c.qcow2 | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["offset"])')
out=$("$QINSPECT" -w c.qcow2 -e "
    local before = #img:owners($host)
    img:zero(0, 65536, {unmap = true})
    io.write(before, ' ', #img:owners($host))" 2>&1)
t_check "a zero write with unmap: the cluster's owners drop from 1 to 0 ($out)" test "$out" = "1 0"
t_check "qemu-img check is clean after it" qemu-img check -q c.qcow2

# references spanning many clusters: the L1 table of a 1 GiB image with
# 512-byte clusters (4096 entries: 64 clusters)
qemu-img create -q -f qcow2 -o cluster_size=512 d.qcow2 1G
l1=$(python3 -c 'd=open("d.qcow2","rb").read(); print(int.from_bytes(d[40:48],"big"))')
out=$("$QINSPECT" d.qcow2 -e "
    local o = img:owners($l1 + 512 * 40)
    io.write(#o, ' ', o[1] and o[1].kind or '-')" 2>&1)
t_check "a cluster in the middle of a 64-cluster L1 table has one owner, the L1 table ($out)" \
    test "$out" = "1 L1 table"
t_done
