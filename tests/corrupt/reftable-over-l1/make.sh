# the header's refcount table offset points at the L1 table
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'hdr_set("rt", l1)'
