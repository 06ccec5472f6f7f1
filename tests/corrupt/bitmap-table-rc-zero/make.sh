# a persistent bitmap's table has refcount 0
mk "" 4M
qemu-img bitmap --add "$IMG" b0
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'b = bitmap(0)
assert b["table"]
set_rc(b["table"], 0)'
