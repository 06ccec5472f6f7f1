# COPIED set in an L2 entry whose data a snapshot shares
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
snap s1
io "write -P 0x44 2M 64k"
keep
poke 'w64(l2e(0), r64(l2e(0)) | COPIED)'
