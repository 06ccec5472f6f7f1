# L1 entry: the L2 table far past the end of the file
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'w64(l1e(0), COPIED | (256 * M))'
