-- explain.lua: explain() verdicts on images poked by python (run.sh
-- make_crafted, facts in crafted.lua) and the problem table binding.
local t = require "qinspect.tap"
local X = require "qinspect.explain"
local E = dofile(arg[1])[arg[2]]
local C = dofile(E.dir .. "/crafted.lua")
local P = qinspect.problems

local function has(findings, name)
  for _, f in ipairs(findings) do if f.name == name then return true end end
  return false
end
local function open(name) return assert(qinspect.open(E.dir .. "/" .. name .. ".qcow2")) end

-- the problem table as bound from C, against the records parsed from the
-- C source (src/engine/problem.c: {QI_PROB_X, "name", QI_SEV_Y, "summary",
-- "explanation" ...}, string literals joined as the compiler joins them)
local src = assert(io.open(E.root .. "/src/engine/problem.c")):read("a")
src = assert(src:match("static const qi_problem table%[%] = {\n(.-\n)};"), "problem.c: table[] not found")
local want, order = {}, {}
for body in src:gmatch("{ (QI_PROB_.-) },\n") do
  local sev = body:match("^QI_PROB_[%w_]+, \"[%w_]+\", QI_SEV_(%u+),")
  local strs = {}
  for lit in body:gmatch('"(.-[^\\])"') do strs[#strs + 1] = lit:gsub('\\(.)', "%1") end
  local name = strs[1]
  want[name] = { severity = sev and sev:lower(), summary = strs[2],
                 explanation = table.concat(strs, "", 3) }
  order[#order + 1] = name
end
t.ok(#order >= 15, "problem.c parsed: " .. #order .. " records")
local n, pbad = 0, nil
for name, p in pairs(P) do
  n = n + 1
  local w = want[name]
  if not w then pbad = pbad or ("not in problem.c: " .. name)
  elseif p.name ~= name or p.severity ~= w.severity or p.summary ~= w.summary
      or p.explanation ~= w.explanation or order[p.order] ~= name then
    pbad = pbad or ("record differs from problem.c: " .. name)
  end
  if not p.severity:match("^%a+$") or #p.explanation < 40 then pbad = pbad or ("bad record " .. name) end
end
t.ok(n == #order and not pbad, "qinspect.problems has exactly problem.c's records (" .. n .. " of " .. #order .. ")")
if pbad then t.diag(pbad) end
t.is(P.copied_missing_dedup.severity, "note", "COPIED clear with refcount 1 on a dedup image is a note")
t.is(P.copied_missing.severity, "corruption", "... and a corruption on a plain image")
t.is(P.refcount_above_references.severity, "leak", "a refcount above the references is a leak, as qemu-img check counts it")
t.is(P.refcount_below_references.severity, "corruption", "... and a refcount below them a corruption")
t.ok(P.copied_missing_dedup.explanation:find("qemu%-img check"), "the dedup note says stock qemu-img check reports it")

-- a clean entry
local text, f = X.text(img:l2_for(0))
t.ok(#f == 0 and text:find("Verdict: valid"), "a clean L2 entry is valid")
t.ok(text:find("plain image:") and text:find("dedup image:") and text:find("plain verdict applies"),
     "an L2 entry states both COPIED verdicts and which applies")

-- COPIED cleared on a refcount-1 cluster
do
  local i <close> = open("nocopied")
  t.ok(C.nocopied.was_copied, "python: the entry had COPIED before the poke")
  t.is(i:refcount(C.nocopied.host), 1, "the cluster has refcount 1")
  local e = i:l2_for(0)
  local s, fs = X.text(e)
  t.ok(has(fs, "copied_missing") and not has(fs, "copied_missing_dedup"),
       "COPIED clear, refcount 1: copied_missing on this (plain) image")
  t.ok(s:find("plain image: corruption", 1, true) and s:find("dedup image: allowed", 1, true),
       "the text gives corruption for plain, allowed for dedup")
  t.ok(s:find("set exactly when the refcount", 1, true) and s:find(P.copied_missing.explanation, 1, true),
       "the text names the rule and uses the C table's explanation")
end

-- COPIED set on a shared cluster
do
  local i <close> = open("shared")
  local e = i:l2_for(C.shared.guest)
  t.ok(e.copied and i:refcount(C.shared.host) > 1, "the poked entry has COPIED and refcount > 1")
  local s, fs = X.text(e)
  t.ok(has(fs, "copied_but_shared"), "COPIED set with refcount > 1: copied_but_shared")
  t.ok(s:find("dedup image: corruption", 1, true), "... a corruption on a dedup image too")
  local e2 = i.snapshots[0].l1[0]:l2()[C.shared.guest // i.cluster_size]
  local s2, fs2 = X.text(e2)
  t.ok(#fs2 == 0 or not has(fs2, "copied_but_shared"), "the same cluster in a snapshot's table gets no COPIED verdict")
  t.ok(s2:find("only in a snapshot", 1, true), "... and the text says why")
end

-- refcount poked below the references
do
  local i <close> = open("overref")
  local e = i:l2_for(C.shared.guest)
  local _, fs = X.text(e)
  t.ok(C.overref.was > 1 and i:refcount(C.overref.host) == 1, "python poked the refcount from " .. C.overref.was .. " to 1")
  t.ok(has(fs, "refcount_below_references"), "the entry's cluster has more references than its refcount")
  t.ok(has(fs, "copied_missing"), "refcount 1 with COPIED clear is also reported")
  local cs = i.cluster_size
  local re = i.refcounts:block(0):entry(C.overref.host // cs)
  local _, fr = X.text(re)
  t.ok(has(fr, "refcount_below_references"), "explain(refcount entry) reports it too")
end

-- reserved bits and extended-L2 conflicts
do
  local i <close> = open("bits")
  t.ok(has(X.findings(i.l1[0]:l2()[0]), "l2_reserved_bits"), "reserved bit 1 of an L2 entry")
  local e = i.l1[0]:l2()[0]
  t.ok(e.reserved == 2 and e.raw & 2 == 2, "an invalid L2 entry is still shown as it is (reserved = 0x2)")
  t.errors_like(function() return i:read(0, 512) end, "has reserved bits set",
                "while reading the guest data it maps is refused")
  local k <close> = open("l1bits")
  t.ok(has(X.findings(k.l1[0]), "l1_reserved_bits"), "reserved bit 3 of an L1 entry")
  local j <close> = open("extbad")
  local _, fs = X.text(j.l1[0]:l2()[0])
  t.ok(has(fs, "subcluster_allocated_and_zero"), "subcluster 0 allocated and zero")
end

-- header fields and tables
local s = X.text(img.header, "l1_table_offset")
t.ok(s:find("header.l1_table_offset = " .. E.header.l1_table_offset, 1, true) and s:find("Verdict: valid"),
     "explain(header, field) gives the value and a verdict")
t.errors_like(function() X.text(img.header, "nope") end, "no header field 'nope'", "an unknown header field raises")
t.ok(X.text(img.refcounts[0]):find("Verdict: valid"), "a refcount table entry is valid")
t.ok(X.text(img.l1):find("L1 table"), "a table is explained")
t.ok(X.text(3):find("qinspect objects"), "a plain value gets a hint")

-- every object type the session can show explains without raising, and
-- says something about that object (issue 9: a test walks them all)
local objs = {
  { "image", img }, { "header", img.header }, { "L1 table", img.l1 }, { "L1 entry", img.l1[0] },
  { "L2 table", img.l1[0]:l2() }, { "L2 entry", img.l1[0]:l2()[0] },
  { "refcount table", img.refcounts }, { "refcount table entry", img.refcounts[0] },
  { "refcount block", img.refcounts:block(0) }, { "refcount entry", img.refcounts:block(0):entry(0) },
  { "snapshot table", img.snapshots }, { "snapshot", img.snapshots[0] },
}
local r = img:check{}
objs[#objs + 1] = { "finding (made up: the check of this image is clean)",
                    { code = "copied_missing", severity = "corruption", structure = "L2 entry",
                      offset = 4096, expected = 1, found = 2, qemu = "ERROR OFLAG_COPIED" } }
for _, b in ipairs(img.bitmaps or {}) do objs[#objs + 1] = { "bitmap", b } break end
local bad = {}
for _, o in ipairs(objs) do
  local ok, txt = pcall(X.text, o[2])
  if not ok or type(txt) ~= "string" or #txt < 20 or txt:find("works on qinspect objects", 1, true) then
    bad[#bad + 1] = o[1] .. ": " .. tostring(txt)
  end
end
t.ok(#bad == 0 and #objs >= 13, "explain works on " .. #objs .. " object types")
if #bad > 0 then t.diag(table.concat(bad, "\n")) end
t.ok(#r.findings == 0, "the image explained is clean (so its entries are valid)")
local ft = X.text(objs[13][2])
t.ok(ft:find("L2 entry at 0x1000", 1, true) and ft:find(P.copied_missing.explanation, 1, true)
     and ft:find("qemu-img check prints: ERROR OFLAG_COPIED", 1, true),
     "explain(finding) says where, the rule and qemu-img's line")
-- a snapshot (it has no .offset field: what it points to is its L1 table)
do
  local i = open("basic")
  local sn = i.snapshots[0]
  local ok, text = pcall(X.text, sn)
  t.ok(ok and type(text) == "string" and text:find(string.format("0x%x", sn.l1_table_offset), 1, true),
       "explain(img.snapshots[0]) does not raise and names its L1 table's cluster")
  ok = pcall(X.text, i.snapshots)
  t.ok(ok, "explain(img.snapshots) does not raise")
  i:close()
end

t.done()
