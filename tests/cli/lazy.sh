#!/bin/bash
# tests/cli/lazy.sh - the dirty bit and lazy refcounts against QEMU.
#
# Dirty images are made the way QEMU leaves them: `qemu-img create -o
# lazy_refcounts=on`, qemu-io writes, then qemu-io's `abort` (the refcount
# blocks never reach the disk). Setup checks that qemu-img info reports the
# dirty flag and that qemu-img check (no -r) finds errors or leaks.
# Then, for each:
#  - a read-only open works, reports the image dirty (info --output=json
#    and human info equal qemu-img's, the header object's feature names),
#    reads the guest data as qemu-img convert does, and changes nothing;
#  - a read-write open (qinspect -w) rebuilds the refcounts: afterwards
#    qemu-img check exits 0 (no error, no leak), the dirty flag is clear,
#    and the guest data equals `qemu-img check -r all` + convert of a copy.
# Also: a range with references but no refcount block (its first cluster in
# use, so a block placed there would overwrite guest data), a reference past
# the end of the file (the open fails naming the L2 entry, file unchanged),
# a sparse file too large to count (refused, file unchanged), and writes on
# a lazy_refcounts image: the dirty bit is set during the session (seen by
# qemu-img info -U from inside it), cleared by a flush and at the end, the
# header writes framing everything in the trace, L2 tables written before
# the refcount blocks (no ordering dependency under the dirty bit).
T_DIR=$(cd "$(dirname "$0")" && pwd)
. "$T_DIR/lib.sh"

dirty_flag() { qemu-img info -U --output=json "$1" | python3 -c 'import json,sys; print(str(json.load(sys.stdin)["dirty-flag"]).lower())'; }
md5() { md5sum <"$1" | cut -d' ' -f1; }

# mkdirty NAME CREATE_OPTS SIZE QEMU-IO-COMMAND...: NAME.qcow2 left dirty by
# an aborted qemu-io session. Returns 1 (after a failing line) if it is not.
mkdirty() {
    local name=$1 opts=$2 size=$3 args=() c rc
    shift 3
    for c in "$@"; do args+=(-c "$c"); done
    qemu-img create -q -f qcow2 -o "lazy_refcounts=on${opts:+,$opts}" "$name.qcow2" "$size" ||
        { t_fail "$name: setup: qemu-img create"; return 1; }
    (qemu-io -f qcow2 "${args[@]}" -c abort "$name.qcow2" >/dev/null 2>&1; true) 2>/dev/null
    qemu-img check "$name.qcow2" >"$name.check0" 2>&1
    rc=$?
    if [ "$(dirty_flag "$name.qcow2")" != true ] || { [ $rc -ne 2 ] && [ $rc -ne 3 ]; }; then
        t_fail "$name: setup: qemu-io abort left the image dirty with errors or leaks (check exit $rc)"
        return 1
    fi
}

# dirty_case NAME: the read-only and the read-write checks of NAME.qcow2.
dirty_case() {
    local name=$1 sum out rc
    cp "$name.qcow2" "$name.ref"
    qemu-img check -q -r all "$name.ref" >/dev/null 2>&1
    if ! qemu-img check -q "$name.ref" || ! qemu-img convert -O raw "$name.ref" "$name.raw"; then
        t_fail "$name: setup: qemu-img check -r all repairs a copy"
        return
    fi
    sum=$(md5 "$name.qcow2")
    t_check "$name: read-only: info --output=json equals qemu-img (dirty-flag true)" \
        same_info_json "$name.qcow2"
    t_check "$name: read-only: info (human, 'cleanly shut down: no') equals qemu-img" \
        same_stdout info "$name.qcow2"
    t_check "$name: read-only: convert -O raw equals qemu-img" same_convert "$name.qcow2"
    t_check "$name: read-only: the header object names the dirty bit" "$QINSPECT" -e '
        local found = false
        for _, n in ipairs(img.header.features.incompatible) do found = found or n == "dirty bit" end
        assert(found and img.header.incompatible_features & 1 == 1, "dirty bit not shown")' \
        "$name.qcow2"
    if [ "$sum" = "$(md5 "$name.qcow2")" ]; then t_ok "$name: read-only opens change nothing"
    else t_fail "$name: read-only opens change nothing"; fi
    out=$("$QINSPECT" -w -e '' "$name.qcow2" 2>&1)
    rc=$?
    if [ $rc -eq 0 ]; then t_ok "$name: qinspect -w opens the dirty image"
    else t_fail "$name: qinspect -w opens the dirty image (exit $rc)"; printf '%s\n' "$out" | t_diag; fi
    qemu-img check "$name.qcow2" >"$name.check1" 2>&1
    rc=$?
    if [ $rc -eq 0 ]; then t_ok "$name: after the read-write open qemu-img check is clean (exit 0)"
    else t_fail "$name: after the read-write open qemu-img check is clean (exit $rc)"; head -8 "$name.check1" | t_diag; fi
    if [ "$(dirty_flag "$name.qcow2")" = false ]; then t_ok "$name: the dirty flag is cleared"
    else t_fail "$name: the dirty flag is cleared"; fi
    t_check "$name: guest data equals qemu-img check -r all of a copy" \
        qemu-img compare -q -f qcow2 -F raw "$name.qcow2" "$name.raw"
}

mkrand rand.bin 2000000

if mkdirty d64k "" 16M 'write -s rand.bin 0 200k' 'write -P 9 1M 64k' 'write -P 7 5M 1M'; then
    dirty_case d64k
fi
# 512-byte clusters: QEMU adds refcount blocks (and 64-bit refcounts grow
# the table) during the lazy session
if mkdirty d512 "cluster_size=512,refcount_bits=64" 8M 'write -s rand.bin 0 1900k' \
        'write -P 5 3M 100k'; then
    dirty_case d512
fi
# a snapshot: lazy copy-on-write of shared clusters (refcounts 2 -> 1 lost)
qemu-img create -q -f qcow2 -o lazy_refcounts=on dsnap.qcow2 16M &&
    qio dsnap.qcow2 'write -P 0x21 0 3M' 'write -c -P 0x22 4M 128k' &&
    qemu-img snapshot -c s1 dsnap.qcow2 &&
    (qemu-io -f qcow2 -c 'write -P 0x23 100k 1M' -c 'write -P 0x24 4M 64k' -c 'discard 2M 256k' \
        -c abort dsnap.qcow2 >/dev/null 2>&1; true) 2>/dev/null
if [ "$(dirty_flag dsnap.qcow2)" = true ] && ! qemu-img check -q dsnap.qcow2 2>/dev/null; then
    dirty_case dsnap
    if qemu-img convert -O raw -l s1 dsnap.qcow2 dsnap-s1.raw &&
       qemu-img convert -O raw -l s1 dsnap.ref dsnap-s1.ref &&
       [ -s dsnap-s1.raw ] && cmp -s dsnap-s1.raw dsnap-s1.ref; then
        t_ok "dsnap: the snapshot still reads as in qemu-img's repaired copy"
    else
        t_fail "dsnap: the snapshot still reads as in qemu-img's repaired copy"
    fi
else
    t_fail "dsnap: setup: a dirty image with a snapshot and errors"
fi

# A refcount range with references but no refcount block: 512-byte
# clusters, 16-bit refcounts (256 clusters per block); the refcount table
# entry of range 1 is cleared, so guest data in clusters 256.. (the first
# one included) has refcount 0. A new block must go past everything in use.
qemu-img create -q -f qcow2 -o cluster_size=512,lazy_refcounts=on nb.qcow2 4M &&
    qio nb.qcow2 'write -s rand.bin 0 200k'
python3 - <<'EOF'
import struct
f = open('nb.qcow2', 'r+b'); d = f.read()
rt = struct.unpack('>Q', d[48:56])[0]
l1 = struct.unpack('>Q', d[40:48])[0]
l1s = struct.unpack('>I', d[36:40])[0]
used = set()
for i in range(l1s):
    l2 = struct.unpack('>Q', d[l1 + 8 * i:l1 + 8 * i + 8])[0] & 0x00fffffffffffe00
    for j in range(64 if l2 else 0):
        e = struct.unpack('>Q', d[l2 + 8 * j:l2 + 8 * j + 8])[0] & 0x00fffffffffffe00
        used.add(e >> 9)
assert 256 in used, "setup: cluster 256 holds no guest data"
f.seek(rt + 8); f.write(struct.pack('>Q', 0))
inc = struct.unpack('>Q', d[72:80])[0]
f.seek(72); f.write(struct.pack('>Q', inc | 1))
EOF
if [ $? -eq 0 ] && ! qemu-img check -q nb.qcow2 2>/dev/null; then
    dirty_case nb
else
    t_fail "nb: setup: refcount table entry 1 cleared, dirty bit set"
fi

# A reference past the end of the file: the read-write open fails, naming
# the L2 entry, and leaves the file as it is; a read-only open still works.
mkdirty bad "" 4M 'write -P 3 0 128k' && python3 - <<'EOF'
import struct
f = open('bad.qcow2', 'r+b'); d = f.read()
l1 = struct.unpack('>Q', d[40:48])[0]
l2 = struct.unpack('>Q', d[l1:l1 + 8])[0] & 0x00fffffffffffe00
f.seek(l2 + 8 * 5); f.write(struct.pack('>Q', (1 << 63) | (len(d) + (1 << 20))))
open('bad.l2', 'w').write('%#x' % (l2 + 8 * 5))
EOF
sum=$(md5 bad.qcow2)
out=$("$QINSPECT" -w -e '' bad.qcow2 2>&1); rc=$?
if [ $rc -eq 1 ] && printf '%s' "$out" | grep -q "L2 entry at offset $(cat bad.l2)" &&
   printf '%s' "$out" | grep -q 'dirty bit' && printf '%s' "$out" | grep -q 'past the end of the file'; then
    t_ok "bad: -w refused: the dirty image has an L2 entry past the end of the file (named with its offset)"
else
    t_fail "bad: -w refused: the dirty image has an L2 entry past the end of the file (exit $rc)"
    printf '%s\n' "$out" | t_diag
fi
if [ "$sum" = "$(md5 bad.qcow2)" ]; then t_ok "bad: the refused rebuild left the file unchanged"
else t_fail "bad: the refused rebuild left the file unchanged"; fi
t_check "bad: a read-only open still reads" "$QINSPECT" -e 'assert(img:read(0, 1) == "\3")' bad.qcow2

# A (sparse) file too large to count the references of in bounded memory:
# 200 GiB of 512-byte clusters. Refused before anything is written.
if mkdirty huge "cluster_size=512" 4M 'write -P 4 0 64k'; then
    truncate -s 200G huge.qcow2
    head -c 1048576 huge.qcow2 | md5sum >huge.sum
    out=$("$QINSPECT" -w -e '' huge.qcow2 2>&1); rc=$?
    if [ $rc -eq 1 ] && printf '%s' "$out" | grep -q 'MiB limit' &&
       head -c 1048576 huge.qcow2 | md5sum | cmp -s - huge.sum &&
       [ "$(stat -c %s huge.qcow2)" = $((200 << 30)) ]; then
        t_ok "huge: rebuild of a 200 GiB sparse file of 512-byte clusters refused (memory limit), unchanged"
    else
        t_fail "huge: rebuild of a 200 GiB sparse file of 512-byte clusters refused (memory limit), unchanged (exit $rc)"
        printf '%s\n' "$out" | t_diag
    fi
    rm -f huge.qcow2
fi

# ---- writes on a lazy_refcounts image ----
qemu-img create -q -f qcow2 -o lazy_refcounts=on lw.qcow2 64M
qemu-img create -q -f raw lw.model 64M
out=$("$QINSPECT" -w -e '
    local function flag()
      local p = io.popen("qemu-img info -U --output=json lw.qcow2")
      local s = p:read("a"); p:close()
      return s:match([["dirty%-flag": (%a+)]])
    end
    local function model(off, s)
      local f = assert(io.open("lw.model", "r+b")); f:seek("set", off); f:write(s); f:close()
    end
    assert(flag() == "false", "dirty before any write")
    local a = string.rep("a", 300000)
    img:write(1000, a); model(1000, a)
    assert(flag() == "true", "not dirty after a lazy write")
    img:flush()
    assert(flag() == "false", "still dirty after a flush")
    -- the second round, traced: header (dirty bit set) first, header (clear)
    -- last after a barrier; an L2 table reaches the disk before the
    -- refcount block, as nothing orders them under the dirty bit
    local b = string.rep("b", 70000)
    local t = img:trace(function()
      img:write(8 << 20, b); model(8 << 20, b)
      assert(flag() == "true", "not dirty in the second round")
      img:zero(0, 65536); model(0, string.rep("\0", 65536))
      img:flush() end)
    local first, last = t[1], t[#t]
    assert(first.structure == "header" and first.offset == 72 and first.changes[1].old & 1 == 0
           and first.changes[1].new & 1 == 1, "the first write does not set the dirty bit")
    assert(last.structure == "barrier" and t[#t - 1].structure == "header" and
           t[#t - 1].changes[1].new & 1 == 0, "the last write is not the synced clear")
    local l2, rb
    for i, r in ipairs(t) do
      if r.structure == "L2 table" then l2 = l2 or i end
      if r.structure == "refcount block" then rb = rb or i end
    end
    assert(l2 and rb and l2 < rb, "no L2 table written before the refcount blocks")
    for i = rb, #t - 1 do assert(t[i].structure ~= "L2 table", "L2 table after the last refcounts") end
    local seen
    for i = rb, #t - 1 do if t[i].structure == "barrier" then seen = true end end
    assert(seen, "no sync between the refcount blocks and the clear")
    local c = string.rep("c", 5000)
    img:write(20 << 20, c); model(20 << 20, c)
    assert(flag() == "true", "not dirty in the third round (left to the end of the session)")' \
    lw.qcow2 2>&1)
if [ $? -eq 0 ]; then t_ok "lw: lazy writes: dirty during the session, clean after flush, in trace order"
else t_fail "lw: lazy writes: dirty during the session, clean after flush, in trace order"; printf '%s\n' "$out" | t_diag; fi
if [ "$(dirty_flag lw.qcow2)" = false ]; then t_ok "lw: the dirty flag is clear after the session"
else t_fail "lw: the dirty flag is clear after the session"; fi
t_check "lw: qemu-img check is clean (exit 0)" qemu-img check -q lw.qcow2
t_check "lw: guest data equals the model" qemu-img compare -q -f qcow2 -F raw lw.qcow2 lw.model
# and img:close() (no session flush) clears it too
out=$("$QINSPECT" -w -e 'img:write(30 << 20, "xyz") img:close()
    local p = io.popen("qemu-img info --output=json lw.qcow2"); local s = p:read("a"); p:close()
    assert(s:find([["dirty%-flag": false]]), "dirty after img:close()")' lw.qcow2 2>&1)
if [ $? -eq 0 ]; then t_ok "lw: img:close() clears the dirty bit"
else t_fail "lw: img:close() clears the dirty bit"; printf '%s\n' "$out" | t_diag; fi
t_check "lw: clean after img:close()" qemu-img check -q lw.qcow2

# an image without lazy_refcounts is never marked dirty, and keeps the
# order refcount block before L2 table
qemu-img create -q -f qcow2 eager.qcow2 64M
out=$("$QINSPECT" -w -e '
    local t = img:trace(function() img:write(8 << 20, string.rep("b", 70000)); img:flush() end)
    local l2, rb
    for i, r in ipairs(t) do
      assert(r.structure ~= "header", "a header write without lazy refcounts")
      if r.structure == "L2 table" then l2 = l2 or i end
      if r.structure == "refcount block" then rb = rb or i end
    end
    assert(rb and l2 and rb < l2, "L2 table before the refcount block")' eager.qcow2 2>&1)
if [ $? -eq 0 ]; then t_ok "eager: no dirty bit, refcount blocks before L2 tables"
else t_fail "eager: no dirty bit, refcount blocks before L2 tables"; printf '%s\n' "$out" | t_diag; fi

t_done
