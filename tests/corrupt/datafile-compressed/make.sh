# external data file: an L2 entry marked compressed (an image with a data file cannot hold compressed clusters)
mk "data_file=img.data" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'w64(l2e(1 * M), (r64(l2e(1 * M)) & ~COPIED) | COMPRESSED)'
