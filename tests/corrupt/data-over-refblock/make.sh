# a data cluster mapped onto the refcount block (qemu-iotests 060)
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'w64(l2e(2 * M - 64 * k), COPIED | (rtab(0) & MASK))'
