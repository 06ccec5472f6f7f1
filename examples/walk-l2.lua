-- walk-l2.lua: walk the active L2 tables and print a summary.
--   qinspect IMAGE examples/walk-l2.lua
-- Prints the number of L2 tables the active L1 table points to and, for
-- each cluster type that occurs, how many L2 entries have it.
local tables, types = 0, {}
for _, l1e in img.l1:entries() do
  local l2 = l1e:l2()
  if l2 then
    tables = tables + 1
    for _, e in l2:entries() do
      local ty = e.type
      if ty ~= "unallocated" then types[ty] = (types[ty] or 0) + 1 end
    end
  end
end
print(string.format("L2 tables: %d", tables))
local names = {}
for ty in pairs(types) do names[#names + 1] = ty end
table.sort(names)
for _, ty in ipairs(names) do print(string.format("%s: %d", ty, types[ty])) end
