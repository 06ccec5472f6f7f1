# the snapshot table has refcount 0
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
snap s1
keep
poke 'set_rc(snaps, 0)'
