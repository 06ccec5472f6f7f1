#!/bin/sh
# tests/bad/run.sh - crafted bad images: clear errors, no crash, bounded memory.
#
# cases.py makes every case (a valid qemu-img image with bytes poked at
# exact offsets) and an `expect` file; this script runs, for each case,
#     $QINSPECT info FILE
#     $QINSPECT map --output=json FILE
#     a full guest read: $QINSPECT convert -O raw FILE OUT
#       (until convert works: a Lua read loop with -e; else TAP SKIP)
# and checks, for the ops the case lists in fail=: exit status 1 and a
# message on stderr naming the file, the structure and (where the case has
# one) the offset as 0x...; for every op: no signal, no sanitizer report
# ("AddressSanitizer", "runtime error", "LeakSanitizer"), exit 0 or 1.
# Then, under the release binary, the peak RSS of every op must stay below
# 128 MiB (skipped without /usr/bin/time or a non-ASan binary).
#
# Env: QINSPECT (binary under test, default ./qinspect), QINSPECT_RELEASE
# (binary for the memory check), BAD_CASES (space-separated subset),
# OP_TIMEOUT (seconds per op, default 120). qemu-img gets 10 s per op: its
# convert hangs on a backing loop.
# Output: TAP on stdout.
set -u

here=$(cd "$(dirname "$0")" && pwd)
QINSPECT=${QINSPECT:-./qinspect}
case $QINSPECT in /*) ;; */*) QINSPECT=$(pwd)/$QINSPECT ;; esac
RSS_LIMIT_KIB=131072
OP_TIMEOUT=${OP_TIMEOUT:-120}

work=$(mktemp -d "${TMPDIR:-/tmp}/qi-bad.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)) failed=$((failed + 1)); echo "not ok $n - $*"; }
skip() { n=$((n + 1)); echo "ok $n # SKIP $*"; }
diag() { echo "# $*"; }

is_asan() { grep -q __asan_init "$1" 2>/dev/null; }

# ---- the binary for the memory check ----
if [ -z "${QINSPECT_RELEASE:-}" ]; then
    if [ -x ./qinspect ] && ! is_asan ./qinspect; then
        QINSPECT_RELEASE=$(pwd)/qinspect
    elif ! is_asan "$QINSPECT"; then
        QINSPECT_RELEASE=$QINSPECT
    else
        QINSPECT_RELEASE=
    fi
fi
[ -x /usr/bin/time ] || QINSPECT_RELEASE=

# ---- make the cases ----
if ! python3 "$here/cases.py" "$work/cases" ${BAD_CASES:-} >"$work/list" 2>"$work/cases.err"; then
    echo "not ok 1 - cases.py could not make the bad images"
    sed 's/^/# /' "$work/cases.err"
    echo "1..1"
    exit 1
fi

# ---- how to read the whole guest disk ----
good=$work/good.qcow2
qemu-img create -q -f qcow2 "$good" 4M
qemu-io -f qcow2 -c 'write -q -P 0x5a 0 192k' -c 'write -q -c -P 0x11 1M 64k' "$good" >/dev/null
qemu-img convert -f qcow2 -O raw "$good" "$work/good.want"
LUA_READ='local n, off = img.size, 0
while off < n do
    local len = math.min(1048576, n - off)
    img:read(off, len)
    off = off + len
end'
if timeout "$OP_TIMEOUT" "$QINSPECT" convert -O raw "$good" "$work/good.raw" >/dev/null 2>&1 &&
   cmp -s "$work/good.raw" "$work/good.want"; then
    read_mode=convert
elif timeout "$OP_TIMEOUT" "$QINSPECT" -e "$LUA_READ" "$good" >/dev/null 2>&1; then
    read_mode=lua
    diag "convert does not work yet: full reads use a Lua read loop (-e)"
else
    read_mode=none
    diag "neither convert nor a Lua session works: read checks are skipped"
fi
rm -f "$work/good.raw"

# run_op BINARY OP FILE: run one op, stdout/stderr to $work/out, $work/err;
# sets $st (exit status).
run_op() {
    case $2 in
    info) timeout "$OP_TIMEOUT" "$1" info "$3" ;;
    map) timeout "$OP_TIMEOUT" "$1" map --output=json "$3" ;;
    read)
        if [ "$read_mode" = convert ]; then
            timeout "$OP_TIMEOUT" "$1" convert -O raw "$3" "$work/read.raw"
        else
            timeout "$OP_TIMEOUT" "$1" -e "$LUA_READ" "$3"
        fi ;;
    esac >"$work/out" 2>"$work/err" </dev/null
    st=$?
    rm -f "$work/read.raw"
}

# matches_any FILE 'A|B|C' [hex]: FILE contains one of the alternatives.
matches_any() {
    _f=$1 _alts=$2 _hex=${3:-}
    _rest=$_alts
    while [ -n "$_rest" ]; do
        case $_rest in
        *'|'*) _a=${_rest%%|*}; _rest=${_rest#*|} ;;
        *) _a=$_rest; _rest= ;;
        esac
        [ -n "$_a" ] || continue
        if [ -n "$_hex" ]; then
            grep -Eiq "0x0*${_a}([^0-9a-f]|\$)" "$_f" && return 0
        else
            grep -Fq -- "$_a" "$_f" && return 0
        fi
    done
    return 1
}

show_err() {
    head -c 2000 "$work/err" | head -n 6 | sed 's/^/#   stderr: /'
}

sanitizer_report() {
    grep -Eq 'AddressSanitizer|LeakSanitizer|runtime error:|UndefinedBehaviorSanitizer' "$work/err"
}

# check_case NAME: all TAP lines of one case.
check_case() {
    name=$1 dir=$work/cases/$1
    file= fail= path= qemu= hexes=
    : >"$work/wants"
    while IFS= read -r line; do
        case $line in
        file=*) file=${line#file=} ;;
        fail=*) fail=${line#fail=} ;;
        want=*) echo "${line#want=}" >>"$work/wants" ;;
        hex=*) hexes=${line#hex=} ;;
        path=*) path=${line#path=} ;;
        qemu=*) qemu=${line#qemu=} ;;
        esac
    done <"$dir/expect"
    diag "$name: qemu-img 7.2: $qemu"
    qi_st=$(timeout 10 qemu-img info -f qcow2 "$file" >/dev/null 2>&1; echo $?)
    qc_st=$(timeout 10 qemu-img convert -f qcow2 -O raw "$file" "$work/q.raw" >/dev/null 2>&1; echo $?)
    rm -f "$work/q.raw"
    diag "$name: qemu-img info exit $qi_st, qemu-img convert exit $qc_st"

    for op in info map read; do
        if [ "$op" = read ] && [ "$read_mode" = none ]; then
            skip "$name: read (no convert and no Lua session yet)"
            continue
        fi
        run_op "$QINSPECT" "$op" "$file"
        what="$name: $op"
        [ "$op" = read ] && what="$name: read ($read_mode)"
        problem=
        if sanitizer_report; then
            problem="sanitizer report on stderr"
        elif [ "$st" -ne 0 ] && [ "$st" -ne 1 ]; then
            problem="exit status $st (signal, abort or timeout?)"
        fi
        case " $fail " in
        *" $op "*)
            if [ -z "$problem" ]; then
                if [ "$st" -ne 1 ]; then
                    problem="exit status $st, want 1"
                elif ! matches_any "$work/err" "$path"; then
                    problem="stderr does not name the file ($path)"
                elif [ -n "$hexes" ] && ! matches_any "$work/err" "$hexes" hex; then
                    problem="stderr does not give the offset (0x$hexes)"
                else
                    while IFS= read -r w; do
                        if ! matches_any "$work/err" "$w"; then
                            problem="stderr does not name '$w'"
                            break
                        fi
                    done <"$work/wants"
                fi
            fi
            if [ -z "$problem" ]; then
                ok "$what fails cleanly"
            else
                notok "$what: $problem"
                show_err
            fi ;;
        *)
            if [ -z "$problem" ]; then
                ok "$what does not crash (exit $st)"
            else
                notok "$what: $problem"
                show_err
            fi ;;
        esac
    done

    if [ -z "$QINSPECT_RELEASE" ]; then
        skip "$name: peak RSS (no /usr/bin/time or no release binary)"
        return
    fi
    peak=0
    for op in info map read; do
        [ "$op" = read ] && [ "$read_mode" = none ] && continue
        case $op in
        info) set -- info "$file" ;;
        map) set -- map --output=json "$file" ;;
        read) if [ "$read_mode" = convert ]; then
                  set -- convert -O raw "$file" "$work/read.raw"
              else
                  set -- -e "$LUA_READ" "$file"
              fi ;;
        esac
        timeout "$OP_TIMEOUT" /usr/bin/time -f %M -o "$work/rss" "$QINSPECT_RELEASE" "$@" \
            >/dev/null 2>&1 </dev/null
        rm -f "$work/read.raw"
        kib=$(tail -n 1 "$work/rss" 2>/dev/null)
        case $kib in ''|*[!0-9]*) kib=0 ;; esac
        [ "$kib" -gt "$peak" ] && peak=$kib
    done
    if [ "$peak" -lt "$RSS_LIMIT_KIB" ]; then
        ok "$name: peak RSS $peak KiB < 128 MiB"
    else
        notok "$name: peak RSS $peak KiB >= 128 MiB"
    fi
}

while IFS= read -r c; do
    check_case "$c"
done <"$work/list"

echo "1..$n"
[ "$failed" -eq 0 ]
