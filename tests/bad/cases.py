#!/usr/bin/env python3
"""Crafted bad qcow2 images for tests/bad/run.sh.

    python3 tests/bad/cases.py OUTDIR [CASE...]

Makes every case (or only the named ones) in OUTDIR/cNN/ (NN: the case's
position in this file) and writes OUTDIR/cNN/expect, which run.sh reads;
prints one line "cNN NAME" per case made. The directories are numbered, not
named after the case, so that no path contains a case's name: a name such
as truncated-header must never satisfy the check for the word "header".
Every image starts as a small valid image made by qemu-img/qemu-io; then
exact bytes are poked at exact offsets (QEMU tests/qemu-iotests common.rc
`poke_file` style). Offsets are never hard-coded where the image can tell
them: they are read back from the header and tables that qemu-img wrote,
following the qcow2 spec (../shared/docs/qcow2-format.md, cited as "fmt §N").

expect file, one key=value per line (run.sh reads it line by line):
    file=PATH      the image to open (absolute)
    fail=OPS       ops that must exit 1 with the message: info map read
                   (ops not listed must only not crash: exit 0 or 1).
                   Backing chain and data file cases leave info out: like
                   qemu-img info, info need not open the chain or data file.
    want=A|B       the message on stderr contains A or B (one line per
                   structure name; fixed strings). "The message" is what
                   follows the "qinspect: FILE: " prefix: paths never count.
    hex=H1|H2      the message contains one of these offsets as 0x<hex>
                   (leading zeros allowed); absent = no offset required
    path=P1|P2     the error line names one of these paths; default: file
                   (the line itself must start with "qinspect: FILE: ")
    qemu=TEXT      what qemu-img 7.2 does with the same image (for the log)
    oracle=yes|no  yes: info must open, convert read (the same bytes) and
                   map map exactly as qemu-img info/convert/map do

The expected substrings come from the spec and from what was poked (the
structure that holds the bad value, the offset of the field or table), not
from a qinspect run. Where QEMU and we disagree, `qemu=` says so; run.sh
also prints qemu-img's exit codes as TAP comments.
"""
import os
import shutil
import struct
import subprocess
import sys

CASES = []

# masks from the spec (fmt §4.1, §4.2)
L1E_OFFSET_MASK = 0x00fffffffffffe00
L2E_OFFSET_MASK = 0x00fffffffffffe00
COPIED = 1 << 63
COMPRESSED = 1 << 62
MAX_BACKING_DEPTH = 64      # QI_MAX_BACKING_DEPTH in include/qi/image.h

# header field offsets (fmt §1.1, §1.2)
OFF_MAGIC, OFF_VERSION, OFF_BACKING_OFF, OFF_BACKING_SIZE = 0, 4, 8, 16
OFF_CLUSTER_BITS, OFF_SIZE, OFF_CRYPT, OFF_L1_SIZE = 20, 24, 32, 36
OFF_L1_OFF, OFF_RT_OFF, OFF_RT_CLUSTERS = 40, 48, 56
OFF_NB_SNAP, OFF_SNAP_OFF = 60, 64
OFF_INCOMPAT, OFF_REFCOUNT_ORDER, OFF_HDR_LEN, OFF_COMPRESSION = 72, 96, 100, 104


def case(fail, want, qemu, oracle=True):
    """Register a case. FAIL: ops that must fail; WANT: list of structure
    alternatives ("A|B"); QEMU: what qemu-img does (comment for the log).
    ORACLE: run.sh also checks that info opens, convert reads (the same
    bytes) and map maps exactly as qemu-img does; False only where the
    difference is deliberate (QEMU's text says why)."""
    def reg(fn):
        CASES.append((fn.__name__.replace('_', '-'), fn, fail, want, qemu, oracle))
        return fn
    return reg


# ---- helpers -------------------------------------------------------------

def run(*cmd, cwd=None):
    subprocess.run(cmd, check=True, cwd=cwd, stdout=subprocess.DEVNULL)


def qemu_img_create(path, size, opts=None, backing=None, unsafe=False):
    cmd = ['qemu-img', 'create', '-q', '-f', 'qcow2']
    if opts:
        cmd += ['-o', opts]
    if backing:
        cmd += ['-b', backing, '-F', 'qcow2']
    if unsafe:
        cmd += ['-u']
    run(*cmd, path, size)


def qemu_io(path, *cmds):
    args = ['qemu-io', '-f', 'qcow2']
    for c in cmds:
        args += ['-c', c]
    run(*args, path)


def peek(path, off, fmt):
    with open(path, 'rb') as f:
        f.seek(off)
        data = f.read(struct.calcsize(fmt))
    return struct.unpack('>' + fmt, data)[0]


def poke(path, off, fmt, value):
    """Write VALUE big-endian (struct format FMT) at byte OFF."""
    with open(path, 'r+b') as f:
        f.seek(off)
        f.write(struct.pack('>' + fmt, value))


def poke_bytes(path, off, data):
    with open(path, 'r+b') as f:
        f.seek(off)
        f.write(data)


def header(path):
    h = {
        'version': peek(path, OFF_VERSION, 'I'),
        'cluster_bits': peek(path, OFF_CLUSTER_BITS, 'I'),
        'size': peek(path, OFF_SIZE, 'Q'),
        'l1_size': peek(path, OFF_L1_SIZE, 'I'),
        'l1_off': peek(path, OFF_L1_OFF, 'Q'),
        'rt_off': peek(path, OFF_RT_OFF, 'Q'),
        'rt_clusters': peek(path, OFF_RT_CLUSTERS, 'I'),
        'nb_snap': peek(path, OFF_NB_SNAP, 'I'),
        'snap_off': peek(path, OFF_SNAP_OFF, 'Q'),
    }
    h['cs'] = 1 << h['cluster_bits']
    h['file_size'] = os.path.getsize(path)
    # first cluster boundary at or after the end of the file
    h['end'] = (h['file_size'] + h['cs'] - 1) // h['cs'] * h['cs']
    return h


def l2_table(path, h, l1_index=0):
    """Offset of the L2 table that L1 entry L1_INDEX points at."""
    off = peek(path, h['l1_off'] + 8 * l1_index, 'Q') & L1E_OFFSET_MASK
    assert off, 'L1 entry %d is unallocated' % l1_index
    return off


def find_l2(path, h, pred):
    """(entry offset, raw value) of the first L2 entry (table of L1[0])
    whose raw value satisfies PRED."""
    l2 = l2_table(path, h)
    for i in range(h['cs'] // 8):
        raw = peek(path, l2 + 8 * i, 'Q')
        if pred(raw):
            return l2 + 8 * i, raw
    raise AssertionError('no such L2 entry in %s' % path)


def compressed_desc(h, raw):
    """(host byte offset, additional sectors field, x) of a compressed L2
    entry (fmt §4.3: x = 62 - (cluster_bits - 8))."""
    x = 62 - (h['cluster_bits'] - 8)
    return raw & ((1 << x) - 1), (raw >> x) & ((1 << (h['cluster_bits'] - 8)) - 1), x


def std_image(d, name='bad.qcow2', size='4M', opts=None):
    """The common base: 64 KiB clusters, 4 MiB; two data clusters at guest 0,
    a zero cluster at 256 KiB, one compressed cluster at 1 MiB. qemu-img
    lays it out as (fmt §11.1): header 0, reftable 0x10000, refblock
    0x20000, L1 0x30000, L2 0x40000, data 0x50000, 0x60000, compressed data
    in the cluster after."""
    p = os.path.join(d, name)
    qemu_img_create(p, size, opts)
    qemu_io(p, 'write -q -P 0xaa 0 128k', 'write -q -z 256k 64k',
            'write -q -c -P 0x55 1M 64k')
    return p


def snap_image(d):
    p = std_image(d)
    run('qemu-img', 'snapshot', '-c', 'snap1', p)
    return p


def h(v):
    return '%x' % v


# ---- the cases -----------------------------------------------------------
# Each returns (file, hex alternatives or None, path alternatives or None).

@case('info map read', ['header'], 'rejects: "qcow2 header too short"')
def truncated_header(d):
    p = std_image(d)
    os.truncate(p, 50)              # the v2/v3 common part is 72 bytes
    return p, None, None


@case('', ['L1 table'], 'accepts: reads past EOF return zeros in file-posix, '
      'so the missing L1 half reads as unallocated')
def truncated_l1(d):
    p = std_image(d, size='1G')     # l1_size 2: 16 bytes of L1
    hd = header(p)
    os.truncate(p, hd['l1_off'] + 12)
    return p, [h(hd['l1_off'])], None


@case('info map read', ['header'], 'qemu-img -f qcow2: "Image is not in qcow2 format"; '
      'without -f it probes the file as raw')
def bad_magic(d):
    p = std_image(d)
    poke(p, OFF_MAGIC, 'I', 0x514649fc)
    return p, [h(OFF_MAGIC)], None


@case('info map read', ['header'], 'rejects: "Unsupported qcow2 version 1"')
def version_1(d):
    p = std_image(d)
    poke(p, OFF_VERSION, 'I', 1)
    return p, [h(OFF_VERSION)], None


@case('info map read', ['header'], 'rejects: "Unsupported qcow2 version 4"')
def version_4(d):
    p = std_image(d)
    poke(p, OFF_VERSION, 'I', 4)
    return p, [h(OFF_VERSION)], None


@case('info map read', ['header'], 'rejects: "Unsupported cluster size: 2^8"')
def cluster_bits_8(d):
    p = std_image(d)
    poke(p, OFF_CLUSTER_BITS, 'I', 8)
    return p, [h(OFF_CLUSTER_BITS)], None


@case('info map read', ['header'], 'rejects: "Unsupported cluster size: 2^22"')
def cluster_bits_22(d):
    p = std_image(d)
    poke(p, OFF_CLUSTER_BITS, 'I', 22)
    return p, [h(OFF_CLUSTER_BITS)], None


@case('info map read', ['header'], 'rejects: "qcow2 header too short"')
def header_length_96(d):
    p = std_image(d)
    poke(p, OFF_HDR_LEN, 'I', 96)
    return p, [h(OFF_HDR_LEN)], None


@case('info map read', ['header'], 'rejects: "qcow2 header exceeds cluster size"')
def header_length_over_cluster(d):
    p = std_image(d)
    poke(p, OFF_HDR_LEN, 'I', 65536 + 8)
    return p, [h(OFF_HDR_LEN)], None


@case('info map read', ['header'], 'rejects, but only because the extension walk then starts at '
      'byte 108: "Header extension too large"')
def header_length_unaligned(d):
    p = std_image(d)
    poke(p, OFF_HDR_LEN, 'I', 108)
    return p, [h(OFF_HDR_LEN)], None


@case('info map read', ['header|L1 table'], 'rejects: "Active L1 table too large"')
def l1_size_huge(d):
    p = std_image(d)
    poke(p, OFF_L1_SIZE, 'I', 0x7fffffff)
    return p, [h(OFF_L1_SIZE), h(header(p)['l1_off'])], None


@case('info map read', ['header|L1 table'], 'rejects: "L1 table is too small"')
def l1_size_too_small(d):
    p = std_image(d, size='1G')     # needs 2 entries of 512 MiB each
    poke(p, OFF_L1_SIZE, 'I', 1)
    return p, [h(OFF_L1_SIZE), h(header(p)['l1_off'])], None


@case('', ['L1 table'], 'accepts: the L1 read past EOF gives zeros')
def l1_beyond_eof(d):
    p = std_image(d)
    off = header(p)['end'] + 0x100000
    poke(p, OFF_L1_OFF, 'Q', off)
    return p, [h(off), h(OFF_L1_OFF)], None


@case('info map read', ['L1 table'], 'rejects: "Active L1 table offset invalid"')
def l1_unaligned(d):
    p = std_image(d)
    off = header(p)['l1_off'] + 0x200
    poke(p, OFF_L1_OFF, 'Q', off)
    return p, [h(off), h(OFF_L1_OFF)], None


@case('map read', ['L1 table|L2 table'], 'convert fails: "L2 table offset 0x40200 unaligned '
      '(L1 index: 0)"; info works')
def l1_entry_l2_unaligned(d):
    p = std_image(d)
    hd = header(p)
    l2 = l2_table(p, hd)
    poke(p, hd['l1_off'], 'Q', COPIED | (l2 + 0x200))
    return p, [h(hd['l1_off']), h(l2 + 0x200)], None


@case('', ['L1 table|L2 table'], 'accepts: the L2 read past EOF gives zeros')
def l2_beyond_eof(d):
    p = std_image(d)
    hd = header(p)
    off = hd['end'] + 0x100000
    poke(p, hd['l1_off'], 'Q', COPIED | off)
    return p, [h(hd['l1_off']), h(off)], None


@case('map read', ['L1 table'], 'accepts: QEMU masks the offset and ignores reserved bits '
      'when reading (qemu-img check reports them)',
      oracle=False)  # reads refuse reserved bits that QEMU masks off (not yet as QEMU)
def l1_entry_reserved(d):
    p = std_image(d)
    hd = header(p)
    raw = peek(p, hd['l1_off'], 'Q')
    poke(p, hd['l1_off'], 'Q', raw | (1 << 56))   # bits 56-62 reserved (fmt §4.1)
    return p, [h(hd['l1_off'])], None


@case('map read', ['L2 table'], 'accepts: reserved bits masked off on reads',
      oracle=False)  # reads refuse reserved bits that QEMU masks off (not yet as QEMU)
def l2_entry_reserved(d):
    p = std_image(d)
    hd = header(p)
    eoff, raw = find_l2(p, hd, lambda r: r & COPIED)
    poke(p, eoff, 'Q', raw | (1 << 57))           # bits 56-61 reserved (fmt §4.2)
    return p, [h(eoff)], None


@case('map read', ['L2 table|data cluster'], 'convert fails: "Cluster allocation offset '
      '0x50200 unaligned (L2 offset: 0x40000, L2 index: 0)"')
def data_cluster_unaligned(d):
    p = std_image(d)
    hd = header(p)
    eoff, raw = find_l2(p, hd, lambda r: r & COPIED)
    target = (raw & L2E_OFFSET_MASK) + 0x200
    poke(p, eoff, 'Q', COPIED | target)
    return p, [h(eoff), h(target)], None


@case('read', ['L2 table|data cluster'], 'accepts: file-posix reads past EOF as zeros '
      '(qemu-img check calls it an error)',
      oracle=False)  # reads refuse a data cluster past EOF that QEMU reads as zeros (not yet as QEMU)
def data_cluster_beyond_eof(d):
    p = std_image(d)
    hd = header(p)
    eoff, raw = find_l2(p, hd, lambda r: r & COPIED)
    target = hd['end'] + 0x200000
    poke(p, eoff, 'Q', COPIED | target)
    return p, [h(eoff), h(target)], None


@case('', ['refcount table'], 'accepts for reading (info, convert): the '
      'reftable is read past EOF as zeros')
def refcount_table_beyond_eof(d):
    p = std_image(d)
    off = header(p)['end'] + 0x100000
    poke(p, OFF_RT_OFF, 'Q', off)
    return p, [h(off), h(OFF_RT_OFF)], None


@case('info map read', ['refcount table'], 'rejects: "Reference count table offset invalid"')
def refcount_table_unaligned(d):
    p = std_image(d)
    off = header(p)['rt_off'] + 0x200
    poke(p, OFF_RT_OFF, 'Q', off)
    return p, [h(off), h(OFF_RT_OFF)], None


@case('info map read', ['header|refcount table'], 'rejects: "Reference count table too large"')
def refcount_table_too_many_clusters(d):
    p = std_image(d)
    poke(p, OFF_RT_CLUSTERS, 'I', 0x10000000)     # 16 TiB of table; the cap is 8 MiB
    return p, [h(OFF_RT_CLUSTERS), h(header(p)['rt_off'])], None


@case('read', ['compressed cluster|L2 table'], 'convert fails with an I/O error '
      '(read of the compressed bytes past EOF)')
def compressed_past_eof(d):
    p = std_image(d)
    hd = header(p)
    eoff, raw = find_l2(p, hd, lambda r: r & COMPRESSED)
    _, nsec, x = compressed_desc(hd, raw)
    target = hd['end'] + 0x100000 + 0x123            # byte offset: not aligned (fmt §4.3)
    poke(p, eoff, 'Q', COMPRESSED | (nsec << x) | target)
    return p, [h(eoff), h(target)], None


@case('read', ['compressed cluster'], 'info accepts; convert fails: "error while reading at byte '
      '1048576: Input/output error"')
def corrupt_zlib(d):
    p = std_image(d)
    hd = header(p)
    _, raw = find_l2(p, hd, lambda r: r & COMPRESSED)
    coff, _, _ = compressed_desc(hd, raw)
    # 0xff: BFINAL=1, BTYPE=11, a reserved block type: invalid raw deflate
    poke_bytes(p, coff, b'\xff' * 32)
    return p, [h(coff)], None


@case('read', ['compressed cluster'], 'convert fails with an I/O error')
def corrupt_zstd(d):
    p = std_image(d, opts='compression_type=zstd')
    hd = header(p)
    _, raw = find_l2(p, hd, lambda r: r & COMPRESSED)
    coff, _, _ = compressed_desc(hd, raw)
    assert peek(p, coff, 'I') == 0x28b52ffd, 'zstd frame magic expected (fmt §4.3)'
    # keep the magic; 0xff as frame header descriptor sets the reserved bit
    poke_bytes(p, coff + 4, b'\xff' * 32)
    return p, [h(coff)], None


@case('map read', ['backing'], 'qemu-img info accepts (it does not open the chain); '
      'qemu-img convert hangs (killed by timeout)')
def backing_loop(d):
    a, b = os.path.join(d, 'a.qcow2'), os.path.join(d, 'b.qcow2')
    qemu_img_create(a, '1M')
    qemu_img_create(b, '1M', backing='a.qcow2')
    run('qemu-img', 'rebase', '-u', '-f', 'qcow2', '-b', 'b.qcow2', '-F', 'qcow2', a)
    return b, None, [b, a, 'a.qcow2', 'b.qcow2']


@case('map read', ['backing'], 'qemu-img info accepts (no chain opened); convert fails: '
      '"Could not open backing file"')
def backing_missing(d):
    base, top = os.path.join(d, 'base.qcow2'), os.path.join(d, 'top.qcow2')
    qemu_img_create(base, '1M')
    qemu_img_create(top, '1M', backing='base.qcow2')
    os.unlink(base)
    return top, None, ['base.qcow2']


@case('map read', ['backing'], 'accepts: QEMU has no fixed depth limit; qemu-img '
      'convert reads through all 70 layers',
      oracle=False)  # deliberate: qinspect stops at 64 backing files
def backing_too_deep(d):
    prev = None
    for i in range(MAX_BACKING_DEPTH + 6):          # 70 images
        p = os.path.join(d, 'l%02d.qcow2' % i)
        qemu_img_create(p, '1M', backing=prev, unsafe=prev is not None)
        prev = os.path.basename(p)
    return p, None, [d]


@case('', ['snapshot table'], 'accepts for reading: snapshot table read past '
      'EOF as zeros')
def snapshot_table_beyond_eof(d):
    p = snap_image(d)
    off = header(p)['end'] + 0x100000
    poke(p, OFF_SNAP_OFF, 'Q', off)
    return p, [h(off), h(OFF_SNAP_OFF)], None


@case('info map read', ['header|snapshot table'], 'rejects: "Too many snapshots"')
def nb_snapshots_huge(d):
    p = snap_image(d)
    poke(p, OFF_NB_SNAP, 'I', 0x7fffffff)
    return p, [h(OFF_NB_SNAP), h(header(p)['snap_off'])], None


@case('', ['snapshot table'], 'qemu-img info accepts (it validates snapshot L1 '
      'tables only when they are used)')
def snapshot_l1_unaligned(d):
    p = snap_image(d)
    so = header(p)['snap_off']
    l1 = peek(p, so, 'Q')                # entry bytes 0-7: L1 offset (fmt §7)
    poke(p, so, 'Q', l1 + 0x200)
    return p, [h(so), h(l1 + 0x200)], None


@case('info map read', ['header', 'Unknown incompatible feature: 20'],
      'rejects: "Unsupported qcow2 feature(s): Unknown incompatible feature: 20" '
      '(the mask in hex)')
def unknown_incompat_bit(d):
    p = std_image(d)
    poke(p, OFF_INCOMPAT, 'Q', 1 << 5)
    return p, [h(OFF_INCOMPAT)], None


@case('info map read', ['header', 'frobnication'], 'rejects: "Unsupported qcow2 feature(s): '
      'frobnication" (the name from the feature name table)')
def unknown_incompat_named(d):
    p = std_image(d)
    poke(p, OFF_INCOMPAT, 'Q', 1 << 5)
    # the 64 KiB image has a feature name table at byte 112 (fmt §2.4):
    # 8-byte extension header, then 48-byte entries. Rename entry 0.
    assert peek(p, 112, 'I') == 0x6803f857, 'feature name table expected at 112'
    poke_bytes(p, 120, bytes([0, 5]) + b'frobnication'.ljust(46, b'\0'))
    return p, [h(OFF_INCOMPAT)], None


@case('map read', ['header', 'not supported'], 'info shows "encrypted: yes"; convert '
      'fails: "Parameter encrypt.key-secret is required for cipher"')
def crypt_aes(d):
    p = std_image(d)
    poke(p, OFF_CRYPT, 'I', 1)
    return p, [h(OFF_CRYPT)], None


@case('info map read', ['header', 'not supported'], 'qemu-img info crashes with SIGSEGV '
      '(exit 139); convert: "encrypt.key-secret is required"')
def crypt_luks(d):
    p = std_image(d)
    poke(p, OFF_CRYPT, 'I', 2)
    return p, [h(OFF_CRYPT)], None


@case('info map read', ['header'], 'rejects: "Backing file name too long"')
def backing_name_too_long(d):
    base, top = os.path.join(d, 'base.qcow2'), os.path.join(d, 'top.qcow2')
    qemu_img_create(base, '1M')
    qemu_img_create(top, '1M', backing='base.qcow2')
    poke(top, OFF_BACKING_SIZE, 'I', 1024)          # spec: at most 1023
    return top, [h(OFF_BACKING_SIZE), h(peek(top, OFF_BACKING_OFF, 'Q'))], None


@case('info map read', ['header'], 'rejects: "Invalid backing file offset"')
def backing_offset_outside_cluster0(d):
    base, top = os.path.join(d, 'base.qcow2'), os.path.join(d, 'top.qcow2')
    qemu_img_create(base, '1M')
    qemu_img_create(top, '1M', backing='base.qcow2')
    poke(top, OFF_BACKING_OFF, 'Q', 0x10000 + 8)     # cluster 0 ends at 0x10000
    return top, [h(OFF_BACKING_OFF), h(0x10008)], None


@case('info map read', ['header extension'], 'rejects: "Header extension too large"')
def extension_too_long(d):
    p = std_image(d)
    assert peek(p, 112, 'I') == 0x6803f857, 'feature name table expected at 112'
    poke(p, 116, 'I', 0x10000)      # the length of the extension at 112 (fmt §3)
    return p, [h(112), h(116)], None


@case('info map read', ['header'], 'rejects: "compression_type field is non-zero, but the '
      'compression type bit is not set"-style')
def compression_type_without_bit(d):
    p = std_image(d)
    poke(p, OFF_COMPRESSION, 'B', 1)
    return p, [h(OFF_COMPRESSION), h(OFF_INCOMPAT)], None


@case('info map read', ['header'], 'rejects: "Unknown compression type 7"-style')
def compression_type_7(d):
    p = std_image(d)
    poke(p, OFF_COMPRESSION, 'B', 7)
    poke(p, OFF_INCOMPAT, 'Q', 1 << 3)              # the bit is set: only the value is bad
    return p, [h(OFF_COMPRESSION)], None


@case('info map read', ['header'], 'rejects: "Extended L2 entries are only supported with '
      'cluster sizes of at least 16384 bytes"')
def extended_l2_4k(d):
    p = os.path.join(d, 'bad.qcow2')
    qemu_img_create(p, '1M', 'cluster_size=4096')
    poke(p, OFF_INCOMPAT, 'Q', 1 << 4)
    return p, [h(OFF_CLUSTER_BITS), h(OFF_INCOMPAT)], None


@case('map read', ['data file'], 'info accepts; convert fails: "Could not open '
      '\'.../data.raw\': No such file or directory"')
def data_file_missing(d):
    p = os.path.join(d, 'bad.qcow2')
    raw = os.path.join(d, 'data.raw')
    qemu_img_create(p, '1M', 'data_file=' + raw)
    os.unlink(raw)
    return p, None, ['data.raw']


@case('info map read', ['header'], 'rejects: "Reference count order ... too large"-style')
def refcount_order_7(d):
    p = std_image(d)
    poke(p, OFF_REFCOUNT_ORDER, 'I', 7)             # at most 6 (fmt §1.2)
    return p, [h(OFF_REFCOUNT_ORDER)], None


@case('info map read', ['header'], 'rejects: "Image is too big"')
def virtual_size_2_63(d):
    p = std_image(d)
    poke(p, OFF_SIZE, 'Q', 1 << 63)
    return p, [h(OFF_SIZE)], None


@case('info map read', ['header'], 'rejects: the v3 header itself is cut (104 bytes needed)')
def truncated_v3_part(d):
    p = std_image(d)
    os.truncate(p, 90)              # past the common 72 bytes, inside the v3 fields
    return p, None, None


@case('info map read', ['header|refcount table'], 'rejects: "Image does not contain a '
      'reference count table"')
def refcount_table_zero_clusters(d):
    p = std_image(d)
    poke(p, OFF_RT_CLUSTERS, 'I', 0)
    return p, [h(OFF_RT_CLUSTERS), h(header(p)['rt_off'])], None


@case('', ['refcount block|refcount table'], 'accepts: reading needs no refcounts '
      '(qemu-img check reports it)')
def refcount_block_unaligned(d):
    # Only "no crash" is required: a reader may never look at refcounts.
    p = std_image(d)
    rt = header(p)['rt_off']
    poke(p, rt, 'Q', peek(p, rt, 'Q') + 0x200)     # reftable entry 0 (fmt §6)
    return p, [h(rt)], None


@case('', ['snapshot table'], 'accepts: the entry is read past EOF as zeros')
def snapshot_entry_past_eof(d):
    p = snap_image(d)
    so = header(p)['snap_off']
    poke(p, so + 36, 'I', 1024)     # extra data size: the largest QEMU allows
    poke(p, so + 14, 'H', 0xffff)   # name length (fmt §7)
    os.truncate(p, so + 1024)       # the entry now needs 40 + 1024 + 1 + 65535 bytes
    return p, [h(so)], None


@case('map read', ['L2 table'], 'convert fails with an I/O error (subcluster both allocated '
      'and zero is invalid, fmt §5)')
def extl2_allocated_and_zero(d):
    p = os.path.join(d, 'bad.qcow2')
    qemu_img_create(p, '1M', 'cluster_size=16384,extended_l2=on')
    qemu_io(p, 'write -q -P 0x5a 0 1k')             # subclusters of 512 B: bits 0, 1
    hd = header(p)
    l2 = l2_table(p, hd)
    bm = peek(p, l2 + 8, 'Q')
    assert bm & 1, 'subcluster 0 allocated expected'
    poke(p, l2 + 8, 'Q', bm | (1 << 32))            # zero bit of subcluster 0 as well
    return p, [h(l2), h(l2 + 8)], None


@case('info map read', ['header extension|bitmap'], 'rejects: the bitmaps extension '
      'must name at least one bitmap')
def bitmaps_ext_no_bitmaps(d):
    p = os.path.join(d, 'bad.qcow2')
    qemu_img_create(p, '1M')
    run('qemu-img', 'bitmap', '--add', p, 'b0')
    # walk the extensions from header_length (fmt §3) to the bitmaps one
    off = peek(p, OFF_HDR_LEN, 'I')
    while True:
        typ, length = peek(p, off, 'I'), peek(p, off + 4, 'I')
        assert typ != 0, 'bitmaps extension expected'
        if typ == 0x23852875:
            break
        off += 8 + (length + 7) // 8 * 8
    poke(p, off + 8, 'I', 0)        # nb_bitmaps: at least 1 (fmt §3)
    return p, [h(off), h(off + 8)], None


@case('info map read', ['snapshot table'], 'rejects: "Snapshot table offset invalid" '
      '(QEMU checks the offset even with no snapshots)')
def snapshot_offset_unaligned_no_snapshots(d):
    p = std_image(d)
    off = 0x10200                   # nb_snapshots stays 0
    poke(p, OFF_SNAP_OFF, 'Q', off)
    return p, [h(off), h(OFF_SNAP_OFF)], None


@case('info map read', ['L1 table'], 'rejects: "Active L1 table offset invalid" '
      '(QEMU checks the offset of an empty L1 table too)')
def l1_unaligned_empty(d):
    p = os.path.join(d, 'bad.qcow2')
    qemu_img_create(p, '0')         # l1_size 0
    off = header(p)['l1_off'] + 0x200
    poke(p, OFF_L1_OFF, 'Q', off)
    return p, [h(off), h(OFF_L1_OFF)], None


@case('', ['header'], 'accepts: an empty backing file name is no backing file')
def backing_name_empty(d):
    p = std_image(d)
    poke(p, OFF_BACKING_OFF, 'Q', 0x200)
    poke(p, OFF_BACKING_SIZE, 'I', 0)
    return p, None, None


@case('', ['L2 table'], 'accepts: QEMU reads a compressed cluster whose entry has COPIED '
      'set (only qemu-img check calls it a corruption)')
def compressed_copied(d):
    p = std_image(d)
    hd = header(p)
    eoff, raw = find_l2(p, hd, lambda r: r & COMPRESSED)
    poke(p, eoff, 'Q', raw | COPIED)
    return p, None, None


@case('', ['L2 table'], 'accepts: the subcluster bitmap of a compressed entry is unused '
      '(fmt: extended L2); QEMU reads the cluster whatever it holds')
def extl2_compressed_bitmap(d):
    p = os.path.join(d, 'bad.qcow2')
    qemu_img_create(p, '1M', 'cluster_size=16384,extended_l2=on')
    qemu_io(p, 'write -q -c -P 0x5a 0 16k')         # guest cluster 0, compressed
    hd = header(p)
    l2 = l2_table(p, hd)
    raw = peek(p, l2, 'Q')
    assert raw & COMPRESSED, 'compressed entry expected'
    poke(p, l2 + 8, 'Q', 0x00000003fffffffc)        # both halves of the bitmap nonzero
    return p, None, None


# ---- driver --------------------------------------------------------------

def main():
    if len(sys.argv) < 2:
        sys.exit('usage: cases.py OUTDIR [CASE...]')
    out = os.path.abspath(sys.argv[1])
    only = set(sys.argv[2:])
    os.makedirs(out, exist_ok=True)
    for n, (name, fn, fail, want, qemu, oracle) in enumerate(CASES, 1):
        if only and name not in only:
            continue
        d = os.path.join(out, 'c%02d' % n)
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        path, hexes, paths = fn(d)
        with open(os.path.join(d, 'expect'), 'w') as f:
            f.write('file=%s\n' % path)
            f.write('fail=%s\n' % fail)
            for w in want:
                f.write('want=%s\n' % w)
            if hexes:
                f.write('hex=%s\n' % '|'.join(hexes))
            f.write('path=%s\n' % '|'.join(paths or [path]))
            f.write('qemu=%s\n' % qemu)
            f.write('oracle=%s\n' % ('yes' if oracle else 'no'))
        print('c%02d %s' % (n, name))
    unknown = only - {c[0] for c in CASES}
    if unknown:
        sys.exit('cases.py: no such case: %s' % ' '.join(sorted(unknown)))


if __name__ == '__main__':
    main()
