# the refcount table zeroed (qemu-iotests 108)
mk "" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'zero(rt, cs * rt_clusters)'
