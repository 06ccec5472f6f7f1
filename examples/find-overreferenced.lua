-- find-overreferenced.lua: clusters referenced more times than their
-- refcount says (qemu-img check calls this a corruption: freeing one owner
-- would free the cluster under the others).
--   qinspect IMAGE examples/find-overreferenced.lua
-- Prints "cluster 0xOFF refcount R references N" for each such cluster,
-- each owner indented below it, then the count.
local cs = img.cluster_size
local clusters = (img.file_size + cs - 1) // cs
local found = 0
for c = 0, clusters - 1 do
  local off = c * cs
  local owners = img:owners(off)
  local rc = img:refcount(off)
  if #owners > rc then
    found = found + 1
    print(string.format("cluster 0x%x refcount %d references %d", off, rc, #owners))
    for _, o in ipairs(owners) do
      print(string.format("  %s%s", o.kind, o.snapshot and (" of snapshot " .. o.snapshot) or ""))
    end
  end
end
print(string.format("over-referenced clusters: %d", found))
