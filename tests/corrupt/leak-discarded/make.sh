# a cluster freed by discard whose refcount is put back to 1
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k" "write -P 0x33 2M 64k"
h=$(poke "print(host(2 * M))")
io "discard 2M 64k"
keep
poke "set_rc($h, 1)"
