# extended L2: one subcluster both allocated and zero
mk "extended_l2=on,cluster_size=64k" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 8k"
keep
poke 'w64(l2e(1 * M) + 8, r64(l2e(1 * M) + 8) | (1 << 32))'
