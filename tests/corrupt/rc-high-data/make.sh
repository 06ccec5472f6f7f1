# a data cluster's refcount 2 (one reference): a leak, and COPIED wrong
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'set_rc(host(0), 2)'
