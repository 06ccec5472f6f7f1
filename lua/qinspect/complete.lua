-- qinspect.complete: completion candidates for the REPL's Tab key.
--
-- The approach of CPython's rlcompleter: take the word under the cursor,
-- split it at its last `.` or `:`, evaluate what comes before as a plain
-- chain of names, fields and integer or string indices (`img.l1[0]`,
-- `string`), and list the names that the value offers and that start with
-- the part after the separator. Evaluation never calls a function: plain
-- tables are read with rawget and through __index tables only; engine
-- objects (whose metatables carry __qi_fields/__qi_methods) are indexed
-- normally, which only runs their field getters (reads through the engine).
-- Anything that fails yields no candidates. A word with no separator
-- completes globals and keywords.
local M = {}

local KEYWORDS = {
  "and", "break", "do", "else", "elseif", "end", "false", "for", "function",
  "goto", "if", "in", "local", "nil", "not", "or", "repeat", "return", "then",
  "true", "until", "while",
}

local MAX_INDEX_DEPTH = 8 -- __index tables followed when listing keys

local function qi_meta(v)
  local mt = getmetatable(v)
  if type(mt) == "table" and mt.__qi_fields and mt.__qi_methods then return mt end
  return nil
end

-- index(v, k) -> v[k] without calling Lua functions, or nil.
local function index(v, k)
  local t = type(v)
  if t == "table" then
    for _ = 1, MAX_INDEX_DEPTH do
      local r = rawget(v, k)
      if r ~= nil then return r end
      local mt = getmetatable(v)
      local nxt = type(mt) == "table" and rawget(mt, "__index")
      if type(nxt) ~= "table" then return nil end
      v = nxt
    end
  elseif t == "userdata" and qi_meta(v) then
    local ok, r = pcall(function() return v[k] end)
    if ok then return r end
  elseif t == "string" and type(k) == "string" then
    return string[k]
  end
  return nil
end

-- evaluate(expr) -> the value of a chain such as `a.b[3]["c"].d`, or nil.
local function evaluate(expr, env)
  local name, pos = expr:match("^([%a_][%w_]*)()")
  if not name then return nil end
  local v = index(env, name)
  while pos <= #expr and v ~= nil do
    local key, nxt = expr:match("^%.([%a_][%w_]*)()", pos)
    if not key then
      key, nxt = expr:match("^%[%s*(%-?%d+)%s*%]()", pos)
      key = key and math.tointeger(tonumber(key))
    end
    if not key then
      local _, s, n = expr:match("^%[%s*([\"'])(.-)%1%s*%]()", pos)
      key, nxt = s, n
    end
    if not key then return nil end
    v, pos = index(v, key), nxt
  end
  return v
end

-- Add to NAMES (name -> value or true) the string keys of table T, its
-- __index tables included.
local function table_keys(t, names)
  for _ = 1, MAX_INDEX_DEPTH do
    for k, val in next, t do
      if type(k) == "string" and k:match("^[%a_][%w_]*$") and names[k] == nil then
        names[k] = val
      end
    end
    local mt = getmetatable(t)
    local nxt = type(mt) == "table" and rawget(mt, "__index")
    if type(nxt) ~= "table" then return end
    t = nxt
  end
end

-- names(v, sep) -> table name -> kind ("function" for callables, "value")
-- of what `v SEP name` can complete to.
local function names_of(v, sep)
  local out, mt = {}, qi_meta(v)
  if mt then
    if sep == ":" then
      for _, m in ipairs(mt.__qi_methods) do out[m] = "function" end
    else
      for _, f in ipairs(mt.__qi_fields) do out[f.name] = "value" end
    end
    return out
  end
  local raw = {}
  if type(v) == "table" then
    table_keys(v, raw)
  elseif type(v) == "string" and sep == ":" then
    table_keys(string, raw)
  end
  for k, val in pairs(raw) do
    local fn = type(val) == "function"
    if sep ~= ":" or fn then out[k] = fn and "function" or "value" end
  end
  return out
end

-- Where the chain being completed starts in WORD: after the last `[` that
-- is not closed (so `t[img.he` completes `img.he`).
local function chain_start(word)
  local open = {}
  for i = 1, #word do
    local c = word:sub(i, i)
    if c == "[" then open[#open + 1] = i
    elseif c == "]" then open[#open] = nil end
  end
  return (open[#open] or 0) + 1
end

-- complete(word [, env]) -> matches, appends: the full replacement words
-- for WORD (sorted), and for each the character readline should append when
-- it is the only match ("(" after a function, " " after a keyword, "" else).
-- ENV is where names are looked up (default _G).
function M.complete(word, env)
  env = env or _G
  local head = word:sub(1, chain_start(word) - 1)
  local chain = word:sub(#head + 1)
  local expr, sep, part = chain:match("^(.*)([%.:])([%a_]?[%w_]*)$")
  local cands = {}
  if expr then
    local v = evaluate(expr, env)
    if v == nil then return {}, {} end
    cands = names_of(v, sep)
    head = head .. expr .. sep
  elseif chain:match("^[%a_]?[%w_]*$") then
    part = chain
    cands = names_of(env, ".")
    for _, kw in ipairs(KEYWORDS) do cands[kw] = "keyword" end
  else
    return {}, {}
  end
  local keys = {}
  for k in pairs(cands) do
    if k:sub(1, #part) == part then keys[#keys + 1] = k end
  end
  table.sort(keys)
  local matches, appends = {}, {}
  for i, k in ipairs(keys) do
    matches[i] = head .. k
    appends[i] = cands[k] == "function" and "(" or cands[k] == "keyword" and " " or ""
  end
  return matches, appends
end

-- complete_string(before, word) -> matches, appends for WORD inside a
-- string literal that follows BEFORE: the help topics after `help "` or
-- `help("`; nil elsewhere (the REPL then completes file names).
function M.complete_string(before, word)
  if not before:match("help%s*%(?%s*[\"']$") then return nil end
  local ok, help = pcall(require, "qinspect.help")
  if not ok then return nil end
  local matches, appends = {}, {}
  for _, t in ipairs(help.topics()) do
    if t:sub(1, #word) == word then
      matches[#matches + 1] = t
      appends[#appends + 1] = ""
    end
  end
  return matches, appends
end

return M
