#!/bin/bash
# bench/lazy.sh QINSPECT - does lazy_refcounts=on make qinspect's writes
# faster? The same img:write loops on an image made with and without
# lazy_refcounts, RUNS pairs (default 3), alternating; the ratio is the
# median of t(lazy)/t(eager). Rows:
#   seq-64k   1 GiB in 64 KiB pieces into an empty 2 GiB image
#   seq-4k    1 GiB in 4 KiB pieces into an empty 2 GiB image
#   rand-4k   20000 4 KiB writes at random cluster-aligned offsets of a
#             64 GiB image (more L2 tables than the cache holds: dirty ones
#             are evicted, which without lazy refcounts first writes and
#             syncs the refcount blocks)
#   rand-4k-f the same with img:flush() every 200 writes
# Each result must pass qemu-img check and equal the other (qemu-img compare).
set -uo pipefail
Q=${1:?usage: bench/lazy.sh QINSPECT}
case $Q in /*) ;; *) Q=$PWD/$Q ;; esac
RUNS=${RUNS:-3}
D=$(mktemp -d "${TMPDIR:-/tmp}/qi-bench-lazy.XXXXXX")
trap 'rm -rf "$D"' EXIT
cd "$D" || exit 1

chunk() {
    case $1 in
    seq-64k) echo "local d = string.rep('x', 65536)
        for i = 0, 16383 do img:write(i * 65536, d) end" ;;
    seq-4k) echo "local d = string.rep('x', 4096)
        for i = 0, 262143 do img:write(i * 4096, d) end" ;;
    rand-4k*) echo "local d = string.rep('y', 4096); math.randomseed(7)
        for i = 1, 20000 do img:write(math.random(0, (64 << 14) - 1) * 65536, d)
          $([ "$1" = rand-4k-f ] && echo 'if i % 200 == 0 then img:flush() end') end" ;;
    esac
}
size() { case $1 in seq*) echo 2G ;; *) echo 64G ;; esac; }

printf '%-10s %9s %9s %8s %6s %6s  %s\n' workload eager lazy ratio 'e sync' 'l sync' verify
for w in seq-64k seq-4k rand-4k rand-4k-f; do
    : >pairs
    for r in $(seq "$RUNS"); do
        for mode in eager lazy; do
            o=""; [ $mode = lazy ] && o="-o lazy_refcounts=on"
            qemu-img create -q -f qcow2 $o $mode.qcow2 "$(size $w)"
            /usr/bin/time -f '%e' -o $mode.time "$Q" -w -e "$(chunk $w)" $mode.qcow2 || exit 1
        done
        echo "$(cat eager.time) $(cat lazy.time)" >>pairs
    done
    # fdatasync counts of one more run each (strace slows the timed runs)
    for mode in eager lazy; do
        o=""; [ $mode = lazy ] && o="-o lazy_refcounts=on"
        qemu-img create -q -f qcow2 $o s$mode.qcow2 "$(size $w)"
        strace -f -e trace=fdatasync -o s$mode.trace "$Q" -w -e "$(chunk $w)" s$mode.qcow2
        grep -c fdatasync s$mode.trace >s$mode.n
    done
    verify=ok
    qemu-img check -q eager.qcow2 && qemu-img check -q lazy.qcow2 || verify="check failed"
    qemu-img compare -q eager.qcow2 lazy.qcow2 || verify="differ"
    python3 - "$w" "$verify" pairs "$(cat seager.n)" "$(cat slazy.n)" <<'PY'
import sys, statistics
rows = [list(map(float, l.split())) for l in open(sys.argv[3]) if l.strip()]
print("%-10s %9.2f %9.2f %8.3f %6s %6s  %s" % (sys.argv[1],
    statistics.median(r[0] for r in rows), statistics.median(r[1] for r in rows),
    statistics.median(l / e for e, l in rows), sys.argv[4], sys.argv[5], sys.argv[2]))
PY
done
