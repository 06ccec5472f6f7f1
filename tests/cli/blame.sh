#!/bin/bash
# tests/cli/blame.sh - explain() blames the damaged place, never a healthy
# entry (issue 9's two reported cases, plus their neighbours). The damage is
# poked by python at offsets read from the file; qemu-img check confirms that
# the image is damaged, and which structure its lines name.
T_DIR=$(cd "$(dirname "$0")" && pwd)
. "$T_DIR/lib.sh"

verdict() {   # IMG LUA-EXPR: the Verdict line of explain(EXPR)
    "$QINSPECT" "$1" -e "local t = require('qinspect.explain').text($2)
        io.write((t:match('Verdict: [^\n]*')))" 2>&1
}

qemu-img create -q -f qcow2 a.qcow2 8M
qio a.qcow2 'write -P 0x11 0 2M'
l1=$(python3 -c 'd=open("a.qcow2","rb").read(); print(int.from_bytes(d[40:48],"big"))')
l2=$(python3 -c "d=open('a.qcow2','rb').read(); print(int.from_bytes(d[$l1:$l1+8],'big') & 0x00fffffffffffe00)")

# ---- garbage over L2 entries 16-23 ----
cp a.qcow2 g.qcow2
python3 -c "f=open('g.qcow2','r+b'); f.seek($l2 + 16 * 8); f.write(bytes((0x7f, 0xee, 0x11, 0x22, 0x33, 0x44, 0x55, 0x67)) * 8)"
t_check "qemu-img check calls the image damaged" bash -c '! qemu-img check g.qcow2 >/dev/null 2>&1'
out=$(verdict g.qcow2 'img.l1[0]')
t_check "the L1 entry of that L2 table is valid ($out)" test "$out" = "Verdict: valid (no rule qinspect can check here is broken)."
out=$(verdict g.qcow2 'img.l1[0]:l2()[0]')
t_check "a healthy L2 entry of the same table is valid ($out)" test "$out" = "Verdict: valid (no rule qinspect can check here is broken)."
out=$(verdict g.qcow2 'img.l1[0]:l2()[16]')
case $out in "Verdict: 0 problem"*|"Verdict: valid"*) t_fail "the garbage entry 16 has problems ($out)" ;;
    "Verdict: "*) t_ok "the garbage entry 16 has problems ($out)" ;; *) t_fail "entry 16: $out" ;; esac

# ---- a refcount table entry pointing past the end of the file ----
cp a.qcow2 r.qcow2
rt=$(python3 -c 'd=open("r.qcow2","rb").read(); print(int.from_bytes(d[48:56],"big"))')
python3 -c "f=open('r.qcow2','r+b'); f.seek($rt + 8); f.write((1 << 40).to_bytes(8, 'big'))"
t_check "qemu-img check names the refcount block outside the image" \
    bash -c 'qemu-img check r.qcow2 2>&1 | grep -q "refcount block 1 is outside image"'
out=$(verdict r.qcow2 'img.l1[0]:l2()[0]')
t_check "a valid data entry is valid, not past_end_of_file ($out)" test "$out" = "Verdict: valid (no rule qinspect can check here is broken)."
out=$("$QINSPECT" r.qcow2 -e "local t, f = require('qinspect.explain').text(img.refcounts[1])
    for _, x in ipairs(f) do io.write(x.name, ' ') end" 2>&1)
t_check "the refcount table entry 1 is blamed: refblock_outside_image ($out)" \
    bash -c "case '$out' in *refblock_outside_image*) exit 0 ;; *) exit 1 ;; esac"
# ---- a finding links to the entry it is about ----
cp a.qcow2 c.qcow2
# COPIED cleared on L2 entry 3 and on the L1 entry (refcount 1 both: corruptions)
python3 -c "
f = open('c.qcow2', 'r+b')
for off in ($l2 + 3 * 8, $l1):
    f.seek(off); v = int.from_bytes(f.read(8), 'big'); f.seek(off); f.write((v & ~(1 << 63)).to_bytes(8, 'big'))"
t_check "qemu-img check reports both COPIED problems" \
    bash -c '[ "$(qemu-img check c.qcow2 2>&1 | grep -c OFLAG_COPIED)" = 2 ]'
out=$("$QINSPECT" c.qcow2 -e "
    for _, f in ipairs(img:check{}.findings) do
        local e = f.entry
        io.write(f.structure, ' ', e and tostring(e) or 'none', ' ', e and tostring(e.copied) or '-', ';')
    end" 2>&1)
case $out in
    *"L2 entry L2 entry 3 of table "*" false;"*"L1 entry L1 entry 0"*" false;"*|*"L1 entry L1 entry 0"*" false;"*"L2 entry L2 entry 3 of table "*" false;"*)
        t_ok "img:check{} findings carry the entry objects they are about ($out)" ;;
    *) t_fail "img:check{} findings carry the entry objects they are about ($out)" ;;
esac
t_done
