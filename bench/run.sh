#!/bin/bash
# bench/run.sh [QINSPECT] - qinspect against qemu-img (and qemu-io), side by
# side on the fixtures of bench/fixtures.sh, one row per workload.
#
#   QINSPECT   the binary to time (default ./qinspect)
#   QUICK=1    small fixtures (whole bench about 2-3 minutes)
#   RUNS=3     timed pairs per row
#   ONLY=RE    run only the rows whose name matches the extended regex RE
#   BENCH_DIR  fixture directory (default: fixtures.sh's)
#   SYNC=0     do not sync before each run of a row that writes a file
#   BASE=BIN   also time another qinspect build (e.g. main's) in the same
#              rounds: extra columns with its median and its ratio to qemu-img
#
# Each row: one untimed run of each tool (warms the page cache and gives the
# results that the verify column compares), then RUNS pairs run alternately,
# the tools taking turns at going first. Columns: both medians (wall seconds), the median over the
# pairs of t(qinspect)/t(qemu-img) (below 1: qinspect is faster), the peak RSS
# of each (GNU time, MiB, largest over the runs), the median ratio of CPU time
# (user + system; steadier than wall time on a busy machine), and verify: whether
# qinspect's result is the same as qemu-img's (JSON fields, qemu-img compare of
# the outputs, qemu-img check of qcow2 outputs).
# A row whose qinspect command this build does not have (a probe on a tiny
# image fails) prints "n/a (not in this build)"; it starts working as soon as
# the command works. qemu-img convert does not flush its output by default;
# neither does qinspect, so both are timed as they run by default.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
Q=${1:-./qinspect}
case $Q in /*) ;; */*) Q=$PWD/$Q ;; *) Q=$(command -v "$Q" || echo "$PWD/$Q") ;; esac
RUNS=${RUNS:-3}
ONLY=${ONLY:-.}
QUICK=${QUICK:-0}
export QUICK
for tool in qemu-img qemu-io python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "bench/run.sh: $tool is needed (GNU time: package time)" >&2; exit 1; }
done
F=$(bash "$HERE/fixtures.sh" ${BENCH_DIR:+"$BENCH_DIR"}) || { echo "fixtures failed" >&2; exit 1; }
W=$(mktemp -d "$F/run.XXXXXX")
trap 'rm -rf "$W"' EXIT
[ -x "$Q" ] || echo "warning: $Q is not executable: every row will read n/a" >&2
# MiB written by the write loops in 64K and in 4K pieces (qemu-io takes about
# 0.6 ms per command, so the 4K loop is kept shorter)
if [ "$QUICK" = 1 ]; then WRITE_MB="64k:128 4k:16"; else WRITE_MB="64k:1024 4k:256"; fi

BASE=${BASE:-}
case $BASE in '' | /*) ;; *) BASE=$PWD/$BASE ;; esac
if [ -n "$BASE" ]; then
    fmt='%-20s %9s %9s %8s %7s %7s %6s %9s %8s  %s\n'
    printf "$fmt" workload qinspect qemu-img ratio 'q RSS' 'b RSS' 'CPU' base 'ratio' verify
    printf "$fmt" '' '(med s)' '(med s)' '(q/b)' '(MiB)' '(MiB)' '(q/b)' '(med s)' '(base/b)' ''
else
    fmt='%-20s %9s %9s %8s %7s %7s %6s  %s\n'
    printf "$fmt" workload qinspect qemu-img ratio 'q RSS' 'b RSS' 'CPU' verify
    printf "$fmt" '' '(med s)' '(med s)' '(q/b)' '(MiB)' '(MiB)' '(q/b)' ''
fi

# timed NAME OUTFILE CMD... : run once; sets T (wall seconds), C (CPU
# seconds, user + system), R (peak RSS, KiB), RC
timed() {
    local name=$1 out=$2 t0 t1; shift 2
    t0=$EPOCHREALTIME
    /usr/bin/time -f '%M %U %S' -o "$W/$name.rss" "$@" >"$out" 2>"$W/$name.err"
    RC=$?
    t1=$EPOCHREALTIME
    T=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')
    read -r R C <<<"$(tail -n 1 "$W/$name.rss" | awk '{ print $1, $2 + $3 }')"
    case $R in '' | *[!0-9]*) R=0 C=0 ;; esac
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
    if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
maxkib() { printf '%s\n' "$@" | sort -g | tail -n 1 | awk '{ printf "%.1f", $1 / 1024 }'; }
# line NAME Q B RATIO QRSS BRSS CPURATIO VERIFY [BASE BASERATIO]
line() {
    if [ -n "$BASE" ]; then
        printf "$fmt" "$1" "$2" "$3" "$4" "$5" "$6" "$7" "${9:--}" "${10:--}" "$8"
    else
        printf "$fmt" "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8"
    fi
}
ratio_of() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", (b > 0 ? a / b : 0) }'; }

# probe CMD...: does this build have the command? (run on tiny fixtures in $W/p)
probe() {
    rm -rf "$W/p" && mkdir "$W/p" && cp "$F/tiny.qcow2" "$F/tiny.raw" "$W/p/" &&
        (cd "$W/p" && "$@") >/dev/null 2>&1
}

# row NAME PROBE VERIFY : times the arrays QC (qinspect) and BC (qemu-img).
# PROBE: a function name (or "true"). VERIFY: a function printing the verify
# text; it sees $W/q.out, $W/b.out and the output files of the warm-up runs.
# PREP (a function name or "true", untimed) runs before every run of either
# tool: it removes outputs or copies the input that a command changes.
PREP=true
row() {
    local name=$1 pr=$2 ver=$3 i tq=() tb=() rq=() rb=() ratio=() v prep=$PREP
    local tx=() rx=() xc=("$BASE" "${QC[@]:1}") bm=() cq=() cb=() cr=()
    PREP=true
    [[ $name =~ $ONLY ]] || return 0
    if ! $pr; then line "$name" n/a - - - - - "n/a (not in this build)"; return; fi
    $prep b; timed b "$W/b.out" "${BC[@]}"
    if [ "$RC" -ne 0 ]; then
        line "$name" - - - - - - "qemu-img failed (exit $RC): $(head -c 100 "$W/b.err")"; return
    fi
    $prep q; timed q "$W/q.out" "${QC[@]}"
    if [ "$RC" -ne 0 ]; then
        line "$name" FAIL - - - - - "exit $RC: $(head -n 1 "$W/q.err" | cut -c1-100)"; return
    fi
    v=$($ver)
    local who=(q b) k
    [ -n "$BASE" ] && who+=(x)
    for ((i = 0; i < RUNS; i++)); do
        # the tools take turns at going first (a run can slow the next one)
        for ((k = 0; k < ${#who[@]}; k++)); do
            case ${who[(i + k) % ${#who[@]}]} in
            q) $prep q; timed q /dev/null "${QC[@]}"; tq+=("$T"); rq+=("$R"); cq+=("$C") ;;
            b) $prep b; timed b /dev/null "${BC[@]}"; tb+=("$T"); rb+=("$R"); cb+=("$C") ;;
            x) $prep q; timed x /dev/null "${xc[@]}"; tx+=("$T") ;;
            esac
        done
        ratio+=("$(ratio_of "${tq[i]}" "${tb[i]}")")
        # CPU times come in 10 ms steps: no ratio for shorter runs
        awk -v b="${cb[i]}" 'BEGIN { exit !(b >= 0.05) }' && cr+=("$(ratio_of "${cq[i]}" "${cb[i]}")")
        [ -n "$BASE" ] && rx+=("$(ratio_of "${tx[i]}" "${tb[i]}")")
    done
    [ -n "$BASE" ] && bm=("$(printf '%.3f' "$(median "${tx[@]}")")" "$(printf '%.3f' "$(median "${rx[@]}")")")
    line "$name" "$(printf '%.3f' "$(median "${tq[@]}")")" "$(printf '%.3f' "$(median "${tb[@]}")")" \
        "$(printf '%.3f' "$(median "${ratio[@]}")")" "$(maxkib "${rq[@]}")" \
        "$(maxkib "${rb[@]}")" "$([ ${#cr[@]} -gt 0 ] && printf '%.2f' "$(median "${cr[@]}")" || echo -)" "$v" "${bm[@]}"
}

# ---- verifications ----
json_same() {   # KIND: info, map or check; compares $W/q.out with $W/b.out
    python3 - "$1" "$W/q.out" "$W/b.out" <<'EOF'
import json, sys
kind, qf, bf = sys.argv[1:]
try:
    q = json.load(open(qf))
except ValueError:
    sys.exit(print("DIFF: qinspect's output is not JSON"))
b = json.load(open(bf))
if kind == "map":
    if len(q) != len(b):
        sys.exit(print("DIFF: %d records, qemu-img %d" % (len(q), len(b))))
    for i, (x, y) in enumerate(zip(q, b)):
        if any(x.get(k) != y[k] for k in y):
            sys.exit(print("DIFF at record %d" % i))
    sys.exit(print("same (%d records)" % len(b)))
if kind == "check":
    keys = ["corruptions", "leaks", "check-errors", "image-end-offset", "total-clusters",
            "allocated-clusters", "fragmented-clusters", "compressed-clusters"]
    d = [k for k in keys if q.get(k, 0) != b.get(k, 0)]
    sys.exit(print("same" if not d else "DIFF: " + ", ".join(
        "%s %s/%s" % (k, q.get(k), b.get(k)) for k in d)))
skip = {"filename", "actual-size", "dirty-flag"}
d = [k for k in b if k not in skip and q.get(k) != b[k]]
sys.exit(print("same" if not d else "DIFF: " + ", ".join(d)))
EOF
}
v_info() { json_same info; }
v_map() { json_same map; }
v_check() { json_same check; }
mib() { du -k "$1" | awk '{ printf "%.0f", $1 / 1024 }'; }
# the converted outputs $W/q.img and $W/b.img against the source
v_convert() {   # SRCFMT SRC OUTFMT
    local v=""
    if [ "$3" = qcow2 ]; then
        qemu-img check -q "$W/q.img" >/dev/null 2>&1 || v="qemu-img check FAILS, "
    fi
    if qemu-img compare -q -f "$1" -F "$3" "$2" "$W/q.img" >/dev/null 2>&1; then
        v="${v}same data"
    else
        v="${v}DATA DIFFERS"
    fi
    echo "$v, $(mib "$W/q.img")/$(mib "$W/b.img") MiB on disk"
}
v_convert_raw_a() { v_convert qcow2 "$F/a.qcow2" raw; }
v_convert_qcow2_d() { v_convert raw "$F/d.raw" qcow2; }
v_convert_qcow2_a() { v_convert qcow2 "$F/a.qcow2" qcow2; }
v_create() {
    python3 - "$W/q.img" "$W/b.img" <<'EOF'
import json, subprocess, sys
def info(p):
    j = json.loads(subprocess.run(["qemu-img", "info", "--output=json", p],
                                  capture_output=True, check=True).stdout)
    for k in ("filename", "actual-size", "dirty-flag"):
        j.pop(k, None)
    return j
ok = subprocess.run(["qemu-img", "check", "-q", sys.argv[1]]).returncode == 0
same = info(sys.argv[1]) == info(sys.argv[2])
print(("" if ok else "qemu-img check FAILS, ") + ("same info" if same else "DIFF: qemu-img info"))
EOF
}
# check -r all: both repaired images clean and with the same guest data
v_repair() {
    local v=""
    qemu-img check -q "$W/q.img" >/dev/null 2>&1 || v="qemu-img check of ours FAILS, "
    qemu-img check -q "$W/b.img" >/dev/null 2>&1 || v="${v}qemu-img's own repair not clean, "
    if qemu-img compare -q "$W/q.img" "$W/b.img" >/dev/null 2>&1; then
        echo "${v}clean, same data as qemu-img's repair"
    else
        echo "${v}DATA DIFFERS from qemu-img's repair"
    fi
}
v_snapshot() {
    local v="" n
    qemu-img check -q "$W/q.img" >/dev/null 2>&1 || v="qemu-img check FAILS, "
    n=$(qemu-img snapshot -l "$W/q.img" | grep -c ' bench-new ')
    [ "$n" = 1 ] || v="${v}new snapshot not listed, "
    if qemu-img compare -q "$W/q.img" "$W/b.img" >/dev/null 2>&1 &&
        [ "$(qemu-img snapshot -l "$W/q.img" | wc -l)" = "$(qemu-img snapshot -l "$W/b.img" | wc -l)" ]; then
        echo "${v}same data and snapshot count"
    else
        echo "${v}DIFF from qemu-img's result"
    fi
}
v_write() {
    local v=""
    qemu-img check -q "$W/q.img" >/dev/null 2>&1 || v="qemu-img check FAILS, "
    if qemu-img compare -q "$W/q.img" "$W/b.img" >/dev/null 2>&1; then
        echo "${v}same data as qemu-io"
    else
        echo "${v}DIFF from qemu-io"
    fi
}

# ---- probes ----
p_true() { true; }
p_check() { probe "$Q" check tiny.qcow2; }
p_qcow2_out() { probe sh -c "'$Q' convert -O qcow2 tiny.raw o.qcow2 && qemu-img check -q o.qcow2"; }
p_zlib() { probe sh -c "'$Q' convert -O qcow2 -c tiny.raw o.qcow2 && qemu-img check -q o.qcow2"; }
p_zstd() {
    probe sh -c "'$Q' convert -O qcow2 -c -o compression_type=zstd tiny.raw o.qcow2 &&
        qemu-img info o.qcow2 | grep -q 'compression type: zstd'"
}
p_dedup() { probe sh -c "'$Q' convert -O qcow2 -o dedup=on tiny.raw o.qcow2 && qemu-img check -q o.qcow2"; }
p_create() { probe sh -c "'$Q' create -f qcow2 n.qcow2 1M && qemu-img check -q n.qcow2"; }
p_create_meta() {
    probe sh -c "'$Q' create -f qcow2 -o preallocation=metadata n.qcow2 1M && qemu-img check -q n.qcow2"
}
p_snapshot() {
    probe sh -c "'$Q' snapshot -c s1 tiny.qcow2 && qemu-img snapshot -l tiny.qcow2 | grep -q ' s1 '"
}
p_write() { probe "$Q" -w -e "img:write(0, 'x')" tiny.qcow2; }
p_repair() { probe sh -c "'$Q' check -r all tiny.qcow2 && qemu-img check -q tiny.qcow2"; }

# ---- rows ----
# outputs are removed and the dirty pages of earlier runs written back
# (untimed), so that every run starts with the same writeback backlog
prep_outputs() { rm -f "$W/$1.img"; [ "${SYNC:-1}" = 0 ] || sync; }
prep_snapshot() { cp "$F/c.qcow2" "$W/$1.img"; }
# a.qcow2 damaged for check -r all: the first refcount block's refcounts all
# zeroed (every cluster of the first 2 GiB of the file in use with refcount
# 0, the block itself included; refcounts past the end of the file would be
# invisible to both checks, so no leak is made that way)
prep_damaged() {
    cp "$F/a.qcow2" "$W/$1.img"
    python3 - "$W/$1.img" <<'EOF2'
import sys
f = open(sys.argv[1], "r+b"); h = f.read(104)
be = lambda o, n: int.from_bytes(h[o:o + n], "big")
cb, rt = be(20, 4), be(48, 8)
cs = 1 << cb; f.seek(rt); t = [int.from_bytes(f.read(8), "big") for _ in range(cs // 8)]
blocks = [e & ~0x1ff for e in t if e]
f.seek(blocks[0]); f.write(bytes(cs))
EOF2
}
prep_write() { rm -f "$W/$1.img"; qemu-img create -q -f qcow2 "$W/$1.img" 2G; }

for fx in a c; do
    QC=("$Q" info --output=json "$F/$fx.qcow2"); BC=(qemu-img info --output=json "$F/$fx.qcow2")
    row "info-$fx" p_true v_info
done
for fx in a b; do
    QC=("$Q" map --output=json "$F/$fx.qcow2"); BC=(qemu-img map --output=json "$F/$fx.qcow2")
    row "map-$fx" p_true v_map
done
for fx in a b c e; do
    QC=("$Q" check --output=json "$F/$fx.qcow2"); BC=(qemu-img check --output=json "$F/$fx.qcow2")
    row "check-$fx" p_check v_check
done

# the shipped analysis scripts against qemu-img check on the same image
# (issue 9: at most 2x its time on a million-cluster image); verify: the
# script's finding count equals qemu-img check's problem count (both 0 here)
v_script() {
    local n
    n=$(grep -c '"problem"' "$W/q.out")
    if [ "$(grep -c . "$W/q.out")" -ge 1 ] && grep -q "No errors were found" "$W/b.out" && [ "$n" = 0 ]; then
        echo "both clean"
    else
        echo "script output or check differs ($n problems)"
    fi
}
v_shared() {
    local n
    n=$(sed -n 's/^shared clusters: //p' "$W/q.out")
    if [ -n "$n" ] && grep -q "No errors were found" "$W/b.out"; then echo "$n shared clusters"
    else echo "no count printed"; fi
}
for fx in b c e; do
    QC=("$Q" "$F/$fx.qcow2" "$HERE/../examples/summarize.lua"); BC=(qemu-img check "$F/$fx.qcow2")
    row "summarize.lua-$fx" p_true v_script
done
for fx in c e; do
    QC=("$Q" "$F/$fx.qcow2" "$HERE/../examples/find-shared.lua"); BC=(qemu-img check "$F/$fx.qcow2")
    row "find-shared.lua-$fx" p_true v_shared
done

PREP=prep_outputs
QC=("$Q" convert -O raw "$F/a.qcow2" "$W/q.img")
BC=(qemu-img convert -f qcow2 -O raw "$F/a.qcow2" "$W/b.img")
row convert-raw-a p_true v_convert_raw_a
PREP=prep_outputs
QC=("$Q" convert -O qcow2 "$F/d.raw" "$W/q.img")
BC=(qemu-img convert -f raw -O qcow2 "$F/d.raw" "$W/b.img")
row convert-qcow2-d p_qcow2_out v_convert_qcow2_d
PREP=prep_outputs
QC=("$Q" convert -O qcow2 "$F/a.qcow2" "$W/q.img")
BC=(qemu-img convert -f qcow2 -O qcow2 "$F/a.qcow2" "$W/b.img")
row convert-qcow2-a p_qcow2_out v_convert_qcow2_a
PREP=prep_outputs
QC=("$Q" convert -O qcow2 -c "$F/d.raw" "$W/q.img")
BC=(qemu-img convert -f raw -O qcow2 -c "$F/d.raw" "$W/b.img")
row convert-zlib-d p_zlib v_convert_qcow2_d
PREP=prep_outputs
QC=("$Q" convert -O qcow2 -c -o compression_type=zstd "$F/d.raw" "$W/q.img")
BC=(qemu-img convert -f raw -O qcow2 -c -o compression_type=zstd "$F/d.raw" "$W/b.img")
row convert-zstd-d p_zstd v_convert_qcow2_d
PREP=prep_outputs
QC=("$Q" convert -O qcow2 -o dedup=on "$F/d.raw" "$W/q.img")
BC=(qemu-img convert -f raw -O qcow2 "$F/d.raw" "$W/b.img")
row convert-dedup-d p_dedup v_convert_qcow2_d

PREP=prep_outputs
QC=("$Q" create -f qcow2 "$W/q.img" 64G); BC=(qemu-img create -q -f qcow2 "$W/b.img" 64G)
row create-64g p_create v_create
PREP=prep_outputs
QC=("$Q" create -f qcow2 -o preallocation=metadata "$W/q.img" 64G)
BC=(qemu-img create -q -f qcow2 -o preallocation=metadata "$W/b.img" 64G)
row create-meta-64g p_create_meta v_create

PREP=prep_snapshot
QC=("$Q" snapshot -c bench-new "$W/q.img"); BC=(qemu-img snapshot -c bench-new "$W/b.img")
row snapshot-c-20 p_snapshot v_snapshot

PREP=prep_damaged
QC=("$Q" check -r all "$W/q.img"); BC=(qemu-img check -r all "$W/b.img")
row repair-a p_repair v_repair

# guest write loops (formerly bench/write.sh): MB MiB of 'x' in PIECE
# pieces into an empty 2 GiB image, a Lua loop against a qemu-io command stream
for spec in $WRITE_MB; do
    piece=$((${spec%%k:*} * 1024)) mb=${spec#*:}
    n=$((mb * 1048576 / piece))
    awk -v p=$piece -v n=$n 'BEGIN { for (i = 0; i < n; i++)
        printf "write -P 0x78 %d %d\n", i * p, p }' >"$W/cmds.$piece"
    PREP=prep_write
    QC=("$Q" -w -e "local d = string.rep('x', $piece)
        for i = 0, $n - 1 do img:write(i * $piece, d) end" "$W/q.img")
    BC=(sh -c "exec qemu-io -f qcow2 '$W/b.img' <'$W/cmds.$piece' >/dev/null")
    row "write-${mb}m-${spec%%:*}" p_write v_write
done
