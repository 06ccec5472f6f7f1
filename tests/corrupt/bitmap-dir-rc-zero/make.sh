# the bitmap directory has refcount 0
mk "" 4M
qemu-img bitmap --add "$IMG" b0
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'set_rc(bitmap_dir(), 0)'
