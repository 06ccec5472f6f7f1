#!/bin/bash
# tests/cli/write.sh - guest writes (img:write) against QEMU.
#
# For each image of a matrix made by qemu-img/qemu-io (cluster sizes 512 B
# to 2 MiB, refcount widths 1..64, compat 0.10 and 1.1, zlib and zstd
# compressed clusters, snapshots made by qemu-img, a 3-deep backing chain,
# lazy refcounts), workload.lua applies the same random writes to the image
# and to a raw model that starts as `qemu-img convert -O raw` of the image.
# Then: `qemu-img check` exits 0 (no corruption, no leak), `qemu-img
# compare` finds image and model identical, a snapshot still reads as it did
# before, and qemu-io writing after qinspect reads back what it wrote while
# the rest still equals the model. Images with extended L2 entries and
# external data files (plain and data_file_raw) get the same workload.
T_DIR=$(cd "$(dirname "$0")" && pwd)
. "$T_DIR/lib.sh"

qio() { qemu-io -f qcow2 "$@" >/dev/null || { t_fail "setup: qemu-io $*"; return 1; }; }

# run_case NAME SEED N MAXLEN HOT: workload on NAME.qcow2, then the checks.
run_case() {
    local name=$1 seed=$2 n=$3 maxlen=$4 hot=$5 out
    qemu-img convert -O raw "$name.qcow2" "$name.model" ||
        { t_fail "$name: setup: qemu-img convert"; return; }
    if out=$("$QINSPECT" -w "$name.qcow2" "$T_DIR/workload.lua" "$name.model" "$seed" \
             "$n" "$maxlen" "$hot" 2>&1); then
        t_ok "$name: $n random writes (seed $seed, up to $maxlen bytes)"
    else
        t_fail "$name: $n random writes (seed $seed, up to $maxlen bytes)"
        printf '%s\n' "$out" | tail -5 | t_diag
        return
    fi
    t_check "$name: qemu-img check is clean (exit 0)" qemu-img check -q "$name.qcow2"
    t_check "$name: qemu-img compare: image equals the model" \
        qemu-img compare -q -f qcow2 -F raw "$name.qcow2" "$name.model"
}

# plain images of several geometries
qemu-img create -q -f qcow2 plain.qcow2 64M
run_case plain 1 300 200000 4M
qemu-img create -q -f qcow2 -o cluster_size=512 c512.qcow2 4M
run_case c512 2 300 3000 256k
qemu-img create -q -f qcow2 -o cluster_size=2M c2m.qcow2 64M
run_case c2m 3 60 3000000 8M
qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 32M
qio -c 'write -P 0x11 0 1M' -c 'write -z 2M 128k' v2.qcow2
run_case v2 4 200 150000 2M
qemu-img create -q -f qcow2 -o lazy_refcounts=on lazy.qcow2 32M
run_case lazy 5 100 100000 1M
for bits in 1 2 4 8 32 64; do
    qemu-img create -q -f qcow2 -o refcount_bits=$bits,cluster_size=4k rc$bits.qcow2 16M
    qio -c 'write -P 0x22 0 256k' rc$bits.qcow2
    run_case rc$bits $((10 + bits)) 150 20000 512k
done

# the refcount table grows (a one-cluster table of 64-bit refcounts in 512 B
# clusters covers 2 MiB): header fields rewritten, old table freed
qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=64 grow.qcow2 8M
run_case grow 6 40 200000 8M
rt=$(python3 -c 'import struct,sys; d=open("grow.qcow2","rb").read(64); print(struct.unpack(">I", d[56:60])[0])')
if [ "$rt" -gt 1 ]; then t_ok "grow: the refcount table grew to $rt clusters"
else t_fail "grow: the refcount table grew (still $rt cluster)"; fi

# data already there: written, zeroed (with and without allocation) and
# compressed by QEMU
qemu-img create -q -f qcow2 full.qcow2 32M
qio -c 'write -P 0x33 0 4M' -c 'write -z 1M 256k' -c 'write -z -u 2M 256k' \
    -c 'write -c -P 0x44 8M 64k' -c 'write -c -P 0x45 8256k 64k' full.qcow2
run_case full 20 200 150000 10M
for ct in zlib zstd; do
    qemu-img create -q -f raw src-$ct.raw 16M
    qemu-io -f raw -c 'write -P 0x51 0 3M' -c 'write -P 0x52 5M 1M' src-$ct.raw >/dev/null
    qemu-img convert -q -c -O qcow2 -o compression_type=$ct src-$ct.raw comp-$ct.qcow2
    run_case comp-$ct 21 150 100000 6M
done

# snapshots made by qemu-img: the active tables are shared, writes copy
qemu-img create -q -f qcow2 snap.qcow2 32M
qio -c 'write -P 0x61 0 6M' snap.qcow2
qemu-img snapshot -c before snap.qcow2
qemu-img convert -O raw -l before snap.qcow2 snap-before.raw
run_case snap 30 250 150000 6M
qemu-img convert -O raw -l before snap.qcow2 snap-after.raw
t_check "snap: the snapshot reads as before the writes" cmp snap-before.raw snap-after.raw
t_check "snap: qemu-img can still apply the snapshot" qemu-img snapshot -a before snap.qcow2
t_check "snap: after apply, check is clean" qemu-img check -q snap.qcow2
t_check "snap: after apply, the image reads as the snapshot" \
    qemu-img compare -q -f qcow2 -F raw snap.qcow2 snap-before.raw

# a 3-deep backing chain (raw base, two qcow2 layers)
qemu-img create -q -f raw base.raw 24M
qemu-io -f raw -c 'write -P 0x71 0 24M' base.raw >/dev/null
qemu-img create -q -f qcow2 -b base.raw -F raw mid.qcow2
qio -c 'write -P 0x72 1M 3M' mid.qcow2
qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2
qio -c 'write -P 0x73 2M 1M' top.qcow2
run_case top 40 200 100000 8M
t_check "top: the backing file is unchanged" qemu-img check -q mid.qcow2

# qemu-io writes into an image qinspect wrote; both read the same
qio -c 'write -P 0x7a 100k 300k' plain.qcow2
qemu-io -f raw -c 'write -P 0x7a 100k 300k' plain.model >/dev/null
t_check "plain: after qemu-io writes on top, check is clean" qemu-img check -q plain.qcow2
t_check "plain: qemu-io's writes and qinspect's read back together" \
    qemu-img compare -q -f qcow2 -F raw plain.qcow2 plain.model
out=$("$QINSPECT" -e 'local m = io.open("plain.model","rb"):read(1<<20)
          assert(img:read(0, 1<<20) == m, "first MiB differs")' plain.qcow2 2>&1)
if [ $? -eq 0 ]; then t_ok "plain: qinspect reads qemu-io's writes as the model has them"
else t_fail "plain: qinspect reads qemu-io's writes as the model has them"; printf '%s\n' "$out" | t_diag; fi

# zero and discard: the same cluster-aligned operations through qemu-io and
# through qinspect give the same guest data and the same map (zero, data,
# present flags; host offsets may differ), both clean
mapflags() { qemu-img map --output=json "$1" | python3 -c '
import json, sys
for r in json.load(sys.stdin):
    print(r["start"], r["length"], r["depth"], r["present"], r["zero"], r["data"])'; }
zd_case() {  # NAME: NAME.base made by the caller
    local name=$1 ops q=() l=''
    ops=("write -z 0 192k" "write -z -u 256k 128k" "discard 512k 192k" "write -z 1M 64k"
         "discard 1088k 64k" "write -z -u 1216k 64k" "write -z 2M 1M" "discard 3M 512k"
         "write -P 0x5a 4160k 100k" "write -z 4160k 64k")
    for o in "${ops[@]}"; do
        q+=(-c "$o")
        set -- $o
        case "$1 $2" in
        "write -z") if [ "$3" = -u ]; then l="$l img:zero($4, $5, {unmap=true})"
                    else l="$l img:zero($3, $4)"; fi ;;
        "write -P") l="$l img:write($4, string.rep(string.char($3), $5))" ;;
        discard*) l="$l img:discard($2, $3)" ;;
        esac
    done
    l=$(printf '%s' "$l" | sed -e 's/\([0-9][0-9]*\)k/(\1*1024)/g' -e 's/\([0-9][0-9]*\)M/(\1*1048576)/g')
    cp "$name.base" "$name.qio"; cp "$name.base" "$name.qi"
    qemu-io -f qcow2 "${q[@]}" "$name.qio" >/dev/null || { t_fail "$name: setup: qemu-io ${q[*]}"; return; }
    t_check "$name: zero/discard/write through img:zero, img:discard, img:write" \
        "$QINSPECT" -w -e "$l" "$name.qi"
    t_check "$name: qemu-img check is clean after zero and discard" qemu-img check -q "$name.qi"
    t_check "$name: the guest data equals qemu-io's" qemu-img compare -q "$name.qi" "$name.qio"
    if [ "$(mapflags "$name.qi")" = "$(mapflags "$name.qio")" ] && [ -n "$(mapflags "$name.qio")" ]; then
        t_ok "$name: qemu-img map (zero/data/present) equals qemu-io's"
    else
        t_fail "$name: qemu-img map (zero/data/present) equals qemu-io's"
        diff <(mapflags "$name.qi") <(mapflags "$name.qio") | head -10 | t_diag
    fi
}
qemu-img create -q -f qcow2 zd.base 8M
qio -c 'write -c -P 0x12 1M 64k' -c 'write -P 0x11 0 1M' -c 'write -P 0x11 1088k 4M' \
    -c 'write -z 2M 64k' zd.base
zd_case zd
qemu-img create -q -f qcow2 zds.base 8M
qio -c 'write -P 0x21 0 5M' zds.base
qemu-img snapshot -c s zds.base
zd_case zds
qemu-img create -q -f qcow2 -b base.raw -F raw zdb.base 8M
qio -c 'write -P 0x31 0 2M' zdb.base
zd_case zdb
qemu-img create -q -f qcow2 -o compat=0.10 zd2.base 8M
qio -c 'write -P 0x41 0 5M' zd2.base
zd_case zd2
qemu-img create -q -f qcow2 -o compat=0.10 -b base.raw -F raw zd2b.base 8M
qio -c 'write -P 0x42 0 5M' zd2b.base
zd_case zd2b
# unaligned pieces: content only (QEMU may widen a piece to a cluster)
cp zd.base zdu.qi; cp zd.base zdu.qio
qio -c 'write -z 1000 70000' -c 'discard 300000 100' -c 'write -z -u 700001 5000' zdu.qio
t_check "unaligned zero and discard through qinspect" "$QINSPECT" -w \
    -e 'img:zero(1000, 70000) img:discard(300000, 100) img:zero(700001, 5000, {unmap=true})' zdu.qi
t_check "unaligned zero and discard: clean" qemu-img check -q zdu.qi
t_check "unaligned zero and discard: the guest data equals qemu-io's" qemu-img compare -q zdu.qi zdu.qio

# locks: while a -w session holds the image, qemu-io cannot open it for
# writing (run from inside the session, so no timing is involved)
qemu-img create -q -f qcow2 lk.qcow2 1M
out=$("$QINSPECT" -w -e 'img:write(0, "abc")
    local ok = os.execute("qemu-io -f qcow2 -c \"write 0 512\" lk.qcow2 >lk.err 2>&1")
    assert(not ok, "qemu-io could write while qinspect -w had the image")
    local e = io.open("lk.err"):read("a")
    assert(e:find("lock"), "qemu-io failed without a lock error: " .. e)' lk.qcow2 2>&1)
if [ $? -eq 0 ]; then t_ok "while qinspect -w has the image, qemu-io cannot open it for writing"
else t_fail "while qinspect -w has the image, qemu-io cannot open it for writing"; printf '%s\n' "$out" | t_diag; fi
# and while qemu-io holds it, -w is refused with a clear message
qemu-io -f qcow2 -c 'sleep 600000' lk.qcow2 >/dev/null 2>&1 &
lkpid=$!
t_bg "$lkpid"
ino=$(stat -c %i lk.qcow2)
for _ in $(seq 600); do grep -q "OFDLCK.*:$ino " /proc/locks && break; sleep 0.1; done
if ! grep -q "OFDLCK.*:$ino " /proc/locks; then
    t_fail "setup: qemu-io did not lock lk.qcow2 within 60 s"
else
    out=$("$QINSPECT" -w -e 'img:write(0, "x")' lk.qcow2 2>&1)
    rc=$?
    if [ $rc -eq 1 ] && printf '%s' "$out" | grep -q 'lock'; then
        t_ok "while qemu-io has the image, qinspect -w is refused naming the lock"
    else
        t_fail "while qemu-io has the image, qinspect -w is refused naming the lock (rc $rc)"
        printf '%s\n' "$out" | t_diag
    fi
fi
kill "$lkpid" 2>/dev/null; wait "$lkpid" 2>/dev/null

# img:trace: the on-disk writes of an allocating write, in crash-safe order
qemu-img create -q -f qcow2 tr.qcow2 8M
out=$("$QINSPECT" -w -e '
    local t = img:trace(function() img:write(65536, string.rep("x", 65536)); img:flush() end)
    local pos = {}
    for i, r in ipairs(t) do pos[r.structure] = pos[r.structure] or i end
    for _, s in ipairs{"data cluster", "refcount block", "L1 table", "L2 table", "barrier"} do
      assert(pos[s], "no " .. s .. " record") end
    -- the new L2 table is linked into L1 only after it is on disk, counted
    local l1, l2, data
    for i, r in ipairs(t) do
      if r.structure == "L1 table" then l1 = l1 or i end
      if r.structure == "L2 table" then l2 = i end
      if r.structure == "data cluster" then data = r end
    end
    assert(pos["refcount block"] < pos["L2 table"], "refcount block after the L2 table")
    assert(pos["L2 table"] < l1, "L1 entry written before its L2 table")
    local b = 0
    for i = pos["refcount block"], l1 do if t[i].structure == "barrier" then b = b + 1 end end
    assert(b >= 1, "no barrier between the refcount block and the L1 entry")
    -- the last L2 write points guest cluster 1 at the data, COPIED set
    local c = t[l2].changes
    assert(c and #c == 1 and c[1].new == (data.offset | (1 << 63)), "L2 change is not data|COPIED")
    assert(data.length == 65536 and t[l1].changes[1].old == 0, "data or L1 record")
    -- a barrier separates the data from the L2 entry that points at it
    local seen = false
    for i = 1, l2 do if t[i] == data then seen = true elseif seen and t[i].structure == "barrier" then seen = "ok" end end
    assert(seen == "ok", "no barrier between the data and the L2 entry")
    local ok, e = pcall(img.trace, img, function() error("inner") end)
    assert(not ok and tostring(e):find("inner"), "error in fn is raised again")
    ' tr.qcow2 2>&1)
if [ $? -eq 0 ]; then t_ok "img:trace: data and refcount block, barrier, L2 table, L1 entry, in that order"
else t_fail "img:trace: data and refcount block, barrier, L2 table, L1 entry, in that order"; printf '%s\n' "$out" | t_diag; fi
t_check "tr: clean after the traced write" qemu-img check -q tr.qcow2

# raw edits: they reach the disk (qemu-img check sees them), are logged,
# and no stale cached table overwrites them later
qemu-img create -q -f qcow2 raw.qcow2 8M
qio -c 'write -P 0x11 0 256k' raw.qcow2
out=$("$QINSPECT" -w -e '
    local e = img:l2_for(65536)
    local was = e.raw
    e.raw = was & ~(1 << 63)                -- COPIED off: qemu-img calls it corruption
    local ed = img:edits()
    assert(#ed == 1 and ed[1].old == was and ed[1].new == was & ~(1 << 63), "edit log")
    img:flush()
    -- qemu-img check -U: this session holds the write lock
    local function check() local _, _, c = os.execute("qemu-img check -U -q raw.qcow2 >/dev/null 2>&1") return c end
    assert(check() == 2, "qemu-img check did not report the missing COPIED as corruption")
    e.raw = was
    img:flush()
    assert(check() == 0, "not clean after the edit back")
    local host = e.host_offset
    assert(img:set_refcount(host, 2) == 1, "old refcount")
    img:flush()
    -- refcount 2 under an entry with COPIED: a leak, and COPIED with a
    -- refcount above 1 is corruption (exit 2)
    assert(check() == 2, "qemu-img check did not see the raised refcount")
    img:set_refcount(host, 1)
    -- poke into a cached, dirty L2 table; a later write to the same table
    -- must not bring the old copy back
    img:write(3 * 65536, ("y"):rep(65536))
    local l2 = img.l1[0].l2_offset
    local old = img:poke(l2 + 8 * 100, string.pack(">I8", 0x8000000000000000 | host))
    assert(old == string.rep("\0", 8), "poke returns the old bytes")
    img:write(4 * 65536, ("z"):rep(65536))
    img:flush()
    assert(img:l2_for(100 * 65536).raw == (0x8000000000000000 | host), "the poke was overwritten")
    assert(img:read(4 * 65536, 1) == "z", "write after the poke")' raw.qcow2 2>&1)
if [ $? -eq 0 ]; then t_ok "raw edits (entry.raw, set_refcount, poke) reach the disk, are logged, survive later writes"
else t_fail "raw edits (entry.raw, set_refcount, poke) reach the disk, are logged, survive later writes"; printf '%s\n' "$out" | t_diag; fi
# guest cluster 100 now shares cluster 1's data (refcount 1, two references)
qemu-img check raw.qcow2 >raw.check 2>&1
if grep -q 'refcount=1 reference=2' raw.check; then t_ok "the poked entry is on disk: qemu-img sees two references"
else t_fail "the poked entry is on disk: qemu-img sees two references"; t_diag <raw.check; fi
# field setters: entry.copied, entry.host_offset, l1 entry copied and
# l2_offset change only their bits (read back from the file with python,
# qemu-img check sees the result), are logged, and refuse values that do
# not fit the field
qemu-img create -q -f qcow2 fld.qcow2 8M
qio -c 'write -P 0x11 0 128k' -c 'write -c -P 0x22 128k 64k' fld.qcow2
out=$("$QINSPECT" -w -e '
    local e, c, l1 = img:l2_for(0), img:l2_for(131072), img.l1[0]
    local h, ch = e.host_offset, c.host_offset
    e.copied = false
    e.host_offset = h + 65536                -- now the same cluster as entry 1
    c.host_offset = ch + 8                   -- compressed: the byte offset field
    l1.copied = false
    for _, f in ipairs{function() e.host_offset = h + 100 end, function() e.host_offset = 1 << 56 end,
                       function() l1.l2_offset = 7 end, function() e.copied = 1 end} do
      assert(not pcall(f), "a value that does not fit is refused")
    end
    assert(#img:edits() == 4, "four edits logged, got " .. #img:edits())
    img:flush()
    print(h, ch)' fld.qcow2 2>&1)
rc=$?
read -r h ch <<< "$out"
chk=$(python3 - "$h" "$ch" <<'PY'
import struct, sys
h, ch = int(sys.argv[1]), int(sys.argv[2])
d = open("fld.qcow2", "rb").read()
l1off = struct.unpack(">Q", d[40:48])[0]
l1 = struct.unpack(">Q", d[l1off:l1off + 8])[0]
l2 = l1 & 0x00fffffffffffe00
e0, e1, e2 = struct.unpack(">3Q", d[l2:l2 + 24])
ok = (l1 >> 63 == 0 and e0 == h + 65536 and e1 >> 63 == 1 and
      e2 & (1 << 62) and (e2 & ((1 << 54) - 1)) == ch + 8)
print("ok" if ok else "bad %x %x %x %x" % (l1, e0, e1, e2))
PY
)
if [ $rc -eq 0 ] && [ "$chk" = ok ]; then t_ok "field setters change only their field's bits on disk, logged, bad values refused"
else t_fail "field setters change only their field's bits on disk, logged, bad values refused ($chk)"; printf '%s
' "$out" | t_diag; fi
qemu-img check fld.qcow2 >fld.check 2>&1
if grep -q 'refcount=1 reference=2' fld.check && grep -q 'OFLAG_COPIED L2 cluster' fld.check; then
    t_ok "qemu-img check sees the edited entries (two references, L1 COPIED missing)"
else t_fail "qemu-img check sees the edited entries (two references, L1 COPIED missing)"; t_diag <fld.check; fi

out=$("$QINSPECT" -e '
    for _, f in ipairs{function() img:l2_for(0).raw = 0 end, function() img:poke(0, "x") end,
                       function() img:set_refcount(0, 1) end, function() img.l1[0].raw = 0 end,
                       function() img:l2_for(0).copied = false end,
                       function() img.l1[0].l2_offset = 0 end} do
      local ok, e = pcall(f)
      assert(not ok and tostring(e):find("read%-only"), tostring(e))
    end' raw.qcow2 2>&1)
if [ $? -eq 0 ]; then t_ok "raw edits on a read-only image raise a catchable read-only error"
else t_fail "raw edits on a read-only image raise a catchable read-only error"; printf '%s\n' "$out" | t_diag; fi

# corruption found while writing: the error names the L2 table, the corrupt
# bit is set (qemu-img info says so), -w is refused afterwards, reads work
qemu-img create -q -f qcow2 bad.qcow2 8M
qio -c 'write -P 0x11 0 128k' bad.qcow2
l2=$(python3 -c 'import struct; d=open("bad.qcow2","rb").read(); l1=struct.unpack(">Q",d[40:48])[0]; print(struct.unpack(">Q",d[l1:l1+8])[0] & 0x00fffffffffffe00)')
python3 -c "
import struct
f=open('bad.qcow2','r+b'); f.seek($l2 + 8); e=struct.unpack('>Q', f.read(8))[0]
f.seek($l2 + 8); f.write(struct.pack('>Q', e | 0x200)); f.close()"   # cluster 1 unaligned
out=$("$QINSPECT" -w -e 'img:write(65536 + 10, "x")' bad.qcow2 2>&1); rc=$?
if [ $rc -eq 1 ] && printf '%s' "$out" | grep -q "L2 table at offset $(printf '%#x' $((l2 + 8)))"; then
    t_ok "a write through a corrupt L2 entry fails naming the L2 table and the entry's offset"
else t_fail "a write through a corrupt L2 entry fails naming the L2 table and the entry's offset (rc $rc)"; printf '%s\n' "$out" | t_diag; fi
if qemu-img info --output=json bad.qcow2 | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["format-specific"]["data"]["corrupt"] else 1)'; then
    t_ok "the corrupt bit is set (qemu-img info: corrupt true)"
else t_fail "the corrupt bit is set (qemu-img info: corrupt true)"; fi
out=$("$QINSPECT" -w -e 'img:write(0, "x")' bad.qcow2 2>&1); rc=$?
if [ $rc -eq 1 ] && printf '%s' "$out" | grep -q 'marked corrupt; raw edits and repair only'; then t_ok "-w opens the image marked corrupt for repair only: a guest write is refused"
else t_fail "-w opens the image marked corrupt for repair only: a guest write is refused (rc $rc)"; printf '%s\n' "$out" | t_diag; fi
t_check "the image still reads read-only" "$QINSPECT" -e 'assert(img:read(0, 1) == "\17")' bad.qcow2

# extended L2 entries (subclusters) and external data files: the same
# random workload (tests/cli/subcluster.sh compares the entries with qemu-io)
qemu-img create -q -f qcow2 -o extended_l2=on ext.qcow2 16M
run_case ext 50 250 150000 4M
qemu-img create -q -f qcow2 -o extended_l2=on,cluster_size=16k -b mid.qcow2 -F qcow2 extb.qcow2
run_case extb 51 250 60000 4M
qemu-img create -q -f raw src-ext.raw 8M
qemu-io -f raw -c 'write -P 9 0 8M' src-ext.raw >/dev/null
qemu-img convert -c -O qcow2 -o extended_l2=on src-ext.raw extc.qcow2
run_case extc 52 150 150000 8M
qemu-img create -q -f qcow2 -o data_file=dfile.data dfile.qcow2 16M
run_case dfile 53 250 150000 4M
qemu-img create -q -f qcow2 -o data_file=draw.data,data_file_raw=on draw.qcow2 16M
run_case draw 54 250 150000 4M
t_check "draw: the raw data file equals the guest disk" cmp draw.data draw.model
qemu-img create -q -f qcow2 -o data_file=dext.data,extended_l2=on dext.qcow2 16M
run_case dext 55 250 150000 4M

# read-only: a catchable error that says how to write
out=$("$QINSPECT" -e 'local ok, e = pcall(img.write, img, 0, "x")
      assert(not ok and tostring(e):find("read%-only") and tostring(e):find("%-w"), tostring(e))' \
      plain.qcow2 2>&1)
if [ $? -eq 0 ]; then t_ok "read-only image: img:write raises a catchable error naming -w"
else t_fail "read-only image: img:write raises a catchable error naming -w"; printf '%s\n' "$out" | t_diag; fi
out=$("$QINSPECT" -w -e 'img:write(img.size - 1, "ab")' plain.qcow2 2>&1)
if [ $? -eq 1 ] && printf '%s' "$out" | grep -q 'beyond the virtual size'; then
    t_ok "a write past the virtual size is refused"
else t_fail "a write past the virtual size is refused"; printf '%s\n' "$out" | t_diag; fi
t_check "plain: still clean after the refused writes" qemu-img check -q plain.qcow2

t_done
