# a data cluster mapped onto the L1 table
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'w64(l2e(3 * M), COPIED | l1)'
