# COPIED set in an L1 entry whose L2 table a snapshot shares
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
snap s1
keep
poke 'w64(l1e(0), r64(l1e(0)) | COPIED)'
