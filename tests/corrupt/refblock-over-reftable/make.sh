# the refcount table's first entry points at the refcount table itself: the block is read from the table's own bytes (qemu-iotests 108)
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'w64(rt, rt)'
