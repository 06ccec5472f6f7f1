-- summarize.lua: one JSON object per image, one per line.
--   qinspect ANY-IMAGE examples/summarize.lua [DIR | PATH]...
-- Each argument is a directory (every regular file in it, sorted) or an
-- image path; with no argument the session's own image is summarised.
-- For each image: format facts, allocation counts of the active L2 tables,
-- and the problems img:check{} finds (qemu-img check's rules, with its
-- corruption and leak counters), counted per problem; an image whose
-- metadata cannot be read has a read_error problem too. An image that
-- cannot be opened gives {"path", "error", "code"}.

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

-- The problems of the image: the findings of img:check{} (the C check,
-- qemu-img check's rules: one pass over all metadata) counted by problem.
local function problems(i, out, r)
  local res = i:check{}
  local counts = {}
  for _, f in ipairs(res.findings) do counts[f.code] = (counts[f.code] or 0) + 1 end
  for name in pairs(counts) do out[#out + 1] = { problem = name, count = counts[name],
                                                 severity = qinspect.problems[name].severity } end
  table.sort(out, function(a, b) return a.problem < b.problem end)
  r.corruptions, r.leaks = res.corruptions, res.leaks
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
    -- entries of the active L2 tables by type, counted in C
    local ok, alloc = pcall(i.allocation, i)
    local err
    if ok then alloc.unallocated = nil else err, alloc = alloc, nil end
    r.allocation = alloc
    r.problems = {}
    LISTS[r.problems] = true
    local ok2, err2 = pcall(problems, i, r.problems, r)
    if not ok then r.read_error = tostring(err) elseif not ok2 then r.read_error = tostring(err2) end
    -- a script reading only `problems` must never see a damaged image as clean
    if r.read_error then
      r.problems[#r.problems + 1] = { problem = "read_error", count = 1,
                                      severity = qinspect.problems.read_error.severity }
    end
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
