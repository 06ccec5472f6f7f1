# a data cluster's refcount 0 while the L2 entry uses it
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'set_rc(host(64 * k), 0)'
