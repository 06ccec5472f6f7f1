-- qinspect.tap: a small TAP producer for tests/lua.
--   local t = require "qinspect.tap"
--   t.ok(cond, name)  t.is(got, expected, name)
--   t.errors_like(fn, pattern, name)  t.done()
local M = {}
local n, failed = 0, 0

function M.diag(msg) print("# " .. tostring(msg):gsub("\n", "\n# ")) end

function M.ok(cond, name)
  n = n + 1
  if not cond then failed = failed + 1 end
  print(string.format("%s %d%s", cond and "ok" or "not ok", n, name and " - " .. name or ""))
  return cond
end

function M.is(got, expected, name)
  local c = M.ok(got == expected and math.type(got) == math.type(expected), name)
  if not c then
    M.diag("     got: " .. tostring(got) .. " (" .. (math.type(got) or type(got)) .. ")")
    M.diag("expected: " .. tostring(expected) .. " (" .. (math.type(expected) or type(expected)) .. ")")
  end
  return c
end

-- errors_like(fn, pattern, name): fn() must raise an error whose text
-- (tostring, so error objects too) matches the Lua PATTERN.
function M.errors_like(fn, pattern, name)
  local okay, err = pcall(fn)
  local msg = tostring(err)
  local c = M.ok(not okay and msg:find(pattern) ~= nil, name)
  if not c then
    M.diag(okay and "no error raised" or "error: " .. msg)
    M.diag("expected to match: " .. pattern)
  end
  return c, err
end

-- done(): print the plan; exit 1 if anything failed.
function M.done()
  print("1.." .. n)
  if failed > 0 then os.exit(1) end
end

return M
