#!/usr/bin/env python3
"""poke.py IMG OP ARGS... - damage a qcow2 image at exact offsets (the
offsets are read from the header and tables qemu-img wrote; qcow2 spec).

ops (numbers accept 0x):
  refcount CLUSTER VALUE       set the on-disk refcount of host cluster
  refcount-of GUEST DELTA      refcount of the data cluster of GUEST += DELTA
  l2 GUEST set|clear|zero|eof|prealloc-unaligned
                               the L2 entry of guest offset GUEST: COPIED set,
                               COPIED cleared, entry 0, offset past EOF,
                               offset + 512 with the zero flag
  l1 INDEX set|clear           COPIED of active L1 entry INDEX
  rt INDEX VALUE               refcount table entry INDEX
  rt-all-zero                  every refcount table entry 0
  refblock-zero INDEX          the refcount block of table entry INDEX zeroed
  corrupt                      incompatible bit 1 (corrupt) set
  host-of GUEST                print the host offset of GUEST's cluster
"""
import struct
import sys


def u64(f, off):
    f.seek(off)
    return struct.unpack(">Q", f.read(8))[0]


def p64(f, off, v):
    f.seek(off)
    f.write(struct.pack(">Q", v & (2**64 - 1)))


class Img:
    def __init__(self, path):
        self.f = open(path, "r+b")
        h = self.f.read(112)
        self.cb = struct.unpack(">I", h[20:24])[0]
        self.cs = 1 << self.cb
        self.l1_size = struct.unpack(">I", h[36:40])[0]
        self.l1 = struct.unpack(">Q", h[40:48])[0]
        self.rt = struct.unpack(">Q", h[48:56])[0]
        self.rt_clusters = struct.unpack(">I", h[56:60])[0]
        version = struct.unpack(">I", h[4:8])[0]
        self.order = struct.unpack(">I", h[96:100])[0] if version >= 3 else 4
        incompat = struct.unpack(">Q", h[72:80])[0] if version >= 3 else 0
        self.esize = 16 if incompat & 16 else 8
        self.l2_entries = self.cs // self.esize

    def l2_site(self, guest):
        idx = guest >> self.cb
        l1e = u64(self.f, self.l1 + 8 * (idx // self.l2_entries))
        l2 = l1e & 0x00fffffffffffe00
        assert l2, "no L2 table"
        return l2 + self.esize * (idx % self.l2_entries)

    def rc_site(self, k):
        bits = 1 << self.order
        per = self.cs * 8 // bits
        blk = u64(self.f, self.rt + 8 * (k // per)) & ~0x1ff
        assert blk, "no refcount block"
        return blk, (k % per) * bits, bits

    def get_rc(self, k):
        blk, bit, bits = self.rc_site(k)
        self.f.seek(blk + bit // 8)
        n = max(bits // 8, 1)
        v = int.from_bytes(self.f.read(n), "big")
        return (v >> (bit % 8)) & ((1 << bits) - 1) if bits < 8 else v

    def set_rc(self, k, v):
        blk, bit, bits = self.rc_site(k)
        if bits >= 8:
            self.f.seek(blk + bit // 8)
            self.f.write(v.to_bytes(bits // 8, "big"))
            return
        self.f.seek(blk + bit // 8)
        b = self.f.read(1)[0]
        # sub-byte widths: entry 0 is the least significant bits (spec)
        shift = bit % 8
        mask = ((1 << bits) - 1) << shift
        b = (b & ~mask) | ((v << shift) & mask)
        self.f.seek(blk + bit // 8)
        self.f.write(bytes([b]))


def num(x):
    try:
        return int(x, 0)
    except ValueError:
        return x


def main():
    img = Img(sys.argv[1])
    op, a = sys.argv[2], [num(x) for x in sys.argv[3:]]
    f = img.f
    if op == "refcount":
        img.set_rc(a[0], a[1])
    elif op == "refcount-of":
        k = (u64(f, img.l2_site(a[0])) & 0x00fffffffffffe00) >> img.cb
        img.set_rc(k, img.get_rc(k) + a[1])
    elif op == "host-of":
        print(u64(f, img.l2_site(a[0])) & 0x00fffffffffffe00)
    elif op == "l2":
        site = img.l2_site(a[0])
        e = u64(f, site)
        if a[1] == "set":
            e |= 1 << 63
        elif a[1] == "clear":
            e &= ~(1 << 63)
        elif a[1] == "zero":
            e = 0
        elif a[1] == "eof":
            f.seek(0, 2)
            end = (f.tell() + img.cs - 1) // img.cs * img.cs
            e = (e & (1 << 63)) | (end + 16 * img.cs)
        elif a[1] == "prealloc-unaligned":
            e = (e & ~(1 << 63)) + 512 | 1
        p64(f, site, e)
    elif op == "l1":
        site = img.l1 + 8 * a[0]
        e = u64(f, site)
        p64(f, site, e | 1 << 63 if a[1] == "set" else e & ~(1 << 63))
    elif op == "rt":
        p64(f, img.rt + 8 * a[0], a[1])
    elif op == "rt-all-zero":
        f.seek(img.rt)
        f.write(bytes(img.rt_clusters * img.cs))
    elif op == "refblock-zero":
        blk = u64(f, img.rt + 8 * a[0]) & ~0x1ff
        f.seek(blk)
        f.write(bytes(img.cs))
    elif op == "corrupt":
        e = u64(f, 72)
        p64(f, 72, e | 2)
    else:
        sys.exit("poke.py: unknown op " + op)


main()
