#!/bin/bash
# bench/write.sh QINSPECT - guest write throughput, qinspect (a Lua loop of
# img:write in a -w session) against qemu-io (the same writes as a command
# stream on stdin), side by side on this machine in one run.
# Rows: 1 GiB written in 64 KiB and in 4 KiB pieces into an empty 2 GiB
# image (64 KiB clusters). RUNS pairs (default 3), alternating; the ratio is
# the median of t(qinspect)/t(qemu-io); RSS is the peak (GNU time).
# Each result must pass qemu-img check and equal qemu-io's (qemu-img compare).
set -uo pipefail
Q=${1:?usage: bench/write.sh QINSPECT}
case $Q in /*) ;; *) Q=$PWD/$Q ;; esac
RUNS=${RUNS:-3}
D=$(mktemp -d "${TMPDIR:-/tmp}/qi-bench-write.XXXXXX")
trap 'rm -rf "$D"' EXIT
cd "$D" || exit 1

# run_pair PIECE: one timed run of each tool; prints "tq tb rssq rssb"
run_pair() {
    local piece=$1 n=$(( (1 << 30) / $1 ))
    qemu-img create -q -f qcow2 q.qcow2 2G
    qemu-img create -q -f qcow2 b.qcow2 2G
    /usr/bin/time -f '%e %M' -o q.time "$Q" -w -e "
        local d = string.rep('x', $piece)
        for i = 0, $n - 1 do img:write(i * $piece, d) end" q.qcow2 || return 1
    /usr/bin/time -f '%e %M' -o b.time qemu-io -f qcow2 b.qcow2 <cmds.$piece >/dev/null || return 1
    echo "$(cut -d' ' -f1 q.time) $(cut -d' ' -f1 b.time) $(cut -d' ' -f2 q.time) $(cut -d' ' -f2 b.time)"
}

printf '%-22s %9s %9s %8s %8s %8s  %s\n' workload qinspect qemu-io ratio 'q RSS' 'qio RSS' verify
for piece in 65536 4096; do
    awk -v p=$piece 'BEGIN { n = 2^30 / p; for (i = 0; i < n; i++) printf "write -P 0x78 %d %d\n", i * p, p }' >cmds.$piece
    : >pairs
    for r in $(seq "$RUNS"); do run_pair $piece >>pairs || { echo "write-1g-$piece: run failed"; continue 2; }; done
    verify=ok
    qemu-img check -q q.qcow2 || verify="check failed"
    qemu-img compare -q q.qcow2 b.qcow2 || verify="differs from qemu-io"
    python3 - "$piece" "$verify" pairs <<'PY'
import sys, statistics
rows = [list(map(float, l.split())) for l in open(sys.argv[3]) if l.strip()]
ratio = statistics.median(q / b for q, b, _, _ in rows)
print("%-22s %9.2f %9.2f %8.3f %8.1f %8.1f  %s" % (
    "write-1g-%dk" % (int(sys.argv[1]) // 1024), statistics.median(r[0] for r in rows),
    statistics.median(r[1] for r in rows), ratio, max(r[2] for r in rows) / 1024,
    max(r[3] for r in rows) / 1024, sys.argv[2]))
PY
done
