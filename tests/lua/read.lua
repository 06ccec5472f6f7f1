-- read.lua: guest reads against `qemu-img convert -O raw` bytes and the
-- patterns tests/lua/run.sh wrote with qemu-io.
local t = require "qinspect.tap"
local key = arg[2]
local E = dofile(arg[1])[key]
local f = assert(io.open(E.raw, "rb"))
local raw = f:read("a")
f:close()

t.is(#raw, img.size, "qemu-img convert output has the virtual size")
t.ok(img:read(0, img.size) == raw, "img:read of the whole disk equals qemu-img convert -O raw")
local bad
for _, r in ipairs { {0, 1}, {511, 2}, {65535, 4097}, {img.size - 3, 3}, {12345, 131072} } do
  local off, len = r[1], math.min(r[2], img.size - r[1])
  if img:read(off, len) ~= raw:sub(off + 1, off + len) then bad = off end
end
t.ok(not bad, "unaligned reads equal the converted bytes")
t.is(img:read(img.size, 0), "", "a 0-byte read at the end is empty")

local patterns = {
  basic = { {0, 4096, "\xcd"}, {4096, 61440, "\xab"}, {1048576, 4096, "\x11"},
            {1052672, 61440, "\0"}, {2097152, 65536, "\0"}, {3145728, 65536, "\x22"},
            {2228224, 65536, "\0"} },
  small = { {0, 1536, "\x01"}, {40960, 512, "\x02"}, {716800, 8192, "\x03"}, {921600, 1024, "\0"} },
  ext = { {0, 4096, "\x33"}, {8192, 2048, "\0"}, {1048576, 65536, "\x34"} },
  v2 = { {0, 4096, "\0"}, {4096, 12288, "\x66"}, {1048576, 4096, "\x67"}, {7340032, 4096, "\x68"} },
  over = { {0, 65536, "B"}, {65536, 65536, "\x55"}, {131072, 65536, "B"} },
}
for _, p in ipairs(patterns[key]) do
  t.ok(img:read(p[1], p[2]) == p[3]:rep(p[2]),
       string.format("read(%d, %d) is the qemu-io pattern 0x%02x", p[1], p[2], p[3]:byte()))
end

t.errors_like(function() return img:read(img.size, 1) end, "beyond the virtual size",
              "a read past the end raises")
t.errors_like(function() return img:read(0, (1 << 30) + 1) end, "length exceeds 1 GiB",
              "a read over 1 GiB raises")
t.errors_like(function() return img:read(-1, 1) end, "offset is negative", "a negative offset raises")
t.errors_like(function() return img:read(0) end, "number expected", "a missing length raises")

local bk = img:backing()
if key == "over" then
  t.ok(bk ~= nil and bk.format == "raw", "img:backing() is the raw base image")
  local bf = assert(io.open(E.dir .. "/base.raw", "rb"))
  local base = bf:read("a")
  bf:close()
  t.ok(bk:read(0, bk.size) == base, "the backing image reads as the base file")
  t.is(bk:backing(), nil, "the base has no backing file")
  t.ok(tostring(bk):find("base.raw", 1, true) ~= nil, "tostring(backing image) names it")
  local nob = assert(qinspect.open(E.path, { backing = false }))
  t.is(nob:backing(), nil, "open{backing=false} opens no backing file")
  nob:close()
  local again = assert(qinspect.open(E.path))
  local b2 = again:backing()
  again:close()
  t.errors_like(function() return b2:read(0, 1) end, "image is closed",
                "a backing image is closed with its overlay")
else
  t.is(bk, nil, "img:backing() is nil without a backing file")
end
t.done()
