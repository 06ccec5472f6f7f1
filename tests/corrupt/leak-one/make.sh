# one cluster past the data with refcount 1 and no reference
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'truncate(eof + cs); set_rc(eof, 1)'
