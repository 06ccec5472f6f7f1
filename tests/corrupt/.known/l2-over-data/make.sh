# a second L1 entry points at a data cluster: QEMU walks the guest data as an L2 table (entries with reserved bits, past the end of the file) while the first L1 entry still reads that data (found by random damage)
mk "" 1G
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'assert l1_size >= 2
w64(l1 + 8, COPIED | host(0))'
