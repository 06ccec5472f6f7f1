# lazy refcounts: the process dies after writes, the dirty bit stays (qemu-iotests 061)
mk "lazy_refcounts=on" 4M
io "write -P 0x11 0 64k"
qemu-io -c 'write -P 0x22 1M 256k' -c 'sigraise 9' "$IMG" >/dev/null 2>&1 || true
poke 'assert r64(72) & 1, "not dirty"'
