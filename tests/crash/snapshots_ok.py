#!/usr/bin/env python3
"""snapshots_ok.py BASE IMG OLD GOT [--closed]: the snapshot criterion of the
crash scenarios of snapshot create, apply and delete (tests/crash/run.sh).

BASE is the image before the operation, IMG the image after a crash (or
after the whole operation with --closed), OLD the raw guest data of BASE's
active state. Every snapshot of IMG is one BASE had (same id and name) and
reads exactly as it did in BASE, or is new (an id BASE did not have: the
snapshot a create made) and reads as BASE's active state (OLD). A snapshot
of BASE may be missing (the one a delete removes). All reads are
qemu-img convert -l; the active state itself is judged by clusters.py.
Prints why not and exits 1."""
import json
import os
import subprocess
import sys

base, img, old = sys.argv[1:4]


def snaps(path):
    out = subprocess.run(["qemu-img", "info", "-U", "--output=json", path],
                         check=True, capture_output=True, text=True).stdout
    return [(s["id"], s["name"]) for s in json.loads(out).get("snapshots", [])]


def view(path, sid, dest):
    subprocess.run(["qemu-img", "convert", "-U", "-O", "raw", "-l", "snapshot.id=" + sid,
                    path, dest], check=True, capture_output=True)
    with open(dest, "rb") as f:
        return f.read()


def padded(data, n):
    return data.ljust(n, b"\0")[:n]


before = dict(snaps(base))
bad = []
for sid, name in snaps(img):
    got = view(img, sid, img + ".snapview")
    if sid in before:
        if before[sid] != name:
            bad.append("snapshot %s is named %r, was %r" % (sid, name, before[sid]))
            continue
        cache = "%s.sn-%s.raw" % (base, sid)
        if not os.path.exists(cache):
            view(base, sid, cache)
        with open(cache, "rb") as f:
            want = f.read()
    else:
        with open(old, "rb") as f:
            want = f.read()
    if padded(got, len(want)) != want:
        bad.append("snapshot %s (%s) does not read as %s" %
                   (sid, name, "before" if sid in before else "the active state it was made of"))
for b in bad[:5]:
    print(b)
sys.exit(1 if bad else 0)
