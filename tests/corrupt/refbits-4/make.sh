# refcount_bits=4: set_rc(l2t(0), 0)
mk "refcount_bits=4" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'set_rc(l2t(0), 0)'
