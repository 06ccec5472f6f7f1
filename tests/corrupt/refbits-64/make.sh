# refcount_bits=64: set_rc(l1, 9)
mk "refcount_bits=64" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'set_rc(l1, 9)'
