# reserved bits set in an L2 entry
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'w64(l2e(0), r64(l2e(0)) | (1 << 58))'
