# the header's L1 table offset points at the header itself
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'hdr_set("l1", 0)'
