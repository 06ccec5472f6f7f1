-- refcounts.lua: img.refcounts (table, entries, blocks of any width,
-- refcount entries) against the refcount table and blocks decoded by
-- python, and img:owners() against QEMU's refcounts on a clean image
-- (qemu-img check: no leaks, no corruptions, so every cluster has exactly
-- as many references as its refcount).
local t = require "qinspect.tap"
local E = dofile(arg[1])[arg[2]]
local cs, h = E.cluster_size, E.header
local rt = img.refcounts
local bits = 1 << h.refcount_order
local rbe = cs * 8 // bits

t.is(#rt, h.refcount_table_clusters * cs // 8, "#img.refcounts = table clusters * cluster size / 8")
t.is(rt.offset, h.refcount_table_offset, "refcounts.offset")
t.is(rt.refcount_bits, bits, "refcounts.refcount_bits")
t.is(rt.block_entries, rbe, "refcounts.block_entries")
local bad
for i = 0, #rt - 1 do
  local raw = E.reftable[i + 1]
  local e = rt[i]
  if e.raw ~= raw or e.offset ~= raw & ~0x1ff or e.reserved ~= raw & 0x1ff or e.index ~= i then
    bad = bad or ("entry " .. i)
  end
end
t.ok(not bad, "every refcount table entry: raw, offset, reserved, index")
if bad then t.diag(bad) end
t.is(rt[#rt], nil, "t[#t] is nil")
t.is(rt[-1], nil, "t[-1] is nil")

local b = rt:block(0)
t.ok(b ~= nil and b.offset == E.reftable[1] & ~0x1ff, "block(0) is the block the first entry points to")
t.is(#b, rbe, "#block = cluster_size * 8 / refcount_bits")
bad = nil
for c = 0, math.min(E.file_clusters, rbe) - 1 do
  if b[c] ~= E.refcounts[c] then bad = bad or string.format("cluster %d: %s vs %d", c, b[c], E.refcounts[c]) end
end
t.ok(not bad, bits .. "-bit refcounts of block 0 equal the python decoding")
if bad then t.diag(bad) end
local n = 0
for i, v in b:entries() do
  n = n + 1
  if i > 3 then break end
  if v ~= E.refcounts[i] then bad = "entries() " .. i end
end
t.ok(n == 5 and not bad, "block:entries() iterates 0-based (index, refcount)")
local e = b:entry(2)
t.ok(e.value == E.refcounts[2] and e.host_offset == 2 * cs and e.index == 2 and e.block == b,
     "refcount entry: value, host_offset, index, block")
local empty
for i = 0, #rt - 1 do if E.reftable[i + 1] == 0 then empty = i break end end
t.ok(empty and rt:block(empty) == nil and rt[empty]:block() == nil, "an entry of 0 has no block (nil)")
t.errors_like(function() b[0] = 1 end, "no field", "assigning a refcount raises")
t.errors_like(function() rt[0].raw = 1 end, "field 'raw' of refcount table entry is read%-only",
              "table entry fields are read-only")
t.ok(tostring(rt[0]):find(string.format("0x%016x", E.reftable[1]), 1, true), "tostring(entry) shows raw as 0x%016x")

-- owners: one per reference; on a clean image as many as the refcount
bad = nil
for c = 0, E.file_clusters - 1 do
  local o = img:owners(c * cs)
  if #o ~= E.refcounts[c] then bad = bad or string.format("cluster %d: %d owners, refcount %d", c, #o, E.refcounts[c]) end
end
t.ok(not bad, "#img:owners(off) equals QEMU's refcount for every cluster")
if bad then t.diag(bad) end

-- references: the whole walk in one pass, counted per cluster it touches
local per = {}
for _, r in ipairs(img:references()) do
  if r.length > 0 then
    for c = r.host_offset // cs, (r.host_offset + r.length - 1) // cs do per[c] = (per[c] or 0) + 1 end
  end
end
bad = nil
for c = 0, E.file_clusters - 1 do
  if (per[c] or 0) ~= E.refcounts[c] then
    bad = bad or string.format("cluster %d: %d references, refcount %d", c, per[c] or 0, E.refcounts[c])
  end
end
t.ok(not bad, "img:references() counted per cluster equals QEMU's refcount for every cluster")
if bad then t.diag(bad) end

-- owners come from an index built once; references() walks the tables
-- itself: for every cluster, the same records in the same order
local function sig(r)
  return table.concat({ r.kind, tostring(r.snapshot), r.host_offset, r.length,
                        tostring(r.table_offset), tostring(r.index) }, "/")
end
local by = {}
for _, r in ipairs(img:references()) do
  if r.length > 0 then
    for c = r.host_offset // cs, (r.host_offset + r.length - 1) // cs do
      by[c] = by[c] or {}
      by[c][#by[c] + 1] = sig(r)
    end
  end
end
bad = nil
local checked = 0
for c = 0, E.file_clusters + 1 do
  local want, got = by[c] or {}, {}
  for _, o in ipairs(img:owners(c * cs)) do got[#got + 1] = sig(o) end
  if table.concat(want, ";") ~= table.concat(got, ";") then
    bad = bad or string.format("cluster %d: owners %s, references %s", c, table.concat(got, ";"),
                               table.concat(want, ";"))
  end
  checked = checked + #got
end
t.ok(not bad and checked > 0, "img:owners(off) lists exactly the references to that cluster, in walk order ("
     .. checked .. " records)")
if bad then t.diag(bad) end
local first
for _, l1raw in ipairs(E.l1) do
  local l2 = l1raw & 0x00FFFFFFFFFFFE00
  if l2 ~= 0 and E.l2[l2] then
    for idx = 0, E.l2_entries - 1 do
      local x = E.l2[l2][idx]
      if x and x.type == "normal" then first = { l2 = l2, idx = idx, x = x } break end
    end
  end
  if first then break end
end
local found
for _, o in ipairs(img:owners(first.x.host_offset)) do
  if o.kind == "L2 entry" and o.snapshot == nil and o.table_offset == first.l2 and o.index == first.idx then
    found = o
  end
end
t.ok(found and found.raw == first.x.raw and found.entry.raw == first.x.raw
     and found.entry.host_offset == first.x.host_offset and math.type(found.guest_offset) == "integer",
     "an active owner of a data cluster: table, index, raw and the entry object")
local hdr = img:owners(0)
t.ok(#hdr >= 1 and hdr[1].kind == "header", "the header cluster is owned by the header")
t.done()
