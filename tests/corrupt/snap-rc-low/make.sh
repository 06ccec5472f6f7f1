# two snapshots share a cluster; its refcount 1 instead of 3
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
snap s1
snap s2
keep
poke 'set_rc(host(1 * M), 1)'
