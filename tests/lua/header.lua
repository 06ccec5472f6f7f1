-- header.lua: img.header and image properties against the header bytes
-- (python struct) and qemu-img info --output=json, via tests/lua/run.sh.
local t = require "qinspect.tap"
local E = dofile(arg[1])[arg[2]]
local h = img.header

local bad, nf = nil, 0
for k, v in pairs(E.header) do
  nf = nf + 1
  if h[k] ~= v then bad = (bad or "") .. string.format(" %s=%s (want %s)", k, tostring(h[k]), tostring(v)) end
end
t.ok(nf >= 19 and not bad, "every header field equals the bytes of the header (" .. nf .. " fields)")
if bad then t.diag(bad) end

t.is(img.size, E.virtual_size, "img.size is qemu-img's virtual-size")
t.is(img.cluster_size, E.cluster_size, "img.cluster_size")
t.is(img.format, "qcow2", "img.format")
t.is(img.path, E.path, "img.path is the name given")
t.is(img.refcount_bits, 1 << E.header.refcount_order, "img.refcount_bits")
t.is(img.extended_l2, E.extl2, "img.extended_l2")
t.is(img.l2_entries, E.l2_entries, "img.l2_entries")

-- Feature names as the qcow2 spec and QEMU's feature table name them.
local f = h.features
local function has(list, name) for _, x in ipairs(list) do if x == name then return true end end end
local n_inc, n_comp = 0, 0
for bit = 0, 63 do
  if (E.header.incompatible_features >> bit) & 1 == 1 then n_inc = n_inc + 1 end
  if (E.header.compatible_features >> bit) & 1 == 1 then n_comp = n_comp + 1 end
end
t.is(#f.incompatible, n_inc, "features.incompatible has one name per set bit")
t.is(#f.compatible, n_comp, "features.compatible has one name per set bit")
if E.extl2 then
  t.ok(has(f.incompatible, "extended L2 entries"), "incompatible bit 4 is named 'extended L2 entries'")
  t.ok(has(f.compatible, "lazy refcounts"), "compatible bit 0 is named 'lazy refcounts'")
end

local x = h.extensions
t.is(#x, #E.exts, "header.extensions lists every extension")
local xbad
for i, want in ipairs(E.exts) do
  if not x[i] or x[i].type ~= want.type or x[i].length ~= want.length or #x[i].data ~= want.length then
    xbad = "extension " .. i
  end
end
t.ok(not xbad, "extension types and lengths in on-disk order")
t.is(h.backing_file, E.backing, "header.backing_file is qemu-img's backing-filename")
t.is(h.backing_format, E.backing_format, "header.backing_format is qemu-img's backing-filename-format")
t.is(h.data_file, nil, "no data file")
t.ok(tostring(h):find("^qcow2 v" .. E.header.version .. " header") ~= nil, "tostring(header)")
t.errors_like(function() return h.nope end, "no field 'nope' in header", "unknown header field raises")
t.errors_like(function() h.size = 1 end, "image opened read%-only; reopen with %-w",
              "assigning a header field on a read-only image raises (a raw edit needs -w)")
t.errors_like(function() h.features = {} end, "field 'features' of header is read%-only",
              "a decoded header field has no setter")
t.done()
