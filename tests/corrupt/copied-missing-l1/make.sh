# COPIED cleared in the L1 entry (refcount 1)
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'w64(l1e(0), r64(l1e(0)) & ~COPIED)'
