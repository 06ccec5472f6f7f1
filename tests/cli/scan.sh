#!/bin/bash
# tests/cli/scan.sh - img:scan() classifies every host cluster, against
# qemu-img and the file's own bytes.
#
# Oracles: the header, L1/L2 and refcount table offsets are read from the
# file with python (struct, at the offsets of the qcow2 spec); data cluster
# offsets come from `qemu-img map --output=json`; the clusters that
# `qemu-img check` calls leaked must be exactly the ones scan calls
# "unreferenced". Damage is made by python pokes at offsets read from the
# file. The kind of every cluster is printed by a Lua script and compared
# with the expected kind computed in python.
T_DIR=$(cd "$(dirname "$0")" && pwd)
. "$T_DIR/lib.sh"

# kinds IMG: "offset kind shape shared" per cluster (runs expanded)
kinds() {
    "$QINSPECT" "$1" -e '
        local cs = 1 << img.header.cluster_bits
        local runs, info = img:scan()
        for _, r in ipairs(runs) do
            for o = r.offset, r.offset + r.length - 1, cs do
                print(o, r.kind, r.shape or "-", r.shared_kinds and "shared" or "-")
            end
        end
        print("info", info.clusters, info.runs, tostring(info.refs_incomplete),
              (info.walk_error or "-"):gsub("%s", "_"))'
}
# py IMG: the layout from the file bytes (header, L1, L2 tables, refcount
# table and blocks, snapshot table) as "offset kind" lines, python only
layout() {
    python3 - "$1" <<'EOF'
import struct, sys
f = open(sys.argv[1], "rb"); d = f.read()
be = lambda o, n: int.from_bytes(d[o:o + n], "big")
cb = be(20, 4); cs = 1 << cb
l1_size, l1_off = be(36, 4), be(40, 8)
rt_off, rt_cl = be(48, 8), be(56, 4)
nsnap, snap_off = be(60, 4), be(64, 8)
out = {0: "header"}
for k in range(rt_cl): out[rt_off + k * cs] = "refcount table"
for i in range(rt_cl * cs // 8):
    e = be(rt_off + 8 * i, 8) & ~0x1ff
    if e: out[e] = "refcount block"
def l1(off, size):
    for k in range((size * 8 + cs - 1) // cs): out.setdefault(off + k * cs, "L1 table")
    for i in range(size):
        l2 = be(off + 8 * i, 8) & 0x00fffffffffffe00
        if not l2: continue
        out.setdefault(l2, "L2 table")
        for j in range(cs // 8):
            e = be(l2 + 8 * j, 8)
            if e & (1 << 62):
                x = 62 - (cb - 8); coff = e & ((1 << x) - 1)
                nsec = ((e >> x) & ((1 << (cb - 8)) - 1)) + 1
                end = (coff & ~511) + nsec * 512
                for c in range(coff // cs, (end - 1) // cs + 1): out.setdefault(c * cs, "compressed")
            elif e & 0x00fffffffffffe00:
                out.setdefault(e & 0x00fffffffffffe00, "data")
l1(l1_off, l1_size)
o = snap_off
for s in range(nsnap):
    sl1, ssize = be(o, 8), be(o + 8, 4)
    l1(sl1, ssize)
    extra, idl, nl = be(o + 36, 4), be(o + 12, 2), be(o + 14, 2)
    ln = 40 + extra + idl + nl; o += (ln + 7) & ~7
if nsnap:
    for k in range(snap_off // cs, (o - 1) // cs + 1): out.setdefault(k * cs, "snapshot table")
for off in sorted(out): print(off, out[off])
EOF
}
# compare IMG: every cluster the layout names has that kind in the scan
compare() {
    local img=$1 bad
    kinds "$img" >k.out 2>k.err || { echo "scan failed: $(cat k.err)"; return 1; }
    layout "$img" >l.out
    bad=$(awk 'NR==FNR { if ($1 != "info") { kind[$1] = $2; for (i = 3; i < NF - 1; i++) kind[$1] = kind[$1] " " $i } ; next }
               { o = $1; $1 = ""; sub(/^ /, ""); if (kind[o] != $0) print o ": scan says \"" kind[o] "\", file says \"" $0 "\"" }' \
              <(sed 's/\t/ /g' k.out) l.out)
    [ -z "$bad" ] || { echo "$bad" | head; return 1; }
    [ "$(wc -l <l.out)" -ge 4 ] || { echo "layout has only $(wc -l <l.out) clusters"; return 1; }
}
# unref IMG: offsets scan calls unreferenced, one per line
unref() { sed 's/\t/ /g' k.out | awk '$2 == "unreferenced" { print $1 }' | sort -n; }
# leaked CS IMG: offsets of the clusters qemu-img check calls leaked with no
# reference at all (a leak of a cluster still referenced is not unreferenced)
leaked() {
    local cs=$1 img=$2
    qemu-img check "$img" 2>&1 | sed -n 's/^Leaked cluster \([0-9]*\) .* reference=0$/\1/p' |
        while read -r c; do echo $((c * cs)); done | sort -n
}

# ---- a healthy image: every structure where the file says it is ----
qemu-img create -q -f qcow2 a.qcow2 8M
qio a.qcow2 'write -P 0x11 0 192k' 'write -c -P 0x33 1M 64k'
qemu-img snapshot -c s1 a.qcow2
qio a.qcow2 'write -P 0x44 64k 64k' 'write -P 0x55 2M 64k'
t_check "healthy image with a snapshot and a compressed cluster: every cluster's kind as the file's tables say" compare a.qcow2
t_check "healthy image: nothing unreferenced, walk complete" \
    bash -c '[ -z "$(sed "s/\t/ /g" k.out | awk "\$2 == \"unreferenced\"")" ] && grep -q "^info.*false" k.out'
t_check "healthy image: a compressed cluster is reported as compressed" grep -q $'\tcompressed\t' k.out
for off in $(qemu-img map --output=json a.qcow2 | python3 -c '
import json, sys
for r in json.load(sys.stdin):
    if r.get("offset") is not None:
        for o in range(r["offset"], r["offset"] + r["length"], 65536): print(o)'); do
    grep -q "^$off"$'\tdata\t' k.out || { t_fail "qemu-img map's data cluster $off is data in the scan"; continue; }
done
t_ok "every data cluster of qemu-img map is 'data' in the scan"

# ---- leaks: an L2 entry cleared, then the whole active L1 entry ----
cp a.qcow2 b.qcow2
l1=$(python3 -c 'import sys; d=open("b.qcow2","rb").read(); print(int.from_bytes(d[40:48],"big"))')
l2=$(python3 -c "import sys; d=open('b.qcow2','rb').read(); print(int.from_bytes(d[$l1:$l1+8],'big') & 0x00fffffffffffe00)")
# entry 1: written after the snapshot, so its cluster has refcount 1
python3 -c "f=open('b.qcow2','r+b'); f.seek($l2 + 1 * 8); f.write(bytes(8))"
compare b.qcow2 >/dev/null
lk=$(leaked 65536 b.qcow2); un=$(unref)
t_check "an L2 entry cleared: the clusters qemu-img check calls leaked ($lk) are the unreferenced ones" \
    test -n "$lk" -a "$lk" = "$un"
t_check "the leaked data cluster's shape is data" grep -q "^$lk"$'\tunreferenced\tdata' k.out
python3 -c "f=open('b.qcow2','r+b'); f.seek($l1); f.write(bytes(8))"
kinds b.qcow2 >k.out
lk=$(leaked 65536 b.qcow2); un=$(unref)
t_check "the active L1 entry cleared: leaked == unreferenced (the L2 table and its data: $(echo $lk))" \
    test "$(echo "$lk" | wc -l)" -ge 3 -a "$lk" = "$un"
t_check "the orphaned L2 table (it holds a compressed entry) is shaped as an L2 table" \
    grep -q "^$l2"$'\tunreferenced\tl2' k.out

# ---- refcount block unlinked: it is free and shaped like a refcount block ----
qemu-img create -q -f qcow2 -o cluster_size=4096 c.qcow2 8M
qio c.qcow2 'write -P 0x66 0 64k'
rt=$(python3 -c 'd=open("c.qcow2","rb").read(); print(int.from_bytes(d[48:56],"big"))')
rb=$(python3 -c "d=open('c.qcow2','rb').read(); print(int.from_bytes(d[$rt:$rt+8],'big'))")
python3 -c "f=open('c.qcow2','r+b'); f.seek($rt); f.write(bytes(8))"
kinds c.qcow2 >k.out
t_check "refcount table entry cleared: the block is free (refcount 0) and refblock-shaped" \
    grep -q "^$rb"$'\tfree\trefblock' k.out

# ---- overlap: an L2 entry pointing at the L1 table ----
cp a.qcow2 d.qcow2
python3 -c "f=open('d.qcow2','r+b'); f.seek($l2 + 8 * 3); f.write(($l1 | (1 << 63)).to_bytes(8, 'big'))"
kinds d.qcow2 >k.out
t_check "an L2 entry pointing at the L1 table: that cluster is marked as shared by two kinds" \
    grep -q "^$l1"$'\tL1 table\t-\tshared' k.out

# ---- damage that stops the walk: an L1 entry far past the end of the file ----
cp a.qcow2 e.qcow2
python3 -c "f=open('e.qcow2','r+b'); f.seek($l1); f.write(((1 << 40) | (1 << 63)).to_bytes(8, 'big'))"
kinds e.qcow2 >k.out 2>k.err
t_check "an L1 entry past EOF: the scan completes, says the walk is incomplete and where" \
    grep -q "^info.*true.*L" k.out
t_check "... and still classifies the header and the refcount table" \
    grep -q -e "^0"$'\theader' -e $'\trefcount table' k.out

# ---- a callback streams the runs and can stop the scan ----
out=$("$QINSPECT" a.qcow2 -e 'local n = 0
    local info = img:scan(function(r) n = n + 1; return n == 3 end)
    local all = select(2, img:scan())
    print(n, all.runs > 3)' 2>&1)
t_check "img:scan(fn) calls fn per run and stops when fn returns true ($out)" test "$out" = "3	true"
out=$("$QINSPECT" a.qcow2 -e 'print(pcall(img.scan, img, function() error("boom") end))' 2>&1)
case $out in *false*boom*) t_ok "an error in the callback is raised by img:scan" ;;
    *) t_fail "an error in the callback: $out" ;; esac
t_done
