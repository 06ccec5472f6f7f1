# 4k clusters: set_rc(l2t(0), 0)
mk "cluster_size=4k" 8M
io "write -P 0x11 0 128k" "write -P 0x22 4M 64k"
keep
poke 'set_rc(l2t(0), 0)'
