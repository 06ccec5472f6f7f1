#!/bin/sh
# tests/bad/run.sh - crafted bad images: clear errors, no crash, bounded memory.
#
# cases.py makes every case (a valid qemu-img image with bytes poked at
# exact offsets) and an `expect` file; this script runs, for each case,
#     $QINSPECT info FILE
#     $QINSPECT map --output=json FILE
#     a full guest read: $QINSPECT convert -O raw FILE OUT
# and checks, for the ops the case lists in fail=: exit status 1 and an
# error line "qinspect: FILE: MESSAGE" whose MESSAGE (the part after the
# path, with the scratch directory blanked out) names the structure and
# (where the case has one) the offset as 0x...: a path never satisfies a
# check. For every op: no signal, no sanitizer report ("AddressSanitizer",
# "runtime error", "LeakSanitizer"), exit 0 or 1. Then, under the release
# binary, the peak RSS of every op (GNU time's %M) must stay below 128 MiB;
# no release binary, no GNU time or no RSS reading is a failure, never 0 KiB.
# Nothing is skipped: a missing tool or a failing oracle is a `not ok`.
#
# Env: QINSPECT (binary under test, default ./qinspect), QINSPECT_RELEASE
# (binary for the memory check; default ./qinspect when it is not an ASan
# build), TIME_BIN (GNU time, default /usr/bin/time), BAD_CASES
# (space-separated subset), OP_TIMEOUT (seconds per op, default 120).
# qemu-img gets 10 s per op: its convert hangs on a backing loop.
# Output: TAP on stdout.
set -u

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
QINSPECT=${QINSPECT:-./qinspect}
case $QINSPECT in /*) ;; */*) QINSPECT=$(pwd)/$QINSPECT ;; esac
RSS_LIMIT_KIB=131072
OP_TIMEOUT=${OP_TIMEOUT:-120}
TIME_BIN=${TIME_BIN:-/usr/bin/time}

work=$(mktemp -d "${TMPDIR:-/tmp}/qi-bad.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

n=0 failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)) failed=$((failed + 1)); echo "not ok $n - $*"; }
diag() { echo "# $*"; }

is_asan() { grep -q __asan_init "$1" 2>/dev/null; }

# ---- the binary and the tool for the memory check ----
if [ -z "${QINSPECT_RELEASE:-}" ]; then
    if [ -x "$root/qinspect" ] && ! is_asan "$root/qinspect"; then
        QINSPECT_RELEASE=$root/qinspect
    elif ! is_asan "$QINSPECT"; then
        QINSPECT_RELEASE=$QINSPECT
    fi
fi
rss_problem=
if [ -z "${QINSPECT_RELEASE:-}" ] || [ ! -x "$QINSPECT_RELEASE" ]; then
    rss_problem="no release (non-ASan) binary: run make, or set QINSPECT_RELEASE"
elif [ ! -x "$TIME_BIN" ]; then
    rss_problem="$TIME_BIN is missing (Debian package time)"
fi

# ---- make the cases ----
if ! python3 "$here/cases.py" "$work/cases" ${BAD_CASES:-} >"$work/list" 2>"$work/cases.err"; then
    echo "not ok 1 - cases.py could not make the bad images"
    sed 's/^/# /' "$work/cases.err"
    echo "1..1"
    exit 1
fi

# ---- the read op (convert) on a valid image, against qemu-img ----
good=$work/good.qcow2
if qemu-img create -q -f qcow2 "$good" 4M &&
   qemu-io -f qcow2 -c 'write -q -P 0x5a 0 192k' -c 'write -q -c -P 0x11 1M 64k' "$good" \
       >"$work/err" 2>&1 &&
   qemu-img convert -f qcow2 -O raw "$good" "$work/good.want" >>"$work/err" 2>&1; then
    if timeout "$OP_TIMEOUT" "$QINSPECT" convert -O raw "$good" "$work/good.raw" \
           >"$work/err" 2>&1 </dev/null &&
       cmp -s "$work/good.raw" "$work/good.want"; then
        ok "convert -O raw of a valid image equals qemu-img convert"
    else
        notok "convert -O raw of a valid image equals qemu-img convert"
        sed 's/^/#   /' "$work/err" | head -n 6
    fi
else
    notok "setup: qemu-img/qemu-io could not make the valid image"
    sed 's/^/#   /' "$work/err" | head -n 6
fi
rm -f "$work/good.raw"

# run_op BINARY OP FILE: run one op, stdout/stderr to $work/out, $work/err;
# sets $st (exit status).
run_op() {
    case $2 in
    info) timeout "$OP_TIMEOUT" "$1" info "$3" ;;
    map) timeout "$OP_TIMEOUT" "$1" map --output=json "$3" ;;
    read) timeout "$OP_TIMEOUT" "$1" convert -O raw "$3" "$work/read.raw" ;;
    esac >"$work/out" 2>"$work/err" </dev/null
    st=$?
    rm -f "$work/read.raw"
}

# split_err: the error lines of $work/err are "qinspect: PATH: MESSAGE";
# write each line whose PATH is one of the case's files (under $work) to
# $work/line, and its MESSAGE to $work/msg with $work replaced by <tmp>:
# paths hold the case's files and must never satisfy a check on the message.
split_err() {
    WORK=$work awk '
        BEGIN { work = ENVIRON["WORK"]; pre = "qinspect: " work "/" }
        index($0, pre) == 1 && (p = index(substr($0, 11), ": ")) > 0 {
            print > "/dev/stderr"
            m = substr($0, 11 + p + 1)
            while ((i = index(m, work)) > 0)
                m = substr(m, 1, i - 1) "<tmp>" substr(m, i + length(work))
            print m
        }' "$work/err" >"$work/msg" 2>"$work/line"
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

# check_oracle NAME FILE: QEMU decides. qinspect info opens FILE exactly
# when qemu-img info does (and then prints the same JSON); qinspect convert -O raw succeeds exactly when
# qemu-img convert does, and then both write the same bytes (QEMU's read of
# the active data); where qemu-img map works, qinspect map --output=json
# prints the same runs. A disagreement is a `not ok`, whichever way.
check_oracle() {
    qi=$(timeout 10 qemu-img info -f qcow2 "$2" >/dev/null 2>&1; echo $?)
    us=$(timeout "$OP_TIMEOUT" "$QINSPECT" info "$2" >/dev/null 2>"$work/err" </dev/null; echo $?)
    if [ "$qi" -eq 0 ] && [ "$us" -eq 0 ]; then
        timeout 10 qemu-img info -f qcow2 --output=json "$2" >"$work/q.info" 2>/dev/null
        timeout "$OP_TIMEOUT" "$QINSPECT" info --output=json "$2" >"$work/u.info" \
            2>/dev/null </dev/null
        if cmp -s "$work/q.info" "$work/u.info"; then
            ok "$1: info opens as qemu-img info does, same JSON"
        else
            notok "$1: info --output=json differs from qemu-img info's"
            diff "$work/q.info" "$work/u.info" | head -n 6 | sed 's/^/#   /'
        fi
    elif [ $((qi == 0)) -eq $((us == 0)) ]; then
        ok "$1: info refuses as qemu-img info does (qemu-img $qi, qinspect $us)"
    else
        notok "$1: info: qemu-img info exit $qi, qinspect info exit $us"
        show_err
    fi
    qc=$(timeout 10 qemu-img convert -f qcow2 -O raw "$2" "$work/q.raw" >/dev/null 2>&1; echo $?)
    uc=$(timeout "$OP_TIMEOUT" "$QINSPECT" convert -O raw "$2" "$work/u.raw" \
             >/dev/null 2>"$work/err" </dev/null; echo $?)
    if [ "$qc" -eq 0 ] && [ "$uc" -eq 0 ]; then
        if cmp -s "$work/q.raw" "$work/u.raw"; then
            ok "$1: convert reads the same bytes as qemu-img convert"
        else
            notok "$1: convert: the bytes differ from qemu-img convert's"
        fi
    elif [ $((qc == 0)) -eq $((uc == 0)) ]; then
        ok "$1: convert fails as qemu-img convert does (qemu-img $qc, qinspect $uc)"
    else
        notok "$1: convert: qemu-img convert exit $qc, qinspect convert exit $uc"
        show_err
    fi
    rm -f "$work/q.raw" "$work/u.raw"
    if timeout 10 qemu-img map -f qcow2 --output=json "$2" >"$work/q.map" 2>/dev/null; then
        timeout "$OP_TIMEOUT" "$QINSPECT" map --output=json "$2" >"$work/u.map" \
            2>"$work/err" </dev/null
        if cmp -s "$work/q.map" "$work/u.map"; then
            ok "$1: map --output=json equals qemu-img map"
        else
            notok "$1: map --output=json differs from qemu-img map"
            show_err
        fi
    fi
}

# check_case ID NAME: all TAP lines of one case (made in $work/cases/ID).
check_case() {
    name=$2 dir=$work/cases/$1
    file= fail= path= qemu= hexes= oracle=
    : >"$work/wants"
    while IFS= read -r line; do
        case $line in
        file=*) file=${line#file=} ;;
        fail=*) fail=${line#fail=} ;;
        want=*) echo "${line#want=}" >>"$work/wants" ;;
        hex=*) hexes=${line#hex=} ;;
        path=*) path=${line#path=} ;;
        qemu=*) qemu=${line#qemu=} ;;
        oracle=*) oracle=${line#oracle=} ;;
        esac
    done <"$dir/expect"
    diag "$name: qemu-img 7.2: $qemu"
    qi_st=$(timeout 10 qemu-img info -f qcow2 "$file" >/dev/null 2>&1; echo $?)
    qc_st=$(timeout 10 qemu-img convert -f qcow2 -O raw "$file" "$work/q.raw" >/dev/null 2>&1; echo $?)
    rm -f "$work/q.raw"
    diag "$name: qemu-img info exit $qi_st, qemu-img convert exit $qc_st"

    for op in info map read; do
        run_op "$QINSPECT" "$op" "$file"
        what="$name: $op"
        problem=
        if sanitizer_report; then
            problem="sanitizer report on stderr"
        elif [ "$st" -ne 0 ] && [ "$st" -ne 1 ]; then
            problem="exit status $st (signal, abort or timeout?)"
        fi
        case " $fail " in
        *" $op "*)
            if [ -z "$problem" ]; then
                split_err
                if [ "$st" -ne 1 ]; then
                    problem="exit status $st, want 1"
                elif [ ! -s "$work/line" ]; then
                    problem="no stderr line 'qinspect: PATH: MESSAGE' with PATH one of the case's files"
                elif ! matches_any "$work/line" "$path"; then
                    problem="the error line does not name the file ($path)"
                elif [ -n "$hexes" ] && ! matches_any "$work/msg" "$hexes" hex; then
                    problem="the message after the path does not give the offset (0x$hexes)"
                else
                    while IFS= read -r w; do
                        if ! matches_any "$work/msg" "$w"; then
                            problem="the message after the path does not name '$w'"
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

    [ "$oracle" = yes ] && check_oracle "$name" "$file"

    if [ -n "$rss_problem" ]; then
        notok "$name: peak RSS: $rss_problem"
        return
    fi
    peak=0 unread=
    for op in info map read; do
        case $op in
        info) set -- info "$file" ;;
        map) set -- map --output=json "$file" ;;
        read) set -- convert -O raw "$file" "$work/read.raw" ;;
        esac
        rm -f "$work/rss"
        timeout "$OP_TIMEOUT" "$TIME_BIN" -f %M -o "$work/rss" "$QINSPECT_RELEASE" "$@" \
            >/dev/null 2>&1 </dev/null
        rm -f "$work/read.raw"
        kib=$(tail -n 1 "$work/rss" 2>/dev/null)
        case $kib in
        '' | *[!0-9]* | 0)
            unread="$unread $op"
            continue ;;
        esac
        [ "$kib" -gt "$peak" ] && peak=$kib
    done
    if [ -n "$unread" ]; then
        notok "$name: peak RSS: no RSS reading from $TIME_BIN for:$unread"
        { cat "$work/rss" 2>/dev/null || echo "(no output file)"; } | head -n 3 | sed 's/^/#   /'
    elif [ "$peak" -lt "$RSS_LIMIT_KIB" ]; then
        ok "$name: peak RSS $peak KiB < 128 MiB"
    else
        notok "$name: peak RSS $peak KiB >= 128 MiB"
    fi
}

while read -r id c; do
    check_case "$id" "$c"
done <"$work/list"

echo "1..$n"
[ "$failed" -eq 0 ]
