# an L1 entry with only a reserved bit set: offset 0, so QEMU walks the header cluster as an L2 table (found by random damage of a 512 B cluster image)
mk "" 1G
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'assert l1_size >= 2
w64(l1 + 8, 1 << 56)'
