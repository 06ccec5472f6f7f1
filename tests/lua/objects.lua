-- objects.lua: qinspect.open results, closing (<close>, explicit, __gc),
-- pinning, read-only fields, structured errors, __tostring, map against
-- `qemu-img map --output=json`.
local t = require "qinspect.tap"
local E = dofile(arg[1])[arg[2]]

-- open failures: nil, message, code (io.open style)
local missing = E.dir .. "/missing.qcow2"
local r, msg, code = qinspect.open(missing)
t.ok(r == nil and code == "ENOENT", "missing file: nil, message, 'ENOENT' (got " .. tostring(code) .. ")")
t.ok(type(msg) == "string" and msg:find(missing, 1, true) == 1, "the message starts with the file name")
r, msg, code = qinspect.open(E.dir .. "/text.img")
t.ok(r == nil and type(code) == "string" and code:match("^E%u+$") and msg:find("text.img", 1, true),
     "a text file is refused with a symbolic code (" .. tostring(code) .. ")")
t.errors_like(function() qinspect.open(E.path, { rw = true, bogus = 1 }) end, "unknown option 'bogus'",
              "an unknown open option raises")
t.errors_like(function() qinspect.open() end, "string expected", "open without a path raises")

-- closing
local outer
do
  local i <close> = assert(qinspect.open(E.path))
  outer = i
  t.ok(tostring(i):find("(ro, 64 KiB clusters)", 1, true), "tostring(image) while open")
end
t.is(tostring(outer), "image '" .. E.path .. "' (closed)", "<close> closed the image")
t.errors_like(function() return outer:read(0, 1) end, "image is closed", "reading a closed image raises")
t.errors_like(function() return outer.size end, "image is closed", "a property of a closed image raises")
local j = assert(qinspect.open(E.path))
local e1, hdr, tab = j.l1[0], j.header, j.l1[0]:l2()
j:close()
t.errors_like(function() return e1.raw end, "image is closed", "an L1 entry of a closed image raises")
t.errors_like(function() return hdr.version end, "image is closed", "the header of a closed image raises")
t.errors_like(function() return tab[0] end, "image is closed", "an L2 table of a closed image raises")
t.errors_like(function() j:close() end, "image is closed", "closing twice raises")

-- children pin the image: dropping every reference to it keeps it usable
local pinned = assert(qinspect.open(E.path)).l1[0]
collectgarbage(); collectgarbage()
t.is(pinned.raw, E.l1[1], "a child keeps its image alive through the collector")
for _ = 1, 50 do qinspect.open(E.path) end
collectgarbage(); collectgarbage()
t.ok(true, "50 unreferenced images collected by __gc")

-- fields: read-only, unknown names
t.errors_like(function() img.l1[0].raw = 0 end, "field 'raw' of L1 entry is read%-only", "L1 raw is read-only")
t.errors_like(function() img:l2_for(0).copied = false end, "field 'copied' of L2 entry is read%-only",
              "L2 copied is read-only")
t.errors_like(function() img:l2_for(0).index = 3 end, "derived", "a position field says why")
t.errors_like(function() img.size = 0 end, "field 'size' of image is read%-only", "img.size is read-only")
t.errors_like(function() return img:l2_for(0).nope end, "no field 'nope' in L2 entry", "unknown field raises")
t.errors_like(function() img.nope = 1 end, "no field 'nope' in image", "assigning an unknown field raises")

-- __tostring and __eq
local e = img:l2_for(0)
t.ok(tostring(e):find(string.format("0x%016x", e.raw), 1, true), "tostring(L2 entry) shows raw as 0x%016x")
t.ok(tostring(img.l1[0]):find(string.format("0x%016x", E.l1[1]), 1, true), "tostring(L1 entry) shows raw")
do -- basic's clusters are all shared with snapshots; small has COPIED entries
  local small <close> = assert(qinspect.open(dofile(arg[1]).small.path))
  local c = small:l2_for(0)
  t.ok(c.raw < 0 and c.copied and c.host_offset > 0,
       "raw with COPIED (bit 63) is a negative integer; copied and host_offset are decoded")
end
local _, t2 = img:l2_for(0)
t.ok(t2 == img.l1[0]:l2() and img.l1[0] == img.l1[0] and img.l1[0] ~= img.l1[1 % #img.l1 + 0] or #img.l1 == 1,
     "objects with the same coordinates are equal")

-- structured engine errors
local bad = assert(qinspect.open(E.dir .. "/bad.qcow2"))
local okay, err = pcall(bad.read, bad, 0, 512)
t.ok(not okay and type(err) == "table" and err.code == "ECORRUPT", "an engine failure raises {code='ECORRUPT'}")
t.ok(type(err) == "table" and err.file == bad.path and type(err.structure) == "string"
     and math.type(err.offset) == "integer" and type(err.message) == "string",
     "the error object has file, structure, offset, message")
local line = tostring(err)
t.ok(line:find(bad.path, 1, true) == 1 and not line:find("\n"), "tostring(error) is one line naming the file")
bad:close()

-- map: the same runs as qemu-img map --output=json
local runs = {}
for x in img:map() do runs[#runs + 1] = x end
local mbad
if #runs ~= #E.map then mbad = "count " .. #runs .. " want " .. #E.map end
for i, want in ipairs(E.map) do
  local x = runs[i] or {}
  for _, k in ipairs { "start", "length", "depth", "present", "zero", "data", "offset" } do
    if x[k] ~= want[k] then mbad = mbad or ("run " .. i .. " " .. k) end
  end
end
t.ok(not mbad, "img:map() runs equal qemu-img map --output=json")
if mbad then t.diag(mbad) end
local sub = {}
for x in img:map(65536, 1048576) do sub[#sub + 1] = x end
t.ok(#sub > 0 and sub[1].start == 65536 and sub[#sub].start + sub[#sub].length == 65536 + 1048576,
     "img:map(start, length) covers exactly the range")

-- help metadata comes from the metatables
local mt = getmetatable(img:l2_for(0))
local names = {}
for _, f in ipairs(mt.__qi_fields) do names[f.name] = f.writable end
t.ok(names.raw == false and names.host_offset == false and mt.__qi_label == "L2 entry",
     "the L2 entry metatable lists its fields, none writable yet")
t.ok(help(img) == nil, "help(obj) runs")
t.ok(qinspect.pretty == require("qinspect.pretty") and qinspect.pretty.paging ~= nil,
     "qinspect.pretty is the pretty printer, with its paging switch")
t.done()
