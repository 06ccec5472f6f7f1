# a version 3 snapshot table entry whose extra data size is 0 (it must hold at least 16 bytes: VM state size and disk size)
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
snap s1
io "write -P 0x33 0 64k"
keep
poke 'w32(snap(0)["entry"] + 36, 0)'
