#!/bin/bash
# tests/cli/bitmaps.sh - guest writes on images with persistent dirty
# bitmaps, against QEMU.
#
# Images are made with qemu-img create + `qemu-img bitmap --add` (512 B,
# 64 KiB and 2 GiB granularity, one bitmap --disable'd, one holding bits
# from earlier qemu-io writes, one left in_use by a qemu-io that was
# killed). The same sequence of writes, zeroes and discards is applied with
# qinspect (-w -e) and with qemu-io on a copy. Then the bitmap data of both
# results, decoded from the file bytes by bitmaps.py (not by qinspect), is
# equal bit for bit; `qemu-img info` shows the same bitmaps and flags
# (no in-use after a clean close); `qemu-img check` is clean; `qemu-img
# compare` finds the same guest data; QEMU reads and extends the bitmaps
# qinspect wrote. A disabled bitmap and one in_use at open keep their bytes.
# A bitmap directory or table QEMU would refuse makes the write fail with
# the structure and offset, the file unchanged.
T_DIR=$(cd "$(dirname "$0")" && pwd)
. "$T_DIR/lib.sh"

BM="python3 $T_DIR/bitmaps.py"

qio() { qemu-io -f qcow2 "$@" >/dev/null || { t_fail "setup: qemu-io $*"; return 1; }; }

# crash_qio IMG CMD...: qemu-io runs CMDs and is killed (SIGKILL) before it
# closes the image: its bitmaps stay in_use, as after a crash.
crash_qio() {
    local img=$1 c args=()
    shift
    for c in "$@"; do args+=(-c "$c"); done
    sh -c 'qemu-io -f qcow2 "$@" >/dev/null 2>&1' qio "${args[@]}" -c 'sigraise 9' "$img" 2>/dev/null
    return 0
}

# lua_of OP: the qinspect call for one qemu-io command (byte numbers only):
# "write -P X OFF LEN", "write -z [-u] OFF LEN", "discard OFF LEN".
lua_of() {
    set -- $1
    case "$1 $2" in
    "write -P") echo "img:write($4, string.rep(string.char($3), $5))" ;;
    "write -z") if [ "$3" = -u ]; then echo "img:zero($4, $5, {unmap=true})"
                else echo "img:zero($3, $4)"; fi ;;
    discard*) echo "img:discard($2, $3)" ;;
    *) echo "error('bad op $*')" ;;
    esac
}

# info_bitmaps IMG: the bitmaps qemu-img info reports (name, flags, granularity)
info_bitmaps() {
    qemu-img info --output=json "$1" | python3 -c '
import json, sys
d = json.load(sys.stdin)["format-specific"]["data"]
print(json.dumps(d.get("bitmaps"), sort_keys=True))'
}

# same_bits A B: bitmaps.py decodes both images to the same bitmaps
same_bits() {
    local a b
    a=$($BM "$1") || { echo "bitmaps.py $1 failed"; return 1; }
    b=$($BM "$2") || { echo "bitmaps.py $2 failed"; return 1; }
    [ "$a" = "$b" ] && [ -n "$a" ] && return 0
    echo "$1: $a"
    echo "$2: $b"
    return 1
}

same_info() {
    [ "$(info_bitmaps "$1")" = "$(info_bitmaps "$2")" ] && return 0
    echo "$1: $(info_bitmaps "$1")"
    echo "$2: $(info_bitmaps "$2")"
    return 1
}

# some_bits IMG NAME: bitmap NAME of IMG has bits set (so an equality
# of bits is not an equality of two empty bitmaps)
some_bits() {
    $BM "$1" | python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)[sys.argv[1]]["bits"] else 1)' "$2"
}

# table_bytes IMG NAME: md5 of bitmap NAME's directory entry (flags
# included), table and data clusters, read from the file
table_bytes() {
    python3 - "$1" "$2" <<'EOF'
import hashlib, struct, sys
d = open(sys.argv[1], "rb").read()
cs = 1 << struct.unpack(">I", d[20:24])[0]
off = struct.unpack(">I", d[100:104])[0]
while True:
    t, n = struct.unpack(">II", d[off:off + 8])
    if t == 0x23852875:
        nb, _, dsize, doff = struct.unpack(">IIQQ", d[off + 8:off + 32])
        break
    off += 8 + (n + 7) // 8 * 8
h, pos = hashlib.md5(), doff
for _ in range(nb):
    toff, tsize, flags, typ, gb, ns, ex = struct.unpack(">QIIBBHI", d[pos:pos + 24])
    name = d[pos + 24 + ex:pos + 24 + ex + ns].decode()
    if name == sys.argv[2]:
        h.update(d[pos:pos + 24])
        tab = d[toff:toff + 8 * tsize]
        h.update(tab)
        for i in range(tsize):
            e = struct.unpack(">Q", tab[8 * i:8 * i + 8])[0] & 0x00fffffffffffe00
            if e:
                h.update(d[e:e + cs])
    pos += (24 + ex + ns + 7) // 8 * 8
print(h.hexdigest())
EOF
}

# run_case NAME OPS...: NAME.base made by the caller. qemu-io applies OPS
# to NAME.qio, qinspect to NAME.qi (one session); then the comparisons.
run_case() {
    local name=$1 l='' o q=()
    shift
    for o in "$@"; do q+=(-c "$o"); l="$l $(lua_of "$o")"; done
    cp "$name.base" "$name.qio"
    cp "$name.base" "$name.qi"
    qio "${q[@]}" "$name.qio" || return
    t_check "$name: $# writes/zeroes/discards through qinspect -w" \
        "$QINSPECT" -w -e "$l" "$name.qi"
    compare_case "$name"
}

compare_case() {
    local name=$1
    t_check "$name: the bitmap data equals qemu-io's, bit for bit" same_bits "$name.qi" "$name.qio"
    t_check "$name: qemu-img info shows the same bitmaps and flags" same_info "$name.qi" "$name.qio"
    if info_bitmaps "$name.qi" | grep -q in-use && ! info_bitmaps "$name.base" | grep -q in-use; then
        t_fail "$name: no bitmap in-use after the close"
    else
        t_ok "$name: no bitmap in-use after the close (unless it was at open)"
    fi
    t_check "$name: qemu-img check is clean" qemu-img check -q "$name.qi"
    t_check "$name: qemu-img compare: the guest data equals qemu-io's" \
        qemu-img compare -q "$name.qi" "$name.qio"
}

# ---- 64 KiB clusters: four granularities, one disabled, one with bits ----
qemu-img create -q -f qcow2 main.base 64M
qemu-img bitmap --add main.base pre
qio -c 'write -P 0x11 0 3M' -c 'write -P 0x12 40M 100k' main.base
qemu-img bitmap --add -g 512 main.base b512
qemu-img bitmap --add main.base b64k
qemu-img bitmap --add -g 2G main.base big
qemu-img bitmap --add --disable main.base dis
OPS=("write -P 0x21 1000 5000" "write -P 0x22 2097152 65536" "write -z 10485760 102400"
     "write -z -u 1048576 131072" "discard 20971520 196608" "discard 31457280 100"
     "write -P 0x23 67100000 8864" "write -z 50000000 1" "discard 2500000 700000")
run_case main "${OPS[@]}"
for b in pre b512 b64k big; do
    t_check "main: bitmap $b has bits (the comparison is not of empty bitmaps)" some_bits main.qi $b
done
t_check "main: the disabled bitmap kept its bytes" \
    test "$(table_bytes main.base dis)" = "$(table_bytes main.qi dis)"
# QEMU loads what qinspect saved, and goes on tracking writes in it
qio -c 'write -P 0x31 5M 70k' -c 'discard 60M 1M' main.qi &&
qio -c 'write -P 0x31 5M 70k' -c 'discard 60M 1M' main.qio &&
t_check "main: after qemu-io writes on top, the bits still equal" same_bits main.qi main.qio

# ---- 512 B clusters: multi-entry tables, data rewritten in place ----
# one cluster of bits covers 4096 granules (2 MiB at 512 B granularity);
# 'pre' gets data clusters from qemu-io, and an entry set to 1 (all ones)
qemu-img create -q -f qcow2 -o cluster_size=512 small.base 16M
qemu-img bitmap --add -g 512 small.base pre
qio -c 'write -P 0x41 0 100k' -c 'write -P 0x42 5M 3M' small.base
qemu-img bitmap --add -g 512 small.base b512
qemu-img bitmap --add -g 4k small.base b4k
OPS=("write -P 0x51 3000 70000" "write -P 0x52 6291456 2097152" "write -z 12582912 1048576"
     "discard 15728640 1048576" "write -z -u 10485760 4096" "write -P 0x53 16777000 216")
run_case small "${OPS[@]}"
t_check "small: bitmap pre has bits" some_bits small.qi pre
# an all-ones table entry (entry 5 of 'pre': guest 10..12 MiB) stays all ones
cp small.base ones.base
python3 - ones.base <<'EOF' || t_fail "setup: poke an all-ones entry"
import struct, sys
p = sys.argv[1]
d = open(p, "rb").read()
off = struct.unpack(">I", d[100:104])[0]
while struct.unpack(">I", d[off:off + 4])[0] != 0x23852875:
    off += 8 + (struct.unpack(">I", d[off + 4:off + 8])[0] + 7) // 8 * 8
doff = struct.unpack(">Q", d[off + 24:off + 32])[0]
toff = struct.unpack(">Q", d[doff:doff + 8])[0]           # first entry: 'pre'
e = toff + 8 * 5
assert struct.unpack(">Q", d[e:e + 8])[0] == 0, "entry 5 has data"
with open(p, "r+b") as f:
    f.seek(e)
    f.write(struct.pack(">Q", 1))
EOF
run_case ones "${OPS[@]}"
entry5() {
    python3 - "$1" <<'EOF2'
import struct, sys
d = open(sys.argv[1], "rb").read()
off = struct.unpack(">I", d[100:104])[0]
while struct.unpack(">I", d[off:off + 4])[0] != 0x23852875:
    off += 8 + (struct.unpack(">I", d[off + 4:off + 8])[0] + 7) // 8 * 8
doff = struct.unpack(">Q", d[off + 24:off + 32])[0]
toff = struct.unpack(">Q", d[doff:doff + 8])[0]
print(struct.unpack(">Q", d[toff + 40:toff + 48])[0])
EOF2
}
t_check "ones: the all-ones entry stays 1 (no cluster allocated for it)" test "$(entry5 ones.qi)" = 1

# ---- a virtual size that is not a multiple of the granularity ----
qemu-img create -q -f qcow2 -o cluster_size=4k odd.base 10000384
qemu-img bitmap --add odd.base b64k
qemu-img bitmap --add -g 1k odd.base b1k
run_case odd "write -P 0x57 9990000 10384" "discard 9961472 38912" "write -z 0 1"
t_check "odd: bitmap b64k has bits" some_bits odd.qi b64k

# ---- several sessions and a flush in the middle ----
# after img:flush() the bits are on disk and in_use is clear; the next
# write sets in_use again before it changes anything
cp main.base flush.base
cp flush.base flush.qio
qio -c 'write -P 0x61 1M 64k' -c 'discard 8M 1M' -c 'write -z 33M 5k' flush.qio
cp flush.base flush.qi
out=$("$QINSPECT" -w -e "
    local function flags()
        local p = io.popen('$BM flush.qi'); local s = p:read('a'); p:close(); return s
    end
    img:write(1048576, string.rep('\x61', 65536))
    assert(flags():find('in%-use'), 'in_use set while writing')
    img:flush()
    local s = flags()
    assert(not s:find('in%-use'), 'in_use cleared by flush: ' .. s)
    img:discard(8388608, 1048576)
    assert(flags():find('in%-use'), 'in_use set again by the next write')" flush.qi 2>&1)
if [ $? -eq 0 ]; then t_ok "flush: in_use set while writing, cleared by img:flush(), set again by the next write"
else t_fail "flush: in_use set while writing, cleared by img:flush(), set again by the next write"; printf '%s\n' "$out" | t_diag; fi
t_check "flush: a second session" "$QINSPECT" -w -e 'img:zero(33 << 20, 5120)' flush.qi
compare_case flush

# ---- a bitmap in_use at open (qemu-io killed) is left alone ----
qemu-img create -q -f qcow2 inuse.base 32M
qemu-img bitmap --add inuse.base old
crash_qio inuse.base 'write -P 0x71 0 64k'
qemu-img bitmap --add -g 4k inuse.base fresh
if info_bitmaps inuse.base | grep -q in-use; then t_ok "inuse: setup: bitmap old is in-use"
else t_fail "inuse: setup: bitmap old is in-use"; fi
run_case inuse "write -P 0x72 1000 200000" "discard 4194304 1048576" "write -z 8388608 65536"
t_check "inuse: bitmap old kept its bytes (flags, table, data)" \
    test "$(table_bytes inuse.base old)" = "$(table_bytes inuse.qi old)"
t_check "inuse: bitmap fresh has bits" some_bits inuse.qi fresh

# ---- directories and tables QEMU refuses: the write fails, nothing written ----
# poke_bm IMG WHAT: damage the first bitmap: 'type' (type 2), 'entry' (a
# reserved bit in table entry 0), 'extra' (extra data size 8)
poke_bm() {
    python3 - "$1" "$2" <<'EOF'
import struct, sys
p, what = sys.argv[1], sys.argv[2]
d = open(p, "rb").read()
off = struct.unpack(">I", d[100:104])[0]
while struct.unpack(">I", d[off:off + 4])[0] != 0x23852875:
    off += 8 + (struct.unpack(">I", d[off + 4:off + 8])[0] + 7) // 8 * 8
doff = struct.unpack(">Q", d[off + 24:off + 32])[0]
toff = struct.unpack(">Q", d[doff:doff + 8])[0]
where, data = {"type": (doff + 16, b"\x02"), "entry": (toff, struct.pack(">Q", 2)),
               "flags": (doff + 12, struct.pack(">I", 6))}[what]
with open(p, "r+b") as f:
    f.seek(where)
    f.write(data)
print("%#x" % where)
EOF
}
for what in type entry flags; do
    cp main.base bad-$what.qcow2
    at=$(poke_bm bad-$what.qcow2 $what)
    case $what in entry) st="bitmap table" ;; *) st="bitmap directory" ;; esac
    sum=$(md5sum <bad-$what.qcow2)
    out=$("$QINSPECT" -w -e 'img:write(0, "x")' bad-$what.qcow2 2>&1)
    rc=$?
    if [ $rc -eq 1 ] && printf '%s' "$out" | grep -q "$st at offset $at" &&
       [ "$sum" = "$(md5sum <bad-$what.qcow2)" ]; then
        t_ok "bad $what: the write is refused naming the $st and offset $at, file unchanged"
    else
        t_fail "bad $what: the write is refused naming the $st and offset $at, file unchanged (rc $rc)"
        printf '%s\n' "$out" | t_diag
    fi
done

t_done
