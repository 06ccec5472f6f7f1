# a zero cluster that keeps its allocation, offset not aligned
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
io "write -z 1M 64k"
keep
poke 'w64(l2e(1 * M), r64(l2e(1 * M)) + 0x200)'
