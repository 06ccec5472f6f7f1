#!/bin/bash
# tests/cli/edges.sh - command-line edges: --help/--version, usage errors
# (exit 2), missing files (exit 1, path in the message), unsupported
# operations (exit 1 with a clear message), snapshot -c/-a/-d exit
# statuses, option spellings qemu-img
# accepts, and snapshot -l text equal to qemu-img's.
. "$(dirname "$0")/lib.sh"

# run ARGS...: sets RC, OUT, ERR from one qinspect run.
run() {
    "$QINSPECT" "$@" >out.txt 2>err.txt
    RC=$?
    OUT=$(cat out.txt)
    ERR=$(cat err.txt)
}

expect_rc() { # DESC RC ARGS...: exit status RC and no sanitizer report
    local desc=$1 want=$2
    shift 2
    run "$@"
    if sanitizer_report err.txt; then
        t_fail "$desc (sanitizer report, exit $RC)"
        head -20 err.txt | t_diag
    elif [ "$RC" = "$want" ]; then t_ok "$desc"; else
        t_fail "$desc (exit $RC, wanted $want)"
        printf 'stdout: %s\nstderr: %s\n' "$OUT" "$ERR" | t_diag
    fi
}

expect_err_like() { # DESC PATTERN: the last run's stderr matches PATTERN
    if printf '%s' "$ERR" | grep -qE -- "$2"; then t_ok "$1"; else
        t_fail "$1"
        printf 'stderr: %s\n' "$ERR" | t_diag
    fi
}

t_check "setup: qemu-img/qemu-io make img.qcow2" \
    eval 'qemu-img create -q -f qcow2 img.qcow2 4M && qio img.qcow2 "write -P 1 0 64k"'

# ---- help and version ----
expect_rc "--help exits 0" 0 --help
t_check "--help lists the session usage" grep -q 'qinspect \[-w \[--undo FILE|--dry-run\]\] \[-U\] \[-e CHUNK\]\.\.\. IMAGE \[SCRIPT \[ARGS\.\.\.\]\]' out.txt
for cmd in info map check snapshot convert create; do
    t_check "--help lists $cmd" grep -qE "^  $cmd " out.txt
done
for cmd in dedup; do  # create and check exist (cli/create.sh, cli/check.sh)
    if grep -qE "^  $cmd " out.txt; then
        t_fail "--help does not list the unimplemented '$cmd'"
    else
        t_ok "--help does not list the unimplemented '$cmd'"
    fi
done
expect_rc "-h exits 0" 0 -h
expect_rc "--version exits 0" 0 --version
t_check "--version prints qinspect 0.1.0" test "$OUT" = "qinspect 0.1.0"
for cmd in info map check snapshot convert create; do
    expect_rc "$cmd --help exits 0" 0 "$cmd" --help
    t_check "$cmd --help prints a usage line" grep -q "Usage: qinspect $cmd" out.txt
done

# ---- usage errors: exit 2 ----
expect_rc "no arguments: exit 2" 2
expect_rc "info without FILE: exit 2" 2 info
expect_rc "info with two files: exit 2" 2 info img.qcow2 img.qcow2
expect_rc "info --output=xml: exit 2" 2 info --output=xml img.qcow2
expect_err_like "info --output=xml names the value" "xml"
expect_rc "info --bogus: exit 2" 2 info --bogus img.qcow2
expect_err_like "unknown option is named" "bogus"
expect_rc "info --output without value: exit 2" 2 info img.qcow2 --output
expect_rc "map without FILE: exit 2" 2 map
expect_rc "map -x: exit 2" 2 map -x img.qcow2
expect_rc "map --start-offset=abc: exit 2" 2 map --start-offset=abc img.qcow2
expect_rc "snapshot without action: exit 2" 2 snapshot img.qcow2
expect_rc "snapshot -l without FILE: exit 2" 2 snapshot -l
expect_rc "snapshot -l -d x: exit 2" 2 snapshot -l -d x img.qcow2
expect_rc "convert with one file: exit 2" 2 convert img.qcow2
expect_rc "convert -O vmdk: exit 2" 2 convert -O vmdk img.qcow2 out.raw
expect_rc "convert -f vmdk: exit 2" 2 convert -f vmdk img.qcow2 out.raw

# ---- errors: exit 1 with the path in the message ----
expect_rc "info of a missing file: exit 1" 1 info no-such.qcow2
expect_err_like "missing file: message names the path" "^qinspect: .*no-such\.qcow2"
t_check "missing file: one line on stderr" test "$(wc -l <err.txt)" = 1
expect_rc "map of a missing file: exit 1" 1 map --output=json no-such.qcow2
expect_err_like "map: message names the path" "no-such\.qcow2"
expect_rc "snapshot -l of a missing file: exit 1" 1 snapshot -l no-such.qcow2
expect_rc "convert of a missing file: exit 1" 1 convert no-such.qcow2 out.raw
expect_err_like "convert: message names the path" "no-such\.qcow2"
t_check "convert of a missing file creates no output" test ! -e out.raw
expect_rc "convert into a missing directory: exit 1" 1 convert img.qcow2 no/such/dir/out.raw
expect_err_like "convert: message names the destination" "no/such/dir/out\.raw"
printf 'QFI\373garbage' >badmagic.qcow2
expect_rc "info -f qcow2 of a non-qcow2 file: exit 1" 1 info -f qcow2 badmagic.qcow2
expect_err_like "bad magic: message names the path" "badmagic\.qcow2"
qemu-img create -q -f qcow2 -u -b gone.qcow2 -F qcow2 orphan.qcow2 4M
expect_rc "map of an image whose backing file is missing: exit 1" 1 map orphan.qcow2
expect_err_like "missing backing file is named" "gone\.qcow2"
t_check "info of an image whose backing file is missing works like qemu-img" \
    same_info_json orphan.qcow2

# ---- snapshot changes (tests/cli/snapshot.sh compares them with qemu-img) ----
cp img.qcow2 snapedge.qcow2
for op in "-c snap1" "-a snap1" "-d snap1"; do
    # shellcheck disable=SC2086
    expect_rc "snapshot $op: exit 0" 0 snapshot $op snapedge.qcow2
    t_check "snapshot $op: prints nothing" test -z "$OUT$ERR"
done
expect_rc "snapshot -a of a missing snapshot: exit 1" 1 snapshot -a snap1 snapedge.qcow2
expect_err_like "snapshot -a of a missing snapshot: qemu-img's message" \
    "^qinspect: Could not apply snapshot 'snap1': Failed to load snapshot: No such file or directory$"
t_check "qemu-img check is clean after the snapshot changes" qemu-img check -q snapedge.qcow2
# convert -O qcow2 exists now (tests/cli/convert.sh tests it against qemu-img)
expect_rc "convert -O qcow2: exit 0" 0 convert -O qcow2 img.qcow2 out.qcow2
t_check "convert -O qcow2: the output holds the guest data" qemu-img compare -q img.qcow2 out.qcow2
rm -f out.qcow2

# ---- qemu-img option spellings ----
expect_rc "info --output json (separate value)" 0 info --output json img.qcow2
t_check "info --output json prints JSON" python3 -c 'import json,sys; json.load(open("out.txt"))'
expect_rc "info FILE --output=json (option after the file)" 0 info img.qcow2 --output=json
expect_rc "info -U" 0 info -U img.qcow2
expect_rc "info -f qcow2" 0 info -f qcow2 img.qcow2
expect_rc "map -f qcow2 --output=json" 0 map -f qcow2 --output=json img.qcow2
t_check "map --start-offset/--max-length equal qemu-img" \
    same_stdout map --output=json --start-offset=32k --max-length=1M img.qcow2
for range in "--start-offset=1000 --max-length=70000" "--start-offset=2M" \
    "--start-offset=20M" "--max-length=0" "--start-offset=4M"; do
    # shellcheck disable=SC2086
    t_check "map $range equals qemu-img" same_stdout map --output=json $range img.qcow2
done
t_check "info -f raw of a qcow2 file equals qemu-img (64 KiB multiple)" \
    same_stdout info --output=json -f raw img.qcow2
t_check "map -f raw of a qcow2 file equals qemu-img" same_stdout map -f raw img.qcow2
t_check "convert -S 0 (no holes) gives the same bytes as qemu-img" same_convert img.qcow2 -S 0
t_check "convert -S 64k gives the same bytes as qemu-img" same_convert img.qcow2 -S 64k
expect_rc "convert -S 1000 (not a sector multiple): exit 1 (as qemu-img)" 1 convert -S 1000 img.qcow2 out.raw

# ---- convert of more data than the writer's ring of pieces holds ----
# 28 MiB of data (over 100 pieces of 256 KiB, so the ring wraps several
# times), a zero cluster, a compressed cluster, and an all-zero 4 KiB block
# inside allocated data that must stay a hole, as in qemu-img's output.
data_extents() { # FILE: the file's data extents (SEEK_DATA/SEEK_HOLE)
    python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY); end = os.fstat(fd).st_size; off = 0
while off < end:
    try:
        d = os.lseek(fd, off, os.SEEK_DATA)
    except OSError:
        break
    h = os.lseek(fd, d, os.SEEK_HOLE); print(d, h); off = h' "$1"
}
same_sparse_convert() { # SRC: same bytes and the same data extents as qemu-img
    rm -f q.raw e.raw
    "$QINSPECT" convert -O raw "$1" q.raw && qemu-img convert -O raw "$1" e.raw &&
        cmp q.raw e.raw && [ "$(data_extents q.raw)" = "$(data_extents e.raw)" ] &&
        [ "$(data_extents e.raw | wc -l)" -gt 3 ]
}
qemu-img create -q -f qcow2 big.qcow2 48M
qemu-io -f qcow2 -c 'write -q -P 0x11 0 20M' -c 'write -q -z 3M 64k' \
    -c 'write -q -P 0 8M 4k' -c 'write -q -c -P 0x22 30M 64k' \
    -c 'write -q -P 0x33 32M 8M' -c 'write -q -P 0x44 47M 12k' big.qcow2 >/dev/null
t_check "convert of 28 MiB: same bytes and holes as qemu-img" same_sparse_convert big.qcow2
expect_rc "map --compressed" 0 map --output=json --compressed img.qcow2
t_check "map --compressed adds the key" grep -q '"compressed": false' out.txt

# ---- snapshot -l text ----
t_check "snapshot -l with no snapshots prints what qemu-img prints" same_stdout snapshot -l img.qcow2
qemu-img snapshot -c "first snap" img.qcow2
qemu-io -f qcow2 -c 'write -P 2 0 64k' img.qcow2 >/dev/null
qemu-img snapshot -c second img.qcow2
t_check "snapshot -l equals qemu-img" same_stdout snapshot -l img.qcow2
t_check "snapshot -l -U equals qemu-img" same_stdout snapshot -l -U img.qcow2
t_check "info with snapshots equals qemu-img" same_stdout info img.qcow2
TZ=America/New_York t_check "snapshot -l in another time zone equals qemu-img" \
    same_stdout snapshot -l img.qcow2

# ---- QEMU's image locks ----
# qemu-io keeps held.qcow2 open for writing (its sleep is in ms). The name
# is neutral: a message that only repeats the path must not pass for one
# that explains the lock. Setup waits, up to LOCK_WAIT seconds (default
# 60), until the kernel shows qemu-io's OFD locks in /proc/locks and then
# qemu-img itself is refused the lock, so no check runs before QEMU holds
# it, however loaded the machine; if it never does, setup fails. (Polling
# with qemu-img alone races: its own shared lock can make a qemu-io that is
# still starting fail to get "write".)
LOCK_WAIT=${LOCK_WAIT:-60}
ofd_locked() { grep -q "OFDLCK.*:$(stat -c %i held.qcow2) " /proc/locks; }
lock_refused() { # qemu-img info is refused with QEMU's lock error
    if qemu-img info held.qcow2 >lock.out 2>&1; then
        echo "qemu-img info opened held.qcow2: nobody holds its lock"
        return 1
    fi
    grep -q 'Failed to get shared "write" lock' lock.out || { cat lock.out; return 1; }
}
holder='' setup=''
if qemu-img create -q -f qcow2 held.qcow2 1M; then
    qemu-io -f qcow2 -c 'sleep 600000' held.qcow2 >holder.log 2>&1 &
    holder=$!
    t_bg "$holder"
    deadline=$((SECONDS + LOCK_WAIT))
    until ofd_locked && lock_refused >/dev/null; do
        if ! kill -0 "$holder" 2>/dev/null; then
            setup="qemu-io exited before it held the lock: $(head -c 300 holder.log)"
            break
        elif [ "$SECONDS" -ge "$deadline" ]; then
            setup="qemu-io did not hold the lock within ${LOCK_WAIT}s: $(lock_refused)"
            break
        fi
        sleep 0.1
    done
else
    setup="qemu-img could not create held.qcow2"
fi
if [ -n "$setup" ]; then
    t_fail "setup: qemu-io holds the write lock on held.qcow2: $setup"
else
    t_ok "setup: qemu-io holds the write lock on held.qcow2 (qemu-img info is refused)"
    expect_rc "info of an image QEMU writes: exit 1 (as qemu-img)" 1 info held.qcow2
    expect_err_like "lock conflict is explained" '^qinspect: held\.qcow2: .*"write" lock'
    expect_rc "info -U of an image QEMU writes: exit 0" 0 info -U held.qcow2
    expect_rc "map -U of an image QEMU writes: exit 0" 0 map -U held.qcow2
    expect_rc "convert -U of an image QEMU writes: exit 0" 0 convert -U held.qcow2 out.raw
    expect_rc "snapshot -l -U of an image QEMU writes: exit 0" 0 snapshot -l -U held.qcow2
    t_check "qemu-io still held the lock after the checks" lock_refused
    t_kill "$holder"
    expect_rc "info once qemu-io has exited: exit 0" 0 info held.qcow2
fi
rm -f out.raw

# ---- unusual names: JSON escaping as QEMU does it ----
name=$'we\tird "n\\ame" \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80'
qemu-img create -q -f qcow2 "$name.qcow2" 1M
qemu-img create -q -f qcow2 -b "$name.qcow2" -F qcow2 esc.qcow2 1M
t_check "info --output=json escapes names as qemu-img" same_stdout info --output=json esc.qcow2
t_check "info escapes the file name as qemu-img" same_stdout info --output=json "$name.qcow2"
qemu-img snapshot -c $'sn\xc3\xa9 "1"\t' "$name.qcow2"
t_check "info escapes snapshot names as qemu-img" same_stdout info --output=json "$name.qcow2"
t_check "snapshot -l prints non-ASCII names as qemu-img" same_stdout snapshot -l "$name.qcow2"

t_done
