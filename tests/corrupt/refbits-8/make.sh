# refcount_bits=8: set_rc(host(1 * M), 0)
mk "refcount_bits=8" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'set_rc(host(1 * M), 0)'
