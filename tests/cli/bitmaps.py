#!/usr/bin/env python3
"""bitmaps.py IMAGE: the persistent dirty bitmaps of a qcow2 image, decoded
from the file's bytes (docs/interop/qcow2.txt, "Bitmaps extension"), printed
as JSON: {name: {"flags": [...], "granularity": G, "bits": [[first, last],
...]}} where each [first, last] is a run of set bits (bit i covers guest
bytes i*G .. (i+1)*G-1). Independent of qinspect: header, extension,
directory, bitmap table and data clusters are read here. A structure that
breaks the spec is an error (exit 1)."""
import json
import struct
import sys


def fail(msg):
    sys.exit("bitmaps.py: %s" % msg)


def main(path):
    f = open(path, "rb")
    data = f.read()
    magic, version = struct.unpack(">II", data[0:8])
    if magic != 0x514649FB or version != 3:
        fail("not a qcow2 version 3 image")
    cluster_bits = struct.unpack(">I", data[20:24])[0]
    cs = 1 << cluster_bits
    size = struct.unpack(">Q", data[24:32])[0]
    autoclear = struct.unpack(">Q", data[88:96])[0]
    hlen = struct.unpack(">I", data[100:104])[0]
    off, ext = hlen, None
    while off + 8 <= cs:
        t, n = struct.unpack(">II", data[off:off + 8])
        if t == 0:
            break
        if t == 0x23852875:
            ext = data[off + 8:off + 8 + n]
        off += 8 + (n + 7) // 8 * 8
    out = {}
    if ext is None or not autoclear & 1:
        print(json.dumps(out, sort_keys=True))
        return
    nb, _, dsize, doff = struct.unpack(">IIQQ", ext)
    d, pos = data[doff:doff + dsize], 0
    for _ in range(nb):
        toff, tsize, flags, typ, gbits, nsize, extra = struct.unpack(">QIIBBHI", d[pos:pos + 24])
        name = d[pos + 24 + extra:pos + 24 + extra + nsize].decode()
        pos += (24 + extra + nsize + 7) // 8 * 8
        if typ != 1 or flags & ~7:
            fail("%s: type %d flags %#x" % (name, typ, flags))
        gran = 1 << gbits
        nbits = (size + gran - 1) // gran
        per = cs * 8                      # bits per data cluster
        if tsize != (nbits + per - 1) // per:
            fail("%s: table size %d for %d bits" % (name, tsize, nbits))
        runs, first, last = [], None, None
        for i in range(tsize):
            e = struct.unpack(">Q", data[toff + 8 * i:toff + 8 * i + 8])[0]
            if e & 0xff000000000001fe:
                fail("%s: table entry %d reserved bits: %#x" % (name, i, e))
            doff_i = e & 0x00fffffffffffe00
            if doff_i:
                if doff_i % cs or e & 1:
                    fail("%s: table entry %d: %#x" % (name, i, e))
                chunk = data[doff_i:doff_i + cs].ljust(cs, b"\0")
            else:
                chunk = (b"\xff" if e & 1 else b"\0") * cs
            for byte in range(cs):
                v = chunk[byte]
                if not v:
                    continue
                for b in range(8):
                    if not v >> b & 1:
                        continue
                    bit = i * per + byte * 8 + b
                    if bit >= nbits:
                        if doff_i:     # unused tail bits must be 0 (spec)
                            fail("%s: bit %d past the end (%d bits)" % (name, bit, nbits))
                        continue
                    if last is not None and bit == last + 1:
                        last = bit
                    else:
                        if first is not None:
                            runs.append([first, last])
                        first = last = bit
        if first is not None:
            runs.append([first, last])
        fl = [n for b, n in ((1, "in-use"), (2, "auto")) if flags & b]
        out[name] = {"flags": fl, "granularity": gran, "bits": runs}
    print(json.dumps(out, sort_keys=True))


main(sys.argv[1])
