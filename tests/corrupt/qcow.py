#!/usr/bin/env python3
"""tests/corrupt/qcow.py - poke a qcow2 image at offsets read from its own header.

Usage: qcow.py IMG 'PYTHON STATEMENTS'

The statements run with the names below bound to IMG, so a case says what
it damages ("the L2 entry of guest offset 64k", "the refcount of the L1
table") and the byte offset is computed from the header and tables that
qemu-img wrote (docs/qcow2-format.md, QEMU docs/interop/qcow2.txt), never
copied from a qinspect run. Statements may print values (for make.sh to
read back).

  cs, cb          cluster size and cluster_bits
  rbits           refcount width in bits (1 << refcount_order)
  ext_l2          extended L2 entries (16-byte entries, subcluster bitmap)
  l1, l1_size     active L1 table offset and entries
  rt, rt_clusters refcount table offset and size in clusters
  snaps, nb_snaps snapshot table offset and count
  eof             file size when the statements start
  COPIED, COMPRESSED, ZERO, MASK   L2/L1 entry bits and the offset mask
  r64(off) r32 r16 r8             big-endian reads
  w64(off, v) w32 w16 w8          big-endian writes
  zero(off, n)                    write n zero bytes
  truncate(size)                  change the file size
  l1e(g)          offset of the active L1 entry mapping guest offset g
  l2t(g)          offset of the L2 table mapping g (from the active L1)
  l2e(g)          offset of the L2 entry of g (its bitmap is at +8 with ext_l2)
  host(g)         host cluster offset of g's data (standard cluster)
  zspan(g)        (host offset, bytes) of g's compressed cluster
  rtab(i)         the refcount table entry i (offset of entry is rt + 8*i)
  rc(off)         refcount of the host cluster holding off
  set_rc(off, v)  set it (any width 1..64; the block must exist)
  snap(i)         dict of snapshot i's fields: l1, l1_size, entry (offset)
  snap_l1e(i, g)  offset of snapshot i's L1 entry for guest offset g
  bitmap_dir()    offset of the bitmap directory (header extension 0x23852875)
  bitmap(i)       dict of bitmap i's directory entry: table, size, entry
  hdr_set(name, v)  header field: incompat, compat, autoclear, l1, l1_size,
                  rt, rt_clusters, snaps, nb_snaps
"""
import os
import struct
import sys

FIELDS = {"l1_size": (36, ">I"), "l1": (40, ">Q"), "rt": (48, ">Q"),
          "rt_clusters": (56, ">I"), "nb_snaps": (60, ">I"), "snaps": (64, ">Q"),
          "incompat": (72, ">Q"), "compat": (80, ">Q"), "autoclear": (88, ">Q"),
          "cb": (20, ">I"), "version": (4, ">I"), "refcount_order": (96, ">I")}


def main():
    path, code = sys.argv[1], sys.argv[2]
    f = open(path, "r+b")

    def rd(off, fmt):
        f.seek(off)
        b = f.read(struct.calcsize(fmt))
        if len(b) < struct.calcsize(fmt):
            raise SystemExit("qcow.py: read past EOF at %#x" % off)
        return struct.unpack(fmt, b)[0]

    def wr(off, fmt, v):
        f.seek(off)
        f.write(struct.pack(fmt, v & ((1 << (8 * struct.calcsize(fmt))) - 1)))

    hdr = {k: rd(o, t) for k, (o, t) in FIELDS.items() if k != "refcount_order"}
    version = hdr["version"]
    order = rd(96, ">I") if version >= 3 else 4
    cb = hdr["cb"]
    cs = 1 << cb
    ext = version >= 3 and bool(hdr["incompat"] & 16)
    esz = 16 if ext else 8
    l2_entries = cs // esz
    MASK = 0x00fffffffffffe00
    rbits = 1 << order
    per_block = cs * 8 // rbits

    def l1e(g):
        return hdr["l1"] + 8 * (g // (l2_entries * cs))

    def l2t(g):
        return rd(l1e(g), ">Q") & MASK

    def l2e(g):
        t = l2t(g)
        assert t, "guest offset %#x has no L2 table" % g
        return t + esz * ((g // cs) % l2_entries)

    def host(g):
        return rd(l2e(g), ">Q") & MASK

    def zspan(g):
        e = rd(l2e(g), ">Q")
        assert e & (1 << 62), "not compressed"
        x = 62 - (cb - 8)
        return e & ((1 << x) - 1), (((e >> x) & ((1 << (cb - 8)) - 1)) + 1) * 512

    def rtab(i):
        return rd(hdr["rt"] + 8 * i, ">Q")

    def rc_loc(off):
        k = off // cs
        blk = rtab(k // per_block) & MASK
        assert blk, "no refcount block for %#x" % off
        return blk, k % per_block

    def rc(off):
        blk, i = rc_loc(off)
        if rbits >= 8:
            return rd(blk + i * rbits // 8, {8: ">B", 16: ">H", 32: ">I", 64: ">Q"}[rbits])
        byte = rd(blk + i * rbits // 8, ">B")
        return (byte >> (i * rbits % 8)) & ((1 << rbits) - 1)

    def set_rc(off, v):
        blk, i = rc_loc(off)
        if rbits >= 8:
            wr(blk + i * rbits // 8, {8: ">B", 16: ">H", 32: ">I", 64: ">Q"}[rbits], v)
            return
        at = blk + i * rbits // 8
        sh = i * rbits % 8
        m = ((1 << rbits) - 1) << sh
        wr(at, ">B", (rd(at, ">B") & ~m) | ((v << sh) & m))

    def snap(n):
        off = hdr["snaps"]
        for _ in range(n):
            extra, idl, nml = rd(off + 36, ">I"), rd(off + 12, ">H"), rd(off + 14, ">H")
            off += (40 + extra + idl + nml + 7) // 8 * 8
        return {"l1": rd(off, ">Q"), "l1_size": rd(off + 8, ">I"), "entry": off}

    def snap_l1e(n, g):
        return snap(n)["l1"] + 8 * (g // (l2_entries * cs))

    def extension(magic):
        off = 72 if version < 3 else rd(100, ">I")
        while off + 8 <= cs:
            t, n = rd(off, ">I"), rd(off + 4, ">I")
            if t == 0:
                break
            if t == magic:
                return off + 8
            off += 8 + (n + 7) // 8 * 8
        raise SystemExit("qcow.py: no header extension %#x" % magic)

    def bitmap_dir():
        return rd(extension(0x23852875) + 16, ">Q")

    def bitmap(n):
        off = bitmap_dir()
        for _ in range(n):
            nl, el = rd(off + 18, ">H"), rd(off + 20, ">I")
            off += (24 + el + nl + 7) // 8 * 8
        return {"table": rd(off, ">Q"), "size": rd(off + 8, ">I"), "entry": off}

    def hdr_set(name, v):
        o, t = FIELDS[name]
        wr(o, t, v)

    def zero(off, n):
        f.seek(off)
        f.write(bytes(n))

    def truncate(size):
        f.truncate(size)

    env = dict(cs=cs, cb=cb, rbits=rbits, ext_l2=ext, l1=hdr["l1"], l1_size=hdr["l1_size"],
               rt=hdr["rt"], rt_clusters=hdr["rt_clusters"], snaps=hdr["snaps"],
               nb_snaps=hdr["nb_snaps"], eof=os.fstat(f.fileno()).st_size,
               COPIED=1 << 63, COMPRESSED=1 << 62, ZERO=1, MASK=MASK,
               r64=lambda o: rd(o, ">Q"), r32=lambda o: rd(o, ">I"),
               r16=lambda o: rd(o, ">H"), r8=lambda o: rd(o, ">B"),
               w64=lambda o, v: wr(o, ">Q", v), w32=lambda o, v: wr(o, ">I", v),
               w16=lambda o, v: wr(o, ">H", v), w8=lambda o, v: wr(o, ">B", v),
               zero=zero, truncate=truncate, l1e=l1e, l2t=l2t, l2e=l2e, host=host,
               zspan=zspan, rtab=rtab, rc=rc, set_rc=set_rc, snap=snap,
               snap_l1e=snap_l1e, bitmap_dir=bitmap_dir, bitmap=bitmap,
               hdr_set=hdr_set, k=1024, M=1 << 20)
    exec(compile(code, "<case>", "exec"), env)
    f.close()


if __name__ == "__main__":
    main()
