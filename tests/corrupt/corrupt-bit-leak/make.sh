# the corrupt bit set and one leaked cluster
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'hdr_set("incompat", 2); truncate(eof + cs); set_rc(eof, 1)'
