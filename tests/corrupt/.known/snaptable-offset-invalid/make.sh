# no snapshot, but the header's snapshot table offset is not cluster aligned: qemu-img fails the whole check
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'assert nb_snaps == 0
hdr_set("snaps", 0x12345)'
