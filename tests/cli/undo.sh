#!/bin/bash
# tests/cli/undo.sh - undo files (--undo, qinspect undo) and dry runs
# (--dry-run, img:changes) of every writing path.
#
# Images are made by qemu-img/qemu-io and damaged with python3 at exact
# offsets. Each writing path (a -w session poking bytes and writing guest
# data, resize grow and --shrink, snapshot -c/-a/-d, the refcount rebuild
# of a -w open of a dirty lazy-refcounts image, an external data file) runs
# with --undo; then `qinspect undo` must give back the file byte for byte
# (cmp with the copy taken before), and qemu-img check must agree with its
# verdict on that copy. Refusals: an image changed since the run (python
# rewrites bytes), another file (a copy), an existing undo file; --force.
# Dry runs: the file stays byte-identical (cmp), and the changes listed by
# img:changes() applied in order to a copy of the file by python3 give
# exactly the file the real run wrote (cmp). Crashes: a crash at every write
# index of a rebuild and of a session write with --undo (QINSPECT_FAULT=N
# and N,drop) leaves an undo file that restores the original; a crash at
# every write index of `qinspect undo` itself, then a second undo, restores
# it too.
T_DIR=$(cd "$(dirname "$0")" && pwd)
. "$T_DIR/lib.sh"

dirty_flag() { qemu-img info -U --output=json "$1" | python3 -c 'import json,sys; print(str(json.load(sys.stdin)["dirty-flag"]).lower())'; }

# poke IMG OFFSET HEXBYTES: damage IMG at OFFSET (python3, not qinspect).
poke() {
    python3 - "$@" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2], 0))
    f.write(bytes.fromhex(sys.argv[3]))
EOF
}

# replay ORIG CHANGES OUT: apply the changes img:changes() listed (dumped by
# DUMP below) to a copy of ORIG, in order, writing OUT.
replay() {
    python3 - "$@" <<'EOF'
import sys
orig, changes, out = sys.argv[1:4]
data = bytearray(open(orig, "rb").read())
for line in open(changes):
    w = line.split()
    if w[0] == "T":
        n = int(w[1])
        data = data[:n] + bytearray(max(0, n - len(data)))
        continue
    off = int(w[1])
    new = bytes.fromhex(w[2]) if w[0] == "W" else bytes(int(w[2]))
    if len(data) < off + len(new):
        if w[0] == "D":
            new = new[:max(0, len(data) - off)]   # a discard keeps the length
        else:
            data += bytearray(off + len(new) - len(data))
    data[off:off + len(new)] = new
open(out, "wb").write(data)
EOF
}

# Lua: write img:changes() of the image in global `d` to the file CHG.
DUMP='local f = assert(io.open(CHG, "w"))
for _, c in ipairs(d:changes()) do
  if c.kind == "truncate" then f:write("T ", c.new_size, "\n")
  elseif c.kind == "discard" then f:write("D ", c.offset, " ", c.length, "\n")
  else f:write("W ", c.offset, " ", (c.new:gsub(".", function(x) return string.format("%02x", x:byte()) end)), "\n") end
end
f:close()'

# undo_ok NAME UNDOFILE IMG ORIG: qinspect undo restores IMG to ORIG.
undo_ok() {
    local out
    if ! out=$("$QINSPECT" undo "$2" "$3" 2>&1); then
        t_fail "$1: qinspect undo exits 0"
        printf '%s\n' "$out" | t_diag
    elif ! cmp -s "$3" "$4"; then
        t_fail "$1: after undo the image is byte for byte the original"
        cmp "$3" "$4" 2>&1 | t_diag
    else
        t_ok "$1: after undo the image is byte for byte the original"
    fi
}

# ---- a damaged image ----
qemu-img create -q -f qcow2 base.qcow2 16M
qio base.qcow2 "write -P 0x5a 0 192k" "write -P 0x33 1M 64k"
l1=$(python3 -c 'import struct; print(struct.unpack(">Q", open("base.qcow2","rb").read()[40:48])[0])')
rt=$(python3 -c 'import struct; print(struct.unpack(">Q", open("base.qcow2","rb").read()[48:56])[0])')
# damage: a leaked cluster (one more cluster at the end of the file, its
# refcount set to 1) and a stray byte in the L1 table's padding
rb=$(python3 -c "import struct; print(struct.unpack('>Q', open('base.qcow2','rb').read()[$rt:$rt+8])[0])")
leak=$(( $(stat -c %s base.qcow2) / 65536 ))
truncate -s $(( (leak + 1) * 65536 )) base.qcow2
poke base.qcow2 $((rb + 2 * leak)) 0001
poke base.qcow2 $((l1 + 4000)) 77
cp base.qcow2 damaged.qcow2
qemu-img check damaged.qcow2 >check.orig 2>&1; crc=$?
if [ $crc -eq 3 ]; then t_ok "setup: the damaged image has a leak (qemu-img check exit 3)"
else t_fail "setup: the damaged image has a leak (qemu-img check exit $crc)"; fi

# ---- a session with --undo: pokes and guest writes ----
cp damaged.qcow2 s.qcow2
"$QINSPECT" -w --undo s.undo -e "
  img:poke($((rb + 2 * leak)), '\0\0')
  img:poke($((l1 + 4000)), 'AB')
  img:write(4096, string.rep('q', 70000))
  img:write(8 * 1024 * 1024, string.rep('n', 5000))" s.qcow2 2>&1 | t_diag
if cmp -s s.qcow2 damaged.qcow2; then t_fail "session: the run changed the image"
else t_ok "session: the run changed the image"; fi
[ -s s.undo ] && t_ok "session: the undo file exists" || t_fail "session: the undo file exists"
cp s.qcow2 s.after
undo_ok session s.undo s.qcow2 damaged.qcow2
qemu-img check s.qcow2 >check.s 2>&1
if diff -q check.s check.orig >/dev/null; then t_ok "session: qemu-img check after undo says what it said before"
else t_fail "session: qemu-img check after undo says what it said before"; diff check.s check.orig | t_diag; fi
# a finished undo can run again while the image is unchanged
undo_ok "session (undo again)" s.undo s.qcow2 damaged.qcow2

# ---- refusals ----
cp damaged.qcow2 r.qcow2
"$QINSPECT" -w --undo r.undo -e "img:poke(100000, 'xyz')" r.qcow2
sleep 0.01
poke r.qcow2 100000 78797a7a     # the same range and one byte more, later
cp r.qcow2 r.changed
if "$QINSPECT" undo r.undo r.qcow2 >r.out 2>&1; then
    t_fail "changed image: undo refuses"
elif ! grep -q "changed since" r.out || ! cmp -s r.qcow2 r.changed; then
    t_fail "changed image: undo refuses, says why, writes nothing"; t_diag <r.out
else
    t_ok "changed image: undo refuses, says why, writes nothing"
fi
# --force puts the saved range back (the extra byte 100003 is not the run's)
"$QINSPECT" undo --force r.undo r.qcow2 >r.out 2>&1
poke r.changed 100000 "$(python3 -c "print(open('damaged.qcow2','rb').read()[100000:100003].hex())")"
if cmp -s r.qcow2 r.changed && grep -q -- "--force" r.out; then
    t_ok "--force: the saved bytes are restored, the rest left"
else
    t_fail "--force: the saved bytes are restored, the rest left"; t_diag <r.out
fi
# another file (a copy of the repaired image) is refused
cp damaged.qcow2 c.qcow2
"$QINSPECT" -w --undo c.undo -e "img:poke(100000, 'xyz')" c.qcow2
cp c.qcow2 c2.qcow2
if "$QINSPECT" undo c.undo c2.qcow2 >c.out 2>&1 || ! grep -q "not the file" c.out; then
    t_fail "a copy of the image: undo refuses"; t_diag <c.out
else
    t_ok "a copy of the image: undo refuses"
fi
"$QINSPECT" undo --force c.undo c2.qcow2 >/dev/null 2>&1
cmp -s c2.qcow2 damaged.qcow2 && t_ok "a copy with --force: restored" ||
    t_fail "a copy with --force: restored"
# an existing undo file is never overwritten
cp c.undo c.undo.before
if "$QINSPECT" -w --undo c.undo -e "img:poke(100000, 'zzz')" c.qcow2 2>c.out ||
   ! cmp -s c.undo c.undo.before || ! grep -q "exists" c.out; then
    t_fail "an existing undo file is refused"; t_diag <c.out
else
    t_ok "an existing undo file is refused"
fi
if "$QINSPECT" undo c.undo.missing c.qcow2 >/dev/null 2>&1; then
    t_fail "a missing undo file is an error"
else t_ok "a missing undo file is an error"; fi
head -c 100 damaged.qcow2 >notundo
if "$QINSPECT" undo notundo c.qcow2 2>&1 | grep -q "not a qinspect undo file"; then
    t_ok "not an undo file: refused"
else t_fail "not an undo file: refused"; fi

# ---- resize (grow and shrink) and snapshots ----
for op in "resize T +3G" "resize T +100M" "resize --shrink T 12M" \
          "snapshot -c snap1 T" "snapshot -c s2 T" "snapshot -d snap1 T" "snapshot -a snap1 T"; do
    name=$(echo "$op" | tr -c 'a-z0-9\n' _)
    cp damaged.qcow2 op.qcow2
    [ "${op#snapshot -[ad]}" != "$op" ] && qemu-img snapshot -c snap1 op.qcow2
    cp op.qcow2 op.orig
    rm -f op.undo
    # shellcheck disable=SC2086
    set -- ${op/T/--undo op.undo op.qcow2}
    if ! out=$("$QINSPECT" "$@" 2>&1); then
        t_fail "$op: runs with --undo"; printf '%s\n' "$out" | t_diag; continue
    fi
    cmp -s op.qcow2 op.orig && t_fail "$op: changed the image" || t_ok "$op: changed the image"
    undo_ok "$op" op.undo op.qcow2 op.orig
    # dry run: the file is untouched and a change list is printed
    set -- ${op/T/--dry-run op.qcow2}
    out=$("$QINSPECT" "$@" 2>&1)
    if cmp -s op.qcow2 op.orig && printf '%s\n' "$out" | grep -qE '^[1-9][0-9]* changes?\.$'; then
        t_ok "$op --dry-run: file byte-identical, changes listed"
    else
        t_fail "$op --dry-run: file byte-identical, changes listed"; printf '%s\n' "$out" | t_diag
    fi
done

# ---- dry run: the listed changes are exactly what the real run writes ----
# WORK is run on the image `d` (opened with dry_run) and on a real copy; the
# real file is copied after img:flush(), before the close.
dry_compare() {
    local name=$1 work=$2 out
    cp "$3" "$name.dry"; cp "$3" "$name.real"
    if ! out=$("$QINSPECT" -e "CHG = '$name.chg'
        d = assert(qinspect.open('$name.dry', {write = true, dry_run = true}))
        $work; d:flush(); $DUMP; d:close()
        d = assert(qinspect.open('$name.real', {write = true}))
        $work; d:flush(); os.execute('cp $name.real $name.real.flushed'); d:close()" \
        base.qcow2 2>&1); then
        t_fail "$name: dry run and real run"; printf '%s\n' "$out" | t_diag; return
    fi
    cmp -s "$name.dry" "$3" && t_ok "$name: dry run leaves the file byte-identical" ||
        t_fail "$name: dry run leaves the file byte-identical"
    replay "$3" "$name.chg" "$name.replayed"
    if cmp -s "$name.replayed" "$name.real.flushed"; then
        t_ok "$name: the listed changes give the real run's file byte for byte"
    else
        t_fail "$name: the listed changes give the real run's file byte for byte"
        cmp "$name.replayed" "$name.real.flushed" 2>&1 | t_diag
    fi
}
dry_compare pokes "d:poke($((rb + 2 * leak)), '\0\0'); d:poke(70000, 'xy'); d:write(4096, string.rep('q', 70000)); d:write(8 * 1024 * 1024, ('r'):rep(100)); assert(d:read(4096, 3) == 'qqq', 'reads see the overlay')" damaged.qcow2
dry_compare grow "d:resize(6 * 1024 * 1024 * 1024)" damaged.qcow2
dry_compare shrink "d:resize(2 * 1024 * 1024, {shrink = true})" damaged.qcow2
dry_compare discard "d:discard(0, 128 * 1024); d:write(0, 'abc')" damaged.qcow2

# ---- the refcount rebuild of a dirty lazy-refcounts image ----
qemu-img create -q -f qcow2 -o lazy_refcounts=on lazy.qcow2 16M
(qemu-io -f qcow2 -c "write -P 0x11 0 256k" -c "write -P 0x22 4M 64k" -c abort lazy.qcow2 >/dev/null 2>&1; true) 2>/dev/null
if [ "$(dirty_flag lazy.qcow2)" = true ]; then t_ok "setup: the lazy image is dirty"
else t_fail "setup: the lazy image is dirty"; fi
cp lazy.qcow2 lazy.orig
out=$("$QINSPECT" -w --dry-run -e '' lazy.qcow2 2>&1)
if cmp -s lazy.qcow2 lazy.orig && printf '%s\n' "$out" | grep -q 'header at 0x48: 0000000000000001 -> 0000000000000000'; then
    t_ok "rebuild --dry-run: file byte-identical; the close-time dirty bit clear is listed"
else
    t_fail "rebuild --dry-run: file byte-identical; the close-time dirty bit clear is listed"
    printf '%s\n' "$out" | t_diag
fi
"$QINSPECT" -w --undo lazy.undo -e '' lazy.qcow2 2>&1 | t_diag
if [ "$(dirty_flag lazy.qcow2)" = false ] && qemu-img check lazy.qcow2 >/dev/null 2>&1; then
    t_ok "rebuild with --undo: clean afterwards"
else t_fail "rebuild with --undo: clean afterwards"; fi
undo_ok "rebuild" lazy.undo lazy.qcow2 lazy.orig
[ "$(dirty_flag lazy.qcow2)" = true ] && t_ok "rebuild: dirty again after undo" ||
    t_fail "rebuild: dirty again after undo"
dry_compare rebuild "" lazy.orig
# a clean lazy image: a write sets the dirty bit, the close clears it; the
# dry run lists the clear as its last change
cp lazy.qcow2 lazyclean.qcow2
"$QINSPECT" -w -e '' lazyclean.qcow2 >/dev/null 2>&1
out=$("$QINSPECT" -w --dry-run -e 'img:write(0, "x")' lazyclean.qcow2 2>&1)
if [ "$(dirty_flag lazyclean.qcow2)" = false ] &&
   printf '%s\n' "$out" | tail -n 2 | head -n 1 | grep -q 'header at 0x48: 0000000000000001 -> 0000000000000000'; then
    t_ok "lazy write --dry-run: the dirty bit cleared at close is the last change"
else
    t_fail "lazy write --dry-run: the dirty bit cleared at close is the last change"
    printf '%s\n' "$out" | t_diag
fi

# ---- an external data file ----
qemu-img create -q -f qcow2 -o data_file=ext.data ext.qcow2 4M
qio ext.qcow2 "write -P 0x44 0 128k"
cp ext.qcow2 ext.orig; cp ext.data ext.data.orig
"$QINSPECT" -w --undo ext.undo -e "img:write(65536, ('e'):rep(100000)); img:write(3 * 1024 * 1024, 'z')" ext.qcow2 2>&1 | t_diag
cmp -s ext.data ext.data.orig && t_fail "data file: the run wrote it" || t_ok "data file: the run wrote it"
undo_ok "data file (image)" ext.undo ext.qcow2 ext.orig
cmp -s ext.data ext.data.orig && t_ok "data file: restored byte for byte" ||
    t_fail "data file: restored byte for byte"
cp ext.data ext.data.before
"$QINSPECT" -w --dry-run -e "img:write(65536, ('f'):rep(1000))" ext.qcow2 >ext.out 2>&1
if cmp -s ext.data ext.data.before && grep -q "ext.data: data cluster at 0x10000" ext.out; then
    t_ok "data file --dry-run: untouched, its writes listed"
else t_fail "data file --dry-run: untouched, its writes listed"; t_diag <ext.out; fi

# ---- usage errors ----
if "$QINSPECT" --dry-run -e '' damaged.qcow2 >/dev/null 2>&1; then
    t_fail "--dry-run without -w is a usage error"
else t_ok "--dry-run without -w is a usage error"; fi
if "$QINSPECT" -w --dry-run --undo x.undo -e '' damaged.qcow2 >/dev/null 2>&1 || [ -e x.undo ]; then
    t_fail "--dry-run with --undo is refused"
else t_ok "--dry-run with --undo is refused"; fi
if "$QINSPECT" -e 'qinspect.open("damaged.qcow2", {dry_run = true})' damaged.qcow2 >/dev/null 2>&1; then
    t_fail "Lua: dry_run without write raises"
else t_ok "Lua: dry_run without write raises"; fi

# ---- a dry run's writes reach what reads build (the owners index) ----
qemu-img create -q -f qcow2 own.qcow2 16M
qio own.qcow2 "write -P 7 0 64k"
out=$("$QINSPECT" -w --dry-run -e '
  assert(#img:owners(0) >= 1)     -- builds the index before the write
  img:write(65536, ("x"):rep(65536)); img:flush()
  local m = img:l2_for(65536)
  print("owners", #img:owners(m.host_offset))' own.qcow2 2>&1)
if printf '%s\n' "$out" | grep -qx $'owners\t1'; then
    t_ok "dry run: img:owners sees the cluster the overlay allocated"
else t_fail "dry run: img:owners sees the cluster the overlay allocated"; printf '%s\n' "$out" | t_diag; fi

# ---- the dry run's memory cap ----
qemu-img create -q -f qcow2 -o cluster_size=2M big.qcow2 512M
cp big.qcow2 big.orig
if "$QINSPECT" -w --dry-run -e 'img:write(0, ("x"):rep(140 * 1024 * 1024))' big.qcow2 >big.out 2>&1 ||
   ! grep -q "more than 256 MiB in memory" big.out || ! cmp -s big.qcow2 big.orig; then
    t_fail "dry run past its memory cap: a clear error, the file untouched"; t_diag <big.out
else
    t_ok "dry run past its memory cap: a clear error, the file untouched"
fi
rm -f big.qcow2 big.orig

# ---- a failed open leaves no undo file behind (the same name works next) ----
printf 'QFI\373short' >short.qcow2
if "$QINSPECT" -w --undo short.undo -e '' short.qcow2 >/dev/null 2>&1 || [ -e short.undo ]; then
    t_fail "a failed open: no undo file left"
else t_ok "a failed open: no undo file left"; fi

# ---- crashes: at every write index of a writer with --undo ----
# count_writes CMD...: the writes CMD makes (fault injection counting).
count_writes() {
    QINSPECT_FAULT=1000000000 "$@" 2>&1 >/dev/null |
        sed -n 's/^qinspect: fault injection: \([0-9]*\) writes.*$/\1/p'
}
crash_writer() {
    local name=$1 orig=$2 chunk=$3 w n mode bad=0
    cp "$orig" cw.qcow2; rm -f cw.undo
    w=$(count_writes "$QINSPECT" -w --undo cw.undo -e "$chunk" cw.qcow2)
    if [ -z "$w" ] || [ "$w" -lt 2 ]; then t_fail "$name: writes counted ($w)"; return; fi
    for mode in "" ",drop"; do
        bad=0
        for ((n = 0; n < w; n++)); do
            cp "$orig" cw.qcow2; rm -f cw.undo
            QINSPECT_FAULT="$n$mode" "$QINSPECT" -w --undo cw.undo -e "$chunk" cw.qcow2 >/dev/null 2>&1
            # an open that failed before saving anything removes its undo
            # file: then the image must be untouched
            if [ ! -e cw.undo ]; then
                echo "no undo file" >cw.out
                cmp -s cw.qcow2 "$orig" || { bad=1; echo "crash after write $n$mode: no undo file, image changed" | t_diag; break; }
            elif ! "$QINSPECT" undo cw.undo cw.qcow2 >cw.out 2>&1 || ! cmp -s cw.qcow2 "$orig"; then
                bad=1; echo "crash after write $n$mode: $(cat cw.out)" | t_diag; break
            fi
        done
        [ $bad -eq 0 ] && t_ok "$name: a crash at each of $w writes$mode, then undo: the original" ||
            t_fail "$name: a crash at each of $w writes$mode, then undo: the original"
    done
}
crash_writer "crash rebuild" lazy.orig ""
crash_writer "crash session" damaged.qcow2 "img:poke($((rb + 2 * leak)), '\0\0'); img:write(4096, ('q'):rep(70000)); img:write(9 * 1024 * 1024, 'z'); img:resize(64 * 1024 * 1024)"

# ---- crashes: at every write index of qinspect undo, then undo again ----
crash_undo() {
    local name=$1 orig=$2 chunk=$3 w n mode bad
    cp "$orig" cu.qcow2; rm -f cu.undo
    "$QINSPECT" -w --undo cu.undo -e "$chunk" cu.qcow2 >/dev/null 2>&1
    cp -p cu.qcow2 cu.after; cp cu.undo cu.undo.after
    w=$(count_writes "$QINSPECT" undo cu.undo cu.qcow2)
    if [ -z "$w" ] || [ "$w" -lt 2 ]; then t_fail "$name: undo writes counted ($w)"; return; fi
    for mode in "" ",drop"; do
        bad=0
        for ((n = 0; n < w; n++)); do
            # cp -p: the image keeps the mtime the undo file recorded
            cp -p cu.after cu.qcow2; cp cu.undo.after cu.undo
            QINSPECT_FAULT="$n$mode" "$QINSPECT" undo cu.undo cu.qcow2 >/dev/null 2>&1
            if ! "$QINSPECT" undo cu.undo cu.qcow2 >cu.out 2>&1 || ! cmp -s cu.qcow2 "$orig"; then
                bad=1; echo "crash after undo write $n$mode: $(cat cu.out)" | t_diag; break
            fi
        done
        [ $bad -eq 0 ] && t_ok "$name: a crash at each of $w undo writes$mode, undo again: the original" ||
            t_fail "$name: a crash at each of $w undo writes$mode, undo again: the original"
    done
}
crash_undo "crash in undo (session)" damaged.qcow2 "img:poke(70000, 'xy'); img:write(4096, ('q'):rep(70000)); img:resize(64 * 1024 * 1024)"
crash_undo "crash in undo (shrink)" damaged.qcow2 "img:resize(4 * 1024 * 1024, {shrink = true})"

t_done
