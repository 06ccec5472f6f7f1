# a refcount table entry points past the end of the file
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'w64(rt + 8, 64 * M)'
