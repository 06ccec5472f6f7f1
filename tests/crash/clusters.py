#!/usr/bin/env python3
"""clusters.py OLD NEW GOT CLUSTER_SIZE: every cluster of GOT (raw guest
images of equal size) equals the same cluster of OLD or of NEW. Prints the
first clusters that are neither and exits 1 then."""
import sys

old, new, got = (open(p, "rb").read() for p in sys.argv[1:4])
cs = int(sys.argv[4])
if not (len(old) == len(new) == len(got)):
    sys.exit("sizes differ: %d %d %d" % (len(old), len(new), len(got)))
bad = [i for i in range(0, len(got), cs)
       if got[i:i + cs] != old[i:i + cs] and got[i:i + cs] != new[i:i + cs]]
for i in bad[:5]:
    print("guest cluster at %#x is neither old nor new" % i)
sys.exit(1 if bad else 0)
