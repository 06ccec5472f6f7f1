# 2M clusters: set_rc(host(0), 2)
mk "cluster_size=2M" 8M
io "write -P 0x11 0 128k" "write -P 0x22 4M 64k"
keep
poke 'set_rc(host(0), 2)'
