#!/bin/bash
# tests/cli/convert.sh - `qinspect convert -O qcow2` (and -c, -B, -l, -n, -S,
# -m, -p) differentially against `qemu-img convert`: every case runs both
# on the same source; then the qinspect output must pass `qemu-img check`
# (no errors, no leaks), hold the same guest data (`qemu-img compare`), and
# have the allocation of qemu-img's output (`qemu-img map --output=json`
# records, host offsets left out) and as many compressed clusters
# (`qemu-img check --output=json`). Error cases: exit status and message
# as qemu-img's.
. "$(dirname "$0")/lib.sh"
cd "$SCRATCH" || exit 1

# ---- sources (made by qemu-img / qemu-io / python) ----
# s.raw: 8 MiB, data in pieces of clusters, a random part, a hole at the end
python3 - <<'EOF'
import random
r = random.Random(7)
b = bytearray(4 << 20)
b[0:100] = b'a' * 100                              # cluster 0, first block
b[65536 + 8192:65536 + 8202] = b'b' * 10           # cluster 1, third 4k block
b[3 * 65536:5 * 65536] = bytes(r.getrandbits(8) for _ in range(2 * 65536))
b[(1 << 20) + 12288] = 0x63                        # one byte, 4th block
for i in range(40):                                # compressible clusters
    b[(2 << 20) + i * 65536:(2 << 20) + i * 65536 + 30000] = bytes([i + 1]) * 30000
open('s.raw', 'wb').write(bytes(b))
# odd.raw: not a multiple of the cluster size; random (incompressible) and text
t = bytearray(r.getrandbits(8) for _ in range(1053184))
t[0:500000] = b'z' * 500000
open('odd.raw', 'wb').write(bytes(t))
EOF
truncate -s 8M s.raw
t_check "setup: base/overlay chain, snapshot image (qemu-img, qemu-io)" eval '
    qemu-img create -q -f qcow2 base.qcow2 4M &&
    qio base.qcow2 "write -P 1 0 1M" "write -P 2 2M 512k" &&
    qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 ov.qcow2 &&
    qio ov.qcow2 "write -P 3 512k 128k" "write -z 2M 64k" "write -P 4 3M 4k" &&
    qemu-img create -q -f qcow2 sn.qcow2 4M && qio sn.qcow2 "write -P 5 0 1M" &&
    qemu-img snapshot -c s1 sn.qcow2 && qio sn.qcow2 "write -P 6 512k 1M"'

# map_of IMG: qemu-img's map records without host offsets
map_of() {
    qemu-img map --output=json "$1" | python3 -c 'import json, sys
for e in json.load(sys.stdin):
    e.pop("offset", None)
    print(e)'
}
compressed_of() {
    qemu-img check --output=json "$1" 2>/dev/null |
        python3 -c 'import json, sys; print(json.load(sys.stdin).get("compressed-clusters", 0))'
}

# same TAG SRC ARGS...: qemu-img convert ARGS SRC q.TAG and qinspect convert
# ARGS SRC i.TAG; then the checks above. The data is compared with SRC
# unless REF (environment) names the image to compare with.
same() {
    local tag=$1 src=$2 out rc ref
    shift 2
    ref=${REF:-$src}
    rm -f "q.$tag" "i.$tag"
    if ! out=$(qemu-img convert "$@" "$src" "q.$tag" 2>&1); then
        t_fail "$tag: setup: qemu-img convert $*: $out"
        return
    fi
    out=$("$QINSPECT" convert "$@" "$src" "i.$tag" 2>&1)
    rc=$?
    if [ $rc -ne 0 ]; then
        t_fail "$tag: qinspect convert $* exits 0 (exit $rc)"
        printf '%s\n' "$out" | t_diag
        return
    fi
    t_check "$tag: same data as $ref (qemu-img compare)" qemu-img compare -q "$ref" "i.$tag"
    case " $* " in *" -O raw "*) return ;; esac
    t_check "$tag: qemu-img check clean" qemu-img check "i.$tag"
    t_check "$tag: allocation as qemu-img convert's (qemu-img map)" \
        diff <(map_of "q.$tag") <(map_of "i.$tag")
    t_check "$tag: compressed clusters as qemu-img's ($(compressed_of "q.$tag"))" \
        test "$(compressed_of "q.$tag")" = "$(compressed_of "i.$tag")"
}

# raw -> qcow2, sparse sizes
same raw s.raw -O qcow2
same raw-S0 s.raw -O qcow2 -S 0
same raw-S512 s.raw -O qcow2 -S 512
same raw-S64k s.raw -O qcow2 -S 64k
same raw-S1M s.raw -O qcow2 -S 1M
# compressed: zlib and zstd, thread counts, -S 0, a cut last cluster, random data
same zlib s.raw -O qcow2 -c
same zstd s.raw -O qcow2 -c -o compression_type=zstd
same zlib-m1 s.raw -O qcow2 -c -m 1
same zstd-m3 s.raw -O qcow2 -c -m 3 -o compression_type=zstd
same zlib-S0 s.raw -O qcow2 -c -S 0
same zlib-odd odd.raw -O qcow2 -c
same zstd-odd-4k odd.raw -O qcow2 -c -o compression_type=zstd,cluster_size=4096
t_check "zlib: some clusters compressed (qemu-img check)" test "$(compressed_of i.zlib)" -gt 30
# qcow2 (a backing chain, zero clusters) -> qcow2 with other options
same chain ov.qcow2 -O qcow2
same chain-4k ov.qcow2 -O qcow2 -o cluster_size=4096
same chain-v2 ov.qcow2 -O qcow2 -o compat=0.10
same chain-extl2 ov.qcow2 -O qcow2 -o extended_l2=on
same chain-c ov.qcow2 -O qcow2 -c -o cluster_size=512,compression_type=zstd
same chain-c-v2 ov.qcow2 -f qcow2 -O qcow2 -c -o compat=0.10
# compressed source -> uncompressed target, and qcow2 -> raw
same fromc i.zlib -O qcow2
REF=s.raw same toraw i.zlib -O raw
# -B: only the overlay's own clusters, backing file named in the new image
REF=ov.qcow2 same backed ov.qcow2 -O qcow2 -B base.qcow2 -F qcow2
t_check "backed: backing file and format in the header" eval \
    'qemu-img info --output=json i.backed | grep -q "\"backing-filename\": \"base.qcow2\"" &&
     qemu-img info --output=json i.backed | grep -q "\"backing-filename-format\": \"qcow2\""'
REF=ov.qcow2 same backed-c ov.qcow2 -O qcow2 -c -B base.qcow2 -F qcow2
# -o backing_file= is -B to qemu-img (target_has_backing)
REF=ov.qcow2 same backed-o ov.qcow2 -O qcow2 -o backing_file=base.qcow2,backing_fmt=qcow2
# -l: a snapshot's view
REF=q.snap same snap sn.qcow2 -O qcow2 -l s1
REF=q.snap-name same snap-name sn.qcow2 -O qcow2 -l snapshot.name=s1
REF=q.snap-c same snap-c sn.qcow2 -O qcow2 -c -l 1

# -n: into an existing image full of data (qemu-img zeroes, unmapping)
for c in "" "-S 0" "-S 64k"; do
    tag="n${c// /}"
    rm -f "q.$tag" "i.$tag"
    qemu-img create -q -f qcow2 "q.$tag" 8M && qio "q.$tag" "write -P 9 0 8M" && cp "q.$tag" "i.$tag"
    qemu-img convert -n $c -O qcow2 s.raw "q.$tag"
    t_check "$tag: qinspect convert -n $c" "$QINSPECT" convert -n $c -O qcow2 s.raw "i.$tag"
    t_check "$tag: qemu-img check clean" qemu-img check "i.$tag"
    t_check "$tag: same data (qemu-img compare)" qemu-img compare -q s.raw "i.$tag"
    t_check "$tag: allocation as qemu-img's" diff <(map_of "q.$tag") <(map_of "i.$tag")
done
# -n -c into allocated clusters: QEMU never overwrites with compressed data
qemu-img create -q -f qcow2 nc.qcow2 8M && qio nc.qcow2 "write -P 9 0 8M"
"$QINSPECT" convert -n -c -O qcow2 s.raw nc.qcow2 2>err.txt
t_check "-n -c over allocated clusters fails (exit 1, as qemu-img)" test $? = 1
t_check "-n -c: the message says why" grep -q "only to unallocated clusters" err.txt
t_check "-n -c: the target is still consistent" qemu-img check nc.qcow2

# ---- errors: exit status and message as qemu-img's ----
# err_same DESC ARGS...: both exit 1 and print the same message (the
# program name and a DST-name prefix aside); DST is out.qcow2.
err_same() {
    local desc=$1 qm im qrc irc
    shift
    rm -f out.qcow2
    qm=$(qemu-img convert "$@" 2>&1 >/dev/null); qrc=$?
    rm -f out.qcow2
    im=$("$QINSPECT" convert "$@" 2>&1 >/dev/null); irc=$?
    qm=${qm//qemu-img: /}
    im=${im//qinspect: /}
    if [ "$qrc" = "$irc" ] && [ "$qm" = "$im" ]; then t_ok "$desc: exit $irc, qemu-img's message"; else
        t_fail "$desc: exit $irc (qemu-img $qrc), message as qemu-img's"
        printf 'qemu-img: %s\nqinspect: %s\n' "$qm" "$im" | t_diag
    fi
}
err_same "-m 0" -m 0 -O qcow2 s.raw out.qcow2
err_same "-m 17" -m 17 -O qcow2 s.raw out.qcow2
err_same "-S 1000" -S 1000 -O qcow2 s.raw out.qcow2
err_same "-S 32M" -S 32M -O qcow2 s.raw out.qcow2
err_same "-c -O raw" -c -O raw s.raw out.qcow2
err_same "-B with -O raw" -B base.qcow2 -F qcow2 -O raw s.raw out.qcow2
err_same "-n with -o" -n -o cluster_size=4k -O qcow2 s.raw i.raw-S0
err_same "-B without -F" -B base.qcow2 -O qcow2 s.raw out.qcow2
err_same "-F without -B" -F raw -O qcow2 s.raw out.qcow2
err_same "-o cluster_size=3" -O qcow2 -o cluster_size=3 s.raw out.qcow2
err_same "-o compression_type=foo" -O qcow2 -o compression_type=foo s.raw out.qcow2
"$QINSPECT" convert -O qcow2 -o cluster_size=3 s.raw out.qcow2 2>/dev/null
t_check "invalid -o: no target left (as qemu-img)" test ! -e out.qcow2
"$QINSPECT" convert -O qcow2 no-such.raw out.qcow2 2>err.txt
rc=$?
t_check "missing source: exit 1, named, no target" eval \
    '[ $rc = 1 ] && grep -q no-such.raw err.txt && [ ! -e out.qcow2 ]'
mkdir -p adir
"$QINSPECT" convert -O qcow2 s.raw adir 2>err.txt
rc=$?
t_check "destination a directory: exit 1, the reason named" eval \
    '[ $rc = 1 ] && grep -q "adir" err.txt && grep -qi "directory" err.txt'
"$QINSPECT" convert -O qcow2 -l nosuch sn.qcow2 out.qcow2 2>err.txt
rc=$?
t_check "-l of a missing snapshot: exit 1, named" eval '[ $rc = 1 ] && grep -q nosuch err.txt'

# a source that fails mid-way (a compressed cluster that does not inflate):
# exit 1 naming it, no hang with the threads; the target stays (as qemu-img)
cp q.zlib bad.qcow2
python3 - <<'EOF'
import struct
f = open('bad.qcow2', 'r+b'); h = f.read(104)
f.seek(struct.unpack('>Q', h[40:48])[0]); l2 = struct.unpack('>Q', f.read(8))[0] & 0x00fffffffffffe00
f.seek(l2 + 8); e = struct.unpack('>Q', f.read(8))[0]   # cluster 1: compressed
assert e >> 62 == 1
f.seek(e & ((1 << 54) - 1)); f.write(b'\xff' * 64)
EOF
rm -f out.qcow2
timeout 120 "$QINSPECT" convert -c -O qcow2 bad.qcow2 out.qcow2 2>err.txt
rc=$?
t_check "unreadable source cluster: exit 1, the cluster named" eval \
    '[ $rc = 1 ] && grep -q "compressed cluster at offset" err.txt'
qemu-img convert -c -O qcow2 bad.qcow2 q.bad 2>/dev/null
t_check "unreadable source cluster: the target is left, as qemu-img leaves it" \
    eval '[ -e out.qcow2 ] && [ -e q.bad ]'

# the same without -c, the bad cluster in the second 2 MiB chunk of one
# span: it is read on the read-ahead thread while the first is written
qemu-img create -q -f qcow2 bad2.qcow2 8M
qemu-io -f qcow2 -c 'write -q -P 0x31 0 3M' -c 'write -q -c -P 0x32 3M 64k' \
    -c 'write -q -P 0x33 3136k 1M' bad2.qcow2 >/dev/null
python3 - <<'EOF2'
import struct
f = open('bad2.qcow2', 'r+b'); h = f.read(104)
f.seek(struct.unpack('>Q', h[40:48])[0]); l2 = struct.unpack('>Q', f.read(8))[0] & 0x00fffffffffffe00
f.seek(l2 + 48 * 8); e = struct.unpack('>Q', f.read(8))[0]   # cluster 48 (3 MiB): compressed
assert e >> 62 == 1
f.seek(e & ((1 << 54) - 1)); f.write(b'\xff' * 64)
EOF2
rm -f out2.qcow2
timeout 120 "$QINSPECT" convert -O qcow2 bad2.qcow2 out2.qcow2 2>err.txt
rc=$?
t_check "unreadable cluster read ahead (no -c): exit 1, the cluster named" eval \
    '[ $rc = 1 ] && grep -q "compressed cluster at offset" err.txt'
"$QINSPECT" convert -O qcow2 s.raw ra.qcow2 && qemu-img compare -q s.raw ra.qcow2
t_check "a source of several chunks converts with read-ahead: the same data" test $? = 0

# raw output reads a plain image's data through a mapping of the file: a
# source cut short (its last data cluster past the end) is an error naming
# it, as before, never a SIGBUS from the mapping
qemu-img create -q -f qcow2 cut.qcow2 4M
qemu-io -f qcow2 -c 'write -q -P 0x61 0 1M' -c 'write -q -P 0x62 2M 1M' cut.qcow2 >/dev/null
truncate -s 1200000 cut.qcow2
timeout 120 "$QINSPECT" convert -O raw cut.qcow2 cut.raw 2>err.txt
rc=$?
t_check "raw output of a source cut short: exit 1, the cluster past the end named" eval \
    '[ $rc = 1 ] && grep -q "past the end of the file" err.txt'
# a source with its data in an external file: mapped too (the data file)
qemu-img create -q -f qcow2 -o data_file=ext.data ext.qcow2 4M
qemu-io -f qcow2 -c 'write -q -P 0x63 64k 1M' -c 'write -q -P 0x64 3M 64k' ext.qcow2 >/dev/null
rm -f ext.raw
"$QINSPECT" convert -O raw ext.qcow2 ext.raw && qemu-img compare -q ext.qcow2 ext.raw
t_check "raw output of an image with a data file: the same data as qemu-img reads" test $? = 0

# ---- -p: progress on a terminal only ----
out=$("$QINSPECT" convert -p -O qcow2 s.raw p1.qcow2)
t_check "-p with stdout not a terminal prints nothing" test -z "$out"
script -qec "$QINSPECT convert -p -O qcow2 -c s.raw p2.qcow2" /dev/null >p.txt 2>&1
t_check "-p on a terminal: percent, rate" eval 'grep -q "100.00/100%" p.txt && grep -q "MiB/s" p.txt'
t_check "-p: the output image is right" qemu-img compare -q s.raw p2.qcow2

t_done
