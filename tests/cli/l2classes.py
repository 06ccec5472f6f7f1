#!/usr/bin/env python3
"""l2classes.py IMAGE - the class of every guest cluster's L2 entry, read
from the file's bytes (independent of qinspect), one line per cluster that
has an L2 table: "INDEX CLASS BITMAP". Host offsets are left out (two
writers allocate in different orders), except that with an external data
file a host offset other than the guest offset is shown.

CLASS: unalloc, zero, zero-alloc, normal, compressed, plus "+copied";
BITMAP: the extended-L2 subcluster bitmap in hex ("-" without extended L2).
Entries of a cluster without an L2 table are not printed (unallocated)."""
import struct
import sys


def main(path):
    with open(path, 'rb') as f:
        h = f.read(112)
        (magic, version, _bfo, _bfs, cbits, size, _crypt, l1_size, l1_off,
         _rto, _rtc, _nsn, _so) = struct.unpack('>IIQIIQIIQQIIQ', h[:72])
        assert magic == 0x514649fb, 'not qcow2'
        incompat = struct.unpack('>Q', h[72:80])[0] if version >= 3 else 0
        extl2 = bool(incompat & 16)
        datafile = bool(incompat & 4)
        cs = 1 << cbits
        esz = 16 if extl2 else 8
        per = cs // esz
        f.seek(l1_off)
        l1 = struct.unpack('>%dQ' % l1_size, f.read(8 * l1_size))
        nclusters = (size + cs - 1) // cs
        for i, e in enumerate(l1):
            l2 = e & 0x00fffffffffffe00
            if not l2:
                continue
            f.seek(l2)
            t = f.read(cs)
            for j in range(per):
                ci = i * per + j
                if ci >= nclusters:
                    break
                raw = struct.unpack('>Q', t[j * esz:j * esz + 8])[0]
                bm = struct.unpack('>Q', t[j * esz + 8:j * esz + 16])[0] if extl2 else None
                copied = raw >> 63
                host = raw & 0x00fffffffffffe00
                if raw & (1 << 62):
                    cls = 'compressed'
                elif not extl2 and raw & 1:
                    cls = 'zero-alloc' if host else 'zero'
                elif host or (datafile and copied):
                    cls = 'normal'
                else:
                    cls = 'unalloc'
                if copied:
                    cls += '+copied'
                if datafile and cls.startswith(('normal', 'zero-alloc')) and host != ci * cs:
                    cls += '@%#x' % host
                print(ci, cls, '-' if bm is None else '%016x' % bm)


if __name__ == '__main__':
    main(sys.argv[1])
