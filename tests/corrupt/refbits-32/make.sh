# refcount_bits=32: truncate(eof + 2 * cs); set_rc(eof, 7); set_rc(eof + cs, 1)
mk "refcount_bits=32" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'truncate(eof + 2 * cs); set_rc(eof, 7); set_rc(eof + cs, 1)'
