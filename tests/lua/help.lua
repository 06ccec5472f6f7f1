-- help.lua: help topics exist and state the key rules; help(obj) lists the
-- metatables' methods and fields; doc/qinspect.1's LUA API section names
-- exactly the methods of every object type (both directions).
local t = require "qinspect.tap"
local H = require "qinspect.help"
local E = dofile(arg[1])[arg[2]]

local want = { "cluster-types", "copied", "refcount-widths", "snapshots", "compressed",
               "subclusters", "backing-chains", "feature-bits", "bitmaps", "problems" }
local topics = {}
for _, n in ipairs(H.topics()) do topics[n] = true end
for _, n in ipairs(want) do t.ok(topics[n] and #H.text(n) > 200, "topic '" .. n .. "' exists") end
t.ok(H.text("topics"):find("copied", 1, true), "help 'topics' lists them")
local c = H.text("copied")
t.ok(c:find("refcount is above 1: corruption", 1, true) or c:find("refcount > 1 is still corruption", 1, true),
     "copied: COPIED set with refcount > 1 is corruption")
t.ok(c:find("COPIED clear with refcount 1 is allowed", 1, true) and c:find("qemu-img check", 1, true),
     "copied: clear with refcount 1 allowed on dedup, though qemu-img check reports it")
t.ok(H.text("compressed"):find("x = 62 - (cluster_bits - 8)", 1, true)
     and H.text("compressed"):find("csize    = csectors * 512 - (offset mod 512)", 1, true),
     "compressed: the x and csize rules")
t.ok(H.text("refcount-widths"):find("least", 1, true) and H.text("refcount-widths"):find("big-endian", 1, true),
     "refcount widths: LSB-first packing below 8 bits, big-endian above")
t.ok(H.text("subclusters"):find("32 + x", 1, true), "subclusters: the zero bit of subcluster x")
t.ok(H.text("no-such-topic"):find("no help topic"), "an unknown topic says so")
t.ok(H.text():find("explain", 1, true), "help() mentions explain")

-- help(obj) from the metatables, with each field's doc string
local mt = getmetatable(img.refcounts)
local txt = H.text(img.refcounts)
local okf = #mt.__qi_fields >= 3 and #mt.__qi_methods >= 1 -- offset, refcount_bits, ...; block()
for _, f in ipairs(mt.__qi_fields) do
  if not txt:find("." .. f.name, 1, true) or not txt:find(f.doc, 1, true) then okf = false end
end
for _, m in ipairs(mt.__qi_methods) do if not txt:find(":" .. m .. "(", 1, true) then okf = false end end
t.ok(okf, "help(img.refcounts) lists every field with its doc and every method ("
     .. #mt.__qi_fields .. " fields, " .. #mt.__qi_methods .. " methods)")

-- man page: the LUA API section against every metatable's method list
local f = assert(io.open(E.root .. "/doc/qinspect.1"))
local man = f:read("a")
f:close()
local sec = man:match("\n%.SH LUA API\n(.-)\n%.SH ") or man:match("\n%.SH LUA API\n(.*)$")
t.ok(sec ~= nil, "doc/qinspect.1 has a LUA API section")
sec = sec or ""
local documented = {}
for label, name in sec:gmatch("\n%.TP\n%.B ([%w_]+):([%w_]+)") do
  documented[label .. ":" .. name] = true
end
local actual, missing, extra = {}, {}, {}
local ndoc, nact, labels = 0, 0, 0
for _ in pairs(documented) do ndoc = ndoc + 1 end
for k, v in pairs(debug.getregistry()) do
  if type(k) == "string" and type(v) == "table" and v.__qi_label then
    labels = labels + 1
    nact = nact + #v.__qi_methods
    local short = k:gsub("^qinspect%.", "")
    for _, m in ipairs(v.__qi_methods) do
      actual[short .. ":" .. m] = true
      if not documented[short .. ":" .. m] then missing[#missing + 1] = short .. ":" .. m end
    end
  end
end
for k in pairs(documented) do if not actual[k] then extra[#extra + 1] = k end end
table.sort(missing); table.sort(extra)
-- both lists must be there: two empty lists would agree and prove nothing
t.ok(labels >= 8 and nact >= 20 and ndoc >= 20,
     "the registry has the object types (" .. labels .. ", " .. nact .. " methods) and the man page "
     .. ndoc .. " methods")
t.ok(#missing == 0, "every method is documented in LUA API")
if #missing > 0 then t.diag("undocumented: " .. table.concat(missing, ", ")) end
t.ok(#extra == 0, "every documented method exists")
if #extra > 0 then t.diag("no such method: " .. table.concat(extra, ", ")) end

-- every method has a signature in help.lua, shown by help(obj) and help(fn)
local nosig, nmeth = {}, 0
for k, v in pairs(debug.getregistry()) do
  if type(k) == "string" and type(v) == "table" and v.__qi_label then
    for _, m in ipairs(v.__qi_methods) do
      nmeth = nmeth + 1
      if not (H.signatures[k] and H.signatures[k][m]) then nosig[#nosig + 1] = k .. ":" .. m end
    end
  end
end
table.sort(nosig)
t.ok(nmeth >= 20 and #nosig == 0, "every method (" .. nmeth .. ") has a signature in help.lua")
if #nosig > 0 then t.diag("no signature: " .. table.concat(nosig, ", ")) end
t.ok(H.text(img):find(":read(offset, length) -> string", 1, true), "help(img) shows signatures")
local rd = H.text(img.read)
t.ok(rd:find("image method", 1, true) and rd:find("obj:read(offset, length)", 1, true),
     "help(img.read) names the method and its signature: " .. rd:gsub("\n.*", ""))
t.ok(H.text(print):find("no help", 1, true), "help(print) says there is none")

-- presentation: cluster size in bytes, raw values of records in hex, pairs on lists
t.ok(tostring(img.header):find(" KiB clusters", 1, true)
     or tostring(img.header):find(" B clusters", 1, true),
     "the header summary names the cluster size: " .. tostring(img.header))
local P = require "qinspect.pretty"
local shown = P.format({ raw = -9223372036854710272, n = 5 })
t.ok(shown:find("raw = 0x8000000000010000", 1, true) and shown:find("n = 5", 1, true),
     "pp shows a record's raw field in hex: " .. shown:gsub("%s+", " "))
local seen = {}
for i, e in pairs(img.l1) do seen[#seen + 1] = i .. "=" .. e.index end
t.ok(#seen == #img.l1 and seen[1] == "0=0", "pairs(img.l1) walks entries 0.. like :entries()")
t.done()
