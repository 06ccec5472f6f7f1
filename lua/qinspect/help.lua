-- qinspect.help: help(), help(obj) and help "topic".
--
-- help(obj) lists methods and fields from the metatables built by the C
-- bindings (__qi_label, __qi_methods, __qi_fields: the same field and
-- method tables that dispatch the calls), so the lists cannot drift from
-- the code. help "topic" prints one of the texts below, written from the
-- qcow2 specification and the project docs (qcow2-format.md,
-- dedup-design.md section 2); help "topics" lists them. help "problems"
-- lists the C problem table (qinspect.problems).
local M = {}

-- Signatures and one-line descriptions of the methods, by metatable name.
-- tests/lua checks that every method the C bindings register has one.
local SIG = {
  ["qinspect.image"] = {
    read = { "(offset, length) -> string", "guest bytes (backing chain honoured)" },
    write = { "(offset, data)", "guest write, copy-on-write where needed (-w)" },
    write_compressed = { "(offset, data)", "one guest cluster written compressed, as QEMU packs it (-w)" },
    zero = { "(offset, length [, {unmap=bool}])", "make the range read as zeros (-w)" },
    discard = { "(offset, length)", "drop the whole clusters in the range (-w)" },
    resize = { "(new_size [, {shrink=true}])", "change the virtual size as qemu-img resize (-w)" },
    flush = { "()", "write cached changes back in crash-safe order and sync" },
    changes = { "() -> list", "a dry run's changes so far (dry_run=true; help \"undo\")" },
    trace = { "(fn) -> list", "the on-disk writes fn causes, in order, with syncs" },
    poke = { "(host_offset, bytes) -> old bytes", "raw edit of the file, no rule checked (-w)" },
    peek = { "(host_offset, len) -> bytes", "raw bytes of the file (at most 1 MiB; any open image)" },
    set_refcount = { "(host_offset, n) -> old refcount", "raw edit of one refcount (-w)" },
    edits = { "() -> list", "the raw edits made through this image: {what, old, new}" },
    read_snapshot = { "(id_or_name, offset, length) -> string", "a snapshot's guest bytes" },
    snapshot_create = { "(name) -> id", "internal snapshot, as qemu-img snapshot -c (-w)" },
    snapshot_apply = { "(id_or_name)", "revert the image to a snapshot (-w)" },
    snapshot_delete = { "(id_or_name)", "delete a snapshot (-w)" },
    l2_for = { "(guest_offset) -> L2 entry, L2 table | nil", "the entry mapping a guest offset" },
    refcount = { "(host_offset) -> n", "refcount of the host cluster holding the offset" },
    owners = { "(host_offset) -> list", "every reference to that host cluster (owner records)" },
    references = { "() -> list", "every reference of the image (what check counts)" },
    check = { "([{...}]) -> result", "qemu-img check's counters and findings (help \"check\")" },
    changes = { "() -> list", "dry run (dry_run=true): the writes so far, {kind, file, structure, offset, old, new}" },
    allocation = { "() -> counts", "active L2 entries by type: normal, zero, compressed, ..., l2_tables" },
    scan = { "([fn]) -> runs, info", "every host cluster classified: kind, shape of unreferenced ones" },
    backing = { "() -> image | nil", "the backing image (borrowed)" },
    map = { "([start [, length]]) -> iterator", "runs as qemu-img map: {start, length, data, zero, ...}" },
    close = { "()", "flush and close" },
  },
  ["qinspect.snapshots"] = {
    entries = { "() -> iterator", "for i, snap in snaps:entries() (0-based i)" },
    find = { "(id_or_name) -> snapshot | nil", "a snapshot by id, then by name" },
  },
  ["qinspect.snapshot"] = {
    read = { "(offset, length) -> string", "this snapshot's guest bytes" },
  },
  ["qinspect.l1table"] = {
    entries = { "() -> iterator", "for i, e in t:entries() (0-based i)" },
  },
  ["qinspect.l1entry"] = {
    l2 = { "() -> L2 table | nil", "the L2 table this entry points to" },
  },
  ["qinspect.l2table"] = {
    entries = { "() -> iterator", "for i, e in t:entries() (0-based i)" },
  },
  ["qinspect.l2entry"] = {
    subcluster = { "(i) -> string", "extended L2: \"unallocated\", \"allocated\", \"zero\" or \"invalid\"" },
  },
  ["qinspect.reftable"] = {
    entries = { "() -> iterator", "for i, e in t:entries() (0-based i)" },
    block = { "(i) -> refcount block | nil", "the block entry i points to" },
  },
  ["qinspect.reftentry"] = {
    block = { "() -> refcount block | nil", "the block this entry points to" },
  },
  ["qinspect.refblock"] = {
    entries = { "() -> iterator", "for i, e in b:entries() (0-based i)" },
    entry = { "(i) -> refcount entry", "refcount entry i of this block" },
  },
}
M.signatures = SIG

local function method_line(tname, m, self)
  local sig = SIG[tname] and SIG[tname][m]
  if not sig then return "  " .. self .. ":" .. m .. "(...)" end
  return string.format("  %s:%s%s\n      %s", self, m, sig[1], sig[2])
end

local function help_object(mt)
  local out = { mt.__qi_label .. " (" .. (mt.__name or "?") .. ")" }
  if #mt.__qi_methods > 0 then
    local names = {}
    for i, m in ipairs(mt.__qi_methods) do names[i] = m end
    table.sort(names)
    out[#out + 1] = "methods:"
    for _, m in ipairs(names) do out[#out + 1] = method_line(mt.__name, m, "") end
  end
  if #mt.__qi_fields > 0 then
    out[#out + 1] = "fields:"
    for _, f in ipairs(mt.__qi_fields) do
      out[#out + 1] = string.format("  .%-24s %s%s", f.name, f.doc,
                                    f.writable and "" or " (read-only)")
    end
  end
  out[#out + 1] = "explain(obj) says what it means and whether it is valid."
  return table.concat(out, "\n")
end

-- help(img.read): find the method among the classes the bindings registered.
local function help_function(fn)
  local reg = debug and debug.getregistry and debug.getregistry()
  local hits = {}
  for tname, mt in pairs(reg or {}) do
    if type(tname) == "string" and type(mt) == "table" and rawget(mt, "__qi_methodtable") then
      for m, f in pairs(mt.__qi_methodtable) do
        if f == fn then hits[#hits + 1] = mt.__qi_label .. " method\n" .. method_line(tname, m, "obj") end
      end
    end
  end
  if #hits == 0 then return "a function value: no help for it" end
  table.sort(hits)
  return table.concat(hits, "\n")
end

local function help_table(t)
  local names = {}
  for k, v in pairs(t) do names[#names + 1] = string.format("  %-16s %s", tostring(k), type(v)) end
  table.sort(names)
  return "table with:\n" .. table.concat(names, "\n")
end

local GENERAL = [[
qinspect session globals:
  img          the image opened on the command line (help(img))
  qinspect     the module: qinspect.open(path [, {rw= (or write=), force_share=, backing=,
               repair=, force=, undo=FILE, dry_run=}]) returns an image, or nil,
               message, code (force: a forensic open of a damaged image, help
               "forensic"; help "undo": undo files and dry runs);
               qinspect.create(path, size [, opts]) makes a new qcow2 image as
               qemu-img create does and returns it open read-write (help "create")
  hex(s)       hexdump of a string, e.g. hex(img:read(0, 512))
  pp(...)      pretty-print values
  help(obj)    methods and fields of an object, e.g. help(img.l1[0])
  help "topic" a topic; help "topics" lists them
  explain(x)   what an entry, table, header field or finding means and whether
               it is valid, e.g. explain(img:l2_for(0)), explain(img.header, "l1_size"),
               explain(img:check{}.findings[1]); the verdicts are the C check's
               findings about that object's own place (qinspect.findings_at)
Where to start: img.header, img.l1, img.l1[0]:l2(), img:l2_for(offset),
img.refcounts, img:refcount(offset), img:owners(offset), img:references(), img.snapshots,
img:map(), img:backing(), img:check{} (help "check").]]

local T = {}

T["cluster-types"] = [[
Cluster types (what an L2 entry says about one guest cluster)
An image is cut into clusters of 2^cluster_bits bytes. The guest offset is
found through two tables: the L1 entry gives an L2 table, the L2 entry gives
the host cluster. An L2 entry has one of five types:
  unallocated     offset 0, no flags: reads come from the backing file, or
                  are zeros when there is none (or it is shorter).
  zero            bit 0 set, offset 0: reads as zeros, never from the
                  backing file. v3 only.
  zero-allocated  bit 0 set with an offset: a preallocated host cluster that
                  still reads as zeros.
  normal          an offset (cluster aligned, bits 9-55): the data is there.
  compressed      bit 62 set: the rest is a compressed descriptor (help
                  "compressed").
Bit 63 is COPIED (help "copied"). Bits 1-8 and 56-61 are reserved and must
be 0. With extended L2 entries bit 0 is unused and subclusters say what is
zero (help "subclusters"). An L1 entry is simpler: bits 9-55 give the L2
table (0: none), bit 63 is COPIED, every other bit is reserved.]]

T.undo = [[
Undo files and dry runs (writes only: write=true, or -w)
qinspect.open(path, {write=true, undo="FILE"}) (or qinspect -w --undo FILE)
saves the original bytes of every range the session overwrites in the image
file or its data file to FILE, durably, before the overwrite. A range is
saved once; bytes past the original end of the file are not saved (restoring
cuts the file back). Restore from the shell:
  qinspect undo FILE IMAGE     (refuses if IMAGE changed since; --force)
qinspect.open(path, {write=true, dry_run=true}) (or -w --dry-run) writes
nothing: writes go to an overlay in memory (at most 256 MiB) that reads see,
so the session behaves as if it wrote. img:changes() lists them in order:
{kind="write"|"discard", file, structure, offset, length, old, new} or
{kind="truncate", file, structure, old_size, new_size}. img:flush() first
to see the cached metadata. -w --dry-run prints the list at the end.
Commands take the same options: resize, snapshot -c/-a/-d, check -r.]]

T.copied = [[
COPIED (bit 63 of L1 and L2 entries)
COPIED tells a writer that the entry is the only reference to its target,
so a write may go in place without copy-on-write. It only means something
in the active L1 table and the L2 tables it reaches: in a snapshot's tables
it is ignored and rebuilt when the snapshot is applied. Compressed clusters
never carry it.
Plain qcow2 image: COPIED must be set exactly when the refcount of the
target is 1. qemu-img check reports both mismatches as corruptions
("ERROR OFLAG_COPIED"):
  - COPIED set while the refcount is above 1: corruption. A write through
    the entry would change a shared cluster in place, and with it the data
    of the snapshot (or other entry) that shares it.
  - COPIED clear while the refcount is 1: corruption on a plain image,
    though harmless for the data: the next write makes one needless copy.
Dedup image (qinspect's dedup design): sharing starts by clearing COPIED
on the entry that already points at the cluster; when the refcount later
falls back to 1, COPIED is not set again, because finding the last owner
means scanning every L2 table. So on a dedup image:
  - COPIED set with refcount > 1 is still corruption;
  - COPIED clear with refcount 1 is allowed (a "note"): it costs one extra
    copy-on-write on the next write. Stock qemu-img check does not know this
    and still reports it as a corruption.
explain(entry) reads the refcount and states both verdicts. qinspect has no
dedup extension yet, so every image is judged as a plain image.]]

T["refcount-widths"] = [[
Refcount widths
Every host cluster has a refcount: 0 free, 1 used, 2 or more shared (a
write must copy first). The refcount table (img.refcounts) points to
refcount blocks; each block is one cluster holding cluster_size * 8 /
refcount_bits refcounts, where refcount_bits = 1 << refcount_order and the
order is 0..6 (1, 2, 4, 8, 16, 32 or 64 bits; v2 images always use 16).
Cluster n is counted by block n / entries_per_block, entry
n mod entries_per_block. Widths of 8 bits and more are big-endian integers
in array order. Narrower ones are packed inside bytes starting at the least
significant bit: entry i is in byte i * width / 8 at bit (i * width) mod 8,
counted from the LSB. The largest refcount is 2^width - 1. A refcount table
entry of 0 means the whole block is missing and all its refcounts are 0;
bits 0-8 of a table entry are reserved.
What is counted: the header cluster, L1 tables, L2 tables, data clusters
(active and in every snapshot), the snapshot table, the refcount table and
blocks, and bitmap structures (img:owners(offset) lists them).
refcount < references is a corruption; refcount > references is a leak.]]

T.snapshots = [[
Internal snapshots
A snapshot is an entry in the snapshot table (header.snapshots_offset,
header.nb_snapshots) holding an id, a name, dates, the VM state size and
its own copy of the L1 table. Taking a snapshot copies the active L1 table
and raises the refcount of every L2 table and data cluster it reaches, so
afterwards the active image and the snapshot share clusters with refcount
2 and the active entries lose COPIED: the next write copies first. The
snapshot's L1 table (img.snapshots[i].l1) and L2 tables keep the old data.
COPIED has no meaning in a snapshot's tables. v3 entries carry extra data
with the 64-bit VM state size, the disk size at snapshot time and icount.
VM state is stored like guest data, past the end of the virtual disk.]]

T.compressed = [[
Compressed cluster descriptors
An L2 entry with bit 62 set describes a compressed cluster. Let
x = 62 - (cluster_bits - 8). Bits 0 .. x-1 hold the host BYTE offset of the
compressed stream (not aligned); bits x .. 61 hold the number of additional
512-byte sectors used after the sector holding that offset. So
  csectors = ((entry >> x) & ((1 << (cluster_bits - 8)) - 1)) + 1
  csize    = csectors * 512 - (offset mod 512)
csize is the byte count from the offset to the end of the last sector; the
stream may end earlier and may run into the next host cluster, and another
compressed cluster may start in the same sector. With 64 KiB clusters x is
54 (count in bits 54-61); with 512-byte clusters x is 61. A compressed
cluster adds one reference to every host cluster its byte range touches,
never carries COPIED, and in extended L2 has a zero bitmap. The stream is
raw deflate (compression_type 0) or zstd (1).
img:write_compressed(offset, data) (-w) writes one guest cluster compressed
as QEMU does: data is a whole cluster (or the last one, up to the virtual
size) at a cluster-aligned offset of a cluster with no host cluster; the
stream is packed right after the previous one written in this session when
it fits that host cluster (or runs on into the next one), and a cluster
that does not compress below cluster_size - 1 bytes is written
uncompressed. `qinspect convert -c` uses the same path.]]

T.subclusters = [[
Subclusters (extended L2 entries, incompatible feature bit 4)
Each L2 entry is 128 bits: the usual 64-bit entry (bit 0 unused) and a
64-bit bitmap. Each cluster has 32 subclusters of cluster_size / 32 bytes.
Bit x (0-31) says subcluster x is allocated in the host cluster; bit 32 + x
says it reads as zeros. A subcluster with neither bit reads from the backing
file. Invalid: both bits set for one subcluster; allocation bits on an entry
without a host cluster; a nonzero bitmap on a compressed cluster. Cluster
size must be at least 16 KiB. entry:subcluster(i) gives the state of one
subcluster, entry.bitmap the raw bitmap.
Writing (img:write, -w) works per subcluster, as QEMU does: the subclusters a
write covers become allocated and lose their zero bit, the others keep their
state; a new host cluster gets copies of the old cluster's allocated
subclusters. img:zero sets zero bits on whole subclusters and keeps the host
cluster. In the REPL, img:trace(function() img:write(0, "x") img:flush() end) on
such an image (opened with -w) shows the data write, then the entry and
its bitmap changing.]]

T["backing-chains"] = [[
Backing chains
An overlay names a backing file in its header (backing_file_offset and
backing_file_size; the format in the backing-format extension). Guest reads
of unallocated clusters (and unallocated subclusters) go to the backing file
at the same guest offset, and on down the chain; zero clusters stop the
descent and read as zeros. A relative backing name is resolved against the
overlay's directory. img:backing() gives the backing image (borrowed: it is
closed with its overlay); img:map() reports the depth at which each run is
found, as qemu-img map does.]]

T["feature-bits"] = [[
Header feature bits (v3)
incompatible_features: a reader must refuse an image with a bit it does
not know. 0 dirty (refcounts may be stale: lazy refcounts in use), 1
corrupt (do not write except to repair), 2 external data file, 3
compression type (compression_type is nonzero), 4 extended L2 entries.
compatible_features: may be ignored. 0 lazy refcounts: writes (img:write,
zero, discard) first set the dirty bit, and img:flush/close clears it once
everything is synced. A read-write open of a dirty image rebuilds its
refcounts from the references and clears the bit (as QEMU does); a
read-only open leaves it and shows it in header.features.
autoclear_features: a writer that does not know a bit must clear it
before writing. 0 bitmaps (the bitmaps extension is consistent), 1 raw
external data. header.features gives the names of the set bits;
header.feature_names decodes the feature name table extension.
An image marked corrupt opens with -w for repair only: guest writes are
refused until the bit is cleared (qemu-img check -r all, or by hand:
img.header.incompatible_features = img.header.incompatible_features & ~2).]]

T["raw-edits"] = [[
Raw edits (-w only; they bypass the format's rules on purpose)
  e.raw = v                        an L2 entry, or an active L1 entry
  img:set_refcount(host_off, n)    a refcount, through the refcount cache
  img:poke(host_off, bytes)        any bytes of the file
  img:peek(host_off, len)          read them back (any open image, help "forensic")
  img.header.<field> = v           a fixed header field, big-endian at its
                                   offset (only the width is checked;
                                   version 2 headers have no v3 fields)
img:edits() lists them with old and new values. Cached changes are written
back before a poke or a header edit. A poke into the header cluster, the
snapshot table or the bitmap directory, and every header edit, reads all
of it again and validates it as open does. If it no longer validates
(say cluster_bits = 40) the edit stays on disk and the image refuses
everything but img:poke and header edits with the validation error
(img.header_error) until one of them makes it valid again:
  img.header.cluster_bits = 40     -- img:read(...) now raises
  img.header.cluster_bits = 16     -- valid again, reads work]]

T.forensic = [[
Damaged images: opening them as QEMU does, and a forensic open
A normal open is never stricter than QEMU's: what QEMU checks only when it
uses a structure (a snapshot's L1 table, L2 tables, refcount blocks,
bitmaps) is checked when it is used, and tables reaching past the end of
the file read as zeros. Where QEMU refuses an image, the open refuses it
too, and its message says when a forensic open can read it:
  qinspect --force disk.qcow2                 (info/map/convert --force too)
  local d = qinspect.open("disk.qcow2", {force = true})
A forensic open reads any image whose header can be read (magic, version,
cluster size, header length, virtual size), read-only unless -w; a bad L1
or refcount table, refcount order, compression type, feature bit, snapshot
table, backing name or backing file is damage:
  img.damage                  what could not be loaded: a list of
                              {structure, offset, reason, code}
  img:peek(host_off, len)     raw bytes of the file (at most 1 MiB)
A damaged part stays unavailable (using it raises an error naming it; a bad
active L1 table: img:read raises, img.header and img:peek work); the rest
reads as usual: a bad snapshot table leaves the snapshots read before the
bad entry, a missing backing file reads as zeros.]]

T.bitmaps = [[
Persistent dirty bitmaps (img.bitmaps; bitmaps extension + autoclear bit 0)
Each bitmap has one bit per granule (granularity_bits) of guest data.
Flags: 1 in_use (not saved cleanly: inconsistent), 2 auto (enabled: tracks
writes). In a -w session qinspect keeps them as QEMU does: before the first
img:write, img:zero or img:discard it sets in_use on every auto bitmap (a
crash then leaves them marked inconsistent); each write, zero and discard
sets the bits of the granules it touches; img:flush(), close and the end of
the session write the bits (new clusters where the table entry was 0) and
clear in_use. Disabled bitmaps and bitmaps already in_use are not changed.]]

T.resize = [[
Resizing an image: img:resize(new_size [, {shrink=true}]) (needs -w), or
qinspect resize [--shrink] FILE [+|-]SIZE
The new size must be a multiple of 512. Growing: as qemu-img resize does,
the active L1 table grows to exactly the entries the new size needs: a new
table is written in new clusters, the header's l1_size and l1_table_offset
change in one synced 12-byte write, and the old table is freed; then the
header's size field is written. The new range reads as zeros.
Shrinking needs {shrink=true} (qemu-img's --shrink) and deletes all data
past the new end, as QEMU 7.2 does: every cluster from the new size
(rounded up to a cluster) to the old end is fully discarded (unallocated,
its host clusters freed and discarded in the file; an L1 entry without an
L2 table gets an empty one, as QEMU's discard makes), the L1 entries past
the new size are zeroed (the table keeps its size) and their L2 tables
freed, refcount blocks that count only themselves leave the refcount
table, the file is cut after its last used cluster, then the header's size
is written. Snapshots (compat 1.1) keep their own sizes.
Either way a crash leaves the old size or the new one (with leaked clusters
at most), the data below the smaller size intact. Refused: external data
files, persistent bitmaps, the dirty bit, growing over a backing file longer
than the image, snapshots in a compat 0.10 image, L1 tables beyond 32 MiB.]]

T.create = [[
Making an image: qinspect.create(path, size [, opts]), or qinspect create FILE SIZE
Lays the image out byte for byte as qemu-img create (7.2) does and returns
it open read-write. OPTS takes qemu-img's -o names:
  compat = "0.10" | "1.1"        cluster_size = 512 .. 2097152 (a power of two)
  refcount_bits = 1 .. 64        extended_l2 = true (clusters of 16 KiB or more)
  lazy_refcounts = true          compression_type = "zlib" | "zstd"
  data_file = "name"             data_file_raw = true (needs data_file)
  preallocation = "off" | "metadata" | "falloc" | "full"
  backing_file = "name"          backing_fmt = "qcow2" | "raw" | ...
The size is rounded up to 512 bytes. Combinations qemu-img refuses raise a
qinspect.error with qemu-img's reason (e.g. compat 0.10 with lazy refcounts,
extended L2 entries with 4 KiB clusters, refcount_bits not a power of two).
The header cluster is written last, after everything else is synced: a
crash leaves a file that is no qcow2 image, or a complete one.
  local new <close> = qinspect.create("new.qcow2", 1 << 30, {cluster_size = 4096})]]
T.snapshots = T.snapshots .. "\n\n" .. [[
Internal snapshots: img.snapshots lists them; with -w
  img:snapshot_create(name)         a snapshot of the current state; returns its id
  img:snapshot_apply(id_or_name)    revert to a snapshot (id first, then name)
  img:snapshot_delete(id_or_name)   delete a snapshot
(qinspect snapshot -c/-a/-d from the shell.) They do what qemu-img snapshot
7.2 does, byte for byte: create copies the active L1 table, gives every
cluster it reaches one more reference (a compressed cluster: each host
cluster it touches) and clears COPIED in the active tables; apply gives the
snapshot's clusters a reference, makes its L1 entries the active ones and
takes one from the old active clusters; delete writes the snapshot table
without the entry and takes one reference from its clusters. Where a
refcount returns to 1, COPIED is set again. Freed clusters are discarded
(hole punched), as QEMU does. A crash at any write leaves at most leaked
clusters. Refused before anything changes: a refcount that would exceed
its width (1- and 2-bit refcounts), an external data file, applying a
snapshot while the
image has persistent bitmaps (QEMU refuses that too).]]

T.check = [[
Checking an image: img:check{}, or qinspect check [-r leaks|all] FILE
Rebuilds every refcount in memory from the metadata and compares, as
qemu-img check does; returns qemu-img's counters under Lua names
(corruptions, leaks, check_errors, image_end_offset, total_clusters,
allocated_clusters, fragmented_clusters, compressed_clusters) and findings:
  local r = img:check{}
  for _, f in ipairs(r.findings) do
    print(f.severity, f.code, f.structure, string.format("0x%x", f.offset))
  end
Each finding: code (a key of qinspect.problems), severity, summary,
structure, offset, guest_offset/guest_length (when a guest range is hit),
expected, found, and qemu: the line qemu-img check prints for it.
Repair (image opened -w): img:check{repair = "leaks"} or {repair = "all"}
repairs as qemu-img check -r does, in crash-safe order, and returns the
check of the repaired image with corruptions_fixed and leaks_fixed; the
first r.repaired findings are the repair pass's (fixed = true, fix says
what changed). -r all also makes an entry past the end of the file a zero
cluster (qemu-img leaves it); on a dedup image COPIED missing is left.]]

T.problems = nil -- generated from qinspect.problems below

local function problems_text()
  local P = require("qinspect").problems
  local list = {}
  for _, p in pairs(P) do list[#list + 1] = p end
  table.sort(list, function(a, b) return a.order < b.order end)
  local out = { "Problems explain() can detect (the C problem table, qinspect.problems):" }
  for _, p in ipairs(list) do
    out[#out + 1] = string.format("  %-30s %-10s %s", p.name, p.severity, p.summary)
  end
  return table.concat(out, "\n")
end

local function topics_text()
  local names = { "problems" }
  for k in pairs(T) do names[#names + 1] = k end
  table.sort(names)
  return "help topics: " .. table.concat(names, ", ") .. "\n(e.g. help \"copied\")"
end

-- M.topics: the topic names (for tests and completion).
function M.topics()
  local names = { "problems" }
  for k in pairs(T) do names[#names + 1] = k end
  table.sort(names)
  return names
end

-- M.text([obj]) -> the help text.
function M.text(obj)
  local mt = getmetatable(obj)
  if obj == nil then
    return GENERAL
  elseif type(mt) == "table" and mt.__qi_label then
    return help_object(mt)
  elseif type(obj) == "string" then
    local key = obj:lower():gsub("[%s_]", "-")
    if key == "topics" then return topics_text() end
    if key == "problems" then return problems_text() end
    if T[key] then return T[key] end
    for k, v in pairs(T) do
      if k:find(key, 1, true) then return v end
    end
    return "no help topic '" .. obj .. "'\n" .. topics_text()
  elseif type(obj) == "table" then
    return help_table(obj)
  elseif type(obj) == "function" then
    return help_function(obj)
  end
  return "a " .. type(obj) .. " value: no help for it"
end

-- help([obj]): print the help text; returns nothing (the REPL would print
-- a returned nil after the text).
function M.help(obj)
  print(M.text(obj))
end

return M
