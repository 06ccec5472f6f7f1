-- qinspect.explain: explain(x) in plain words, with the rule that decides.
--
-- Works on header fields (explain(img.header, "l1_table_offset")), the
-- header itself, L1/L2 entries, refcount table entries, refcount entries,
-- and table objects. The verdicts are the engine's: the image is checked
-- once per file state (qinspect.findings_at, the C check of qemu-img
-- check's rules, src/engine/check.c) and an object is judged only by the
-- findings about its own place (its bytes in the file) and about the
-- refcount of what it points at, so damage elsewhere is never blamed on it.
-- What stays here is the wording around the verdicts: what the object
-- means, the COPIED rule for a plain and a dedup image, the numbers the
-- verdict rests on (refcount, references counted by the check). Every
-- problem named is a record of the C problem table (qinspect.problems).
-- Header fields are judged here (an image whose header breaks these rules
-- does not open, so no check runs on it). Only reads.
--   M.text(x [, field]) -> text, findings   (findings: list of {problem, name, detail, finding})
--   M.findings(x [, opts]) -> findings
local qinspect = require "qinspect"
local M = {}

local P = qinspect.problems

local function hexs(v) return string.format("0x%x", v) end

local function add(list, name, detail)
  assert(P[name], "unknown problem " .. name)
  list[#list + 1] = { problem = P[name], name = name, detail = detail }
end

local function kind_of(x)
  local mt = getmetatable(x)
  return type(mt) == "table" and mt.__name or nil
end

-- The engine's findings about SITE (an entry's place in the file, or
-- false) and about the refcount of the cluster holding TARGET (or nil),
-- appended to OUT as explain findings. Returns the references the check
-- counted to TARGET's cluster, whether the image is a dedup image, and
-- whether the check completed.
local function engine(out, img, site, target)
  local fs, refs, dedup, complete = qinspect.findings_at(img, site or false, target)
  for _, f in ipairs(fs) do
    local seen = false
    for _, o in ipairs(out) do
      if o.finding and o.finding.code == f.code and o.finding.offset == f.offset then seen = true end
    end
    if not seen then
      out[#out + 1] = { problem = P[f.code], name = f.code, finding = f,
                        detail = f.qemu or string.format("expected %d, found %d", f.expected, f.found) }
    end
  end
  return refs, dedup, complete
end

local function check_eof(out, img, off, len, what)
  if off + len > img.file_size then
    add(out, "past_end_of_file", string.format("%s %s + %d bytes, file is %d bytes", what,
                                               hexs(off), len, img.file_size))
  end
end

-- The COPIED rule in words: what the flag and the refcount say, the
-- verdict for a plain and for a dedup image, and which applies. The
-- finding itself, if any, is the engine's. ACTIVE: the entry is in the
-- active tables (COPIED means nothing in a snapshot's tables).
local function copied_text(copied, rc, active, dedup, what)
  local lines = {}
  lines[#lines + 1] = string.format(
    "COPIED rule (bit 63): set exactly when the refcount of the %s is 1; the flag is %s and the refcount is %d.",
    what, copied and "set" or "clear", rc)
  if not active then
    lines[#lines + 1] = "  This entry is only in a snapshot's tables, where COPIED has no meaning: "
      .. "QEMU rebuilds it from the refcounts when the snapshot is applied. No verdict."
    return lines
  end
  local plain, dd
  if copied and rc > 1 then
    plain = "corruption (" .. P.copied_but_shared.summary .. ")"
    dd = plain
  elseif not copied and rc == 1 then
    plain = "corruption (" .. P.copied_missing.summary .. ")"
    dd = "allowed, a note (" .. P.copied_missing_dedup.summary .. "): one extra copy-on-write; "
      .. "stock qemu-img check still reports it"
  elseif rc == 0 then
    plain = "no verdict: refcount 0 is a problem of its own (see below)"
    dd = plain
  elseif copied then
    plain = "valid: set with refcount 1, so writes go in place"
    dd = plain
  else
    plain = "valid: clear on a shared cluster, so a write copies it first"
    dd = plain
  end
  lines[#lines + 1] = "  plain image: " .. plain
  lines[#lines + 1] = "  dedup image: " .. dd
  lines[#lines + 1] = dedup and "  This image is a dedup image, so the dedup verdict applies."
    or "  This image is plain (no dedup header extension), so the plain verdict applies."
  return lines
end

-- ---- L2 entries ----

local function l2_active(img, e)
  for _, o in ipairs(img:owners(e.table.offset)) do
    if o.kind == "L1 entry" and o.snapshot == nil then return true end
  end
  return false
end

local function l2_check(img, e, opts)
  local out, lines = {}, {}
  local cs, ty = img.cluster_size, e.type
  local site = e.table.offset + e.index * (img.extended_l2 and 16 or 8)
  if img.extended_l2 and ty ~= "compressed" then
    local bm = e.bitmap
    lines[#lines + 1] = string.format("Subcluster bitmap 0x%016x: allocated 0x%08x, zero 0x%08x.",
                                      bm, bm & 0xffffffff, (bm >> 32) & 0xffffffff)
  end
  if ty == "compressed" then
    local bits = img.header.cluster_bits
    local x = 62 - (bits - 8)
    lines[#lines + 1] = string.format(
      "Compressed descriptor: x = 62 - (cluster_bits - 8) = %d, so bits 0-%d hold the byte offset %s and "
        .. "bits %d-61 the additional sectors (%d); csize = %d sectors * 512 - (offset mod 512) = %d bytes.",
      x, x - 1, hexs(e.host_offset), x, e.csectors - 1, e.csectors, e.csize)
    local first, last = e.host_offset // cs, (e.host_offset + e.csize - 1) // cs
    engine(out, img, site, nil)
    for c = first, last do
      local refs = engine(out, img, false, c * cs)
      if opts.refs ~= false and c * cs < img.file_size then
        lines[#lines + 1] = string.format("Host cluster %s: refcount %d, references %d (compressed clusters "
                                          .. "count one reference per host cluster they touch).",
                                          hexs(c * cs), img:refcount(c * cs), refs)
      end
    end
  elseif ty == "normal" or ty == "zero-allocated" then
    local off = e.host_offset
    local refs, dedup = engine(out, img, site, off)
    if off % cs == 0 and off < img.file_size then
      local rc = img:refcount(off)
      for _, l in ipairs(copied_text(e.copied, rc, l2_active(img, e), dedup, "data cluster")) do
        lines[#lines + 1] = l
      end
      if opts.refs ~= false then
        lines[#lines + 1] = string.format("References to the cluster found in all tables: %d.", refs)
      end
    end
  else
    engine(out, img, site, nil)
  end
  return out, lines
end

local L2_MEANING = {
  unallocated = "unallocated: reads come from the backing file, or zeros without one",
  zero = "zero: reads as zeros, never from the backing file; no host cluster",
  ["zero-allocated"] = "zero with a preallocated host cluster: reads as zeros",
  normal = "normal: the guest cluster's data is in the host cluster",
  compressed = "compressed: the data is a compressed stream at a byte offset",
}

-- ---- L1 entries ----

local function l1_check(img, e, opts)
  local out, lines = {}, {}
  local cs, off = img.cluster_size, e.l2_offset
  local site = e.table.offset + 8 * e.index
  local refs, dedup = engine(out, img, site, off ~= 0 and off or nil)
  if off == 0 then return out, lines end
  if off % cs == 0 and off + cs <= img.file_size then
    local rc = img:refcount(off)
    for _, l in ipairs(copied_text(e.copied, rc, e.table.snapshot == nil, dedup, "L2 table")) do
      lines[#lines + 1] = l
    end
    if opts.refs ~= false then
      lines[#lines + 1] = string.format("References to the L2 table's cluster found: %d.", refs)
    end
  end
  return out, lines
end

-- ---- refcount structures ----

local function rte_check(img, e, opts)
  local out, lines = {}, {}
  local cs, off = img.cluster_size, e.offset
  local site = img.refcounts.offset + 8 * e.index
  local refs = engine(out, img, site, off ~= 0 and off or nil)
  if off == 0 then
    lines[#lines + 1] = "The entry is 0: no refcount block, so every cluster it would count has refcount 0."
    return out, lines
  end
  if off % cs == 0 and off + cs <= img.file_size and opts.refs ~= false then
    lines[#lines + 1] = string.format("The block's own cluster has refcount %d and %d reference(s); "
                                      .. "a refcount block must be referenced exactly once.",
                                      img:refcount(off), refs)
  end
  return out, lines
end

local function rce_check(img, e, opts)
  local out, lines = {}, {}
  local off = e.host_offset
  local refs = engine(out, img, false, off)
  if opts.refs ~= false then
    lines[#lines + 1] = string.format("References to cluster %s found in all tables: %d.", hexs(off), refs)
  end
  return out, lines
end

-- ---- header ----

local HEADER = {
  magic = "the magic number 0x514649fb (\"QFI\\xfb\"); anything else is not qcow2",
  version = "format version: 2 (compat 0.10) or 3 (compat 1.1, feature bits and extensions)",
  backing_file_offset = "where the backing file name is stored in cluster 0 (0: no backing file)",
  backing_file_size = "length of the backing file name in bytes (no NUL)",
  cluster_bits = "log2 of the cluster size: 9 (512 B) to 21 (2 MiB)",
  size = "virtual disk size in bytes",
  crypt_method = "0 none, 1 AES (legacy), 2 LUKS",
  l1_size = "entries in the active L1 table; must cover the virtual size",
  l1_table_offset = "host offset of the active L1 table (cluster aligned)",
  refcount_table_offset = "host offset of the refcount table (cluster aligned)",
  refcount_table_clusters = "clusters the refcount table occupies",
  nb_snapshots = "number of internal snapshots",
  snapshots_offset = "host offset of the snapshot table (cluster aligned when there are snapshots)",
  incompatible_features = "bits a reader must know, or refuse the image: 0 dirty, 1 corrupt, 2 external data file, 3 compression type, 4 extended L2",
  compatible_features = "bits a reader may ignore: 0 lazy refcounts",
  autoclear_features = "bits a writer that does not know them must clear: 0 bitmaps, 1 raw external data",
  refcount_order = "log2 of the refcount width: 0..6 gives 1..64 bits (v2: always 4, 16 bits)",
  header_length = "bytes of header before the extensions (72 for v2, 104 or 112 for v3)",
  compression_type = "0 deflate (zlib option), 1 zstd; nonzero needs incompatible bit 3",
}

local function header_field(img, h, name)
  local out, lines = {}, {}
  local v = h[name]
  local cs = img.cluster_size
  lines[#lines + 1] = string.format("header.%s = %s: %s", name, tostring(v), HEADER[name] or "")
  local function table_off(off, len, what)
    if off % cs ~= 0 then add(out, "table_unaligned", what .. " at " .. hexs(off)) end
    check_eof(out, img, off, len, what .. " at")
  end
  if name == "l1_table_offset" and h.l1_size > 0 then
    table_off(v, h.l1_size * 8, "L1 table")
  elseif name == "refcount_table_offset" then
    table_off(v, h.refcount_table_clusters * cs, "refcount table")
  elseif name == "snapshots_offset" and h.nb_snapshots > 0 then
    table_off(v, 1, "snapshot table")
  elseif name:match "_features$" then
    local k = name:match "^(%a+)_"
    local names = h.features[k]
    lines[#lines + 1] = "set bits: " .. (#names > 0 and table.concat(names, ", ") or "none")
  elseif name == "refcount_order" then
    lines[#lines + 1] = string.format("refcount width %d bits, %d refcounts per block", 1 << v,
                                      cs * 8 // (1 << v))
  elseif name == "cluster_bits" then
    lines[#lines + 1] = string.format("cluster size %d bytes", 1 << v)
  end
  return out, lines
end

-- ---- dispatch ----

local function describe(x)
  local k = kind_of(x)
  if k == "qinspect.l2entry" then
    return tostring(x), "L2 entry: maps one guest cluster. Type " .. (L2_MEANING[x.type] or x.type) .. "."
  elseif k == "qinspect.l1entry" then
    return tostring(x), "L1 entry: points to one L2 table (0: the whole range it covers is unallocated)."
  elseif k == "qinspect.reftentry" then
    return tostring(x), "Refcount table entry: points to one refcount block (bits 9-63; bits 0-8 reserved)."
  elseif k == "qinspect.refentry" then
    return tostring(x), "Refcount entry: how many references the cluster has (0 free, 1 used, 2+ shared)."
  elseif k == "qinspect.l1table" then
    return tostring(x), "L1 table: the top level of the guest-to-host mapping; one entry per L2 table."
  elseif k == "qinspect.l2table" then
    return tostring(x), "L2 table: one cluster of entries, each mapping one guest cluster."
  elseif k == "qinspect.reftable" then
    return tostring(x), "Refcount table: points to the refcount blocks, which hold one refcount per host cluster."
  elseif k == "qinspect.refblock" then
    return tostring(x), "Refcount block: one cluster of refcounts (" .. #x .. " entries)."
  elseif k == "qinspect.snapshot" then
    return tostring(x), "Internal snapshot: a copy of the L1 table; the clusters it shares have raised refcounts."
  end
  return tostring(x), nil
end

local function table_check(img, x)
  local out, lines = {}, {}
  local k, cs = kind_of(x), img.cluster_size
  -- a snapshot has no .offset: what it points at is its L1 table
  local off = k == "qinspect.snapshot" and x.l1_table_offset or x.offset
  local refs = engine(out, img, off, off)
  if off % cs == 0 and off < img.file_size then
    lines[#lines + 1] = string.format("Its first cluster %s has refcount %d and %d reference(s).", hexs(off),
                                      img:refcount(off), refs)
  elseif off % cs ~= 0 then
    lines[#lines + 1] = "Its offset is not cluster aligned: the entry pointing here is judged for that."
  else
    lines[#lines + 1] = "It lies past the end of the file."
  end
  return out, lines
end

-- findings(x [, opts]) -> list of {name, problem, detail}
function M.findings(x, opts)
  local out = select(1, M.analyse(x, nil, opts or {}))
  return out
end

-- The engine refuses to decode an entry that breaks a rule it checks on
-- every read (reserved bits, alignment, end of file); name that problem
-- from the engine's message.
local REFUSED = {
  { "reserved bits", { ["qinspect.l1entry"] = "l1_reserved_bits", ["qinspect.l2entry"] = "l2_reserved_bits",
                       ["qinspect.reftentry"] = "reftable_reserved_bits" } },
  { "align", { ["qinspect.l1entry"] = "l2_table_unaligned", ["qinspect.l2entry"] = "data_cluster_unaligned",
               ["qinspect.reftentry"] = "refblock_unaligned" } },
  { "both allocated and zero", { ["qinspect.l2entry"] = "subcluster_allocated_and_zero" } },
  { "end of the file", {} },
  { "past the end", {} },
}

local function refused(k, err)
  local msg = tostring(err)
  for _, r in ipairs(REFUSED) do
    if msg:find(r[1], 1, true) then
      local out = {}
      add(out, r[2][k] or "past_end_of_file", "the engine refuses to read it: " .. msg)
      return out, {}
    end
  end
  error(err, 0)
end

local analyse

function M.analyse(x, field, opts)
  local ok, a, b = pcall(analyse, x, field, opts)
  if ok then return a, b end
  return refused(kind_of(x), a)
end

analyse = function(x, field, opts)
  opts = opts or {}
  local img = qinspect.image_of(x)
  local k = kind_of(x)
  if not img then return {}, {} end
  if k == "qinspect.l2entry" then return l2_check(img, x, opts)
  elseif k == "qinspect.l1entry" then return l1_check(img, x, opts)
  elseif k == "qinspect.reftentry" then return rte_check(img, x, opts)
  elseif k == "qinspect.refentry" then return rce_check(img, x, opts)
  elseif k == "qinspect.header" then
    if field then return header_field(img, x, field) end
    local out, lines = {}, {}
    for _, f in ipairs(getmetatable(x).__qi_fields) do
      if HEADER[f.name] then
        local o, l = header_field(img, x, f.name)
        for _, p in ipairs(o) do out[#out + 1] = p end
        lines[#lines + 1] = l[1]
      end
    end
    return out, lines
  elseif k == "qinspect.image" then
    return {}, { "An image: help(img) lists its fields; explain(img.header), explain(img.l1[0]), "
                 .. "explain(img.refcounts[0]) explain its parts." }
  elseif k then
    return table_check(img, x)
  end
  return {}, {}
end

-- A finding record (img:check{}.findings, qinspect.findings_at): what it
-- means, where, and what a repair does about it.
local function finding_text(f)
  local p = P[f.code]
  local out = { string.format("[%s] %s: %s", f.severity, f.code, p.summary) }
  out[#out + 1] = string.format("Where: %s at %s.", f.structure ~= "" and f.structure or "the image",
                                f.offset and hexs(f.offset) or "?")
  if f.guest_offset then
    out[#out + 1] = string.format("Guest data affected: %s + %d bytes.", hexs(f.guest_offset), f.guest_length)
  end
  if (f.expected or 0) ~= 0 or (f.found or 0) ~= 0 then
    out[#out + 1] = string.format("Expected %d, found %d.", f.expected, f.found)
  end
  out[#out + 1] = "Rule: " .. p.explanation
  if f.qemu then out[#out + 1] = "qemu-img check prints: " .. f.qemu
  else out[#out + 1] = "qemu-img check does not report this (a qinspect finding)." end
  if f.fix and f.fix ~= "" then out[#out + 1] = "Repair " .. (f.fixed and "did" or "kept") .. ": " .. f.fix
  elseif f.repair then out[#out + 1] = "Repair: " .. f.repair end
  return table.concat(out, "\n")
end

-- A bitmap record (img.bitmaps).
local function bitmap_text(b)
  return string.format("Persistent dirty bitmap '%s': one bit per %d bytes of guest data "
    .. "(granularity_bits %d), flags %s; its table of %d entries is at %s. A bit set means the "
    .. "guest range changed since the bitmap was started (for incremental backup); in_use means "
    .. "a writer had it open and its contents cannot be trusted.",
    b.name, 1 << b.granularity_bits, b.granularity_bits,
    #b.flags > 0 and table.concat(b.flags, ", ") or "none", b.table_size, hexs(b.table_offset))
end

-- text(x [, field]) -> explanation text, findings
function M.text(x, field)
  if type(x) == "table" and kind_of(x) == nil and type(x.code) == "string" and P[x.code] then
    return finding_text(x), {}
  end
  if type(x) == "table" and kind_of(x) == nil and x.granularity_bits and x.table_offset then
    return bitmap_text(x), {}
  end
  if kind_of(x) == nil then
    return "explain() works on qinspect objects (entries, tables, the header); "
      .. "for a header field use explain(img.header, \"name\")", {}
  end
  if kind_of(x) == "qinspect.header" and field and not HEADER[field] then
    error("no header field '" .. tostring(field) .. "' to explain", 2)
  end
  local okd, head, meaning = pcall(describe, x)
  if not okd then head, meaning = "(the entry cannot be decoded)", nil end
  local findings, lines = M.analyse(x, field)
  local out = { head }
  if meaning then out[#out + 1] = meaning end
  for _, l in ipairs(lines) do out[#out + 1] = l end
  if #findings == 0 then
    out[#out + 1] = "Verdict: valid (no rule qinspect can check here is broken)."
  else
    out[#out + 1] = "Verdict: " .. #findings .. " problem(s):"
    for _, f in ipairs(findings) do
      out[#out + 1] = string.format("  [%s] %s: %s (%s)", f.problem.severity, f.name, f.problem.summary,
                                    f.detail or "")
      out[#out + 1] = "    rule: " .. f.problem.explanation
    end
  end
  return table.concat(out, "\n"), findings
end

-- explain(x [, field]): print the explanation.
function M.explain(x, field)
  print((M.text(x, field)))
end

return M
