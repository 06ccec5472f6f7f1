# external data file: COPIED cleared in an L2 entry (data clusters have no refcount there: QEMU takes it as 1)
mk "data_file=img.data" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'w64(l2e(64 * k), r64(l2e(64 * k)) & ~COPIED)'
