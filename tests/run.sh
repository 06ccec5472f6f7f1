#!/bin/sh
# tests/run.sh - run every test suite and summarise.
#
# Suites (each prints TAP on stdout):
#   $UNIT_DIR/test_*                  C unit tests (tests/unit/, tests/tap.c)
#   $UNIT_DIR/fuzz_replay SEEDS...    fuzz corpus replay over tests/fuzz/seeds/*
#   tests/cli/*.sh (not lib.sh)       batch subcommands, run with bash
#   tests/lua/run.sh                  Lua API tests
#   tests/repl/run.sh                 the REPL through tmux
#   tests/bad/run.sh                  crafted bad images
# A suite counts its "ok" and "not ok" lines. A suite that exits nonzero
# without printing a failing line, prints no plan, or whose plan "1..N" does
# not match its test lines, counts as one more failure. Each failing line is
# printed with its suite name. The last line is exactly "N passed, M failed";
# the exit status is 1 if M > 0.
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
trap 'rm -f "$out"' EXIT
trap 'exit 130' INT TERM

total_pass=0 total_fail=0 bad_suites=

wanted() {
    [ -z "${SUITES:-}" ] && return 0
    for w in $SUITES; do
        case $1 in *"$w"*) return 0 ;; esac
    done
    return 1
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
    plan=$(sed -n 's/^1\.\.\([0-9][0-9]*\).*/\1/p' "$out" | tail -n 1)
    extra=
    if [ "$st" -eq 124 ]; then
        extra="timed out after ${SUITE_TIMEOUT}s"
    elif [ "$st" -ne 0 ] && [ "$fail" -eq 0 ]; then
        extra="exited with status $st without a failing test line"
    elif [ -z "$plan" ]; then
        extra="printed no plan (1..N)"
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
    if [ -n "$extra" ]; then
        echo "FAIL $name: $extra"
        tail -n 15 "$out" | sed "s|^|FAIL $name:     |"
        fail=$((fail + 1))
    fi
    if [ "$fail" -gt 0 ]; then
        bad_suites="$bad_suites $name"
    fi
    echo "$name: $pass passed, $fail failed"
    total_pass=$((total_pass + pass))
    total_fail=$((total_fail + fail))
}

for t in "$UNIT_DIR"/test_*; do
    [ -f "$t" ] && [ -x "$t" ] || continue
    run_suite "unit/${t##*/}" "$t"
done

if [ -x "$UNIT_DIR/fuzz_replay" ]; then
    run_suite fuzz/replay "$UNIT_DIR/fuzz_replay" tests/fuzz/seeds/*
fi

for t in tests/cli/*.sh; do
    [ -f "$t" ] || continue
    [ "${t##*/}" = lib.sh ] && continue
    run_suite "cli/${t##*/}" bash "$t"
done

if [ -f tests/lua/run.sh ]; then
    run_suite lua/run.sh bash tests/lua/run.sh
fi

if [ -f tests/repl/run.sh ]; then
    run_suite repl/run.sh bash tests/repl/run.sh
fi

run_suite bad/run.sh sh tests/bad/run.sh

[ -n "$bad_suites" ] && echo "failing suites:$bad_suites"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
