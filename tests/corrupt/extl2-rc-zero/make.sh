# extended L2: a data cluster with refcount 0
mk "extended_l2=on,cluster_size=64k" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 8k"
keep
poke 'set_rc(host(1 * M), 0)'
