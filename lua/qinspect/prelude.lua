-- qinspect.prelude: globals of every qinspect session (REPL, -e, script).
--
-- Defines hex(), pp(), help() and explain(). The session has already set `img` and
-- `qinspect`; this file only adds conveniences built on them, so a script
-- that does not use them pays only for loading this small file.
local pretty = require "qinspect.pretty"

-- the pretty printer as qinspect.pretty (qinspect.pretty.paging = false
-- turns paging off), as the issue and the README name it
if type(qinspect) == "table" then qinspect.pretty = pretty end

hex = pretty.hex
pp = pretty.print
help = function(...) return require("qinspect.help").help(...) end
explain = function(...) return require("qinspect.explain").explain(...) end
