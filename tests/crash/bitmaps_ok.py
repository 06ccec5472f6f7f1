#!/usr/bin/env python3
"""bitmaps_ok.py BASE IMG OLD GOT [--closed]: the persistent bitmaps of IMG
(a copy of BASE after a write session, maybe cut short by a crash) are in
a state QEMU would accept. OLD and GOT are raw guest images of BASE and IMG.
For each bitmap (decoded from the file bytes by tests/cli/bitmaps.py):
  - one without auto (disabled) is as in BASE: same flags, same bits;
  - one in_use in BASE stays in_use;
  - one with auto and without in_use in IMG is consistent: it keeps every
    bit it had in BASE, and every granule whose guest data changed (GOT
    differs from OLD) has its bit set;
  - with --closed (the session ended cleanly) no bitmap is in_use that was
    not in BASE.
An auto bitmap in_use in IMG is inconsistent, which QEMU accepts after a
crash. Prints what is wrong and exits 1."""
import json
import os
import subprocess
import sys

here = os.path.dirname(os.path.abspath(__file__))
reader = os.path.join(here, "..", "cli", "bitmaps.py")


def bitmaps(path):
    return json.loads(subprocess.check_output([sys.executable, reader, path]))


def bitset(runs):
    s = set()
    for a, b in runs:
        s.update(range(a, b + 1))
    return s


base, img, old, got = sys.argv[1:5]
closed = "--closed" in sys.argv[5:]
B, I = bitmaps(base), bitmaps(img)
old_d, got_d = open(old, "rb").read(), open(got, "rb").read()
bad = []
if sorted(B) != sorted(I):
    bad.append("bitmap names %s, before %s" % (sorted(I), sorted(B)))
for name in sorted(set(B) & set(I)):
    b, i = B[name], I[name]
    if "auto" not in b["flags"]:
        if b != i:
            bad.append("%s (disabled) changed: flags %s -> %s, bits %s -> %s"
                       % (name, b["flags"], i["flags"], b["bits"][:4], i["bits"][:4]))
        continue
    if "in-use" in b["flags"]:
        if "in-use" not in i["flags"]:
            bad.append("%s was in_use at open and is no longer" % name)
        continue
    if "in-use" in i["flags"]:
        if closed:
            bad.append("%s is in_use after a clean close" % name)
        continue
    g = i["granularity"]
    have = bitset(i["bits"])
    lost = bitset(b["bits"]) - have
    if lost:
        bad.append("%s lost bits %s" % (name, sorted(lost)[:5]))
    missing = [k for k in range(0, len(got_d), g)
               if got_d[k:k + g] != old_d[k:k + g] and k // g not in have]
    if missing:
        bad.append("%s is consistent (not in_use) but the guest data changed at %s "
                   "without its bit set" % (name, ", ".join("%#x" % k for k in missing[:4])))
for m in bad:
    print(m)
sys.exit(1 if bad else 0)
