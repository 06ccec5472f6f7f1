# a snapshot's L1 table has refcount 3
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
snap s1
keep
poke 'set_rc(snap(0)["l1"], 3)'
