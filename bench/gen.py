#!/usr/bin/env python3
"""Deterministic data for the qinspect benchmark fixtures (bench/fixtures.sh).

Every generator is seeded, so two runs make byte-identical files. Sizes are
arguments: fixtures.sh picks full or QUICK ones.

  extents OUT VSIZE REGION         sparse raw file of VSIZE bytes: in every
                                   REGION-byte region one extent of 1/32 to
                                   5/64 of the region, mixed content
                                   (incompressible, text-like, records, zero
                                   blocks); the last 1/16 of each region stays
                                   empty for the compressed writes of `scramble`.
  scramble VSIZE REGION SRCDIR N   qemu-io commands (stdin), shuffled: N writes
                                   of 1-4 clusters at random places (host order
                                   differs from guest order), N/2 compressed
                                   cluster writes into the empty tails, N/4 zero
                                   writes (half with -u), N/12 discards.
  srcdir DIR                       small files that `scramble` writes with -s.
  runs OUT CLUSTER N               raw file with N clusters of data in
                                   alternating data/hole runs (mean length 2).
  spread OUT VSIZE N               sparse raw file with N extents of 2 MiB.
  round VSIZE ROUND                qemu-io commands for one snapshot round.
  dups OUT SIZE                    raw file of 64 KiB blocks: about half unique,
                                   half copies of earlier blocks, 3% holes;
                                   prints the counts.
"""
import os
import random
import sys

BLK = 64 * 1024
MiB = 1024 * 1024


class Source:
    """Block factory. Each non-zero block starts with a serial number, so no
    two blocks are equal unless a generator copies one on purpose."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.noise = random.Random(seed ^ 0x5EED).randbytes(32 * MiB)
        self.words = self._words(random.Random(seed ^ 0x7E47))
        self.n = 0

    @staticmethod
    def _words(r):
        vocab = ["".join(r.choice("aeioustnrlcdmphgbfwyk") for _ in range(r.randint(2, 10)))
                 for _ in range(3000)]
        weights = [1.0 / (i + 1) for i in range(len(vocab))]
        text = []
        size = 0
        while size < 4 * MiB:
            line = " ".join(r.choices(vocab, weights, k=r.randint(4, 16))) + "\n"
            text.append(line)
            size += len(line)
        return "".join(text).encode()

    def _tag(self):
        self.n += 1
        return b"qibench%09d" % self.n

    def block(self, kind, n=BLK):
        if kind == "zero":
            return bytes(n)
        tag = self._tag()
        if kind == "noise":
            o = self.rng.randrange(len(self.noise) - n)
            return tag + self.noise[o + len(tag):o + n]
        if kind == "text":
            o = self.rng.randrange(len(self.words) - n)
            return tag + self.words[o + len(tag):o + n]
        rec = b"".join(b"%08d %6d uid=%05d st=%d ok..........................\n"
                       % (self.n, i, self.rng.randrange(99999), self.rng.randrange(9))
                       for i in range(n // 64 + 1))
        return (tag + rec)[:n]

    def mixed(self, table):
        u = self.rng.random()
        for p, kind in table:
            if u < p:
                return kind
            u -= p
        return table[-1][1]


def extents(out, vsize, region):
    s = Source(11)
    r = random.Random(12)
    tail = region // 16
    mix = [(0.5, "noise"), (0.3, "text"), (0.08, "records"), (0.12, "zero")]
    with open(out, "wb") as f:
        f.truncate(vsize)
        for base in range(0, vsize, region):
            ln = max(BLK, r.randint(4, 10) * region // 128 // BLK * BLK)
            room = (region - tail - ln) // BLK
            off = base + r.randint(0, room) * BLK
            data = b"".join(s.block(s.mixed(mix)) for _ in range(ln // BLK))
            os.pwrite(f.fileno(), data, off)


def srcdir(d):
    s = Source(21)
    os.makedirs(d, exist_ok=True)
    for i in range(16):
        kind = ("noise", "text", "records", "noise")[i % 4]
        with open(os.path.join(d, "w%02d" % i), "wb") as f:
            f.write(b"".join(s.block(kind) for _ in range(4)))
        with open(os.path.join(d, "t%02d" % i), "wb") as f:
            f.write(s.block("text"))


def scramble(vsize, region, sdir, n):
    r = random.Random(31)
    nreg = vsize // region
    tail = region // 16

    def where(ln):
        reg = r.randrange(nreg)
        return reg * region + r.randrange((region - tail - ln) // BLK + 1) * BLK

    cmds = []
    for _ in range(n):
        ln = r.choice((1, 2, 4)) * BLK
        cmds.append("write -q -s %s/w%02d %d %d" % (sdir, r.randrange(16), where(ln), ln))
    per = tail // BLK
    for slot in r.sample(range(nreg * per), min(n // 2, nreg * per)):
        reg, k = divmod(slot, per)
        o = reg * region + region - tail + k * BLK
        cmds.append("write -q -c -s %s/t%02d %d %d" % (sdir, r.randrange(16), o, BLK))
    for i in range(n // 4):
        ln = r.choice((1, 2)) * BLK
        cmds.append("write -q -z %s%d %d" % ("-u " if i % 2 else "", where(ln), ln))
    for _ in range(n // 12):
        ln = r.choice((1, 2, 4)) * BLK
        cmds.append("discard -q %d %d" % (where(ln), ln))
    r.shuffle(cmds)
    print("\n".join(cmds))
    print("quit")


def geometric(r):
    k = 1
    while r.random() < 0.5:
        k += 1
    return k


def runs(out, cluster, n):
    s = Source(41 + cluster)
    r = random.Random(42 + cluster)
    with open(out, "wb") as f:
        pos = done = 0
        while done < n:
            k = min(geometric(r), n - done)
            data = b"".join(s.block("noise", cluster) for _ in range(k))
            os.pwrite(f.fileno(), data, pos * cluster)
            done += k
            pos += k + geometric(r)
        f.truncate((pos * cluster + MiB - 1) // MiB * MiB)


def spread(out, vsize, n):
    s = Source(51)
    r = random.Random(52)
    ext = 2 * MiB
    mix = [(0.55, "noise"), (0.35, "text"), (0.10, "records")]
    with open(out, "wb") as f:
        f.truncate(vsize)
        for slot in sorted(r.sample(range(vsize // ext), n)):
            data = b"".join(s.block(s.mixed(mix)) for _ in range(ext // BLK))
            os.pwrite(f.fileno(), data, slot * ext)


def snap_round(vsize, rnd):
    r = random.Random(60 + rnd)
    cmds = ["write -q -P %d %d %d" % (rnd % 250 + 3, r.randrange(vsize // BLK) * BLK, BLK)
            for _ in range(300)]
    cmds += ["write -q -z %d %d" % (r.randrange(vsize // BLK) * BLK, BLK) for _ in range(20)]
    print("\n".join(cmds))
    print("quit")


def dups(out, size):
    s = Source(71)
    r = random.Random(72)
    mix = [(0.5, "noise"), (0.35, "text"), (0.15, "records")]
    uniq = []
    count = {"unique": 0, "copies": 0, "holes": 0}
    with open(out, "w+b") as f:
        f.truncate(size)
        for i in range(size // BLK):
            u = r.random()
            if u < 0.03:
                count["holes"] += 1
                continue
            if u < 0.53 and uniq:
                data = os.pread(f.fileno(), BLK, r.choice(uniq))
                count["copies"] += 1
            else:
                data = s.block(s.mixed(mix))
                uniq.append(i * BLK)
                count["unique"] += 1
            os.pwrite(f.fileno(), data, i * BLK)
    print("dups: %d blocks of 64 KiB: %d unique, %d copies, %d holes"
          % (size // BLK, count["unique"], count["copies"], count["holes"]))


def main():
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    cmd, args = a[0], a[1:]
    num = [int(x) for x in args[1:] if x.isdigit()]
    if cmd == "extents":
        extents(args[0], num[0], num[1])
    elif cmd == "scramble":
        scramble(int(args[0]), int(args[1]), args[2], int(args[3]))
    elif cmd == "srcdir":
        srcdir(args[0])
    elif cmd == "runs":
        runs(args[0], num[0], num[1])
    elif cmd == "spread":
        spread(args[0], num[0], num[1])
    elif cmd == "round":
        snap_round(int(args[0]), int(args[1]))
    elif cmd == "dups":
        dups(args[0], num[0])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
