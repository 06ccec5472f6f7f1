-- snapshot_ops.lua: img:snapshot_create/apply/delete on a copy of basic.qcow2
-- opened with -w. run.sh does the same steps with qemu-img snapshot and
-- qemu-io on another copy and compares the files byte for byte afterwards;
-- here: what the session sees at each step, against the raw views
-- qemu-img convert made (E.dir/basic.<snapshot>.raw, basic.raw).
local t = require "qinspect.tap"
local E = dofile(arg[1])[arg[2]]
local function slurp(p)
  local f = assert(io.open(p, "rb"))
  local s = f:read("a")
  f:close()
  return s
end
local n0 = #img.snapshots
t.is(n0, 2, "basic.qcow2 starts with the two snapshots run.sh made")
local active = img:read(0, img.size)
local id = img:snapshot_create("lua1")
t.is(id, "3", "snapshot_create returns the new id (one more than the largest)")
t.is(#img.snapshots, n0 + 1, "img.snapshots shows the new snapshot at once")
t.is(img.snapshots[n0].name, "lua1", "the new entry is last, with its name")
t.ok(img:read_snapshot("lua1", 0, #active) == active, "the new snapshot reads as the active state")
img:write(0, string.rep("\x5a", 4096))
t.ok(img:read_snapshot("lua1", 0, 4096) == active:sub(1, 4096),
     "a write after the snapshot leaves the snapshot's data alone (COPIED was cleared)")
img:snapshot_apply("snap1")
local view = slurp(E.dir .. "/basic.snap1.raw")
t.ok(img:read(0, #view) == view, "after snapshot_apply('snap1') the active view is snap1's")
img:snapshot_delete("2")
t.is(#img.snapshots, n0, "snapshot_delete('2') (by id) removes one entry at once")
t.ok(img.snapshots[0].name == "snap1" and img.snapshots[1].name == "lua1",
     "snap2 (id 2) is the one gone")
local ok, err = pcall(img.snapshot_apply, img, "nope")
t.ok(not ok and type(err) == "table" and err.code == "ENOENT" and
     tostring(err):find("nope", 1, true) ~= nil, "a missing snapshot raises ENOENT naming it")
ok, err = pcall(img.snapshot_delete, img, "nope")
t.ok(not ok and err.code == "ENOENT", "snapshot_delete of a missing snapshot raises ENOENT")
t.errors_like(function() img:snapshot_create() end, "bad argument #1 to 'snapshot_create'",
              "snapshot_create needs a name")
img:flush()
t.done()
