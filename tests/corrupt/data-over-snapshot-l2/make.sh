# active data mapped onto the snapshot's L2 table (qemu-iotests 060)
mk "" 4M
io "write -P 1 0 512"
snap foo
io "write -P 2 0 512"
keep
poke 'w64(l2e(64 * k), COPIED | (r64(snap_l1e(0, 0)) & MASK))'
