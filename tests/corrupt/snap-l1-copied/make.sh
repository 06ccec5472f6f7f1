# COPIED set in a snapshot's L1 entry (the L2 table is shared)
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
snap s1
keep
poke 'w64(snap_l1e(0, 0), r64(snap_l1e(0, 0)) | COPIED)'
