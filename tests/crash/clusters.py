#!/usr/bin/env python3
"""clusters.py OLD NEW GOT CLUSTER_SIZE: every cluster of GOT (raw guest
images) equals the same cluster of OLD or of NEW. Prints the first clusters
that are neither and exits 1 then. GOT has the size of OLD or of NEW (an
operation that resizes: a crash leaves one or the other); past its end the
shorter of OLD and NEW reads as zeros."""
import sys

old, new, got = (open(p, "rb").read() for p in sys.argv[1:4])
cs = int(sys.argv[4])
if len(got) not in (len(old), len(new)):
    sys.exit("size %d is neither the old %d nor the new %d" % (len(got), len(old), len(new)))
old = old.ljust(len(got), b"\0")[:len(got)]
new = new.ljust(len(got), b"\0")[:len(got)]
bad = [i for i in range(0, len(got), cs)
       if got[i:i + cs] != old[i:i + cs] and got[i:i + cs] != new[i:i + cs]]
for i in bad[:5]:
    print("guest cluster at %#x is neither old nor new" % i)
sys.exit(1 if bad else 0)
