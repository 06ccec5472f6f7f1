# a compressed span's sector count raised to the maximum: it runs over the next clusters (qemu-iotests 138)
mk "" 4M
io "write -c -P 0x11 0 64k" "write -c -P 0x55 64k 64k" "write -P 0x22 1M 64k"
keep
poke 'x = 62 - (cb - 8)
w64(l2e(64 * k), r64(l2e(64 * k)) | (((1 << (cb - 8)) - 1) << x))'
