# the host cluster of a compressed span has refcount 0
mk "" 4M
io "write -c -P 0x11 0 64k" "write -c -P 0x55 64k 64k" "write -P 0x22 1M 64k"
keep
poke 'set_rc(zspan(64 * k)[0], 0)'
