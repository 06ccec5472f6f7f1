# COPIED set on a compressed cluster
mk "" 4M
io "write -c -P 0x11 0 64k" "write -c -P 0x55 64k 64k" "write -P 0x22 1M 64k"
keep
poke 'w64(l2e(0), r64(l2e(0)) | COPIED)'
