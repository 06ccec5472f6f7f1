# a bitmap data cluster's refcount 2
mk "" 4M
qemu-img bitmap --add "$IMG" b0
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'set_rc(r64(bitmap(0)["table"]) & MASK, 2)'
