# a second refcount block over the L2 table
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'w64(rt + 8, l2t(0))'
