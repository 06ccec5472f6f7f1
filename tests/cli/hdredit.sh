#!/bin/bash
# tests/cli/hdredit.sh - raw edits of the header (img.header.<field> = v) and
# repair of an image QEMU marked corrupt, against QEMU.
#
# Every field set through its setter is read back from the file with python
# (struct, at the offset and width the qcow2 spec gives), never with
# qinspect; every other byte of the file must be unchanged. The old -> new
# pair of img:edits() is compared with the bytes python read before. A header
# broken by an edit (cluster_bits 40) makes the image refuse everything but
# raw edits, the bytes are on disk (read with io.open, and qemu-img info
# refuses the file), and a raw edit in the same session puts it back, after
# which reads work and qemu-img check/compare agree. An image QEMU itself
# marked corrupt (qemu-io writing through an unaligned L2 entry) opens with
# -w for repair: guest writes are refused until the corrupt bit is cleared,
# the entry is put back by hand, and qemu-img check, info and qemu-io accept
# the result.
T_DIR=$(cd "$(dirname "$0")" && pwd)
. "$T_DIR/lib.sh"

# be N OFF FILE: the N-byte big-endian value at OFF of FILE (python)
be() { python3 -c 'import sys; f=open(sys.argv[3],"rb"); f.seek(int(sys.argv[2])); print(int.from_bytes(f.read(int(sys.argv[1])),"big"))' "$1" "$2" "$3"; }
# diff_outside FILE_A FILE_B OFF N: the files are equal except in [OFF, OFF+N)
diff_outside() {
    python3 -c 'import sys; a=open(sys.argv[1],"rb").read(); b=open(sys.argv[2],"rb").read(); o=int(sys.argv[3]); n=int(sys.argv[4]); sys.exit(0 if len(a)==len(b) and a[:o]==b[:o] and a[o+n:]==b[o+n:] else 1)' "$@"
}

qemu-img create -q -f qcow2 base.qcow2 4M
qemu-io -c 'write -P 0x11 0 128k' -c 'write -P 0x22 1M 64k' base.qcow2 >/dev/null
qemu-img convert -O raw base.qcow2 base.raw
hl=$(be 4 100 base.qcow2)
if [ "$hl" -gt 104 ]; then t_ok "base.qcow2: qemu-img wrote a header of $hl bytes (compression_type present)"
else t_fail "base.qcow2: header_length $hl (compression_type absent: its round trip cannot run)"; fi

# ---- every field: set, read back with python, rest of the file unchanged ----
# name offset width value (values distinct from qemu-img's; bit 63 set in
# one 64-bit field: a negative Lua integer)
while read -r name off width value; do
    cp base.qcow2 f.qcow2
    old=$(be "$width" "$off" base.qcow2)
    out=$("$QINSPECT" -w f.qcow2 -e "
        img.header.$name = $value
        local e = img:edits()[1]
        io.write(string.format('%d %s %s', #img:edits(), math.tointeger(e.old), math.tointeger(e.new)))" 2>&1)
    got=$(be "$width" "$off" f.qcow2)
    want=$(python3 -c "print(($value) & ((1 << (8 * $width)) - 1))")
    wantlog=$(python3 -c "v=($value); print(v - (1 << 64) if v >= 1 << 63 else v)")
    oldlog=$(python3 -c "v=$old; print(v - (1 << 64) if v >= 1 << 63 else v)")
    if [ "$got" = "$want" ] && diff_outside base.qcow2 f.qcow2 "$off" "$width" &&
       [ "$out" = "1 $oldlog $wantlog" ]; then
        t_ok "header.$name = $value: bytes $off..$((off + width - 1)) hold it, nothing else changed, logged $old -> new"
    else
        t_fail "header.$name = $value: on disk $got (want $want), log '$out' (want '1 $oldlog $wantlog')"
    fi
done <<'EOF'
magic 0 4 0x514649fa
version 4 4 7
backing_file_offset 8 8 0x1234567
backing_file_size 16 4 33
cluster_bits 20 4 17
size 24 8 0x7fffffffffff
crypt_method 32 4 5
l1_size 36 4 0x10002
l1_table_offset 40 8 0x50000
refcount_table_offset 48 8 0x60000
refcount_table_clusters 56 4 9
nb_snapshots 60 4 3
snapshots_offset 64 8 0x70000
incompatible_features 72 8 0x8000000000000001
compatible_features 80 8 0x0102030405060708
autoclear_features 88 8 0x1f
refcount_order 96 4 6
header_length 100 4 120
compression_type 104 1 0xfe
EOF

# ---- refusals: read-only, width, version 2, header_length, non-integers ----
cp base.qcow2 ro.qcow2
sum=$(md5sum < ro.qcow2)
out=$("$QINSPECT" ro.qcow2 -e '
    local ok, e = pcall(function() img.header.size = 1 end)
    assert(not ok and tostring(e):find("image opened read%-only; reopen with %-w"), tostring(e))
    assert(#img:edits() == 0, "nothing logged")' 2>&1)
if [ $? -eq 0 ] && [ "$sum" = "$(md5sum < ro.qcow2)" ]; then t_ok "read-only image: a header setter raises the read-only error (catchable), file unchanged"
else t_fail "read-only image: a header setter raises the read-only error, file unchanged"; printf '%s\n' "$out" | t_diag; fi

cp base.qcow2 wide.qcow2
sum=$(md5sum < wide.qcow2)
out=$("$QINSPECT" -w wide.qcow2 -e '
    for _, c in ipairs{ {"cluster_bits", 1 << 32, "does not fit the 4%-byte field"},
                        {"l1_size", -1, "does not fit the 4%-byte field"},
                        {"compression_type", 256, "does not fit the 1%-byte field"},
                        {"version", 1.5, "number has no integer representation"},
                        {"size", "big", "number expected"} } do
      local ok, e = pcall(function() img.header[c[1]] = c[2] end)
      assert(not ok and tostring(e):find(c[3]), c[1] .. ": " .. tostring(e))
    end
    assert(#img:edits() == 0, "nothing logged")
    img.header.compression_type = 0xff     -- the widest value that fits
    img.header.compression_type = 0' 2>&1)
if [ $? -eq 0 ] && [ "$sum" = "$(md5sum < wide.qcow2)" ]; then t_ok "values wider than the field (or not integers) are refused, file unchanged; the widest that fits is written"
else t_fail "values wider than the field are refused, file unchanged"; printf '%s\n' "$out" | t_diag; fi

qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 4M
qemu-io -c 'write -P 0x33 0 64k' v2.qcow2 >/dev/null
sum=$(md5sum < v2.qcow2)
out=$("$QINSPECT" -w v2.qcow2 -e '
    for _, f in ipairs{"incompatible_features", "compatible_features", "autoclear_features",
                       "refcount_order", "header_length", "compression_type"} do
      local ok, e = pcall(function() img.header[f] = 0 end)
      assert(not ok and tostring(e):find("a version 2 header has no field .-" .. f), f .. ": " .. tostring(e))
    end' 2>&1)
if [ $? -eq 0 ] && [ "$sum" = "$(md5sum < v2.qcow2)" ]; then t_ok "version 2: every version 3 field is refused naming the field, file unchanged"
else t_fail "version 2: every version 3 field is refused, file unchanged"; printf '%s\n' "$out" | t_diag; fi
out=$("$QINSPECT" -w v2.qcow2 -e 'img.header.size = 8 * 1024 * 1024; assert(img.size == 8 * 1024 * 1024)' 2>&1)
if [ $? -eq 0 ] && [ "$(be 8 24 v2.qcow2)" = 8388608 ] && qemu-img check -q v2.qcow2; then
    t_ok "version 2: size set (python reads 8 MiB at byte 24), img.size follows, qemu-img check clean"
else t_fail "version 2: size set"; printf '%s\n' "$out" | t_diag; fi

# header_length 104: the byte after it belongs to the extensions, so
# compression_type is not a field of this header
cp base.qcow2 h104.qcow2
out=$("$QINSPECT" -w h104.qcow2 -e '
    img.header.header_length = 104
    local ok, e = pcall(function() img.header.compression_type = 1 end)
    assert(not ok and tostring(e):find("no field .compression_type. %(header_length 104"), tostring(e))
    img.header.header_length = '"$hl" 2>&1)
if [ $? -eq 0 ] && cmp -s base.qcow2 h104.qcow2; then t_ok "header_length 104: compression_type is refused; header_length put back, file as before"
else t_fail "header_length 104: compression_type is refused"; printf '%s\n' "$out" | t_diag; fi

# ---- break and restore in one session ----
cp base.qcow2 brk.qcow2
out=$("$QINSPECT" -w brk.qcow2 -e '
    local function disk(off, n)   -- the file itself, not through qinspect
      local f = assert(io.open("brk.qcow2", "rb")); f:seek("set", off)
      local s = f:read(n); f:close(); return s
    end
    local function refused(what, fn)
      local ok, e = pcall(fn)
      assert(not ok and tostring(e):find("cluster_bits 40 is outside"), what .. ": " .. tostring(e))
    end
    local data = img:read(0, 4096)
    img.header.cluster_bits = 40
    assert(disk(20, 4) == string.pack(">I4", 40), "the edit is on disk")
    assert(img.header_error and img.header_error.code == "ECORRUPT", "header_error")
    assert(tostring(img):find("header invalid"), tostring(img))
    local ok, e = pcall(os.execute, "qemu-img info -U brk.qcow2 >/dev/null 2>&1")
    assert(ok and not e, "qemu-img info accepted the broken header")
    refused("read", function() return img:read(0, 1) end)
    refused("write", function() img:write(0, "x") end)
    refused("header getter", function() return img.header.size end)
    refused("l1", function() return img.l1[0] end)
    refused("l2_for", function() return img:l2_for(0) end)
    refused("refcount", function() return img:refcount(0) end)
    refused("set_refcount", function() img:set_refcount(0, 1) end)
    refused("map", function() return img:map() end)
    refused("snapshots", function() return #img.snapshots end)
    img.header.cluster_bits = 16
    assert(img.header_error == nil, "valid again")
    assert(img:read(0, 4096) == data, "reads work again")
    -- the same with img:poke
    img:poke(20, string.pack(">I4", 40))
    refused("read after poke", function() return img:read(0, 1) end)
    img:poke(20, string.pack(">I4", 16))
    assert(img:read(0, 4096) == data and img.header.cluster_bits == 16, "poke restored it")
    local ed = img:edits()
    assert(#ed == 4 and ed[1].old == 16 and ed[1].new == 40 and ed[2].old == 40 and ed[2].new == 16,
           "edit log")
    img:write(2 * 65536, ("w"):rep(100))' 2>&1)
if [ $? -eq 0 ]; then t_ok "break (cluster_bits 40) and restore in one session: everything but raw edits refused with the validation error, then reads and writes work"
else t_fail "break and restore in one session"; printf '%s\n' "$out" | t_diag; fi
t_check "brk: qemu-img check clean after break, restore and a write" qemu-img check -q brk.qcow2
qemu-io -f raw -c 'write -P 0x77 128k 100' base.raw >/dev/null
t_check "brk: qemu-img compare: the guest view is the original plus the write" \
    qemu-img compare -q -F raw brk.qcow2 base.raw

# a session may end with the header broken: the edit stays, exit 0
cp base.qcow2 left.qcow2
out=$("$QINSPECT" -w left.qcow2 -e 'img.header.cluster_bits = 40' 2>&1); rc=$?
if [ $rc -eq 0 ] && [ "$(be 4 20 left.qcow2)" = 40 ] && ! qemu-img info left.qcow2 >/dev/null 2>&1; then
    t_ok "a session that leaves the header broken exits 0 with the edit on disk (qemu-img info refuses the file)"
else t_fail "a session that leaves the header broken (rc $rc)"; printf '%s\n' "$out" | t_diag; fi

# ---- the in-memory image follows the new header at once ----
cp base.qcow2 mv.qcow2
out=$("$QINSPECT" -w mv.qcow2 -e '
    local l1 = img.header.l1_table_offset
    local data = img:read(0, 65536)
    local zero = img.file_size                 -- a new all-zero cluster at the end
    img:poke(zero, ("\0"):rep(65536))
    img.header.l1_table_offset = zero
    assert(img:read(0, 65536) == ("\0"):rep(65536), "read through a stale L1 copy")
    assert(img.l1[0].raw == 0, "stale L1 entry")
    img.header.l1_table_offset = l1
    assert(img:read(0, 65536) == data, "back to the real L1")
    img.header.size = 2 * 1024 * 1024
    assert(img.size == 2 * 1024 * 1024 and not pcall(img.read, img, 3 * 1024 * 1024, 1),
           "virtual size followed")
    img.header.size = 4 * 1024 * 1024' 2>&1)
if [ $? -eq 0 ]; then t_ok "a moved L1 table and a new size take effect at once (no stale L1 copy, no stale size)"
else t_fail "a moved L1 table and a new size take effect at once"; printf '%s\n' "$out" | t_diag; fi
# the poked cluster has refcount 0 and no reference: not a leak
t_check "mv: qemu-img check clean with the L1 table back in place" qemu-img check -q mv.qcow2

cp base.qcow2 sn.qcow2
qemu-img snapshot -c s1 sn.qcow2
out=$("$QINSPECT" -w sn.qcow2 -e '
    assert(#img.snapshots == 1)
    img.header.nb_snapshots = 0
    assert(#img.snapshots == 0, "the snapshot table was not read again")
    img.header.nb_snapshots = 1
    assert(#img.snapshots == 1 and img.snapshots[0].name == "s1", "snapshot back")' 2>&1)
if [ $? -eq 0 ] && [ "$(qemu-img snapshot -l sn.qcow2 | grep -c s1)" = 1 ]; then
    t_ok "nb_snapshots: the snapshot table is read again at once; qemu-img lists s1 afterwards"
else t_fail "nb_snapshots: the snapshot table is read again at once"; printf '%s\n' "$out" | t_diag; fi

# the backing file name: a shorter length names a file that does not exist
# (the backing chain is opened again, and fails), the right length again
# opens base.raw again
head -c 1048576 /dev/zero | tr '\0' 'B' > back.raw
qemu-img create -q -f qcow2 -b back.raw -F raw over.qcow2 1M
qemu-io -c 'write -P 0x55 64k 64k' over.qcow2 >/dev/null
out=$("$QINSPECT" -w over.qcow2 -e '
    assert(img:read(0, 1) == "B" and img.header.backing_file_size == 8)
    img.header.backing_file_size = 4
    assert(img.header_error and tostring(img.header_error):find("back"), tostring(img.header_error))
    assert(not pcall(img.read, img, 0, 1), "read with the backing file gone")
    img.header.backing_file_size = 8
    assert(img.header_error == nil and img.header.backing_file == "back.raw", "back")
    assert(img:read(0, 1) == "B" and img:read(65536, 1) == "U", "reads through the chain again")' 2>&1)
if [ $? -eq 0 ] && qemu-img check -q over.qcow2; then t_ok "backing_file_size: the backing chain follows the name (missing: refused; restored: read again)"
else t_fail "backing_file_size: the backing chain follows the name"; printf '%s\n' "$out" | t_diag; fi

# ---- repair of an image QEMU marked corrupt ----
qemu-img create -q -f qcow2 cor.qcow2 4M
qemu-io -c 'write -P 0x11 0 128k' cor.qcow2 >/dev/null
l2=$(python3 -c 'import struct; d=open("cor.qcow2","rb").read(); l1=struct.unpack(">Q",d[40:48])[0]; print(struct.unpack(">Q",d[l1:l1+8])[0] & 0x00fffffffffffe00)')
good=$(be 8 $((l2 + 8)) cor.qcow2)
python3 -c "
import struct
f=open('cor.qcow2','r+b'); f.seek($l2 + 8); f.write(struct.pack('>Q', $good | 0x200)); f.close()"
qemu-io -c 'write -P 0x22 64k 4k' cor.qcow2 >/dev/null 2>&1
corrupt() { qemu-img info --output=json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["format-specific"]["data"]["corrupt"])'; }
if [ "$(corrupt cor.qcow2)" = True ] && [ $(( $(be 8 72 cor.qcow2) & 2 )) -eq 2 ]; then
    t_ok "cor: qemu-io writing through an unaligned L2 entry marked the image corrupt (qemu-img info: corrupt true)"
else t_fail "cor: QEMU marked the image corrupt"; fi
out=$("$QINSPECT" -e '
    local i, msg = qinspect.open("cor.qcow2", {rw = true})
    assert(i == nil and msg:find("marked corrupt"), tostring(msg))' base.qcow2 2>&1)
if [ $? -eq 0 ]; then t_ok "cor: qinspect.open{rw=true} without repair is refused (marked corrupt)"
else t_fail "cor: qinspect.open{rw=true} without repair is refused"; printf '%s\n' "$out" | t_diag; fi
sum=$(md5sum < cor.qcow2)
out=$("$QINSPECT" -w cor.qcow2 -e '
    for what, fn in pairs{ write = function() img:write(0, "x") end,
                           zero = function() img:zero(0, 65536) end,
                           discard = function() img:discard(0, 65536) end } do
      local ok, e = pcall(fn)
      assert(not ok and tostring(e):find("the image is marked corrupt; raw edits and repair only until the corrupt bit is cleared", 1, true),
             what .. ": " .. tostring(e))
    end' 2>&1)
if [ $? -eq 0 ] && [ "$sum" = "$(md5sum < cor.qcow2)" ]; then t_ok "cor: -w opens it for repair; write, zero and discard are refused with the repair message, file unchanged"
else t_fail "cor: -w opens it for repair; guest writes refused"; printf '%s\n' "$out" | t_diag; fi
out=$("$QINSPECT" -w cor.qcow2 -e '
    -- reading through the bad entry finds the corruption first
    assert(not pcall(img.read, img, 65536, 1), "the bad entry reads")
    local e = img:l2_for(65536)
    assert(e.raw & 0x200 ~= 0, "the bad entry")
    e.raw = e.raw & ~0x200
    assert(not pcall(img.write, img, 0, "x"), "still marked corrupt")
    img.header.incompatible_features = img.header.incompatible_features & ~2
    img:write(65536, ("y"):rep(10))
    local ed = img:edits()
    assert(#ed == 2 and ed[2].what:find("incompatible_features") and ed[2].old == 2 and ed[2].new == 0,
           "edit log")' 2>&1)
if [ $? -eq 0 ]; then t_ok "cor: entry put back by hand, corrupt bit cleared with the setter: guest writes work in the same session"
else t_fail "cor: repaired by hand in one session"; printf '%s\n' "$out" | t_diag; fi
t_check "cor: qemu-img check clean after the repair" qemu-img check -q cor.qcow2
if [ "$(corrupt cor.qcow2)" = False ]; then t_ok "cor: qemu-img info: corrupt false"
else t_fail "cor: qemu-img info: corrupt false"; fi
t_check "cor: qemu-io writes, and reads the repaired cluster and qinspect's write" \
    qemu-io -c 'write -P 0x44 0 4k' -c 'read -P 0x44 0 4k' -c 'read -P 0x79 64k 10' \
    -c 'read -P 0x11 74k 4k' cor.qcow2

# the corrupt bit set by hand on a clean image: guest writes stop, and
# start again when it is cleared
cp base.qcow2 mark.qcow2
out=$("$QINSPECT" -w mark.qcow2 -e '
    img.header.incompatible_features = 2
    assert(not pcall(img.write, img, 0, "x"), "write allowed with the bit set")
    img.header.incompatible_features = 0
    img:write(0, "x")' 2>&1)
if [ $? -eq 0 ] && qemu-img check -q mark.qcow2; then t_ok "corrupt bit set by hand: writes refused, cleared: writes work; qemu-img check clean"
else t_fail "corrupt bit set by hand"; printf '%s\n' "$out" | t_diag; fi

t_done
