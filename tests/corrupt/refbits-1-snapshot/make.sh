# refcount_bits=1 with a snapshot: shared clusters cannot be counted
mk "refcount_bits=1" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
qemu-img snapshot -c s1 "$IMG" 2>/dev/null || true
