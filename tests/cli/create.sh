#!/bin/bash
# tests/cli/create.sh - `qinspect create` against `qemu-img create`.
#
# Every case runs `qemu-img create ARGS` in directory q/ and `qinspect
# create ARGS` in directory i/ (same relative names, same backing files),
# then compares: exit status, standard output (the "Formatting ..." line),
# standard error after the program name ("qemu-img: " / "qinspect: "), and
# on success the image file byte for byte (cmp), the external data file
# byte for byte, `qemu-img check` clean on qinspect's image, and `qemu-img
# info --output=json` identical. A refused create leaves no file behind in
# i/ (qemu-img removes its half-made file too).
#
# The cases: a matrix over compat x cluster_size (512, 4k, 64k, 2M) x
# refcount_bits (1, 2, 16, 64), where each of the 32 combinations is run
# with several picks of the other options (extended_l2, compression_type,
# lazy_refcounts, data_file / data_file_raw, backing file with -F, a
# relative one in a subdirectory, preallocation, size 0 / 1 / 512 / odd /
# 1G / 2T / one whose L1 table makes the refcount table grow) so that every
# value of every option occurs, valid and invalid combinations alike; then
# the option syntax (",,", repeated -o, short booleans, sizes with
# suffixes and decimals), every refusal of qemu-img (bad cluster sizes,
# refcount widths, v2 with v3 features, extended L2 with small clusters,
# data_file_raw without a data file, backing file problems, sizes), -o
# help, -q, SIZE from the backing file, -u. (Timing is a bench row: bench/run.sh create-*.)
T_DIR=$(cd "$(dirname "$0")" && pwd)
. "$T_DIR/lib.sh"

mkdir -p q/sub i/sub
for d in q i; do
    qemu-img create -q -f qcow2 "$d/base.qcow2" 5M
    qemu-img create -q -f raw "$d/base.raw" 3000000
    qemu-img create -q -f qcow2 -o cluster_size=512 "$d/sub/base2.qcow2" 7M
done

# norm FILE: stderr with the program name made neutral and a final newline
# (qemu-img leaves the "Detected format of ..." hint without one).
norm() { sed -e 's/^qemu-img: /PROG: /' -e 's/^qinspect: /PROG: /' "$1"; echo; }

# info_json DIR IMG: qemu-img info --output=json in DIR, without the
# allocated size (the file system's block accounting, not the bytes).
info_json() { (cd "$1" && qemu-img info --output=json "$2" 2>&1 | grep -v '"actual-size"'); }

# check_out DIR IMG: qemu-img check's output and status, run in DIR (data
# files and backing files are relative to it).
check_out() { (cd "$1" && qemu-img check "$2" 2>&1; echo "status $?"); }

# same DESC ARGS...: one test comparing both tools on `create ARGS`.
# The image name is the first argument that ends in .qcow2 or .raw after
# the options; data files are always named d.
same() {
    local desc=$1 img= a qrc irc why=
    shift
    for a in "$@"; do case $a in *.qcow2|*.raw) img=$a ;; esac; done
    rm -f q/"$img" i/"$img" q/d i/d
    (cd q && qemu-img create "$@" >../q.out 2>../q.err); qrc=$?
    (cd i && "$QINSPECT" create "$@" >../i.out 2>../i.err); irc=$?
    [ "$qrc" = "$irc" ] || why="exit $irc, qemu-img $qrc;"
    cmp -s q.out i.out || why="$why stdout differs;"
    [ "$(norm q.err)" = "$(norm i.err)" ] || why="$why stderr differs;"
    if [ "$qrc" = 0 ] && [ -z "$why" ] && [ -n "$img" ] && [ -f q/"$img" ]; then
        cmp -s q/"$img" i/"$img" || why="image differs: $(cmp q/"$img" i/"$img" 2>&1);"
        if [ -f q/d ]; then cmp -s q/d i/d || why="$why data file differs;"; fi
        case $img in *.qcow2)
            check_out i "$img" >check.out
            grep -q "^status 0" check.out || [ "$(check_out q "$img")" = "$(cat check.out)" ] ||
                why="$why qemu-img check: $(cat check.out);"
            [ "$(info_json q "$img")" = "$(info_json i "$img")" ] || why="$why info differs;"
        esac
    elif [ "$qrc" != 0 ] && [ -n "$img" ] && [ -e i/"$img" ]; then
        why="$why refused but i/$img exists;"
    fi
    if [ -z "$why" ]; then
        t_ok "$desc: create $*"
    else
        t_fail "$desc: create $*: $why"
        { echo "qemu-img ($qrc):"; cat q.out q.err; echo "qinspect ($irc):"; cat i.out i.err; } |
            head -20 | t_diag
    fi
}

# ---- the matrix ----
sizes=(0 1 512 3000001 1G 2T 64M)
preallocs=(off metadata falloc full)
backs=(none fmt sub)
datas=(none d raw)
k=0
for compat in 0.10 1.1; do
    for cs in 512 4096 65536 2M; do
        for rb in 1 2 16 64; do
            for pick in 0 1 2; do
                k=$((k + 1))
                ext=$(( (k * 7 + pick) % 2 )); zstd=$(( (k * 5 + pick) % 2 ))
                lazy=$(( (k * 3 + pick) % 2 ))
                size=${sizes[$(( (k * 5 + pick * 3) % 7 ))]}
                pre=${preallocs[$(( (k * 3 + pick) % 4 ))]}
                back=${backs[$(( (k + pick) % 3 ))]}
                data=${datas[$(( (k * 2 + pick) % 3 ))]}
                # keep preallocated images small (time and disk)
                if [ "$pre" != off ]; then
                    case $size in 1G|2T) size=3000001 ;; 64M) [ "$cs" = 512 ] && size=5M ;; esac
                fi
                o="compat=$compat,cluster_size=$cs,refcount_bits=$rb,preallocation=$pre"
                [ $ext = 1 ] && o="$o,extended_l2=on"
                [ $zstd = 1 ] && o="$o,compression_type=zstd"
                [ $lazy = 1 ] && o="$o,lazy_refcounts=on"
                case $data in d) o="$o,data_file=d" ;; raw) o="$o,data_file=d,data_file_raw=on" ;; esac
                case $back in
                none) same matrix -f qcow2 -o "$o" a.qcow2 "$size" ;;
                fmt) same matrix -f qcow2 -o "$o" -b base.qcow2 -F qcow2 a.qcow2 ;;
                sub) same matrix -f qcow2 -o "$o" -b base2.qcow2 -F qcow2 sub/a.qcow2 "$size" ;;
                esac
            done
        done
    done
done
# sizes whose L1 table needs several clusters, refcount blocks, a grown
# refcount table
same l1 -f qcow2 -o cluster_size=512,refcount_bits=64 a.qcow2 1G
same l1 -f qcow2 -o cluster_size=512,refcount_bits=1 a.qcow2 3G
same l1 -f qcow2 -o cluster_size=4096 a.qcow2 2T
same l1 -f qcow2 -o cluster_size=2M,extended_l2=on a.qcow2 2T
same l1 -f qcow2 -o preallocation=metadata,cluster_size=512,refcount_bits=64 a.qcow2 20M
same l1 -f qcow2 -o preallocation=falloc,cluster_size=512,refcount_bits=64 a.qcow2 20M
same l1 -f qcow2 -o preallocation=metadata,cluster_size=4096,refcount_bits=2 a.qcow2 1G
# past 2 GiB QEMU preallocates in several requests (of 2 GiB - 64 KiB)
same l1 -f qcow2 -o preallocation=metadata a.qcow2 5G

# ---- syntax ----
same syntax -f qcow2 -o cluster_size=4k -o refcount_bits=8 a.qcow2 1M
same syntax -f qcow2 -o compat=1.1,compat=0.10 a.qcow2 1M
same syntax -f qcow2 -o lazy_refcounts a.qcow2 1M
same syntax -f qcow2 -o nolazy_refcounts,extended_l2=yes a.qcow2 1M
same syntax -f qcow2 -o lazy_refcounts=true,extended_l2=n a.qcow2 1M
same syntax -f qcow2 -o compat=v2 a.qcow2 1M
same syntax -f qcow2 -o cluster_size=0x1000,refcount_bits=020 a.qcow2 1M
same syntax -f qcow2 -o cluster_size=1.5k a.qcow2 1M
same syntax -f qcow2 -o "backing_file=a,,b.qcow2,backing_fmt=qcow2" -u a.qcow2 1M
same syntax -f qcow2 -o size=2M a.qcow2
same syntax -f qcow2 -o nocow=on,extent_size_hint=1M a.qcow2 1M
for s in 1.5k 1.2345k 1.00049k 5.k 010 0x10 " 1k" 1b 1B 1K 1m 1g 1t 1p 7E 1e 8E 16E \
    18446744073709551615 9223372036854775807 9223372036854775296 1e3 1kb "1k " 1.5 .5k 0x ""; do
    same size -f qcow2 a.qcow2 "$s"
done

# ---- refusals ----
for o in foo=bar "=x" "cluster_size=4096," ",cluster_size=4096" "cluster_size=4096,,x" \
    lazy_refcounts=1 lazy_refcounts=ON refcount_bits=16k refcount_bits=16.0 cluster_size=-1 \
    cluster_size=1e3 cluster_size=0x1.8k compat= compat=1.0 preallocation=foo \
    compression_type=lz4 data_file_raw=on backing_fmt=raw cluster_size=1000 cluster_size=256 \
    cluster_size=4M cluster_size=0 cluster_size=1b refcount_bits=3 refcount_bits=128 refcount_bits=0 \
    compat=0.10,refcount_bits=8 compat=0.10,lazy_refcounts=on compat=0.10,compression_type=zstd \
    compat=0.10,extended_l2=on compat=0.10,data_file=d extended_l2=on,cluster_size=8k \
    data_file=d,data_file_raw=on,backing_file=base.qcow2,backing_fmt=qcow2 size=1M \
    "backing_file=" x=y,z=w lazy_refcounts=on,foo; do
    same refuse -f qcow2 -o "$o" a.qcow2 1M
done
same refuse -f qcow2 -b base.qcow2 a.qcow2
same refuse -f qcow2 -b base.raw a.qcow2
same refuse -f qcow2 -b base.qcow2 -F foo a.qcow2
same refuse -f qcow2 -b base.raw -F qcow2 a.qcow2
same refuse -f qcow2 -b nope -F qcow2 a.qcow2
same refuse -f qcow2 -b base.qcow2 -F qcow2 sub/a.qcow2
same refuse -f qcow2 -u -b nope a.qcow2 1M
same refuse -f qcow2 -u -b nope -F qcow2 a.qcow2
same refuse -f qcow2 -u -b nope -F foo a.qcow2 1M
same refuse -f qcow2 -b a.qcow2 -F qcow2 a.qcow2
same refuse -f qcow2 -b "" a.qcow2 1M
same refuse -f qcow2 -F qcow2 a.qcow2 1M
same refuse -f qcow2 a.qcow2
same refuse -f foo a.qcow2 1M
same refuse -f qcow2 -b base.qcow2 -F qcow2 -o preallocation=metadata a.qcow2
same refuse -f qcow2 -b base.qcow2 -F qcow2 -o data_file=d,data_file_raw=on a.qcow2
same refuse -f qcow2 -o cluster_size=512 a.qcow2 2T
same refuse -f qcow2 -o cluster_size=512 -b "$(printf 'x%.0s' $(seq 400))" -F raw -u a.qcow2 1M

# ---- backing files, -u, -q, -o help ----
same backing -f qcow2 -b base.qcow2 -F qcow2 a.qcow2
same backing -f qcow2 -b base.qcow2 -F raw a.qcow2
same backing -f qcow2 -b base.raw -F raw a.qcow2 10M
same backing -f qcow2 -b ../base.raw -F raw sub/a.qcow2
same backing -f qcow2 -o backing_fmt=raw -b base.raw a.qcow2
same backing -f qcow2 -u -b nope -F qcow2 a.qcow2 1M
same backing -f qcow2 -u -b x -F vmdk a.qcow2 1M
same backing -f qcow2 -b "$PWD/q/base.qcow2" -F qcow2 a.qcow2
same quiet -q -f qcow2 -o cluster_size=4k a.qcow2 1M
same quiet -q -f qcow2 -o cluster_size=1000 a.qcow2 1M
same raw a.raw 1M
same raw -f raw a.raw 3000001
same raw -f raw -o preallocation=full,nocow=on a.raw 3000000
same raw -f raw -o preallocation=falloc a.raw 1M
same raw -f raw -o preallocation=metadata a.raw 1M
same raw -f raw -o cluster_size=4k a.raw 1M
same raw -f raw -b base.raw a.raw 1M
same help -f qcow2 -o help
same help -f qcow2 -o help a.qcow2
same help -f qcow2 -o '?' a.qcow2 1M
same help -f qcow2 -o cluster_size=4096,help a.qcow2
same help -f raw -o help
same help -f raw -o help a.raw
same help -f foo -o help

# encryption: not supported (qemu-img asks for a secret); refused, no file
for o in encryption=on encrypt.format=luks; do
    (cd i && "$QINSPECT" create -q -f qcow2 -o $o e.qcow2 1M 2>../i.err); rc=$?
    if [ $rc = 1 ] && grep -q "e.qcow2: encryption is not supported" i.err && [ ! -e i/e.qcow2 ]; then
        t_ok "encryption refused: -o $o"
    else
        t_fail "encryption refused: -o $o: exit $rc"; t_diag <i.err
    fi
done

# an existing file is replaced, as qemu-img create does
echo hello >q/a.qcow2; echo hello >i/a.qcow2
(cd q && qemu-img create -q -f qcow2 a.qcow2 1M) && (cd i && "$QINSPECT" create -q -f qcow2 a.qcow2 1M)
t_check "an existing file is replaced" cmp q/a.qcow2 i/a.qcow2

# usage errors: qinspect's usage exit status 2 (qemu-img says 1)
rm -f i/a.qcow2
for args in "" "-f qcow2" "-f qcow2 -x a 1M" "-f qcow2 -o" "-f qcow2 a.qcow2 1M extra"; do
    (cd i && "$QINSPECT" create $args >/dev/null 2>../i.err); rc=$?
    if [ $rc = 2 ] && [ -s i.err ] && [ ! -e i/a.qcow2 ]; then t_ok "usage error: create $args"
    else t_fail "usage error: create $args: exit $rc"; cat i.err | t_diag; fi
done

t_done
