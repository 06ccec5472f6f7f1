-- find-overreferenced.lua: clusters referenced more times than their
-- refcount says (qemu-img check calls this a corruption: freeing one owner
-- would free the cluster under the others).
--   qinspect IMAGE examples/find-overreferenced.lua
-- Prints "cluster 0xOFF refcount R references N" for each such cluster,
-- each owner indented below it, then the count.
local cs = img.cluster_size
-- one pass over all metadata: references per host cluster (a compressed
-- cluster's byte range counts for every cluster it touches, as in QEMU)
local count, last = {}, (img.file_size + cs - 1) // cs - 1
for _, r in ipairs(img:references()) do
  if r.length > 0 then
    for c = r.host_offset // cs, (r.host_offset + r.length - 1) // cs do
      count[c] = (count[c] or 0) + 1
      if c > last then last = c end
    end
  end
end
local found = 0
for c = 0, last do
  local n = count[c] or 0
  local off = c * cs
  local rc = n > 0 and img:refcount(off) or 0
  if n > rc then
    found = found + 1
    print(string.format("cluster 0x%x refcount %d references %d", off, rc, n))
    for _, o in ipairs(img:owners(off)) do
      print(string.format("  %s%s", o.kind, o.snapshot and (" of snapshot " .. o.snapshot) or ""))
    end
  end
end
print(string.format("over-referenced clusters: %d", found))
