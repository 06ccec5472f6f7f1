# extended L2: allocation bits on an entry with no cluster
mk "extended_l2=on,cluster_size=64k" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 8k"
keep
poke 'w64(l2e(2 * M) + 8, 0xff)'
