# tests/cli/lib.sh - helpers for the CLI tests (sourced by bash scripts).
#
# TAP output: `ok N - desc` / `not ok N - desc`, diagnostics as `# ...`
# lines, and the plan `1..N` printed by t_done at the end. qemu-img and
# qemu-io are the only oracles: images are made with them and every
# expected output is qemu-img's own output on the same image, never a
# saved qinspect output.
#
# Environment: QINSPECT (binary, default ./qinspect), TMPDIR (scratch
# parent). Each script gets a scratch directory $SCRATCH (removed at exit)
# and runs inside it, so image names in outputs are short relative paths.

set -u

QINSPECT=${QINSPECT:-./qinspect}
case $QINSPECT in
/*) ;;
*/*) QINSPECT=$(cd "$(dirname "$QINSPECT")" && pwd)/$(basename "$QINSPECT") ;;
*) QINSPECT=$(command -v "$QINSPECT" || echo "$PWD/$QINSPECT") ;;
esac
export QINSPECT

T_N=0
T_FAIL=0

# A missing tool is a failure, never a skip: without the oracles nothing
# here can be checked, and `make check` must say so loudly.
T_MISSING=
for t in qemu-img qemu-io python3 cmp; do
    command -v "$t" >/dev/null 2>&1 || T_MISSING="$T_MISSING $t"
done
if [ -n "$T_MISSING" ]; then
    echo "not ok 1 - required tools not installed:$T_MISSING (see README: Quick start)"
    echo "1..1"
    exit 1
fi
if [ ! -x "$QINSPECT" ]; then
    echo "not ok 1 - the binary under test $QINSPECT does not exist (run make)"
    echo "1..1"
    exit 1
fi

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/qinspect-cli.XXXXXX") || exit 1
# t_bg PID: a background process the script started (a lock holder); it is
# killed at exit, whatever the way out: normal end, failure or a signal.
# t_kill PID: kill it now and forget it (its number may then be reused).
T_PIDS=
t_bg() { T_PIDS="$T_PIDS $1"; }
t_kill() {
    local p rest=
    kill "$1" 2>/dev/null; wait "$1" 2>/dev/null
    for p in $T_PIDS; do [ "$p" = "$1" ] || rest="$rest $p"; done
    T_PIDS=$rest
}
t_cleanup() {
    local p
    for p in $T_PIDS; do
        kill "$p" 2>/dev/null; wait "$p" 2>/dev/null
    done
    T_PIDS=
    rm -rf "$SCRATCH"
}
trap t_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
cd "$SCRATCH" || exit 1

# Fixed local time zone so that snapshot dates print the same in both tools
# whatever the machine's zone (both read TZ).
export TZ=${TZ:-UTC}

t_ok() { T_N=$((T_N + 1)); echo "ok $T_N - $*"; }
t_fail() { T_N=$((T_N + 1)); T_FAIL=$((T_FAIL + 1)); echo "not ok $T_N - $*"; }
t_diag() { sed 's/^/# /'; }

# t_check DESC CMD...: one test, passing when CMD succeeds; CMD's output is
# shown as diagnostics when it fails.
t_check() {
    local desc=$1 out
    shift
    if out=$("$@" 2>&1); then
        t_ok "$desc"
    else
        t_fail "$desc"
        printf '%s\n' "$out" | head -40 | t_diag
    fi
}

# t_done: print the plan; exit status 1 if any test failed.
t_done() {
    echo "1..$T_N"
    [ "$T_FAIL" -eq 0 ]
}

# sanitizer_report FILE: FILE holds an ASan/UBSan/LSan report (a sanitizer
# can exit with 1, the status of an expected error: the report decides).
sanitizer_report() {
    grep -Eq 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:' "$1"
}

# qio IMG CMD...: run qemu-io commands (each argument one -c) on a qcow2
# image, failing loudly if qemu-io reports an error. qio_fmt FMT IMG CMD...
# does the same for an image of format FMT.
qio() { qio_fmt qcow2 "$@"; }
qio_fmt() {
    local fmt=$1 img=$2 args=() out c
    shift 2
    for c in "$@"; do args+=(-c "$c"); done
    if ! out=$(qemu-io -f "$fmt" "${args[@]}" "$img" 2>&1) ||
        printf '%s' "$out" | grep -qiE 'error|failed|Permission|not supported'; then
        echo "qemu-io failed on $img: $out" >&2
        return 1
    fi
}

# mkrand FILE BYTES: random data (a pattern file for qemu-io write -s).
mkrand() { head -c "$2" /dev/urandom >"$1"; }

# rename_ext IMG OLD NEW: change the type of header extension OLD to NEW
# (qcow2 v3 header; extensions start at header_length). Used to make
# headers qemu-img no longer writes but still reads.
rename_ext() {
    python3 - "$@" <<'EOF'
import struct, sys
path, old, new = sys.argv[1], int(sys.argv[2], 0), int(sys.argv[3], 0)
with open(path, "r+b") as f:
    h = f.read(65536)
    off = struct.unpack(">I", h[100:104])[0] if struct.unpack(">I", h[4:8])[0] >= 3 else 72
    while off + 8 <= len(h):
        t, n = struct.unpack(">II", h[off:off + 8])
        if t == 0:
            break
        if t == old:
            f.seek(off)
            f.write(struct.pack(">I", new))
            sys.exit(0)
        off += 8 + (n + 7) // 8 * 8
sys.exit(1)
EOF
}

# ---- comparisons with qemu-img (each prints a diff on mismatch) ----

# same_convert SRC [EXTRA ARGS FOR BOTH...]: the raw guest view must be equal.
same_convert() {
    local src=$1 rc
    shift
    rm -f q.raw e.raw
    "$QINSPECT" convert "$@" -O raw "$src" q.raw || { echo "qinspect convert failed"; return 1; }
    qemu-img convert "$@" -O raw "$src" e.raw || { echo "qemu-img convert failed"; return 1; }
    cmp q.raw e.raw
    rc=$?
    rm -f q.raw e.raw
    return $rc
}

# json_equal A B [keys]: compare two JSON files. Mode "all": equal values;
# mode "shared": equal on every key both objects have (recursively) and no
# key of B missing from A.
json_equal() {
    python3 - "$1" "$2" "${3:-all}" <<'EOF'
import json, sys
try:
    q = json.load(open(sys.argv[1]))
except Exception as e:
    print("qinspect output is not JSON:", e)
    print(open(sys.argv[1]).read()[:2000])
    sys.exit(1)
e = json.load(open(sys.argv[2]))
mode = sys.argv[3]
diffs = []
def cmp(a, b, path):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in b:
            if k not in a:
                diffs.append(f"{path}/{k}: missing (qemu-img: {json.dumps(b[k])[:200]})")
            else:
                cmp(a[k], b[k], f"{path}/{k}")
        if mode == "all":
            for k in a:
                if k not in b:
                    diffs.append(f"{path}/{k}: extra (qinspect: {json.dumps(a[k])[:200]})")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            diffs.append(f"{path}: {len(a)} items, qemu-img {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            cmp(x, y, f"{path}[{i}]")
    elif a != b or type(a) != type(b):
        diffs.append(f"{path}: qinspect {json.dumps(a)} qemu-img {json.dumps(b)}")
cmp(q, e, "")
for d in diffs[:20]:
    print(d)
sys.exit(1 if diffs else 0)
EOF
}

# same_map_json IMG: `map --output=json` records equal qemu-img's.
same_map_json() {
    "$QINSPECT" map --output=json "$1" >q.json || { echo "qinspect map failed"; return 1; }
    qemu-img map --output=json "$1" >e.json || { echo "qemu-img map failed"; return 1; }
    json_equal q.json e.json all
}

# same_info_json IMG: `info --output=json` equals qemu-img's on shared keys,
# and qinspect has every key qemu-img has.
same_info_json() {
    "$QINSPECT" info --output=json "$1" >q.json || { echo "qinspect info failed"; return 1; }
    qemu-img info --output=json "$1" >e.json || { echo "qemu-img info failed"; return 1; }
    json_equal q.json e.json shared
}

# same_stdout ARGS...: `qemu-img ARGS` succeeds (the oracle: a failing
# qemu-img is a failed test, never two equal empty outputs), and
# `qinspect ARGS` succeeds and prints the same bytes on stdout.
same_stdout() {
    local qrc erc
    "$QINSPECT" "$@" >q.out 2>q.err
    qrc=$?
    qemu-img "$@" >e.out 2>e.err
    erc=$?
    if [ "$erc" != 0 ]; then
        echo "oracle failed: qemu-img $* exited with $erc"
        cat e.err
        return 1
    fi
    if [ "$qrc" != 0 ] || sanitizer_report q.err; then
        echo "qinspect $* exited with $qrc (qemu-img: 0)"
        cat q.err
        return 1
    fi
    diff q.out e.out
}

# same_map_human IMG: `map` (human format) equals qemu-img's. qemu-img
# refuses that format for an image with compressed, encrypted or external
# clusters; there qinspect must refuse the same way: the same stdout, the
# same exit status and the same message. Any other failure of qemu-img is
# a failed oracle (same_stdout).
same_map_human() {
    local qrc erc
    qemu-img map "$1" >e.out 2>e.err
    erc=$?
    if [ "$erc" = 0 ] ||
        ! grep -qx 'qemu-img: File contains external, encrypted or compressed clusters\.' e.err; then
        same_stdout map "$1"
        return
    fi
    "$QINSPECT" map "$1" >q.out 2>q.err
    qrc=$?
    if [ "$qrc" != "$erc" ] || sanitizer_report q.err ||
        [ "$(sed 's/^qinspect: //' q.err)" != "$(sed 's/^qemu-img: //' e.err)" ]; then
        echo "qemu-img refused (exit $erc), qinspect exited with $qrc:"
        cat e.err q.err
        return 1
    fi
    diff q.out e.out
}

# check_image IMG DESC: the full differential check of one image.
check_image() {
    local img=$1 desc=$2
    t_check "$desc: convert -O raw equals qemu-img" same_convert "$img"
    t_check "$desc: map --output=json equals qemu-img" same_map_json "$img"
    t_check "$desc: info --output=json equals qemu-img" same_info_json "$img"
    t_check "$desc: info (human) equals qemu-img" same_stdout info "$img"
    t_check "$desc: map (human) equals qemu-img" same_map_human "$img"
    t_check "$desc: snapshot -l equals qemu-img" same_stdout snapshot -l "$img"
    t_check "$desc: info --backing-chain --output=json equals qemu-img" \
        same_stdout info --backing-chain --output=json "$img"
}
