# 512 clusters: w64(l2e(512), r64(l2e(512)) & ~COPIED)
mk "cluster_size=512" 8M
io "write -P 0x11 0 128k" "write -P 0x22 4M 64k"
keep
poke 'w64(l2e(512), r64(l2e(512)) & ~COPIED)'
