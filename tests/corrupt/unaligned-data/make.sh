# L2 entry: the data offset not cluster aligned
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'w64(l2e(64 * k), r64(l2e(64 * k)) + 0x200)'
