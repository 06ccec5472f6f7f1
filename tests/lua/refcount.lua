-- refcount.lua: img:refcount(host_offset) for every cluster of the file
-- against the refcount blocks decoded by python (any width).
local t = require "qinspect.tap"
local E = dofile(arg[1])[arg[2]]
local cs, bad, nonzero = E.cluster_size, nil, 0
for i = 0, E.file_clusters - 1 do
  local want = E.refcounts[i]
  local a, b = img:refcount(i * cs), img:refcount(i * cs + cs - 1)
  if want > 0 then nonzero = nonzero + 1 end
  if a ~= want or b ~= want then
    bad = bad or string.format("cluster %d: got %d/%d, want %d", i, a, b, want)
  end
end
t.ok(not bad, "refcount of every host cluster (" .. E.file_clusters .. ") matches")
if bad then t.diag(bad) end
t.ok(nonzero > 2, "some clusters are referenced")
t.is(img:refcount(E.header.l1_table_offset), E.refcounts[E.header.l1_table_offset // cs],
     "refcount of the L1 table's cluster")
t.is(img:refcount(E.file_clusters * cs * 4), 0, "refcount far past the end of file is 0")
t.errors_like(function() return img:refcount(-1) end, "offset is negative", "negative offset raises")
t.done()
