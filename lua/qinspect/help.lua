-- qinspect.help: help() and help(obj), listing what an object offers.
--
-- The lists come from the metatables built by the C bindings
-- (__qi_label, __qi_methods, __qi_fields: the same field and method tables
-- that dispatch the calls), so they cannot drift from the code. Topic
-- texts are not written yet.
local M = {}

local function help_object(mt)
  local out = { mt.__qi_label .. " (" .. (mt.__name or "?") .. ")" }
  if #mt.__qi_methods > 0 then
    local names = {}
    for i, m in ipairs(mt.__qi_methods) do names[i] = m end
    table.sort(names)
    out[#out + 1] = "methods:"
    for _, m in ipairs(names) do out[#out + 1] = "  :" .. m .. "(...)" end
  end
  if #mt.__qi_fields > 0 then
    out[#out + 1] = "fields:"
    for _, f in ipairs(mt.__qi_fields) do
      out[#out + 1] = string.format("  .%-24s %s%s", f.name, f.doc,
                                    f.writable and "" or " (read-only)")
    end
  end
  return table.concat(out, "\n")
end

local function help_table(t)
  local names = {}
  for k, v in pairs(t) do names[#names + 1] = string.format("  %-16s %s", k, type(v)) end
  table.sort(names)
  return "table with:\n" .. table.concat(names, "\n")
end

local GENERAL = [[
qinspect session globals:
  img        the image opened on the command line (help(img))
  qinspect   the module: qinspect.open(path [, {rw=, force_share=, backing=}])
  hex(s)     hexdump of a string, e.g. hex(img:read(0, 512))
  pp(...)    pretty-print values
  help(obj)  methods and fields of an object, e.g. help(img.l1[0])]]

-- help([obj]) -> the help text (also printed).
function M.help(obj)
  local text
  local mt = getmetatable(obj)
  if obj == nil then
    text = GENERAL
  elseif type(mt) == "table" and mt.__qi_label then
    text = help_object(mt)
  elseif type(obj) == "table" then
    text = help_table(obj)
  elseif type(obj) == "string" then
    text = "no help topics yet; help(obj) lists the methods and fields of an object"
  else
    text = "a " .. type(obj) .. " value: no help for it"
  end
  print(text)
  return nil
end

return M
