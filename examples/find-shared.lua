-- find-shared.lua: every host cluster with refcount > 1, and who owns it.
--   qinspect IMAGE examples/find-shared.lua
-- Prints one line per shared cluster, then one indented line per owner
-- (img:owners: L1/L2 entries of the active tables and of every snapshot,
-- and fixed metadata), then the number of shared clusters. The first
-- img:owners() call indexes every reference; the others answer from the
-- index. Lines go out through io.write (print flushes every line).
local cs = img.cluster_size
local clusters = (img.file_size + cs - 1) // cs
local shared = 0
for c = 0, clusters - 1 do
  local off = c * cs
  local rc = img:refcount(off)
  if rc > 1 then
    shared = shared + 1
    local out = { string.format("cluster 0x%x refcount %d", off, rc) }
    for _, o in ipairs(img:owners(off)) do
      local where = o.snapshot and ("snapshot " .. o.snapshot) or "active"
      if o.kind == "L2 entry" then
        out[#out + 1] = string.format("  %s L2 entry %d of table 0x%x (guest 0x%x) %s", where,
                                      o.index, o.table_offset, o.guest_offset, o.type)
      elseif o.kind == "L1 entry" then
        out[#out + 1] = string.format("  %s L1 entry %d of table 0x%x", where, o.index, o.table_offset)
      else
        out[#out + 1] = "  " .. o.kind
      end
    end
    io.write(table.concat(out, "\n"), "\n")
  end
end
print(string.format("shared clusters: %d", shared))
