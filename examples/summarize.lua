-- summarize.lua: one JSON object per image, one per line.
--   qinspect ANY-IMAGE examples/summarize.lua [DIR | PATH]...
-- Each argument is a directory (every regular file in it, sorted) or an
-- image path; with no argument the session's own image is summarised.
-- For each image: format facts, allocation counts of the active L2 tables,
-- and the problems found by the read-side checks of explain() (every
-- active L1/L2 entry, and the refcount of every host cluster against its
-- references). An image that cannot be opened gives {"path", "error",
-- "code"}.
local explain = require "qinspect.explain"

local LISTS = setmetatable({}, { __mode = "k" }) -- tables to encode as arrays even when empty

local function json(v)
  local t = type(v)
  if t == "nil" then return "null" end
  if t == "boolean" or t == "number" then return tostring(v) end
  if t == "string" then
    return '"' .. v:gsub('[%c"\\]', function(c)
      return string.format("\\u%04x", c:byte())
    end) .. '"'
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  if #keys == 0 then return LISTS[v] and "[]" or "{}" end
  if #v > 0 or LISTS[v] then
    local parts = {}
    for i = 1, #v do parts[i] = json(v[i]) end
    return "[" .. table.concat(parts, ",") .. "]"
  end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = json(tostring(k)) .. ":" .. json(v[k]) end
  return "{" .. table.concat(parts, ",") .. "}"
end

local function paths_of(a)
  local p = io.popen("find '" .. a:gsub("'", "'\\''") .. "' -maxdepth 1 -type f 2>/dev/null | sort")
  local out = {}
  for line in p:read("a"):gmatch("[^\n]+") do out[#out + 1] = line end
  p:close()
  return out
end

local function is_dir(a)
  local p = io.popen("test -d '" .. a:gsub("'", "'\\''") .. "' && echo d")
  local r = p:read("a")
  p:close()
  return r:find("d") ~= nil
end

local function problems(i, out)
  local counts = {}
  local function note(findings)
    for _, f in ipairs(findings) do counts[f.name] = (counts[f.name] or 0) + 1 end
  end
  for _, e1 in i.l1:entries() do
    note(explain.findings(e1, { refs = false }))
    local t = e1.l2_offset % i.cluster_size == 0 and e1.l2_offset < i.file_size and e1:l2()
    if t then
      for _, e in t:entries() do
        if e.raw ~= 0 or (e.bitmap or 0) ~= 0 then note(explain.findings(e, { refs = false })) end
      end
    end
  end
  local cs = i.cluster_size
  -- references per host cluster in one pass over all metadata
  local refcount_of = {}
  for _, r in ipairs(i:references()) do
    if r.length > 0 then
      for c = r.host_offset // cs, (r.host_offset + r.length - 1) // cs do
        refcount_of[c] = (refcount_of[c] or 0) + 1
      end
    end
  end
  for c = 0, (i.file_size + cs - 1) // cs - 1 do
    local rc, refs = i:refcount(c * cs), refcount_of[c] or 0
    local name = (refs > 0 and rc == 0) and "refcount_zero_referenced"
      or rc < refs and "refcount_below_references" or rc > refs and "refcount_above_references"
    if name then counts[name] = (counts[name] or 0) + 1 end
  end
  for name in pairs(counts) do out[#out + 1] = { problem = name, count = counts[name],
                                                 severity = qinspect.problems[name].severity } end
  table.sort(out, function(a, b) return a.problem < b.problem end)
  return out
end

local function summarize(path)
  local i, msg, code = qinspect.open(path)
  if not i then return { path = path, error = msg, code = code } end
  local r = { path = path, format = i.format, virtual_size = i.size, file_size = i.file_size }
  if i.format == "qcow2" then
    local h = i.header
    r.version, r.cluster_size, r.refcount_bits = h.version, i.cluster_size, i.refcount_bits
    r.extended_l2, r.compression_type = i.extended_l2, h.compression_type == 1 and "zstd" or "zlib"
    r.backing_file, r.snapshots = h.backing_file, #i.snapshots
    local alloc = { normal = 0, zero = 0, ["zero-allocated"] = 0, compressed = 0, l2_tables = 0 }
    local ok, err = pcall(function()
      for _, e1 in i.l1:entries() do
        local t = e1:l2()
        if t then
          alloc.l2_tables = alloc.l2_tables + 1
          for _, e in t:entries() do
            if alloc[e.type] then alloc[e.type] = alloc[e.type] + 1 end
          end
        end
      end
    end)
    r.allocation = alloc
    r.problems = {}
    LISTS[r.problems] = true
    if ok then ok, err = pcall(problems, i, r.problems) end
    if not ok then r.read_error = tostring(err) end
  end
  i:close()
  return r
end

local targets = {}
for _, a in ipairs(arg) do
  if is_dir(a) then
    for _, p in ipairs(paths_of(a)) do targets[#targets + 1] = p end
  else
    targets[#targets + 1] = a
  end
end
if #targets == 0 then targets[1] = img.path end
for _, p in ipairs(targets) do
  local r = summarize(p)
  print(json(r))
end
