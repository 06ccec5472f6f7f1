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

-- Descriptors of this process open on the image file, counted by ls in
-- /proc/PID/fd (the pid read from /proc/self/stat by this process; the
-- path resolved as /proc shows it).
local pid = assert(io.open("/proc/self/stat")):read("l"):match("^%d+")
local rp = assert(io.popen("readlink -f '" .. E.path:gsub("'", "'\\''") .. "'"))
local real = rp:read("l")
rp:close()
local function open_fds()
  local p = assert(io.popen("ls -l /proc/" .. pid .. "/fd/"))
  local c = 0
  for l in p:lines() do if l:sub(-#real - 4) == " -> " .. real then c = c + 1 end end
  p:close()
  return c
end
local fds = open_fds()
t.ok(fds >= 1, "the session's image is seen open in /proc/" .. pid .. "/fd (" .. fds .. ")")

-- children pin the image: dropping every reference to it keeps it usable
local pinned = assert(qinspect.open(E.path)).l1[0]
collectgarbage(); collectgarbage()
local okp, praw = pcall(function() return pinned.raw end)
t.ok(okp and praw == E.l1[1], "a child keeps its image alive through the collector (" .. tostring(praw) .. ")")
t.is(open_fds(), fds + 1, "... and its file stays open")
pinned = nil
collectgarbage(); collectgarbage()
t.is(open_fds(), fds, "dropping the child closes the image's file")
collectgarbage("stop")
for _ = 1, 50 do qinspect.open(E.path) end
t.is(open_fds(), fds + 50, "50 unreferenced images hold 50 descriptors until collected")
collectgarbage("restart"); collectgarbage(); collectgarbage()
t.is(open_fds(), fds, "__gc closed all 50 unreferenced images")

-- fields: read-only, unknown names
t.errors_like(function() img.l1[0].raw = 0 end, "image opened read%-only; reopen with %-w",
              "L1 raw (a raw edit) on a read-only image asks for -w")
t.errors_like(function() img:l2_for(0).compressed = false end,
              "field 'compressed' of L2 entry is read%-only", "L2 compressed is read-only")
t.errors_like(function() img:l2_for(0).copied = false end, "image opened read%-only; reopen with %-w",
              "L2 copied (a raw edit) on a read-only image asks for -w")
t.errors_like(function() img:l2_for(0).index = 3 end, "derived", "a position field says why")
t.errors_like(function() img.size = 0 end, "field 'size' of image is read%-only", "img.size is read-only")
t.errors_like(function() return img:l2_for(0).nope end, "no field 'nope' in L2 entry", "unknown field raises")
t.errors_like(function() img.nope = 1 end, "no field 'nope' in image", "assigning an unknown field raises")

-- __tostring and __eq
local e = img:l2_for(0)
t.ok(tostring(e):find(string.format("0x%016x", e.raw), 1, true), "tostring(L2 entry) shows raw as 0x%016x")
t.ok(tostring(img.l1[0]):find(string.format("0x%016x", E.l1[1]), 1, true), "tostring(L1 entry) shows raw")
local ES = dofile(arg[1]).small
local small <close> = assert(qinspect.open(ES.path))
do -- basic's clusters are all shared with snapshots; small has COPIED entries
  local c = small:l2_for(0)
  local want = ES.l2[ES.l1[1] & 0x00fffffffffffe00][0]
  t.ok(want.raw < 0 and c.raw == want.raw and c.copied and c.host_offset == want.host_offset,
       "raw with COPIED (bit 63) is a negative integer; copied and host_offset are decoded")
end
-- __eq: same type, same image, same coordinates. Each lookup makes a new
-- userdata, so == goes through __eq.
local e0, t2 = img:l2_for(0)
t.ok(not rawequal(e0, img.l1[0]:l2()[0]) and not rawequal(img.l1[0], img.l1[0]),
     "each lookup returns a new object")
t.ok(e0 == img.l1[0]:l2()[0] and t2 == img.l1[0]:l2() and img.l1[0] == img.l1[0]
     and small.l1[3] == small.l1[3] and img.snapshots[0].l1[0] == img.snapshots[0].l1[0],
     "objects with the same coordinates are equal")
t.ok(#small.l1 > 3 and small.l1[0] ~= small.l1[3] and small.l1[3] ~= small.l1[0]
     and e0 ~= img.l1[0]:l2()[1] and small:l2_for(0) ~= small.l1[1]:l2()[0]
     and img.snapshots[0].l1[0] ~= img.l1[0] and img.snapshots[0].l1[0] ~= img.snapshots[1].l1[0],
     "objects at different indexes or in different tables are not equal")
local other <close> = assert(qinspect.open(E.path))
t.ok(other.l1[0] ~= img.l1[0] and other:l2_for(0) ~= e0 and small.l1[0] ~= img.l1[0]
     and img.l1[0] ~= img.refcounts[0] and img.refcounts[0] == img.refcounts[0],
     "the same coordinates in another image, or another type, are not equal")

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
local function same_runs(iter, want)
  local runs = {}
  for x in iter do runs[#runs + 1] = x end
  if #want == 0 then return "qemu-img map gave no runs" end
  if #runs ~= #want then return "count " .. #runs .. " want " .. #want end
  for i, w in ipairs(want) do
    for _, k in ipairs { "start", "length", "depth", "present", "zero", "data", "offset" } do
      if runs[i][k] ~= w[k] then
        return string.format("run %d %s: %s want %s", i, k, tostring(runs[i][k]), tostring(w[k]))
      end
    end
  end
end
local mbad = same_runs(img:map(), E.map)
t.ok(not mbad, "img:map() runs equal qemu-img map --output=json (" .. #E.map .. " runs)")
if mbad then t.diag(mbad) end
mbad = same_runs(img:map(12288, 1056768), E.submap or {})
t.ok(not mbad, "img:map(12288, 1056768) equals qemu-img map --start-offset 12288 --max-length 1056768")
if mbad then t.diag(mbad) end

-- help metadata comes from the metatables
local mt = getmetatable(img:l2_for(0))
local names = {}
for _, f in ipairs(mt.__qi_fields) do names[f.name] = f.writable end
t.ok(names.raw == true and names.host_offset == true and names.copied == true and
     names.compressed == false and names.csectors == false and mt.__qi_label == "L2 entry",
     "the L2 entry metatable lists its fields: raw, host_offset, copied writable (raw edits), the rest not")
local printed, real_print = {}, print
print = function(...)
  local p = table.pack(...)
  for i = 1, p.n do p[i] = tostring(p[i]) end
  printed[#printed + 1] = table.concat(p, "\t")
end
local okh, hr = pcall(help, img)
print = real_print
local htext, hmiss = table.concat(printed, "\n"), nil
for _, m in ipairs { "read", "l2_for", "map", "refcount", "backing", "owners", "close", "read_snapshot" } do
  if not htext:find("\n  :" .. m .. "(", 1, true) then hmiss = hmiss or ":" .. m end
end
for _, f in ipairs { "path", "size", "cluster_size", "header", "l1", "snapshots", "refcounts" } do
  if not htext:find("\n  ." .. f .. " ", 1, true) then hmiss = hmiss or "." .. f end
end
t.ok(okh and hr == nil and htext:find("^image") and not hmiss,
     "help(img) prints the image's methods and fields" .. (hmiss and " (missing " .. hmiss .. ")" or ""))
t.ok(qinspect.pretty == require("qinspect.pretty") and qinspect.pretty.paging ~= nil,
     "qinspect.pretty is the pretty printer, with its paging switch")
-- pairs on table objects walks them as :entries() does (0-based)
do
  local i = assert(qinspect.open(E.path))
  for _, tab in ipairs({ i.snapshots, i.l1, i.l1[0]:l2() }) do
    local n, okidx = 0, true
    for k, v in pairs(tab) do
      okidx = okidx and k == n and v == tab[k]
      n = n + 1
    end
    t.ok(okidx and n == #tab and n > 0, "pairs(" .. tostring(tab) .. ") gives " .. #tab .. " entries, 0-based")
  end
  -- the header summary gives the cluster size in units, not its bit count
  local cs = i.cluster_size
  local unit = cs >= 1 << 20 and (cs >> 20) .. " MiB" or cs >= 1024 and (cs >> 10) .. " KiB" or cs .. " B"
  t.ok(tostring(i.header):find(unit .. " clusters", 1, true) ~= nil,
       "tostring(header) says '" .. unit .. " clusters': " .. tostring(i.header))
  i:close()
end

-- the pretty printer shows raw values as 0x%016x and offsets in hex in
-- plain records (bit 63 set must not print as a negative decimal)
do
  local P = require "qinspect.pretty"
  local text = P.format({ raw = 1 << 63 | 0x50000, host_offset = 0x50000, index = 3 })
  t.ok(text:find("raw = 0x8000000000050000", 1, true) and text:find("host_offset = 0x50000", 1, true)
       and text:find("index = 3", 1, true), "pp: raw as 0x%016x, offsets as 0x%x, counts in decimal")
end

t.done()
