# extended L2: a compressed cluster with a non-zero bitmap
mk "extended_l2=on" 4M
io "write -c -P 0x11 0 64k" "write -P 0x22 1M 64k"
keep
poke 'w64(l2e(0) + 8, 1)'
