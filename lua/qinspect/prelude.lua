-- qinspect.prelude: globals of every qinspect session (REPL, -e, script).
--
-- Defines hex(), pp() and help(). The session has already set `img` and
-- `qinspect`; this file only adds conveniences built on them, so a script
-- that does not use them pays only for loading this small file.
local pretty = require "qinspect.pretty"

hex = pretty.hex
pp = pretty.print
help = function(...) return require("qinspect.help").help(...) end
