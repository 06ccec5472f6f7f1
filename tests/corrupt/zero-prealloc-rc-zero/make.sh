# a zero cluster that keeps its allocation, refcount 0
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
io "write -z 1M 64k"
keep
poke 'assert r64(l2e(1 * M)) & 1
set_rc(host(1 * M), 0)'
