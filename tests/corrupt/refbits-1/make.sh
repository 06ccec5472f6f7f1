# refcount_bits=1: truncate(eof + cs); set_rc(eof, 1)
mk "refcount_bits=1" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'truncate(eof + cs); set_rc(eof, 1)'
