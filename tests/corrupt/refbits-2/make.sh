# refcount_bits=2: set_rc(host(0), 3)
mk "refcount_bits=2" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'set_rc(host(0), 3)'
