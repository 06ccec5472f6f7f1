# a compressed span starting past the end of the file
mk "" 4M
io "write -c -P 0x11 0 64k" "write -c -P 0x55 64k 64k" "write -P 0x22 1M 64k"
keep
poke 'x = 62 - (cb - 8)
e = r64(l2e(64 * k))
w64(l2e(64 * k), (e & ~((1 << x) - 1)) | (64 * M + 1024))'
