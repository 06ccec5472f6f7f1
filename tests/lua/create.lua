-- create.lua: qinspect.create(path, size, opts) against qemu-img create,
-- via tests/lua/run.sh (arg[1] is the expect file in the scratch directory,
-- where the images are made). The oracle is qemu-img: the same options are
-- given to `qemu-img create` and the two files must be equal byte for byte;
-- the returned image is open read-write, and after a write through it
-- `qemu-img check` is clean and qemu-io reads the data back.
local t = require "qinspect.tap"
local dir = arg[1]:match("^(.*)/[^/]*$")

local function slurp(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function sh(cmd)
  local ok = os.execute(cmd .. " >/dev/null 2>&1")
  return ok == true
end

-- The -o list qemu-img gets for a Lua option table.
local function olist(opts)
  local keys, parts = {}, {}
  for k in pairs(opts) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = opts[k]
    if v == true then v = "on" elseif v == false then v = "off" end
    parts[#parts + 1] = k .. "=" .. tostring(v)
  end
  return table.concat(parts, ",")
end

local cases = {
  { 1 << 30, {} },
  { 3000001, { cluster_size = 4096, refcount_bits = 1, lazy_refcounts = true } },
  { 1 << 30, { cluster_size = 512, refcount_bits = 64 } },
  { 5 << 20, { compat = "0.10" } },
  { 100 << 20, { extended_l2 = true, compression_type = "zstd", preallocation = "metadata" } },
  { 5 << 20, { cluster_size = 2 << 20, preallocation = "falloc" } },
  { 5 << 20, { preallocation = "full", refcount_bits = 2 } },
}
for i, c in ipairs(cases) do
  local size, opts = c[1], c[2]
  local mine, ref = dir .. "/lc" .. i .. ".qcow2", dir .. "/lq" .. i .. ".qcow2"
  local o = olist(opts)
  local img = qinspect.create(mine, size, opts)
  t.ok(img.writable and img.size == (size + 511) // 512 * 512, "create #" .. i ..
       " returns the image open read-write (" .. (o ~= "" and o or "defaults") .. ")")
  img:close()
  assert(sh("qemu-img create -q -f qcow2 " .. (o ~= "" and "-o " .. o or "") .. " " .. ref ..
            " " .. size), "qemu-img create failed")
  t.ok(slurp(mine) == slurp(ref), "create #" .. i .. " gives qemu-img create's bytes")
end

-- backing file and data file
local base = dir .. "/lbase.qcow2"
assert(sh("qemu-img create -q -f qcow2 " .. base .. " 3M"))
local img = qinspect.create(dir .. "/lov.qcow2", 3 << 20, { backing_file = "lbase.qcow2",
                                                           backing_fmt = "qcow2" })
t.ok(img:backing() ~= nil, "an overlay is opened with its backing file")
img:close()
assert(sh("cd " .. dir .. " && qemu-img create -q -f qcow2 -b lbase.qcow2 -F qcow2 lovq.qcow2 3M"))
t.ok(slurp(dir .. "/lov.qcow2") == slurp(dir .. "/lovq.qcow2"), "overlay bytes as qemu-img's")

-- the returned image takes writes: qemu-img check clean, qemu-io reads them
img = qinspect.create(dir .. "/lw.qcow2", 4 << 20, { cluster_size = 4096 })
img:write(65536, string.rep("\x5a", 8192))
img:close()
t.ok(sh("qemu-img check " .. dir .. "/lw.qcow2"), "qemu-img check is clean after a write")
t.ok(sh("qemu-io -f qcow2 -c 'read -P 0x5a 65536 8192' " .. dir .. "/lw.qcow2 | grep -q 'read 8192'"),
     "qemu-io reads the written data")

-- refusals: qemu-img's reason in a qinspect.error, no file made
local bad = dir .. "/lbad.qcow2"
local _, err = t.errors_like(function() qinspect.create(bad, 1 << 20, { compat = "0.10",
  lazy_refcounts = true }) end, "Lazy refcounts only supported with compatibility level 1.1",
  "compat=0.10 with lazy_refcounts raises qemu-img's reason")
t.is(type(err) == "table" and err.code, "EINVAL", "the error object's code is EINVAL")
t.errors_like(function() qinspect.create(bad, 1 << 20, { cluster_size = 4096, extended_l2 = true })
  end, "cluster sizes of at least 16384 bytes", "extended_l2 with 4 KiB clusters is refused")
t.errors_like(function() qinspect.create(bad, 1 << 20, { cluster_size = 1000 }) end,
  "Cluster size must be a power of two", "a cluster size of 1000 is refused")
t.errors_like(function() qinspect.create(bad, 1 << 20, { refcount_bits = 3 }) end,
  "Refcount width must be a power of two", "refcount_bits=3 is refused")
t.errors_like(function() qinspect.create(bad, 1 << 20, { data_file_raw = true }) end,
  "data%-file%-raw requires data%-file", "data_file_raw without data_file is refused")
t.errors_like(function() qinspect.create(bad, 1 << 20, { clustersize = 4096 }) end,
  "unknown option 'clustersize'", "an unknown option is an argument error")
t.errors_like(function() qinspect.create(bad, 1 << 20, { preallocation = "some" }) end,
  "bad option 'preallocation'", "a bad preallocation mode is an argument error")
t.ok(io.open(bad, "rb") == nil, "no file is made when the create is refused")
t.done()
