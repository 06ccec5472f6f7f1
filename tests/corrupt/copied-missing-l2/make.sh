# COPIED cleared in an L2 entry (refcount 1)
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'w64(l2e(64 * k), r64(l2e(64 * k)) & ~COPIED)'
