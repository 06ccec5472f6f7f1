# a second L1 entry points at a data cluster of 0x01 bytes: as L2 entries they are preallocated zero clusters (reserved bit 56) past the end of the file, which qemu-img -r all leaves alone; the first L1 entry still reads the data (found by random damage)
mk "" 1G
io "write -P 0x01 0 128k" "write -P 0x22 1M 64k"
keep
poke 'assert l1_size >= 2
w64(l1 + 8, COPIED | host(0))'
