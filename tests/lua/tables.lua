-- tables.lua: L1/L2 tables and entries against the image bytes read by
-- tests/lua/run.sh's python oracle (arg[1] = expect.lua, arg[2] = image key).
local t = require "qinspect.tap"
local E = dofile(arg[1])[arg[2]]
local MASK = 0x00fffffffffffe00

-- Compare every item of a list check; report the first mismatch only.
-- An empty list fails: a check over nothing proves nothing.
local function all(name, n, check)
  local bad
  if n <= 0 then bad = "no items to check" end
  for i = 0, n - 1 do
    local why = check(i)
    if why then bad = string.format("index %d: %s", i, why) break end
  end
  t.ok(not bad, name)
  if bad then t.diag(bad) end
end

local function neq(what, got, want)
  if got ~= want then
    return string.format("%s got %s, want %s", what, tostring(got), tostring(want))
  end
end

local l1 = img.l1
t.is(#l1, E.header.l1_size, "#img.l1 is l1_size")
t.is(l1.offset, E.header.l1_table_offset, "img.l1.offset is l1_table_offset")
t.is(l1.snapshot, nil, "the active L1 table belongs to no snapshot")
all("every L1 entry: raw, l2_offset, copied, index", #l1, function(i)
  local e, raw = l1[i], E.l1[i + 1]
  return neq("raw", e.raw, raw) or neq("l2_offset", e.l2_offset, raw & MASK)
      or neq("copied", e.copied, raw < 0) or neq("index", e.index, i)
      or neq("reserved", e.reserved, 0)
end)
t.is(l1[#l1], nil, "l1[#l1] is nil")
t.is(l1[-1], nil, "l1[-1] is nil")
local count, last = 0, -1
for i, e in l1:entries() do count = count + 1; last = i; assert(e.index == i) end
t.ok(count == #l1 and last == #l1 - 1, "l1:entries() visits 0..#l1-1")

local function expect_l2(want, e)
  local ty = want and want.type or "unallocated"
  return neq("raw", e.raw, want and want.raw or 0) or neq("type", e.type, ty)
      or neq("host_offset", e.host_offset, want and want.host_offset)
      or neq("copied", e.copied, want and want.copied or false)
      or neq("compressed", e.compressed, ty == "compressed")
      or neq("csize", e.csize, want and want.csize)
      or neq("csectors", e.csectors, want and want.csectors)
      or neq("bitmap", e.bitmap, E.extl2 and (want and want.bitmap or 0) or nil)
end

local tables = 0
for i = 0, #l1 - 1 do
  local tab = l1[i]:l2()
  if E.l1[i + 1] & MASK == 0 then
    if tab ~= nil then t.ok(false, "unallocated L1 entry " .. i .. " has no L2 table") end
  else
    tables = tables + 1
    local want = E.l2[E.l1[i + 1] & MASK]
    t.ok(tab ~= nil and want ~= nil and tab.offset == E.l1[i + 1] & MASK,
         "L2 table of L1 entry " .. i .. " is at the offset python read")
    want = want or {}
    t.is(#tab, E.l2_entries, "#t of L2 table " .. i .. " is the entries per table")
    all("L2 table of L1 entry " .. i .. ": every entry", #tab, function(j)
      return expect_l2(want[j], tab[j])
    end)
  end
end
t.ok(tables > 0, "the image has L2 tables (" .. tables .. ")")

-- l2_for: guest offset -> the same entry as the walk, and its table
local cs, per = E.cluster_size, E.l2_entries
all("img:l2_for(guest offset) for every cluster", E.virtual_size // cs, function(c)
  local e, tab = img:l2_for(c * cs + cs // 2)
  local raw1 = E.l1[c // per + 1]
  if raw1 & MASK == 0 then return neq("entry", e, nil) end
  return neq("table", tab.offset, raw1 & MASK) or neq("index", e.index, c % per)
      or expect_l2(E.l2[raw1 & MASK][c % per], e)
end)
t.errors_like(function() return img:l2_for(img.size) end, "beyond the virtual size",
              "l2_for past the end raises")

if E.extl2 then
  local names = { [0] = "unallocated", "allocated", "zero", "invalid" }
  local n, bad = 0, nil
  for off, ents in pairs(E.l2) do
    for j, want in pairs(ents) do
      local tab
      for i = 0, #img.l1 - 1 do if img.l1[i].l2_offset == off then tab = img.l1[i]:l2() end end
      local e = tab[j]
      for s = 0, 31 do
        local a, z = (want.bitmap >> s) & 1, (want.bitmap >> (32 + s)) & 1
        local st = names[(a == 1 and z == 1) and 3 or a == 1 and 1 or z == 1 and 2 or 0]
        n = n + 1
        if e:subcluster(s) ~= st then bad = bad or ("entry " .. j .. " subcluster " .. s) end
      end
    end
  end
  t.ok(n > 0 and not bad, "extended L2: subcluster(i) states match the bitmaps")
  if bad then t.diag(bad) end
  t.errors_like(function() return img.l1[0]:l2()[0]:subcluster(32) end, "0..31",
                "subcluster(32) raises")
else
  t.errors_like(function() return img:l2_for(0):subcluster(0) end, "no extended L2",
                "subcluster() on a standard image raises")
end
t.done()
