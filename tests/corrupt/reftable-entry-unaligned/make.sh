# a refcount table entry not cluster aligned
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'w64(rt + 8, eof + 0x200)'
