#!/bin/bash
# tests/cli/docs.sh - the man page stays in step with the command table:
# every subcommand `qinspect --help` lists has a .SS entry in the SUBCOMMANDS
# section of doc/qinspect.1 and the other way round, and every long option a
# subcommand's --help shows is documented in the man page.
HERE=$(cd "$(dirname "$0")" && pwd)
MAN="$HERE/../../doc/qinspect.1"
# this test needs no qemu-img: do not source lib.sh's oracle checks
QINSPECT=${QINSPECT:-./qinspect}
case $QINSPECT in /*) ;; *) QINSPECT=$PWD/$QINSPECT ;; esac
N=0
FAIL=0
ok() { N=$((N + 1)); echo "ok $N - $*"; }
nok() { N=$((N + 1)); FAIL=$((FAIL + 1)); echo "not ok $N - $*"; }

[ -x "$QINSPECT" ] || nok "the binary under test $QINSPECT exists"
help=$("$QINSPECT" --help) || nok "qinspect --help runs"
# names listed under "Commands:" up to the next blank line
cmds=$(printf '%s\n' "$help" | awk '/^Commands:/{f=1; next} f && /^$/{exit} f {print $1}')
# .SS names inside .SH SUBCOMMANDS
mancmds=$(awk '/^\.SH /{f=($2=="SUBCOMMANDS"); next} f && /^\.SS /{print $2}' "$MAN")

if [ -n "$cmds" ]; then ok "--help lists subcommands"; else nok "--help lists subcommands"; fi
if [ -n "$mancmds" ]; then ok "man page has a SUBCOMMANDS section"; else nok "man page has a SUBCOMMANDS section"; fi
for c in $cmds; do
    if printf '%s\n' "$mancmds" | grep -qx "$c"; then
        ok "'$c' from --help is documented in doc/qinspect.1"
    else
        nok "'$c' from --help is documented in doc/qinspect.1"
    fi
done
for c in $mancmds; do
    if printf '%s\n' "$cmds" | grep -qx "$c"; then
        ok "'$c' from doc/qinspect.1 is a real subcommand"
    else
        nok "'$c' from doc/qinspect.1 is a real subcommand"
    fi
done
# long options of each subcommand (from its own --help) appear in the man
# page as whole options (--start must not pass for --start-offset); roff
# writes '-' as '\-'
mantext=$(sed 's/\\-/-/g' "$MAN")
for c in $cmds; do
    if ! chelp=$("$QINSPECT" "$c" --help); then
        nok "qinspect $c --help runs"
        continue
    fi
    for o in $(printf '%s\n' "$chelp" | grep -oE -- '--[a-z][a-z-]*' | sort -u); do
        [ "$o" = --help ] && continue
        if printf '%s' "$mantext" | grep -qE -- "$o([^a-z-]|\$)"; then
            ok "$c $o is documented"
        else
            nok "$c $o is documented"
        fi
    done
done
# A missing man is a failure, not a skipped check (Debian package man-db).
if ! command -v man >/dev/null 2>&1 || ! man --help >/dev/null 2>&1; then
    nok "man -l renders doc/qinspect.1 without warnings: man is not installed (man-db)"
elif out=$(LC_ALL=C MANWIDTH=80 man -l "$MAN" 2>&1 >/dev/null) && [ -z "$out" ]; then
    ok "man -l renders doc/qinspect.1 without warnings"
else
    nok "man -l renders doc/qinspect.1 without warnings"
    printf '%s\n' "$out" | sed 's/^/# /'
fi
echo "1..$N"
[ "$FAIL" -eq 0 ]
