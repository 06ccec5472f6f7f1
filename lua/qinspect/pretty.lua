-- qinspect.pretty: how values look in the REPL and in pp().
--
-- Engine objects print through their __tostring (raw 64-bit entries are
-- shown there as 0x%016x beside the decoded fields); plain tables print
-- recursively with sorted keys (a field named raw holding an integer as
-- 0x%016x, as in owner records), and cycles are marked; strings holding
-- binary data print as a hexdump. In the REPL, output taller than the
-- terminal goes through a pager ($QINSPECT_PAGER, else $PAGER, else
-- `less -FRX`; `qinspect.pretty.paging = false` or QINSPECT_PAGER=cat turns
-- it off). Only presentation: nothing here touches an image except through
-- the objects' own __tostring.
local M = {}

-- Set to false to print long REPL results straight to the terminal.
M.paging = true

local MAX_DEPTH = 6
local DUMP_LIMIT = 256 -- bytes of a binary string shown by format()

local function is_binary(s)
  return s:find("[^\t\n\r\032-\126]") ~= nil
end

-- hex(data [, base]) -> hexdump text, 16 bytes a line as `hexdump -C`
-- prints it (repeated lines collapse to "*"); BASE is the offset of the
-- first byte (default 0).
function M.hex(data, base)
  assert(type(data) == "string", "hex: expected a string")
  base = base or 0
  local out, prev, starred = {}, nil, false
  for i = 1, #data, 16 do
    local chunk = data:sub(i, i + 15)
    if chunk == prev and #chunk == 16 and i + 16 <= #data then
      if not starred then out[#out + 1] = "*" end
      starred = true
    else
      starred = false
      local hx = chunk:gsub(".", function(c) return string.format("%02x ", c:byte()) end)
      if #chunk > 8 then hx = hx:sub(1, 24) .. " " .. hx:sub(25) end
      local asc = chunk:gsub("[^\032-\126]", ".")
      out[#out + 1] = string.format("%08x  %-49s |%s|", base + i - 1, hx, asc)
    end
    prev = chunk
  end
  out[#out + 1] = string.format("%08x", base + #data)
  return table.concat(out, "\n")
end

local function key_order(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then return ta < tb end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local format

local function format_table(t, indent, seen, depth)
  if seen[t] then return "<cycle>" end
  if depth >= MAX_DEPTH then return "{...}" end
  local mt = getmetatable(t)
  if mt and mt.__tostring then return tostring(t) end
  seen[t] = true
  local keys, n = {}, #t
  for k in pairs(t) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, key_order)
  local pad = indent .. "  "
  local parts = {}
  for i = 1, n do parts[#parts + 1] = pad .. format(t[i], pad, seen, depth + 1) end
  for _, k in ipairs(keys) do
    local ks = (type(k) == "string" and k:match("^[%a_][%w_]*$")) and k
      or "[" .. format(k, pad, seen, depth + 1) .. "]"
    local v = t[k]
    -- a raw 64-bit entry (owner and reference records): hex, as objects show it
    local vs = (k == "raw" and math.type(v) == "integer") and string.format("0x%016x", v)
      or format(v, pad, seen, depth + 1)
    parts[#parts + 1] = pad .. ks .. " = " .. vs
  end
  seen[t] = nil
  if #parts == 0 then return "{}" end
  return "{\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "}"
end

format = function(v, indent, seen, depth)
  local ty = type(v)
  if ty == "table" then return format_table(v, indent, seen, depth) end
  if ty == "string" then
    if is_binary(v) then
      local shown = M.hex(v:sub(1, DUMP_LIMIT))
      if #v > DUMP_LIMIT then shown = shown .. string.format("\n... (%d bytes)", #v) end
      return depth == 0 and shown or string.format("<%d bytes>", #v)
    end
    return depth == 0 and v or string.format("%q", v)
  end
  return tostring(v)
end

-- format(v) -> the text the REPL shows for V.
function M.format(v)
  return format(v, "", {}, 0)
end

local function format_values(...)
  local out = {}
  for i = 1, select("#", ...) do out[i] = M.format((select(i, ...))) end
  return table.concat(out, "\t") .. "\n"
end

-- print(...) prints each value formatted, separated by tabs.
function M.print(...)
  io.write(format_values(...))
end

-- The pager command, or nil when paging is off.
local function pager()
  if not M.paging then return nil end
  local cmd = os.getenv("QINSPECT_PAGER") or os.getenv("PAGER")
  if cmd == nil or cmd == "" then
    if os.getenv("QINSPECT_PAGER") == "" then return nil end
    cmd = "less -FRX"
  end
  if cmd:match("^%s*cat%s*$") then return nil end
  return cmd
end

-- Terminal lines TEXT takes on a screen COLS wide (long lines wrap).
local function screen_lines(text, cols)
  local n = 0
  for line in text:gmatch("([^\n]*)\n") do
    n = n + math.max(1, (#line + cols - 1) // math.max(cols, 1))
  end
  return n
end

-- Write TEXT through the pager CMD; false if the pager could not run
-- (the shell's status 127: command not found).
local function page(cmd, text)
  io.stdout:flush()
  local f = io.popen(cmd, "w")
  if not f then return false end
  -- close even if Ctrl-C interrupts the write, then let the error go on
  local ok, err = pcall(f.write, f, text)
  local _, how, code = f:close()
  if not ok then error(err, 0) end
  return not (how == "exit" and code == 127)
end

-- show(rows, cols, ...): how the REPL prints results. Like print, but on a
-- terminal of ROWS x COLS (ROWS 0: not a terminal) text taller than the
-- screen goes through the pager.
function M.show(rows, cols, ...)
  local text = format_values(...)
  local cmd = rows > 0 and pager()
  if cmd and screen_lines(text, cols) >= rows - 1 and page(cmd, text) then return end
  io.write(text)
end

return M
