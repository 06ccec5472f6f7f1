# 512-byte clusters: a leak covered by a later refcount block
mk "cluster_size=512" 8M
io "write -P 0x11 0 128k" "write -P 0x22 4M 64k"
keep
poke 'assert eof > cs * cs * 8 // rbits
truncate(eof + cs); set_rc(eof, 1)'
