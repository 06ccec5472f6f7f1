# three clusters with refcount 1 appended, nothing points at them
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'truncate(eof + 3 * cs)
for i in range(3): set_rc(eof + i * cs, 1)'
