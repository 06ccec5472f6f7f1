# lazy refcounts: the dirty bit set on a consistent image
mk "lazy_refcounts=on" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'hdr_set("incompat", 1)'
