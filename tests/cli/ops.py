#!/usr/bin/env python3
"""ops.py SEED N CLUSTER_SIZE SIZE QIO LUA - a random sequence of N guest
operations (write with a pattern byte, zero with and without unmap,
discard) aimed at cluster and subcluster boundaries and at unaligned
offsets; writes the same sequence as qemu-io commands (one per line, file
QIO) and as a Lua chunk (file LUA)."""
import random
import sys


def main(seed, n, cs, size, qio_path, lua_path):
    rnd = random.Random(seed)
    sc = cs // 32
    qio, lua = [], []

    def pick_off():
        k = rnd.random()
        if k < 0.35:
            return rnd.randrange(0, size // sc) * sc
        if k < 0.55:
            return rnd.randrange(0, size // cs) * cs
        return rnd.randrange(0, size - 1)

    def pick_len(off):
        k = rnd.random()
        if k < 0.3:
            n = sc * rnd.randint(1, 8)
        elif k < 0.5:
            n = cs * rnd.randint(1, 3)
        else:
            n = rnd.randint(1, 2 * cs)
        return max(1, min(n, size - off))

    for _ in range(n):
        off = pick_off()
        ln = pick_len(off)
        k = rnd.random()
        if k < 0.55:
            p = rnd.randint(1, 255)
            qio.append('write -P %d %d %d' % (p, off, ln))
            lua.append('img:write(%d, string.rep(string.char(%d), %d))' % (off, p, ln))
        elif k < 0.8:
            unmap = rnd.random() < 0.4
            qio.append('write -z%s %d %d' % (' -u' if unmap else '', off, ln))
            lua.append('img:zero(%d, %d%s)' % (off, ln, ', {unmap=true}' if unmap else ''))
        else:
            qio.append('discard %d %d' % (off, ln))
            lua.append('img:discard(%d, %d)' % (off, ln))
    with open(qio_path, 'w') as f:
        f.write('\n'.join(qio) + '\n')
    with open(lua_path, 'w') as f:
        f.write('\n'.join(lua) + '\n')


if __name__ == '__main__':
    a = sys.argv
    main(int(a[1]), int(a[2]), int(a[3]), int(a[4]), a[5], a[6])
