# 1M clusters: truncate(eof + cs); set_rc(eof, 1)
mk "cluster_size=1M" 8M
io "write -P 0x11 0 128k" "write -P 0x22 4M 64k"
keep
poke 'truncate(eof + cs); set_rc(eof, 1)'
