#!/bin/bash
# bench/create.sh QINSPECT - `qinspect create` against `qemu-img create`,
# side by side on this machine in one run.
# Row: 100 creates of a 1 GiB qcow2 image (default options, -q), RUNS pairs
# (default 3), alternating; the ratio is the median of t(qinspect)/t(qemu-img);
# RSS is the peak of one create (GNU time). Verify: the last images of both
# tools are equal byte for byte (cmp) and qemu-img check is clean.
set -uo pipefail
Q=${1:?usage: bench/create.sh QINSPECT}
case $Q in /*) ;; *) Q=$PWD/$Q ;; esac
RUNS=${RUNS:-3}
D=$(mktemp -d "${TMPDIR:-/tmp}/qi-bench-create.XXXXXX")
trap 'rm -rf "$D"' EXIT
cd "$D" || exit 1

# hundred DIR CMD...: 100 creates of DIR/iN.qcow2, prints the seconds
hundred() {
    local dir=$1 t0 t1 i
    shift
    rm -rf "$dir" && mkdir "$dir" || return 1
    t0=$(date +%s%N)
    for i in $(seq 100); do "$@" "$dir/i$i.qcow2" 1G || return 1; done
    t1=$(date +%s%N)
    echo "scale=3; ($t1 - $t0) / 1000000000" | bc
}

: >pairs
for r in $(seq "$RUNS"); do
    tq=$(hundred q "$Q" create -q -f qcow2) && tb=$(hundred b qemu-img create -q -f qcow2) ||
        { echo "create-100x1g: run failed"; exit 1; }
    echo "$tq $tb" >>pairs
done
/usr/bin/time -f '%M' -o q.rss "$Q" create -q -f qcow2 rq.qcow2 1G
/usr/bin/time -f '%M' -o b.rss qemu-img create -q -f qcow2 rb.qcow2 1G
verify=ok
cmp -s q/i100.qcow2 b/i100.qcow2 || verify="differs from qemu-img"
qemu-img check -q q/i100.qcow2 || verify="check failed"
printf '%-22s %9s %9s %8s %8s %8s  %s\n' workload qinspect qemu-img ratio 'q RSS' 'qemu RSS' verify
python3 - "$verify" pairs "$(cat q.rss)" "$(cat b.rss)" <<'PY'
import sys, statistics
rows = [list(map(float, l.split())) for l in open(sys.argv[2]) if l.strip()]
print("%-22s %9.2f %9.2f %8.3f %8.1f %8.1f  %s" % (
    "create-100x1g", statistics.median(r[0] for r in rows),
    statistics.median(r[1] for r in rows), statistics.median(q / b for q, b in rows),
    int(sys.argv[3]) / 1024, int(sys.argv[4]) / 1024, sys.argv[1]))
PY
