# a snapshot's L1 entry not cluster aligned
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
snap s1
io "write -P 0x33 0 64k"
keep
poke 'w64(snap_l1e(0, 0), r64(snap_l1e(0, 0)) + 0x200)'
