# lazy refcounts, dirty, two L2 tables touched
mk "lazy_refcounts=on" 1G
io "write -P 0x11 0 64k"
qemu-io -c 'write -P 0x22 600M 64k' -c 'write -P 0x33 64k 64k' -c 'sigraise 9' "$IMG" >/dev/null 2>&1 || true
poke 'assert r64(72) & 1, "not dirty"'
