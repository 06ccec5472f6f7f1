# the refcount table's first entry points at the L1 table: every refcount of the first block comes from L1 entries
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'w64(rt, l1)'
