#!/bin/sh
# tests/run.sh - run every test suite and summarise.
#
# Suites (each prints TAP on stdout):
#   $UNIT_DIR/test_*                  C unit tests, one per tests/unit/test_*.c
#   $UNIT_DIR/fuzz_replay -x tests/fuzz/seeds/EXPECT SEEDS...
#                                     fuzz corpus replay against expectations
#   tests/cli/*.sh (not lib.sh)       batch subcommands, run with bash
#   tests/lua/run.sh                  Lua API tests
#   tests/repl/run.sh                 the REPL through tmux
#   tests/bad/run.sh                  crafted bad images
#   tests/crash/run.sh                a crash at every write index of the write paths
#   tests/corrupt/run.sh              the corruption corpus: check parity and repair
# A suite counts its "ok" and "not ok" lines. Counted as one more failure
# each, and printed with the suite name: a suite that exits nonzero without
# printing a failing line, exits with 86 (a sanitizer's status, below),
# times out, prints no plan, a plan "1..N" that does not match its test
# lines, or "1..0" (a suite that skips itself, "1..0 # SKIP why"); a suite
# after which a sanitizer report file appeared, or whose output holds a
# sanitizer report. Every "ok N # SKIP" line counts as a failure, not a
# pass. A unit test binary missing for a tests/unit/test_*.c, a missing
# fuzz_replay, and a missing suite script are failures too: in `make check`
# nothing is skipped quietly. The last line is exactly "N passed, M
# failed"; the exit status is 1 if M > 0.
#
# Sanitizers: ASan, LSan and UBSan exit with 86, never with the 1 of an
# expected error, and a report fails the run even when the test discarded
# stderr or ignored the status. Appended to the caller's options:
# ASAN_OPTIONS detect_leaks=1:exitcode=86, UBSAN_OPTIONS halt_on_error=1:
# print_stacktrace=1:exitcode=86, and to both log_path=<per-run temp
# dir>/san unless the caller set a log_path (then that one is watched).
# Reports go to log_path.PID files; after each suite any new one is
# printed (its head) and fails the suite, and so does a report in the
# suite's output. (With GCC, UBSan is a separate runtime that ignores
# log_path and writes to stderr: its reports are caught by the status 86,
# by the test that sees it, and by the scan of the suite's output.)
#
# Env: QINSPECT (binary under test, default ./qinspect, exported to suites),
# UNIT_DIR (default build/asan/tests), SUITE_TIMEOUT (seconds, default 900),
# SUITES (only suites whose name contains one of these words), VERBOSE=1
# (show every suite's full output).
set -u

cd "$(dirname "$0")/.." || exit 1
QINSPECT=${QINSPECT:-./qinspect}
case $QINSPECT in /*) ;; *) QINSPECT=$(pwd)/$QINSPECT ;; esac
UNIT_DIR=${UNIT_DIR:-build/asan/tests}
SUITE_TIMEOUT=${SUITE_TIMEOUT:-900}
export QINSPECT UNIT_DIR

out=$(mktemp "${TMPDIR:-/tmp}/qi-run.XXXXXX") || exit 1
san_dir=$(mktemp -d "${TMPDIR:-/tmp}/qi-san.XXXXXX") || exit 1
trap 'rm -rf "$out" "$san_dir"' EXIT
trap 'exit 130' INT TERM

# ---- sanitizer options ----
SAN_EXIT=86
# log_path_of OPTS: the value of the last log_path= in OPTS ('' if none)
log_path_of() {
    printf '%s\n' "$1" | tr ':' '\n' | sed -n 's/^log_path=//p' | tail -n 1
}
san_log=$(log_path_of "${ASAN_OPTIONS:-}")
[ -n "$san_log" ] || san_log=$(log_path_of "${UBSAN_OPTIONS:-}")
[ -n "$san_log" ] || san_log=$san_dir/san
case $san_log in
stderr|stdout) echo "run.sh: log_path=$san_log: sanitizer reports are only caught by" \
                    "exit status $SAN_EXIT and in suite output" >&2 ;;
/*) ;;
*) san_log=$(pwd)/$san_log ;;
esac
san_opts="exitcode=$SAN_EXIT:log_path=$san_log"
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1:$san_opts"
UBSAN_OPTIONS="${UBSAN_OPTIONS:+$UBSAN_OPTIONS:}halt_on_error=1:print_stacktrace=1:$san_opts"
export ASAN_OPTIONS UBSAN_OPTIONS
# reports seen so far (a caller's log_path may hold old ones)
san_seen=$san_dir/seen
ls "$san_log".* >"$san_seen" 2>/dev/null

# san_reports NAME: print the head of each new report file and of any
# report in the suite's output; return 0 if there was one.
san_reports() {
    _found=1 _n=0
    for _r in "$san_log".*; do
        [ -f "$_r" ] || continue
        grep -qxF "$_r" "$san_seen" && continue
        echo "$_r" >>"$san_seen"
        _found=0 _n=$((_n + 1))
        if [ "$_n" -le 5 ]; then
            echo "FAIL $1: sanitizer report $_r:"
            grep -v '^[[:space:]]*$' "$_r" | head -n 12 | sed "s|^|FAIL $1:     |"
        fi
    done
    [ "$_n" -gt 5 ] && echo "FAIL $1: ... and $((_n - 5)) more sanitizer reports"
    if grep -Eq '==ERROR: (Address|Leak)Sanitizer|: runtime error: |SUMMARY: (Address|Leak|UndefinedBehavior)Sanitizer' "$out"; then
        _found=0
        echo "FAIL $1: sanitizer report in the output:"
        grep -E -m 3 -A 4 '==ERROR: (Address|Leak)Sanitizer|: runtime error: ' "$out" |
            head -n 15 | sed "s|^|FAIL $1:     |"
    fi
    return $_found
}

total_pass=0 total_fail=0 bad_suites=

wanted() {
    [ -z "${SUITES:-}" ] && return 0
    for w in $SUITES; do
        case $1 in *"$w"*) return 0 ;; esac
    done
    return 1
}

# tally NAME PASS FAIL: add one suite's counts to the totals.
tally() {
    [ "$3" -gt 0 ] && bad_suites="$bad_suites $1"
    echo "$1: $2 passed, $3 failed"
    total_pass=$((total_pass + $2))
    total_fail=$((total_fail + $3))
}

# missing NAME WHY: a suite that should be there and is not: one failure.
missing() {
    wanted "$1" || return 0
    echo "FAIL $1: $2"
    tally "$1" 0 1
}

# run_suite NAME CMD...: run one suite under a timeout and count its TAP.
run_suite() {
    name=$1
    shift
    wanted "$name" || return 0
    timeout "$SUITE_TIMEOUT" "$@" >"$out" 2>&1 </dev/null
    st=$?
    [ "${VERBOSE:-}" = 1 ] && sed "s|^|$name: |" "$out"
    pass=$(grep -c '^ok\b' "$out")
    fail=$(grep -c '^not ok\b' "$out")
    skip=$(grep -ciE '^ok\b[^#]*#[[:space:]]*skip' "$out")
    plan=$(sed -n 's/^1\.\.\([0-9][0-9]*\).*/\1/p' "$out" | tail -n 1)
    extra=
    if [ "$st" -eq 124 ]; then
        extra="timed out after ${SUITE_TIMEOUT}s"
    elif [ "$st" -eq "$SAN_EXIT" ]; then
        extra="exited with status $SAN_EXIT: a sanitizer report"
    elif [ "$st" -ne 0 ] && [ "$fail" -eq 0 ]; then
        extra="exited with status $st without a failing test line"
    elif [ -z "$plan" ]; then
        extra="printed no plan (1..N)"
    elif [ "$plan" -eq 0 ]; then
        extra="ran no tests: $(grep '^1\.\.0' "$out" | tail -n 1)"
    elif [ "$plan" -ne $((pass + fail)) ]; then
        extra="plan 1..$plan but $((pass + fail)) test lines"
    fi
    if [ "$fail" -gt 0 ]; then
        # each failing line with the diagnostics right after it
        awk -v s="$name" '
            /^not ok/ { print "FAIL " s ": " $0; diag = 1; next }
            diag && /^#/ && n < 8 { print "FAIL " s ":     " $0; n++; next }
            { diag = 0; n = 0 }' "$out"
    fi
    if [ "$skip" -gt 0 ]; then
        # a skipped check is a check that did not run: it fails make check
        grep -iE '^ok\b[^#]*#[[:space:]]*skip' "$out" | sed "s|^|FAIL $name: skipped: |"
        pass=$((pass - skip))
        fail=$((fail + skip))
    fi
    if [ -n "$extra" ]; then
        echo "FAIL $name: $extra"
        tail -n 15 "$out" | sed "s|^|FAIL $name:     |"
        fail=$((fail + 1))
    fi
    if san_reports "$name"; then
        fail=$((fail + 1))
    fi
    tally "$name" "$pass" "$fail"
}

# unit tests: one binary per tests/unit/test_*.c
for src in tests/unit/test_*.c; do
    [ -f "$src" ] || { missing unit "no tests/unit/test_*.c"; break; }
    t=${src##*/}
    t=$UNIT_DIR/${t%.c}
    if [ -f "$t" ] && [ -x "$t" ]; then
        run_suite "unit/${t##*/}" "$t"
    else
        missing "unit/${t##*/}" "$t missing or not executable (not built?)"
    fi
done

# fuzz replay: every seed but the expectations file
run_replay() {
    _x=tests/fuzz/seeds/EXPECT
    set --
    for _f in tests/fuzz/seeds/*; do
        [ "$_f" = "$_x" ] || set -- "$@" "$_f"
    done
    run_suite fuzz/replay "$UNIT_DIR/fuzz_replay" -x "$_x" "$@"
}
if [ -f "$UNIT_DIR/fuzz_replay" ] && [ -x "$UNIT_DIR/fuzz_replay" ]; then
    run_replay
else
    missing fuzz/replay "$UNIT_DIR/fuzz_replay missing or not executable (not built?)"
fi

n_cli=0
for t in tests/cli/*.sh; do
    [ -f "$t" ] || continue
    [ "${t##*/}" = lib.sh ] && continue
    n_cli=$((n_cli + 1))
    run_suite "cli/${t##*/}" bash "$t"
done
[ "$n_cli" -gt 0 ] || missing cli "no tests/cli/*.sh suite"

for t in tests/lua/run.sh tests/repl/run.sh tests/crash/run.sh tests/corrupt/run.sh; do
    if [ -f "$t" ]; then
        run_suite "${t#tests/}" bash "$t"
    else
        missing "${t#tests/}" "$t missing"
    fi
done

if [ -f tests/bad/run.sh ]; then
    run_suite bad/run.sh sh tests/bad/run.sh
else
    missing bad/run.sh "tests/bad/run.sh missing"
fi

[ -n "$bad_suites" ] && echo "failing suites:$bad_suites"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
