#!/bin/bash
# tests/lua/run.sh - Lua API and session tests, printed as one TAP stream.
#
# Makes images with qemu-img/qemu-io in a scratch directory (removed on
# exit), computes the expected values from the image bytes with an
# independent Python reader of the qcow2 spec (struct), `qemu-img info
# --output=json` and `qemu-img convert -O raw`, writes them to expect.lua,
# then runs tests/lua/*.lua as `$QINSPECT IMAGE tests/lua/x.lua EXPECT KEY`
# and the session checks (-e order, stdin chunk, script args, exit codes)
# directly. Expected values never come from qinspect's own output.
# A missing tool (qemu-img, qemu-io, python3, hexdump), a failing setup
# command or oracle, or a test image that `qemu-img check` finds dirty is a
# `not ok` line plus `Bail out!` and exit 1: never a skip, never a comment.
# Usage: QINSPECT=./qinspect bash tests/lua/run.sh   (exit 1 on any failure)
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
Q=${QINSPECT:-./qinspect}
case $Q in /*) ;; *) Q=$PWD/$Q ;; esac

n=0 failed=0 ran=
ok() { # ok STATUS NAME
    n=$((n + 1))
    if [ "$1" -eq 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; failed=$((failed + 1)); fi
}
diag() { sed 's/^/# /' "$@"; }
# bail REASON [FILE]: the setup or an oracle failed. Print a failing test
# line with the reason (and FILE as diagnostics), then stop with status 1:
# a missing tool or a broken oracle fails the run, it is never a skip.
bail() {
    n=$((n + 1))
    echo "not ok $n - setup: $1"
    [ $# -gt 1 ] && [ -s "$2" ] && diag "$2"
    echo "Bail out! $1"
    echo "1..$n"
    exit 1
}
# must CMD...: run one setup command; any failure stops the suite.
must() { "$@" || bail "'$*' failed with status $?"; }
# same GOT EXPECTED: equal, and EXPECTED not empty (an oracle that printed
# nothing must not match a qinspect that printed nothing).
same() { [ -n "$2" ] && [ "$1" = "$2" ]; }

[ -x "$Q" ] || bail "$Q is not executable"
for t in qemu-img qemu-io python3 hexdump; do
    command -v "$t" >/dev/null || bail "$t is not installed; the expected values come from it"
done
S=$(mktemp -d "${TMPDIR:-/tmp}/qinspect-lua.XXXXXX") || bail "mktemp -d failed"
[ -n "${KEEP_SCRATCH:-}" ] && echo "# scratch: $S" || trap 'rm -rf "$S"' EXIT

qio() { qemu-io -f qcow2 "$@" >"$S/qio.out" 2>&1 || bail "qemu-io $* failed" "$S/qio.out"; }

# ---- images ----
make_images() {
    cd "$S" || bail "cd $S failed"
    # basic: 64 KiB clusters, data, a partial cluster, zeroes, a compressed
    # cluster, and a snapshot taken before later writes.
    must qemu-img create -q -f qcow2 basic.qcow2 4M
    qio -c 'write -P 0xab 0 64k' -c 'write -P 0x11 1M 4k' -c 'write -c -P 0x22 3M 64k' basic.qcow2
    must qemu-img snapshot -c snap1 basic.qcow2
    qio -c 'write -P 0xcd 0 4k' -c 'write -z 2M 64k' -c 'write -P 0x44 2176k 64k' basic.qcow2
    must qemu-img snapshot -c snap2 basic.qcow2
    qio -c 'discard 2176k 64k' basic.qcow2
    # small: 512-byte clusters (many L2 tables), 2-bit refcounts
    must qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=2 small.qcow2 1M
    qio -c 'write -P 0x01 0 1536' -c 'write -P 0x02 40k 512' -c 'write -P 0x03 700k 8k' \
        -c 'write -z 900k 1k' small.qcow2
    # ext: extended L2 entries (2 KiB subclusters), lazy refcounts, 64-bit refcounts
    must qemu-img create -q -f qcow2 -o extended_l2=on,lazy_refcounts=on,refcount_bits=64 ext.qcow2 2M
    qio -c 'write -P 0x33 0 4k' -c 'write -z 8k 2k' -c 'write -P 0x34 1M 64k' ext.qcow2
    # v2: compat 0.10 (version 2 header), 4 KiB clusters
    must qemu-img create -q -f qcow2 -o compat=0.10,cluster_size=4k v2.qcow2 8M
    qio -c 'write -P 0x66 4k 12k' -c 'write -c -P 0x67 1M 4k' -c 'write -P 0x68 7M 4k' v2.qcow2
    # a chain: raw base, qcow2 overlay with a relative backing name
    head -c 1048576 /dev/zero | tr '\0' 'B' > base.raw
    [ "$(wc -c < base.raw)" -eq 1048576 ] || bail "base.raw is not 1 MiB"
    must qemu-img create -q -f qcow2 -b base.raw -F raw over.qcow2 1M
    qio -c 'write -P 0x55 64k 64k' over.qcow2
    # a corrupt copy of basic: L1 entry 0 points far beyond the end of file
    must cp basic.qcow2 bad.qcow2
    must python3 - bad.qcow2 <<'PY'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(40); l1 = struct.unpack(">Q", f.read(8))[0]
    f.seek(l1); f.write(struct.pack(">Q", (1 << 63) | (1 << 40)))
PY
    echo "this is not an image" > text.img || bail "cannot write text.img"
    make_crafted
    # refcounts.lua counts owners against these refcounts: the images must
    # be clean (no leaks, no corruptions), or the oracle is wrong.
    for i in basic small ext v2 over plain; do
        qemu-img check $i.qcow2 >check.out 2>&1 || bail "qemu-img check: $i.qcow2 is not clean" check.out
    done
    # QEMU's map asks the host file for holes only when st_blocks looks like
    # metadata preallocation (qcow2_detect_metadata_preallocation), and
    # st_blocks shrinks once delayed allocation is written back: sync first,
    # so qemu-img map and qinspect see the same file state.
    sync
    for i in basic small ext v2 over; do must qemu-img convert -O raw $i.qcow2 $i.raw; done
    must qemu-img convert -l snapshot.name=snap1 -O raw basic.qcow2 basic.snap1.raw
    must qemu-img convert -l snapshot.name=snap2 -O raw basic.qcow2 basic.snap2.raw
    for i in basic small ext v2 over; do
        qemu-img info --output=json $i.qcow2 > $i.json || bail "qemu-img info $i.qcow2 failed"
    done
    cd - >/dev/null || bail "cd - failed"
}

# Crafted images for explain() and the examples, and crafted.lua with what
# was poked (computed here from the bytes, never by qinspect):
#  nocopied: COPIED cleared on the L2 entry of guest 0 (refcount 1)
#  shared:   COPIED set on basic's L2 entry of guest 1M (shared with the snapshots)
#  overref:  refcount of basic's cluster mapping guest 1M poked down to 1
#  bits:     reserved bit 1 set in L2 entry 0; l1bits: bit 3 in L1 entry 0
#  extbad:   ext image, subcluster 0 of guest 0 marked allocated and zero
make_crafted() {
    must qemu-img create -q -f qcow2 plain.qcow2 1M
    qio -c 'write -P 0x77 0 128k' plain.qcow2
    for i in nocopied bits l1bits; do must cp plain.qcow2 $i.qcow2; done
    must cp basic.qcow2 shared.qcow2; must cp basic.qcow2 overref.qcow2; must cp ext.qcow2 extbad.qcow2
    python3 - "$S" > crafted.lua <<'PY'
import struct, sys
d = sys.argv[1]
M = 0x00FFFFFFFFFFFE00
def geo(f):
    f.seek(0); h = f.read(104)
    cb, = struct.unpack(">I", h[20:24]); l1, = struct.unpack(">Q", h[40:48])
    rt, = struct.unpack(">Q", h[48:56]); inc, = struct.unpack(">Q", h[72:80])
    return cb, l1, rt, inc
def q(f, off, v=None):
    f.seek(off)
    if v is None: return struct.unpack(">Q", f.read(8))[0]
    f.write(struct.pack(">Q", v))
def l2pos(f, goff):
    cb, l1, rt, inc = geo(f); step = 16 if inc & 16 else 8
    l2 = q(f, l1) & M
    return l2 + (goff >> cb) * step
out = {}
with open(d + "/nocopied.qcow2", "r+b") as f:
    p = l2pos(f, 0); e = q(f, p); q(f, p, e & ~(1 << 63))
    out["nocopied"] = {"host": e & M, "was_copied": bool(e >> 63)}
with open(d + "/shared.qcow2", "r+b") as f:
    p = l2pos(f, 1048576); e = q(f, p); q(f, p, e | (1 << 63))
    out["shared"] = {"host": e & M, "guest": 1048576}
with open(d + "/overref.qcow2", "r+b") as f:
    cb, l1, rt, inc = geo(f); p = l2pos(f, 1048576); host = q(f, p) & M
    rb = q(f, rt) & M; f.seek(rb + (host >> cb) * 2); was, = struct.unpack(">H", f.read(2))
    f.seek(rb + (host >> cb) * 2); f.write(struct.pack(">H", 1))
    out["overref"] = {"host": host, "was": was}
with open(d + "/bits.qcow2", "r+b") as f:
    p = l2pos(f, 0); q(f, p, q(f, p) | 2)
with open(d + "/l1bits.qcow2", "r+b") as f:
    cb, l1, rt, inc = geo(f); q(f, l1, q(f, l1) | 8)
with open(d + "/extbad.qcow2", "r+b") as f:
    p = l2pos(f, 0); bm = q(f, p + 8); q(f, p + 8, bm | 1 | (1 << 32))
def lua(v):
    if isinstance(v, bool): return "true" if v else "false"
    if isinstance(v, int): return str(v)
    return "{" + ", ".join("%s = %s" % (k, lua(x)) for k, x in v.items()) + "}"
print("return " + lua(out))
PY
    [ $? -eq 0 ] && [ -s crafted.lua ] || bail "the python that pokes the crafted images failed"
}

# ---- the independent oracle: qcow2 spec read with struct ----
write_oracle() {
cat > "$S/oracle.py" <<'PY' || bail "cannot write oracle.py"
import json, os, struct, sys

MASK = 0x00FFFFFFFFFFFE00
HFIELDS = ["magic", "version", "backing_file_offset", "backing_file_size",
           "cluster_bits", "size", "crypt_method", "l1_size", "l1_table_offset",
           "refcount_table_offset", "refcount_table_clusters", "nb_snapshots",
           "snapshots_offset"]

def lua(v):
    if isinstance(v, bool): return "true" if v else "false"
    if isinstance(v, int): return "0x%016x" % (v & (2**64 - 1)) if v > 2**62 else str(v)
    if isinstance(v, str): return json.dumps(v)
    if v is None: return "nil"
    if isinstance(v, dict):
        return "{" + ", ".join("[%s] = %s" % (lua(k), lua(x)) for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "{" + ", ".join(lua(x) for x in v) + "}"
    raise TypeError(v)

def header(f):
    f.seek(0); b = f.read(112)
    h = dict(zip(HFIELDS, struct.unpack(">IIQIIQIIQQIIQ", b[:72])))
    if h["version"] >= 3:
        (h["incompatible_features"], h["compatible_features"], h["autoclear_features"],
         h["refcount_order"], h["header_length"]) = struct.unpack(">QQQII", b[72:104])
        h["compression_type"] = b[104] if h["header_length"] > 104 else 0
    else:
        h.update(incompatible_features=0, compatible_features=0, autoclear_features=0,
                 refcount_order=4, header_length=72, compression_type=0)
    return h

def l2_type(raw, extl2, cbits):
    if raw & (1 << 62): return "compressed"
    off = raw & MASK
    if not extl2 and raw & 1: return "zero-allocated" if off else "zero"
    return "normal" if off else "unallocated"

def l2_expect(raw, bitmap, extl2, cbits):
    t = l2_type(raw, extl2, cbits)
    e = {"raw": raw, "type": t, "copied": bool(raw >> 63)}
    if extl2: e["bitmap"] = bitmap
    if t == "compressed":
        x = 62 - (cbits - 8)
        off = raw & ((1 << x) - 1)
        sectors = ((raw >> x) & ((1 << (62 - x)) - 1)) + 1
        e.update(host_offset=off, csectors=sectors, csize=sectors * 512 - (off & 511))
    elif t in ("normal", "zero-allocated"):
        e["host_offset"] = raw & MASK
    return e

def table(f, off, n):
    f.seek(off); return list(struct.unpack(">%dQ" % n, f.read(8 * n)))

def refcounts(f, h, nclusters):
    cs = 1 << h["cluster_bits"]; bits = 1 << h["refcount_order"]
    rbe = cs * 8 // bits
    rt = table(f, h["refcount_table_offset"], h["refcount_table_clusters"] * cs // 8)
    out = {}
    for i in range(nclusters):
        rb = rt[i // rbe] & ~0x1FF & (2**64 - 1) if i // rbe < len(rt) else 0
        if not rb: out[i] = 0; continue
        bit = (i % rbe) * bits
        f.seek(rb + bit // 8)
        if bits >= 8:
            out[i] = int.from_bytes(f.read(bits // 8), "big")
        else:
            out[i] = (f.read(1)[0] >> (bit % 8)) & ((1 << bits) - 1)
    return out

def snapshots(f, h):
    f.seek(h["snapshots_offset"]); out = []
    for _ in range(h["nb_snapshots"]):
        pos = f.tell()
        (l1_off, l1_size, id_len, name_len, dsec, dnsec, vmclock, vmsize,
         extra) = struct.unpack(">QIHHIIQII", f.read(40))
        f.read(extra); sid = f.read(id_len).decode(); name = f.read(name_len).decode()
        f.seek((f.tell() + 7) & ~7)
        out.append({"entry_offset": pos, "l1_table_offset": l1_off, "l1_size": l1_size,
                    "id": sid, "name": name})
    return out

def extensions(f, h):
    f.seek(h["header_length"]); out = []
    while True:
        t, n = struct.unpack(">II", f.read(8))
        if t == 0: return out
        out.append({"type": t, "length": n})
        f.seek((f.tell() + n + 7) & ~7)

def image(path, info):
    with open(path, "rb") as f:
        h = header(f); cbits = h["cluster_bits"]; cs = 1 << cbits
        extl2 = bool(h["incompatible_features"] & 16)
        l1 = table(f, h["l1_table_offset"], h["l1_size"])
        l2 = {}
        for raw in l1:
            off = raw & MASK
            if not off or off in l2: continue
            f.seek(off); b = f.read(cs); ents = {}
            step = 16 if extl2 else 8
            for i in range(cs // step):
                raw2, = struct.unpack(">Q", b[i * step:i * step + 8])
                bm = struct.unpack(">Q", b[i * step + 8:i * step + 16])[0] if extl2 else 0
                if raw2 or bm: ents[i] = l2_expect(raw2, bm, extl2, cbits)
            l2[off] = ents
        f.seek(0, 2); fsize = f.tell()
        snaps = snapshots(f, h)
        for s, j in zip(snaps, info.get("snapshots", [])):
            s.update(json_id=j["id"], json_name=j["name"], date_sec=j["date-sec"],
                     date_nsec=j["date-nsec"], vm_state_size=j["vm-state-size"],
                     vm_clock_nsec=j["vm-clock-sec"] * 10**9 + j["vm-clock-nsec"])
            s["l1"] = table(f, s["l1_table_offset"], s["l1_size"])
        return {"header": h, "extl2": extl2, "cluster_size": cs, "l1": l1, "l2": l2,
                "l2_entries": cs // (16 if extl2 else 8),
                "refcounts": refcounts(f, h, (fsize + cs - 1) // cs),
                "reftable": table(f, h["refcount_table_offset"], h["refcount_table_clusters"] * cs // 8),
                "file_clusters": (fsize + cs - 1) // cs, "snapshots": snaps,
                "exts": extensions(f, h),
                "virtual_size": info["virtual-size"],
                "backing": info.get("backing-filename"),
                "backing_format": info.get("backing-filename-format")}

d = sys.argv[1]; out = {}
for key in sys.argv[2:]:
    with open("%s/%s.json" % (d, key)) as j: info = json.load(j)
    e = image("%s/%s.qcow2" % (d, key), info)
    with open("%s/%s.map.json" % (d, key)) as j: e["map"] = json.load(j)
    if os.path.exists("%s/%s.submap.json" % (d, key)):
        with open("%s/%s.submap.json" % (d, key)) as j: e["submap"] = json.load(j)
    e.update(path="%s/%s.qcow2" % (d, key), raw="%s/%s.raw" % (d, key), dir=d,
             root=os.environ.get("QI_ROOT", ""))
    out[key] = e
print("return " + lua(out))
PY
# qemu-img map's answer depends on the host file's holes and st_blocks at
# the moment it runs (QEMU's metadata-preallocation heuristic), and ext4
# changes both while delayed writes settle: take the map again right before
# each test so qinspect and qemu-img look at the same file state.
# basic.submap.json: an unaligned range (12 KiB + 1 MiB + 8 KiB) for img:map(start, length).
refresh_expect() {
    for i in basic small ext v2 over; do
        qemu-img map --output=json "$S/$i.qcow2" > "$S/$i.map.json" 2>"$S/oracle.err" ||
            bail "qemu-img map $i.qcow2 failed" "$S/oracle.err"
    done
    qemu-img map --output=json --start-offset 12288 --max-length 1056768 "$S/basic.qcow2" \
        > "$S/basic.submap.json" 2>"$S/oracle.err" || bail "qemu-img map --start-offset failed" "$S/oracle.err"
    QI_ROOT=$root python3 "$S/oracle.py" "$S" basic small ext v2 over > "$S/expect.lua" 2>"$S/oracle.err" ||
        bail "the python oracle (oracle.py) failed" "$S/oracle.err"
}
refresh_expect
}

# Run one Lua test file on IMAGE and re-number its TAP lines.
run_lua() {
    # run_lua FILE KEY IMAGE [OPTS...]
    refresh_expect
    local file=$1 key=$2 image=$3 line out rc plan=0 seen=0
    shift 3
    ran="$ran $file"
    out=$("$Q" "$@" "$image" "$here/$file" "$S/expect.lua" "$key" 2>"$S/stderr")
    rc=$?
    while IFS= read -r line; do
        case $line in
        "ok "*) seen=$((seen + 1)); ok 0 "$file[$key]: ${line#ok * - }" ;;
        "not ok "*) seen=$((seen + 1)); ok 1 "$file[$key]: ${line#not ok * - }" ;;
        1..*) plan=${line#1..} ;;
        *) echo "# $line" ;;
        esac
    done <<<"$out"
    # nothing on stderr: a sanitizer or Lua warning there is a failure too
    [ "$rc" -eq 0 ] && [ "$plan" -eq "$seen" ] && [ "$seen" -gt 0 ] && [ ! -s "$S/stderr" ]
    ok $? "$file[$key]: exit status 0 (got $rc), no stderr, and the plan of $plan matches $seen lines"
    [ -s "$S/stderr" ] && diag "$S/stderr"
}

# ---- session checks (the process edge) ----
session_checks() {
    local b=$S/basic.qcow2 out rc expect
    out=$("$Q" -e 'io.write("1")' -e 'io.write("2")' "$b" -e 'io.write("3")' 2>&1)
    [ "$out" = "123" ]; ok $? "-e chunks run in order (got '$out')"

    out=$(echo 'io.write(img.size, " ", tostring(img.writable))' | "$Q" "$b" 2>&1)
    [ "$out" = "4194304 false" ]; ok $? "stdin chunk runs with img (got '$out')"

    printf 'io.write(arg[0], "|", arg[1], "|", arg[2], "|", select("#", ...), "|", img.size)' > "$S/args.lua"
    out=$("$Q" "$b" "$S/args.lua" one "two words" 2>&1)
    [ "$out" = "$S/args.lua|one|two words|2|4194304" ]; ok $? "script gets arg and ... (got '$out')"

    "$Q" "$b" -e 'error("boom")' >"$S/out" 2>"$S/err"; rc=$?
    [ $rc -eq 1 ] && [ "$(wc -l <"$S/err")" -eq 1 ] && grep -qx 'qinspect: (command line):1: boom' "$S/err"
    ok $? "Lua error: exit 1 and one line on stderr"; diag "$S/err"

    "$Q" "$b" -e 'error("two\nlines")' >/dev/null 2>"$S/err"; rc=$?
    [ $rc -eq 1 ] && [ "$(wc -l <"$S/err")" -eq 1 ]; ok $? "multi-line error message printed as one line"

    "$Q" "$S/bad.qcow2" -e 'img:read(0, 512)' >/dev/null 2>"$S/err"; rc=$?
    [ $rc -eq 1 ] && [ "$(wc -l <"$S/err")" -eq 1 ] && grep -q '^qinspect: .*bad.qcow2' "$S/err"
    ok $? "engine error object: exit 1, one line naming the file"; diag "$S/err"

    "$Q" "$S/missing.qcow2" -e 'print(1)' >"$S/out" 2>"$S/err"; rc=$?
    [ $rc -eq 1 ] && [ ! -s "$S/out" ] && [ "$(wc -l <"$S/err")" -eq 1 ] &&
        grep -q "^qinspect: $S/missing.qcow2: " "$S/err"
    ok $? "open failure: exit 1, 'qinspect: FILE: message'"; diag "$S/err"

    "$Q" -x "$b" >/dev/null 2>&1; rc=$?
    [ $rc -eq 2 ]; ok $? "unknown option: exit 2 (got $rc)"
    "$Q" -w >/dev/null 2>&1; rc=$?
    [ $rc -eq 2 ]; ok $? "missing IMAGE: exit 2 (got $rc)"
    "$Q" "$b" -e >/dev/null 2>&1; rc=$?
    [ $rc -eq 2 ]; ok $? "-e without a chunk: exit 2 (got $rc)"

    out=$("$Q" "$b" -e 'img.l1[0].raw = 0' 2>&1); rc=$?
    [ $rc -eq 1 ] && [[ $out == *"image opened read-only; reopen with -w"* ]]
    ok $? "a raw edit on a read-only image raises, naming -w (got '$out')"
    out=$("$Q" "$b" -e 'img:l2_for(0).compressed = false' 2>&1); rc=$?
    [ $rc -eq 1 ] && [[ $out == *"field 'compressed' of L2 entry is read-only"* ]]
    ok $? "assigning a field with no setter raises read-only (got '$out')"

    must cp "$b" "$S/rw.qcow2"
    out=$("$Q" -w "$S/rw.qcow2" -e 'io.write(tostring(img.writable), " ", tostring(img))' 2>&1)
    [ "$out" = "true qcow2 image '$S/rw.qcow2' (rw, 64 KiB clusters)" ]; ok $? "-w opens read-write (got '$out')"
    out=$("$Q" -U "$b" -e 'io.write(tostring(img))' 2>&1)
    [ "$out" = "qcow2 image '$b' (ro, 64 KiB clusters)" ]; ok $? "-U opens read-only with force-share (got '$out')"

    out=$("$Q" "$b" -e 'io.write(hex(img:read(0, 20)))' 2>&1)
    expect=$(head -c 20 "$S/basic.raw" | hexdump -C) || bail "hexdump -C failed"
    same "$out" "$expect"; ok $? "hex() prints like hexdump -C"
    same "$out" "$expect" || { echo "# got:"; echo "$out" | sed 's/^/#   /'; echo "# expected:"; echo "$expect" | sed 's/^/#   /'; }

    out=$("$Q" "$S/small.qcow2" "$root/examples/walk-l2.lua" 2>&1); rc=$?
    expect=$(python3 - "$S/small.qcow2" <<'PY'
import struct, sys
f = open(sys.argv[1], "rb"); h = f.read(72)
cbits, = struct.unpack(">I", h[20:24]); l1n, = struct.unpack(">I", h[36:40]); l1o, = struct.unpack(">Q", h[40:48])
cs = 1 << cbits; f.seek(l1o); l1 = struct.unpack(">%dQ" % l1n, f.read(8 * l1n))
tables = entries = 0; types = {}
for e in l1:
    off = e & 0x00FFFFFFFFFFFE00
    if not off: continue
    tables += 1; f.seek(off)
    for r in struct.unpack(">%dQ" % (cs // 8), f.read(cs)):
        o = r & 0x00FFFFFFFFFFFE00
        t = "compressed" if r >> 62 & 1 else ("zero-allocated" if o else "zero") if r & 1 else "normal" if o else None
        if t: types[t] = types.get(t, 0) + 1
print("L2 tables: %d" % tables)
for t in sorted(types): print("%s: %d" % (t, types[t]))
PY
) || bail "the python oracle for walk-l2.lua failed"
    [ $rc -eq 0 ] && same "$out" "$expect"
    ok $? "examples/walk-l2.lua summary matches the L2 tables read by python"
    [ "$out" = "$expect" ] || { echo "# got:"; echo "$out" | sed 's/^/#   /'; echo "# expected:"; echo "$expect" | sed 's/^/#   /'; }
}

# ---- examples/ on images made by qemu-img and poked by python ----
example_checks() {
    local out rc expect prc
    "$Q" "$S/basic.qcow2" "$root/examples/find-shared.lua" >"$S/out" 2>&1; rc=$?
    out=$(grep -v '^  ' "$S/out")
    expect=$(python3 - "$S/basic.qcow2" <<'PY'
import struct, sys, os
f = open(sys.argv[1], "rb"); h = f.read(112)
cb, = struct.unpack(">I", h[20:24]); rt, = struct.unpack(">Q", h[48:56]); order, = struct.unpack(">I", h[96:100])
cs = 1 << cb; bits = 1 << order; rbe = cs * 8 // bits
n = (os.path.getsize(sys.argv[1]) + cs - 1) // cs; shared = 0
for c in range(n):
    f.seek(rt + (c // rbe) * 8); rb, = struct.unpack(">Q", f.read(8)); rb &= ~0x1ff
    if not rb: continue
    f.seek(rb + (c % rbe) * 2); r, = struct.unpack(">H", f.read(2))
    if r > 1: shared += 1; print("cluster 0x%x refcount %d" % (c * cs, r))
print("shared clusters: %d" % shared)
PY
) || bail "the python oracle for find-shared.lua failed"
    case $expect in *"shared clusters: 0") bail "basic.qcow2 has no shared cluster: find-shared.lua would check nothing" ;; esac
    [ $rc -eq 0 ] && same "$out" "$expect"
    ok $? "examples/find-shared.lua lists the clusters python finds with refcount > 1"
    same "$out" "$expect" || { echo "# got:"; echo "$out" | sed 's/^/#   /'; echo "# expected:"; echo "$expect" | sed 's/^/#   /'; }
    [ "$(grep -c '^  .*snapshot' "$S/out")" -gt 0 ]; ok $? "find-shared.lua names snapshot owners"

    "$Q" "$S/overref.qcow2" "$root/examples/find-overreferenced.lua" >"$S/out" 2>&1; rc=$?
    out=$(grep -v '^  ' "$S/out")
    expect=$(python3 -c "
C = open('$S/crafted.lua').read()
import re
host = int(re.search(r'overref = \{host = (\d+), was = (\d+)\}', C).group(1))
was = int(re.search(r'overref = \{host = (\d+), was = (\d+)\}', C).group(2))
print('cluster 0x%x refcount 1 references %d' % (host, was)); print('over-referenced clusters: 1')") ||
        bail "the python oracle for find-overreferenced.lua failed"
    [ $rc -eq 0 ] && same "$out" "$expect"
    ok $? "examples/find-overreferenced.lua reports exactly the cluster python poked"
    same "$out" "$expect" || { echo "# got: $out"; echo "# expected: $expect"; }
    out=$("$Q" "$S/basic.qcow2" "$root/examples/find-overreferenced.lua" 2>&1); rc=$?
    [ $rc -eq 0 ] && [ "$out" = "over-referenced clusters: 0" ]; ok $? "find-overreferenced.lua finds nothing on a clean image"

    must mkdir -p "$S/sum"
    must cp "$S/plain.qcow2" "$S/nocopied.qcow2" "$S/text.img" "$S/sum/"
    # garbage over the whole L2 table: a damaged image must not look clean
    must cp "$S/plain.qcow2" "$S/sum/garbage.qcow2"
    must python3 - "$S/sum/garbage.qcow2" <<'PY'
import sys
f = open(sys.argv[1], "r+b"); h = f.read(64)
cs = 1 << int.from_bytes(h[20:24], "big"); l1 = int.from_bytes(h[40:48], "big")
f.seek(l1); l2 = int.from_bytes(f.read(8), "big") & 0x00fffffffffffe00
f.seek(l2); f.write(bytes((i * 37 + 11) & 0xff for i in range(cs)))
PY
    "$Q" "$S/basic.qcow2" "$root/examples/summarize.lua" "$S/sum" "$S/missing.qcow2" > "$S/sum.jsonl" 2>"$S/err"; rc=$?
    python3 - "$S" 2>"$S/perr" <<'PY'
import json, subprocess, sys
S = sys.argv[1]
lines = [json.loads(l) for l in open(S + "/sum.jsonl")]
by = {l["path"]: l for l in lines}
assert len(lines) == 5, lines
g = by[S + "/sum/garbage.qcow2"]
assert g["problems"] and any(p["severity"] == "corruption" for p in g["problems"]), g
for name in ("plain", "nocopied"):
    r = by["%s/sum/%s.qcow2" % (S, name)]
    info = json.loads(subprocess.check_output(["qemu-img", "info", "--output=json", "%s/sum/%s.qcow2" % (S, name)]))
    assert r["virtual_size"] == info["virtual-size"] and r["cluster_size"] == info["cluster-size"], r
    assert r["format"] == "qcow2" and r["allocation"]["normal"] == 2, r
assert by[S + "/sum/plain.qcow2"]["problems"] == [], by[S + "/sum/plain.qcow2"]
assert [p["problem"] for p in by[S + "/sum/nocopied.qcow2"]["problems"]] == ["copied_missing"]
assert "error" in by[S + "/sum/text.img"] and by[S + "/missing.qcow2"]["code"] == "ENOENT"
PY
    prc=$?  # the assertions' status, taken before any other command runs
    [ $rc -eq 0 ] && [ $prc -eq 0 ]
    ok $? "examples/summarize.lua: one JSON object per image, qemu-img facts, the poked COPIED, open failures"
    [ $prc -eq 0 ] || diag "$S/perr"
    [ -s "$S/err" ] && diag "$S/err"
}

make_images
write_oracle
for key in basic small ext v2 over; do
    run_lua tables.lua $key "$S/$key.qcow2"
    run_lua header.lua $key "$S/$key.qcow2"
    run_lua read.lua $key "$S/$key.qcow2"
    run_lua refcount.lua $key "$S/$key.qcow2"
done
for key in basic small ext v2; do
    run_lua refcounts.lua $key "$S/$key.qcow2"
done
run_lua explain.lua basic "$S/basic.qcow2"
run_lua help.lua basic "$S/basic.qcow2" 
run_lua snapshots.lua basic "$S/basic.qcow2"
run_lua objects.lua basic "$S/basic.qcow2"
run_lua create.lua basic "$S/basic.qcow2"

# img:snapshot_* on one copy, the same steps with qemu-img/qemu-io on another:
# after the dates are set equal, the files are the same bytes and clean.
snapshot_ops() {
    local q=$S/snapops.qcow2 e=$S/snapops.e.qcow2 f out
    cp "$S/basic.qcow2" "$q" && cp "$S/basic.qcow2" "$e" &&
        qemu-img snapshot -c lua1 "$e" && qemu-io -c 'write -P 0x5a 0 4k' "$e" >/dev/null &&
        qemu-img snapshot -a snap1 "$e" && qemu-img snapshot -d snap2 "$e" ||
        bail "the qemu-img side of snapshot_ops failed"
    run_lua snapshot_ops.lua basic "$q" -w
    for f in "$q" "$e"; do
        python3 - "$f" <<'PY' || bail "setting the snapshot dates failed"
import struct, sys
with open(sys.argv[1], "r+b") as f:
    n, off = struct.unpack(">IQ", f.read(72)[60:72])
    for _ in range(n):
        f.seek(off); e = f.read(40)
        ids, names = struct.unpack(">HH", e[12:16]); extra = struct.unpack(">I", e[36:40])[0]
        f.seek(off + 16); f.write(struct.pack(">II", 1700000000, 0))
        off = (off + 40 + extra + ids + names + 7) // 8 * 8
PY
    done
    cmp "$q" "$e" >/dev/null
    ok $? "snapshot_ops: the file equals qemu-img's after the same steps (dates set equal)"
    qemu-img check "$q" >/dev/null 2>&1
    ok $? "snapshot_ops: qemu-img check is clean"
    out=$("$Q" "$S/basic.qcow2" -e 'img:snapshot_create("x")' 2>&1)
    [ $? -eq 1 ] && [ "${out#*reopen with -w}" != "$out" ]
    ok $? "snapshot_create on a read-only image raises, naming -w (got '$out')"
}
snapshot_ops
session_checks
example_checks
# a test file added to tests/lua but not to the list above would never run
notrun=
for f in "$here"/*.lua; do
    case " $ran " in *" ${f##*/} "*) ;; *) notrun="$notrun ${f##*/}" ;; esac
done
[ -z "$notrun" ]; ok $? "every tests/lua/*.lua file ran${notrun:+ (not run:$notrun)}"
echo "1..$n"
[ "$failed" -eq 0 ]
