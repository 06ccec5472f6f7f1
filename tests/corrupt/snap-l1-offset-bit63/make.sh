# a snapshot's L1 table offset with bit 63 set: aligned, but beyond what QEMU can read (2^63 - 2^30), so qemu-img check fails with an I/O error
mk "compat=0.10" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
snap s1
io "write -P 0x33 0 64k"
keep
poke 'e = snap(0)["entry"]
w64(e, r64(e) | COPIED)'
