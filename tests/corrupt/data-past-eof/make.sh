# L2 entry: data far past the end of the file
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'w64(l2e(64 * k), COPIED | (64 * M))'
