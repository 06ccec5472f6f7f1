-- tests/cli/workload.lua - a random guest workload applied twice: to the
-- image (img:write, a session opened with -w) and to a raw model file with
-- plain Lua io. write.sh then compares the two with qemu-img.
--   qinspect -w IMG workload.lua MODEL SEED N MAXLEN [HOT]
-- Offsets are uniform over the disk, or over its first HOT bytes half of
-- the time (rewrites of the same clusters), or cluster aligned a quarter of
-- the time; lengths 1..MAXLEN. One operation in eight is img:zero (half of
-- them with unmap) and one in eight img:discard: the model gets zeros for a
-- zero, and for a discard zeros over the whole clusters of the range (as
-- QEMU's discard leaves them: zero flag or unallocated without a backing
-- file), except on a version 2 image over a backing file, where QEMU leaves
-- them as they were.
-- img:flush() every 37 operations.
local model, seed, n, maxlen, hot = arg[1], tonumber(arg[2]), tonumber(arg[3]),
    tonumber(arg[4]), tonumber(arg[5])
math.randomseed(seed)
local f = assert(io.open(model, "r+b"))
local size, cs = img.size, img.cluster_size
hot = math.min(hot or size, size)
local v2, backed = img.header.version == 2, img:backing() ~= nil
for i = 1, n do
  local r = math.random()
  local off = math.random(0, (r < 0.5 and hot or size) - 1)
  if r > 0.75 then off = off - off % cs end
  local len = math.min(math.random(1, maxlen), size - off)
  local op, data = math.random(8)
  if op == 1 then
    img:zero(off, len, {unmap = math.random(2) == 1})
    data = string.rep("\0", len)
  elseif op == 2 then
    img:discard(off, len)
    local first, last = (off + cs - 1) // cs * cs, (off + len) // cs * cs
    if off + len == size then last = size end
    if last > first and not (v2 and backed) then
      off, len, data = first, last - first, string.rep("\0", last - first)
    else
      len, data = 0, ""
    end
  else
    local pat = string.format("%06d|", (seed * 100000 + i) % 1000000)
    data = string.rep(pat, len // #pat + 1):sub(1, len)
    img:write(off, data)
  end
  assert(f:seek("set", off))
  assert(f:write(data))
  if i % 37 == 0 then img:flush() end
end
assert(f:close())
img:flush()
print("wrote " .. n)
