#!/usr/bin/env bash
# tests/repl/run.sh - the REPL through a real terminal (tmux), printing TAP.
#
# Starts `$QINSPECT IMAGE` in a detached tmux pane (private server socket
# `-L qi$$`, no tmux config), types into it with send-keys and reads the
# screen with capture-pane. Every check polls the screen until the expected
# text shows up (TIMEOUT seconds, default 20) instead of sleeping a fixed
# time, so a loaded machine running the ASan binary only makes it slower.
# Expected output is chosen so it never appears in the typed input
# (`print(40+2)` waits for a line "42"). Images are made with qemu-img and
# qemu-io in a scratch directory removed at exit, together with the tmux
# server. A missing tmux, qemu-img or qemu-io is a failure (`not ok`),
# never a skip.
#
# Env: QINSPECT (default ./qinspect), TIMEOUT (seconds per wait).
set -u

cd "$(dirname "$0")/../.." || exit 1
QINSPECT=${QINSPECT:-./qinspect}
case $QINSPECT in /*) ;; *) QINSPECT=$(pwd)/$QINSPECT ;; esac
TIMEOUT=${TIMEOUT:-20}

missing=
for t in tmux qemu-img qemu-io; do
    command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
done
[ -x "$QINSPECT" ] || missing="$missing $QINSPECT"
if [ -n "$missing" ]; then
    echo "not ok 1 - required tools not installed:$missing (see README: Quick start)"
    echo "1..1"
    exit 1
fi

scratch=$(mktemp -d "${TMPDIR:-/tmp}/qi-repl.XXXXXX") || exit 1
unset TMUX TMUX_PANE
T=(tmux -L "qi$$" -f /dev/null)
cleanup() {
    "${T[@]}" kill-server >/dev/null 2>&1
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

n=0 failed=0
PANE=qi:0

ok() { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() {
    n=$((n + 1)) failed=$((failed + 1))
    echo "not ok $n - $1"
    echo "# screen:"
    screen | grep -v '^$' | tail -n 15 | sed 's/^/#   /'
}
check() { # check NAME CMD...: one test from a command's status
    local name=$1
    shift
    if "$@"; then ok "$name"; else not_ok "$name"; fi
}

screen() { "${T[@]}" capture-pane -p -t "$PANE" -S -1000 2>/dev/null; }
# The line the cursor is on (the input line being edited).
cursor_line() {
    local y
    y=$("${T[@]}" display-message -p -t "$PANE" '#{cursor_y}') || return
    "${T[@]}" capture-pane -p -t "$PANE" | sed -n "$((y + 1))p"
}
type_text() { "${T[@]}" send-keys -t "$PANE" -l -- "$1"; }
key() { "${T[@]}" send-keys -t "$PANE" "$@"; }
enter() { type_text "$1"; key Enter; }

# until CMD...: poll CMD every 0.1 s until it succeeds or TIMEOUT passes.
until_ok() {
    local deadline=$((SECONDS + TIMEOUT))
    until "$@"; do
        [ "$SECONDS" -ge "$deadline" ] && return 1
        sleep 0.1
    done
}
has_text() { screen | grep -qF -- "$1"; }         # anywhere on screen
has_line() { screen | grep -qx -- "$1"; }         # a whole line (regex)
cursor_is() { [ "$(cursor_line | sed 's/ *$//')" = "$1" ]; }
count_lines() { screen | grep -cx -- "$1"; }
# more_lines REGEX N: more than N whole lines match REGEX
more_lines() { [ "$(count_lines "$1")" -gt "$2" ]; }

# start NAME ENV...: run the REPL on $img in a new session with ENV set;
# when it exits the pane shows "[exited STATUS]".
start() {
    "${T[@]}" kill-server >/dev/null 2>&1
    "${T[@]}" new-session -d -x 120 -y 40 -s qi \
        "env INPUTRC=/dev/null TERM=screen $* $(printf %q "$QINSPECT") $(printf %q "$img");
         echo \"[exited \$?]\"; sleep 600"
}

# ---- images ----
img=$scratch/t.qcow2
if ! out=$(qemu-img create -q -f qcow2 "$img" 4M 2>&1 &&
    qemu-io -f qcow2 -c 'write -q -P 0x11 0 64k' "$img" 2>&1) || [ -n "$out" ]; then
    echo "not ok 1 - setup: qemu-img/qemu-io could not make the image"
    printf '%s\n' "$out" | sed 's/^/# /'
    echo "1..1"
    exit 1
fi
home=$scratch/home
mkdir -p "$home"
prompt='t.qcow2 (ro)> '

# ---- session 1: HOME decides the history file ----
start HOME="$home" QINSPECT_PAGER=cat
check "prompt shows the image and its mode" until_ok cursor_is "${prompt% }"

type_text 'img:rea'
key Tab
check "completion: img:rea<Tab> gives img:read" until_ok cursor_is "${prompt}img:read"
key C-u

type_text 'string.for'
key Tab
check "completion: string.for<Tab> gives string.format(" \
    until_ok cursor_is "${prompt}string.format("
enter '"%d-%s", 6 * 7, "fmt")'
check "completed string.format runs" until_ok has_line '42-fmt'

type_text 'img.l1[0].co'
key Tab
check "completion: field of an entry (img.l1[0].co -> copied)" \
    until_ok cursor_is "${prompt}img.l1[0].copied"
enter ' == true and "copied-" .. "yes" or "no"'
check "completed entry field evaluates" until_ok has_line 'copied-yes'

type_text 'help "cop'
key Tab
check "completion: help \"cop<Tab> gives the topic copied, not a file name" \
    until_ok cursor_is "${prompt}help \"copied\""
key C-u

type_text 'img.l1[0].'
key Tab Tab
check "completion: listing shows field names without the prefix" \
    until_ok has_line '.*l2_offset.*'
key C-u

enter 'for i = 1, 3 do'
check "multi-line: continuation prompt" until_ok cursor_is '>>'
enter '  io.write(i * 11, " ")'
enter 'end print("<" .. "done>")'
check "multi-line: a for loop over 3 lines prints its result" \
    until_ok has_line '11 22 33 <done>'

enter 'print("spin" .. "ning") io.stdout:flush() while true do end'
if until_ok has_line 'spinning'; then
    key C-c
    check "Ctrl-C interrupts a running loop" until_ok has_text 'interrupted!'
else
    not_ok "Ctrl-C interrupts a running loop (the loop did not start)"
fi
enter 'print(40 + 2)'
check "session works after Ctrl-C" until_ok has_line '42'

type_text 'print("half'
key C-c
check "Ctrl-C at the prompt drops the line" until_ok cursor_is "${prompt% }"
enter 'print(1 + 4)'
check "prompt works after Ctrl-C at the prompt" until_ok has_line '5'

enter 'error("bo" .. "om")'
check "an error prints one line" until_ok has_line 'qinspect: stdin:1: boom'
enter '1000 + 1'
check "session continues after an error" until_ok has_line '1001'

enter 'img.l1[0].reserved = 1'
check "field assignment on a read-only image is refused" \
    until_ok has_text "is read-only"
enter 'img.l1[0].raw == img.l1[0].raw and 7 * 3'
check "session continues after the refusal" until_ok has_line '21'

enter '("row\n"):rep(60)'
check "long output is printed unpaged with QINSPECT_PAGER=cat" \
    until_ok more_lines 'row' 59

enter 'print("last" .. "-entry")'
check "last chunk runs" until_ok has_line 'last-entry'
hist=$home/.qinspect_history
check "history: written to \$HOME/.qinspect_history after a chunk" \
    until_ok grep -qxF 'print("last" .. "-entry")' "$hist"
check "history: multi-line chunk kept as one entry" \
    grep -qx 'end print("<" .. "done>")' "$hist"
check "history: a chunk dropped with Ctrl-C is not saved" \
    eval '! grep -qF "print(\"half" "$hist"'

key C-d
check "Ctrl-D exits with status 0" until_ok has_line '\[exited 0\]'

# ---- session 2: QINSPECT_HISTORY overrides HOME; paging ----
start HOME=/nonexistent QINSPECT_HISTORY="$hist" \
    QINSPECT_PAGER="$(printf %q "sed s/^/PAGED:/")"
until_ok cursor_is "${prompt% }" >/dev/null
key Up
check "history survives a restart (Up recalls the last chunk)" \
    until_ok cursor_is "${prompt}print(\"last\" .. \"-entry\")"
key Enter
check "recalled chunk runs" until_ok has_line 'last-entry'

enter '("pg\n"):rep(50)'
check "output taller than the terminal goes through the pager" \
    until_ok has_line 'PAGED:pg'
enter '("short\n"):rep(3)'
check "short output is not paged" until_ok has_line 'short'
enter 'require("qinspect.pretty").paging = false'
enter '("np\n"):rep(50)'
check "pretty.paging = false prints unpaged" until_ok more_lines 'np' 49
check "... and nothing of it went through the pager" \
    eval '! screen | grep -q "^PAGED:np"'

enter '_PROMPT = "my" .. "prompt$ "'
check "_PROMPT replaces the prompt, as in lua.c" until_ok cursor_is 'myprompt$'

type_text 'collectg'
key Tab
check "completion: a global function gets '('" until_ok cursor_is 'myprompt$ collectgarbage('
enter '"count") > 0 and "gc" .. "-ok"'
check "completed global runs" until_ok has_line 'gc-ok'

enter 'os.exit(3)'
check "os.exit() leaves with its status" until_ok has_line '\[exited 3\]'

# ---- not a terminal: never paged ----
# the output itself must be there: no output at all is not "unpaged"
QINSPECT_PAGER="sed s/^/PAGED:/" "$QINSPECT" -e 'pp(("x\n"):rep(100))' "$img" \
    >"$scratch/pipe.out" 2>&1
if [ "$(grep -cx x "$scratch/pipe.out")" -eq 100 ] && ! grep -q PAGED "$scratch/pipe.out"; then
    ok "output to a pipe is not paged"
else
    n=$((n + 1)) failed=$((failed + 1))
    echo "not ok $n - output to a pipe is not paged (100 lines 'x', none 'PAGED:')"
    head -n 5 "$scratch/pipe.out" | sed 's/^/#   output: /'
fi

echo "1..$n"
[ "$failed" -eq 0 ]
