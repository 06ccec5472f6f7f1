-- snapshots.lua: img.snapshots against qemu-img info --output=json and the
-- snapshot table bytes; snapshot views against
-- `qemu-img convert -l snapshot.name=...`.
local t = require "qinspect.tap"
local E = dofile(arg[1])[arg[2]]
local snaps = img.snapshots
t.is(#E.snapshots, 2, "python reads the two snapshots run.sh made (snap1, snap2)")
t.is(#snaps, #E.snapshots, "#img.snapshots is the number qemu-img lists")
t.is(snaps.offset, E.header.snapshots_offset, "snapshots.offset is the header's")
for i, want in ipairs(E.snapshots) do
  local s = snaps[i - 1]
  local bad
  for _, k in ipairs { "id", "name", "date_sec", "date_nsec", "vm_clock_nsec", "vm_state_size",
                       "l1_table_offset", "l1_size", "entry_offset" } do
    local w = want[k]
    if s[k] ~= w then bad = (bad or "") .. " " .. k .. "=" .. tostring(s[k]) .. " want " .. tostring(w) end
  end
  t.ok(not bad and s.id == want.json_id and s.name == want.json_name,
       "snapshot " .. (i - 1) .. " fields match qemu-img and the table bytes")
  if bad then t.diag(bad) end
  t.is(s.index, i - 1, "snapshot index")
  local l1, lbad = s.l1, nil
  t.ok(#l1 == want.l1_size and l1.snapshot == i - 1 and l1.offset == want.l1_table_offset,
       "snapshot " .. (i - 1) .. " l1 table coordinates")
  for j = 0, #l1 - 1 do if l1[j].raw ~= want.l1[j + 1] then lbad = j end end
  t.ok(not lbad, "snapshot " .. (i - 1) .. " L1 entries equal the table bytes")
  local f = assert(io.open(E.dir .. "/basic." .. want.name .. ".raw", "rb"))
  local view = f:read("a")
  f:close()
  t.ok(img:read_snapshot(want.name, 0, #view) == view,
       "read_snapshot('" .. want.name .. "') equals qemu-img convert -l")
  t.ok(img:read_snapshot(i - 1, 4096, 8192) == view:sub(4097, 12288), "read_snapshot by index")
  t.ok(s:read(0, 65536) == view:sub(1, 65536), "snap:read")
end
local cnt = 0
for i, s in snaps:entries() do cnt = cnt + 1; assert(s.index == i) end
t.is(cnt, #E.snapshots, "snapshots:entries() visits each")
t.is(snaps:find("snap2").index, 1, "find by name")
t.is(snaps:find("1").name, "snap1", "find by id")
t.is(snaps:find("nope"), nil, "find of an unknown name is nil")
t.is(snaps[#snaps], nil, "snaps[#snaps] is nil")
t.errors_like(function() return img:read_snapshot("nope", 0, 1) end, "no snapshot with id or name 'nope'",
              "read_snapshot of an unknown name raises")
t.errors_like(function() return img:read_snapshot(0, img.size, 1) end, "beyond the snapshot",
              "read_snapshot past the end raises an engine error")
t.ok(img:read_snapshot(0, 0, 4096) ~= img:read(0, 4096), "the snapshot view differs from the active one")
t.ok(tostring(snaps[0]):find("snap1", 1, true) ~= nil, "tostring(snapshot)")
t.errors_like(function() snaps[0].name = "x" end, "field 'name' of snapshot is read%-only",
              "renaming a snapshot raises")
t.done()
