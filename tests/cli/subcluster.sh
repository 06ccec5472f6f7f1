#!/bin/bash
# tests/cli/subcluster.sh - guest writes, zeroes and discards compared entry
# by entry with QEMU.
#
# For each image (extended L2 at several cluster sizes, over qcow2 and raw
# backing files, with compressed clusters and with a snapshot; external data
# files with and without data_file_raw; plain version 3 and version 2 images
# with and without a backing file, one with a size that is not a multiple of
# the cluster size), ops.py makes a random sequence of writes, zeroes (with
# and without unmap) and discards aimed at cluster and subcluster
# boundaries. qemu-io applies it to one copy and qinspect -w to another.
# Then: every L2 entry has the same class (unallocated, zero, zero-allocated,
# normal, compressed, COPIED) and the same subcluster bitmap in both (read
# from the file bytes by l2classes.py: host offsets differ as the allocators
# differ), the guest disks are identical, `qemu-img check` is clean, and with
# data_file_raw the data files are identical byte for byte.
T_DIR=$(cd "$(dirname "$0")" && pwd)
. "$T_DIR/lib.sh"

qio() { qemu-io "$@" >/dev/null || { t_fail "setup: qemu-io $*"; return 1; }; }

# compare NAME SEED N: base image NAME.base (and NAME.data.orig, its data file)
compare() {
    local name=$1 seed=$2 n=$3 cs size d args=() line why=""
    cs=$(qemu-img info --output=json "$name.base" | python3 -c 'import json,sys; print(json.load(sys.stdin)["cluster-size"])')
    size=$(qemu-img info --output=json "$name.base" | python3 -c 'import json,sys; print(json.load(sys.stdin)["virtual-size"])')
    rm -rf "$name.q" "$name.m"
    for d in "$name.q" "$name.m"; do
        mkdir "$d"
        cp "$name.base" "$d/img"
        [ -f "$name.data.orig" ] && cp "$name.data.orig" "$d/$name.data"
        ln -s ../bk.qcow2 ../rb.raw "$d/"
    done
    python3 "$T_DIR/ops.py" "$seed" "$n" "$cs" "$size" "$name.ops" "$name.lua" ||
        { t_fail "$name: setup: ops.py"; return; }
    while read -r line; do args+=(-c "$line"); done < "$name.ops"
    (cd "$name.q" && qemu-io "${args[@]}" img >/dev/null) ||
        { t_fail "$name: setup: qemu-io"; return; }
    if ! (cd "$name.m" && "$QINSPECT" -w img "../$name.lua") >"$name.out" 2>&1; then
        t_fail "$name (seed $seed): qinspect applies the $n operations"
        t_diag < "$name.out"
        return
    fi
    python3 "$T_DIR/l2classes.py" "$name.q/img" > "$name.qc" &&
        python3 "$T_DIR/l2classes.py" "$name.m/img" > "$name.mc" ||
        { t_fail "$name: l2classes.py"; return; }
    diff "$name.qc" "$name.mc" > "$name.diff" || why="$why, entries differ"
    (cd "$name.q" && qemu-img convert -O raw img ../"$name.qraw") &&
        (cd "$name.m" && qemu-img convert -O raw img ../"$name.mraw") || why="$why, convert failed"
    cmp -s "$name.qraw" "$name.mraw" || why="$why, guest data differ"
    (cd "$name.m" && qemu-img check -q img) || why="$why, qemu-img check not clean"
    if [ -n "${RAWDATA:-}" ]; then
        cmp -s "$name.q/$name.data" "$name.m/$name.data" || why="$why, data files differ"
    fi
    if [ -z "$why" ]; then
        t_ok "$name (seed $seed): $n operations: entries, bitmaps and data as qemu-io's"
    else
        t_fail "$name (seed $seed): $n operations: entries, bitmaps and data as qemu-io's${why}"
        head -n 10 "$name.diff" | t_diag
    fi
}

# backing files
qemu-img create -q -f qcow2 bk.qcow2 8M
qio -f qcow2 -c 'write -P 7 0 1M' -c 'write -P 8 2M 300k' -c 'write -z 1536k 64k' \
    -c 'write -P 9 5M 100k' bk.qcow2
qemu-img create -q -f raw rb.raw 8M
qio -f raw -c 'write -P 6 64k 512k' -c 'write -P 5 3M 1M' rb.raw

# new NAME SIZE [OPTIONS...]
new() { local name=$1 size=$2; shift 2; qemu-img create -q -f qcow2 "$@" "$name.base" "$size" ||
        t_fail "setup: qemu-img create $* $name $size"; }
new ext 4M -o extended_l2=on
new extbk 4M -o extended_l2=on -b bk.qcow2 -F qcow2
new ext16 4M -o extended_l2=on,cluster_size=16k -b rb.raw -F raw
new ext2m 8M -o extended_l2=on,cluster_size=2M
new extodd 4001280 -o extended_l2=on
new extcomp 4M -o extended_l2=on
qio -f qcow2 -c 'write -c -P 3 0 64k' -c 'write -c -P 4 128k 64k' -c 'write -c -P 5 1M 128k' extcomp.base
new extsnap 4M -o extended_l2=on
qio -f qcow2 -c 'write -P 3 0 1M' -c 'write -P 9 1M 40k' -c 'write -z 1100k 10k' extsnap.base
qemu-img snapshot -c s1 extsnap.base
new plain 4M
new plainbk 4M -b bk.qcow2 -F qcow2
new plainodd 4001280
new v2 4M -o compat=0.10
new v2bk 4M -o compat=0.10 -b bk.qcow2 -F qcow2
new dfile 4M -o data_file=dfile.data
new dext 4M -o data_file=dext.data,extended_l2=on
new draw 4M -o data_file=draw.data,data_file_raw=on
new drawext 4001280 -o data_file=drawext.data,data_file_raw=on,extended_l2=on
for d in dfile dext draw drawext; do mv $d.data $d.data.orig; done

for name in ext extbk ext16 ext2m extodd extcomp extsnap plain plainbk plainodd v2 v2bk \
            dfile dext; do
    for seed in 1 2; do
        compare "$name" "$seed$((${#name} % 7))" 120
    done
done
for name in draw drawext; do
    for seed in 1 2; do
        RAWDATA=1 compare "$name" "$seed$((${#name} % 7))" 120
    done
done
t_done
