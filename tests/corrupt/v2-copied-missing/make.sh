# compat=0.10: COPIED cleared in an L2 entry
mk "compat=0.10" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'w64(l2e(0), r64(l2e(0)) & ~COPIED)'
