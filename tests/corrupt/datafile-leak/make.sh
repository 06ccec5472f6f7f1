# external data file: a leaked cluster in the qcow2 file
mk "data_file=img.data" 4M
io "write -P 0x11 0 128k" "write -P 0x22 1M 64k"
keep
poke 'truncate(eof + cs); set_rc(eof, 1)'
