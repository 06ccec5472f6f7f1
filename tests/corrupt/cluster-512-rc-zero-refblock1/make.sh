# 512-byte clusters: the second refcount block has refcount 0
mk "cluster_size=512" 8M
io "write -P 0x11 0 128k" "write -P 0x22 4M 64k"
keep
poke 'assert rtab(1)
set_rc(rtab(1) & MASK, 0)'
