/* problem.c - the problem table (layer 5).
 *
 * One record per problem qinspect can name: {code, name, severity, summary,
 * explanation}, the e2fsck problem.c pattern. Both explain() in Lua and the
 * check (check.c) render these records, so a rule is worded once
 * (STYLE convention 13). Pure table: calls nothing. */
#include <string.h>

#include "problem.h"

static const qi_problem table[] = {
    { QI_PROB_L1_RESERVED, "l1_reserved_bits", QI_SEV_CORRUPTION,
      "L1 entry has reserved bits set",
      "An L1 entry uses bits 9-55 for the L2 table offset and bit 63 for COPIED; bits 0-8 and "
      "56-62 are reserved and must be 0. A set reserved bit means the entry was not written by a "
      "qcow2 implementation, and newer qemu-img check counts it as a corruption." },
    { QI_PROB_L2_RESERVED, "l2_reserved_bits", QI_SEV_CORRUPTION,
      "L2 entry has reserved bits set",
      "A standard L2 entry uses bit 0 (zero flag), bits 9-55 (host cluster offset), bit 62 "
      "(compressed) and bit 63 (COPIED); bits 1-8 and 56-61 are reserved and must be 0 (with "
      "extended L2 entries bit 0 is reserved too). Newer qemu-img check counts a set reserved "
      "bit as a corruption." },
    { QI_PROB_REFTABLE_RESERVED, "reftable_reserved_bits", QI_SEV_CORRUPTION,
      "refcount table entry has reserved bits set",
      "A refcount table entry holds the offset of a refcount block in bits 9-63; bits 0-8 are "
      "reserved and must be 0." },
    { QI_PROB_L2_TABLE_UNALIGNED, "l2_table_unaligned", QI_SEV_CORRUPTION,
      "L2 table offset is not cluster aligned",
      "Every L2 table fills exactly one cluster, so the offset an L1 entry gives must be a "
      "multiple of the cluster size. qemu-img check reports an unaligned L2 offset as a "
      "corruption and QEMU refuses to use the table." },
    { QI_PROB_DATA_UNALIGNED, "data_cluster_unaligned", QI_SEV_CORRUPTION,
      "data cluster offset is not cluster aligned",
      "A normal or preallocated-zero L2 entry points at a whole host cluster, so its offset must "
      "be a multiple of the cluster size (only compressed clusters use byte offsets). qemu-img "
      "check: \"Data cluster is not properly aligned; L2 entry corrupted\"." },
    { QI_PROB_REFBLOCK_UNALIGNED, "refblock_unaligned", QI_SEV_CORRUPTION,
      "refcount block offset is not cluster aligned",
      "Each refcount block is one cluster, so a refcount table entry must hold a multiple of the "
      "cluster size; QEMU refuses an unaligned block." },
    { QI_PROB_TABLE_UNALIGNED, "table_unaligned", QI_SEV_CORRUPTION,
      "metadata table offset is not cluster aligned",
      "The L1 table, the refcount table, the snapshot table and every snapshot's L1 table must "
      "start at a multiple of the cluster size; QEMU refuses to open an image whose header "
      "gives an unaligned table offset." },
    { QI_PROB_COPIED_SHARED, "copied_but_shared", QI_SEV_CORRUPTION,
      "COPIED is set but the cluster's refcount is above 1",
      "COPIED (bit 63) promises that this entry is the only reference to the cluster, so QEMU "
      "writes through it in place. With a refcount above 1 the cluster is shared (with a "
      "snapshot, or on a dedup image with another guest offset), and an in-place write would "
      "change the other owner's data too. This is a corruption on every image, plain or dedup." },
    { QI_PROB_COPIED_MISSING, "copied_missing", QI_SEV_CORRUPTION,
      "COPIED is clear but the cluster's refcount is 1",
      "On a plain qcow2 image COPIED is set exactly when the refcount is 1, and qemu-img check "
      "reports the clear flag as a corruption (ERROR OFLAG_COPIED; repaired by -r all or "
      "-r leaks). The data is safe: the only cost is one needless copy-on-write on the next "
      "write through this entry." },
    { QI_PROB_COPIED_MISSING_DEDUP, "copied_missing_dedup", QI_SEV_NOTE,
      "COPIED is clear on a dedup image while the refcount is 1 (allowed)",
      "On a dedup image COPIED is cleared when a cluster becomes shared and is not set again "
      "when overwrites bring the refcount back to 1, because finding the last owner would mean "
      "scanning every L2 table. So a clear flag with refcount 1 is allowed there: the next "
      "write through this entry does one extra copy-on-write. Stock qemu-img check does not "
      "know this rule and still reports it as a corruption; that report is harmless." },
    { QI_PROB_COMPRESSED_COPIED, "compressed_copied", QI_SEV_CORRUPTION,
      "compressed cluster has COPIED set",
      "A compressed cluster is never written in place (a write always allocates a new cluster), "
      "so COPIED must be 0. qemu-img check: \"copied flag must never be set for compressed "
      "clusters\"." },
    { QI_PROB_SUBCLUSTER_BOTH, "subcluster_allocated_and_zero", QI_SEV_CORRUPTION,
      "a subcluster is marked both allocated and zero",
      "In an extended L2 entry bit x of the bitmap says subcluster x is allocated and bit 32+x "
      "says it reads as zeros. Both at once is invalid, and newer qemu-img check counts it as "
      "a corruption." },
    { QI_PROB_SUBCLUSTER_UNALLOCATED, "subcluster_without_cluster", QI_SEV_CORRUPTION,
      "subclusters are marked allocated but the entry has no host cluster",
      "An allocation bit (bits 0-31 of the bitmap) says the subcluster's data is in the host "
      "cluster, so the entry must have a host offset. With offset 0 there is nowhere to read "
      "the data from." },
    { QI_PROB_COMPRESSED_BITMAP, "compressed_bitmap", QI_SEV_CORRUPTION,
      "compressed cluster has a nonzero subcluster bitmap",
      "Compressed clusters are always whole clusters; in extended L2 entries their bitmap is "
      "reserved and must be 0." },
    { QI_PROB_PAST_EOF, "past_end_of_file", QI_SEV_CORRUPTION,
      "offset points past the end of the file",
      "A reference to a host cluster must lie inside the image file. Reading there returns "
      "nothing (or zeros), and qemu-img check reports a reference more than one cluster past "
      "the end as a corruption." },
    { QI_PROB_REFCOUNT_ZERO, "refcount_zero_referenced", QI_SEV_CORRUPTION,
      "cluster is referenced but its refcount is 0",
      "A refcount of 0 means the cluster is free, so the next allocation may reuse it and "
      "overwrite what this reference points at. qemu-img check reports it as a corruption and "
      "-r all rebuilds the refcount structure." },
    { QI_PROB_REFCOUNT_LOW, "refcount_below_references", QI_SEV_CORRUPTION,
      "cluster has more references than its refcount says",
      "The refcount must equal the number of references (L1/L2 entries in the active tables "
      "and in every snapshot, plus metadata). With fewer, freeing one owner drops the count to "
      "0 while another still uses the cluster. qemu-img check: \"ERROR cluster N refcount=r1 "
      "reference=r2\"; fixed by -r all." },
    { QI_PROB_REFCOUNT_HIGH, "refcount_above_references", QI_SEV_LEAK,
      "cluster's refcount is higher than its references (leak)",
      "The refcount counts owners that do not exist, so the cluster is never freed. This wastes "
      "space but loses no data. qemu-img check: \"Leaked cluster N refcount=r1 reference=r2\"; "
      "fixed by -r leaks." },
    { QI_PROB_REFCOUNT_OVERFLOW, "refcount_overflow", QI_SEV_CORRUPTION,
      "cluster has more references than the refcount width can count",
      "Each refcount holds refcount_bits bits, so a cluster can have at most 2^bits - 1 "
      "owners (1 with 1-bit refcounts). More references than that cannot be recorded; "
      "qemu-img check reports \"ERROR: overflow cluster offset=...\" and suggests "
      "qemu-img amend to a wider refcount_bits." },
    { QI_PROB_REFBLOCK_REFCOUNT, "refblock_refcount", QI_SEV_CORRUPTION,
      "refcount block is referenced more than once",
      "A refcount block belongs to the refcount table alone, so its cluster must have exactly "
      "one reference. More means it overlaps other metadata or data (an L2 table, a data "
      "cluster, another block): a write to either destroys the other. qemu-img check: "
      "\"ERROR refcount block N refcount=M\"; -r all rebuilds the refcount structure." },
    { QI_PROB_REFBLOCK_PAST_EOF, "refblock_outside_image", QI_SEV_CORRUPTION,
      "refcount block lies outside the image file",
      "A refcount table entry points past the end of the file, so the refcounts of its range "
      "cannot be read. qemu-img check: \"ERROR refcount block N is outside image\"." },
    { QI_PROB_SUBCLUSTER_UNALLOC_ENTRY, "unallocated_with_subclusters", QI_SEV_CORRUPTION,
      "unallocated cluster has allocated subclusters",
      "An extended L2 entry without a host offset cannot have allocation bits set: there is "
      "no cluster to read the subclusters from. qemu-img check: \"ERROR: Unallocated cluster "
      "has non-zero subcluster allocation map\"." },
    { QI_PROB_COMPRESSED_DATA_FILE, "compressed_with_data_file", QI_SEV_CORRUPTION,
      "compressed cluster in an image with an external data file",
      "An image whose guest data lives in an external data file cannot hold compressed "
      "clusters (they would have to be in the qcow2 file). qemu-img check counts each as a "
      "corruption." },
    { QI_PROB_READ_ERROR, "read_error", QI_SEV_CORRUPTION,
      "a metadata structure could not be read",
      "The check could not read a table it needs, so it could not complete (qemu-img check "
      "counts this as a check error, exit status 1)." },
    { QI_PROB_SNAPSHOT_INCOMPLETE, "snapshot_incomplete", QI_SEV_CORRUPTION,
      "a snapshot table entry is incomplete",
      "In a version 3 image every snapshot's extra data must hold at least the 64-bit VM "
      "state size and the disk size (16 bytes). A shorter entry leaves the snapshot's disk "
      "size unknown; qemu-img check counts it as a corruption and its repair rewrites the "
      "entry with the extra data filled in." },
};

#define N_PROBLEMS (sizeof table / sizeof table[0])

const qi_problem *qi_problem_lookup(qi_problem_code code)
{
    for (size_t i = 0; i < N_PROBLEMS; i++)
        if (table[i].code == code)
            return &table[i];
    return NULL;
}

const qi_problem *qi_problem_find(const char *name)
{
    for (size_t i = 0; name && i < N_PROBLEMS; i++)
        if (!strcmp(table[i].name, name))
            return &table[i];
    return NULL;
}

size_t qi_problem_count(void)
{
    return N_PROBLEMS;
}

const qi_problem *qi_problem_at(size_t i)
{
    return i < N_PROBLEMS ? &table[i] : NULL;
}

const char *qi_severity_name(qi_severity s)
{
    switch (s) {
    case QI_SEV_NOTE: return "note";
    case QI_SEV_LEAK: return "leak";
    case QI_SEV_CORRUPTION: return "corruption";
    }
    return "unknown";
}

/* What `check -r` does about each problem (qemu-img's repair, and where
 * qinspect's differs, why): shown by `check --explain` and explain(). */
static const struct { qi_problem_code code; const char *text; } repairs[] = {
    { QI_PROB_L1_RESERVED, "not repaired (neither does qemu-img): the entry needs a hand edit" },
    { QI_PROB_L2_RESERVED, "not repaired (neither does qemu-img): the entry needs a hand edit" },
    { QI_PROB_REFTABLE_RESERVED, "-r all rebuilds the refcount structures" },
    { QI_PROB_L2_TABLE_UNALIGNED, "not repaired (neither does qemu-img): the table the entry "
      "means cannot be known; fix the entry by hand" },
    { QI_PROB_DATA_UNALIGNED, "-r all makes a preallocated-zero entry a zero cluster (as "
      "qemu-img); a data entry is left (neither tool can know the cluster it meant)" },
    { QI_PROB_REFBLOCK_UNALIGNED, "-r all rebuilds the refcount structures" },
    { QI_PROB_TABLE_UNALIGNED, "not repaired: the header field needs a hand edit" },
    { QI_PROB_COPIED_SHARED, "-r all clears COPIED (-r leaks too when nothing else is wrong)" },
    { QI_PROB_COPIED_MISSING, "-r all sets COPIED (-r leaks too when nothing else is wrong)" },
    { QI_PROB_COPIED_MISSING_DEDUP, "nothing to repair: allowed on a dedup image" },
    { QI_PROB_COMPRESSED_COPIED, "not repaired (neither does qemu-img); QEMU reads the cluster" },
    { QI_PROB_SUBCLUSTER_BOTH, "not repaired (neither does qemu-img): the bitmap needs a hand "
      "edit" },
    { QI_PROB_SUBCLUSTER_UNALLOCATED, "not repaired (neither does qemu-img)" },
    { QI_PROB_COMPRESSED_BITMAP, "-r all clears the bitmap and keeps the compressed data "
      "(qemu-img frees the cluster and loses it)" },
    { QI_PROB_PAST_EOF, "-r all makes the entry a zero cluster (it reads as zeros already; "
      "qemu-img leaves it): the guest range's data is lost either way" },
    { QI_PROB_REFCOUNT_ZERO, "-r all raises the refcount to the references" },
    { QI_PROB_REFCOUNT_LOW, "-r all raises the refcount to the references" },
    { QI_PROB_REFCOUNT_HIGH, "-r leaks and -r all lower the refcount to the references" },
    { QI_PROB_REFCOUNT_OVERFLOW, "not repaired: widen the refcounts (qemu-img amend -o "
      "refcount_bits=) or convert to a new image" },
    { QI_PROB_REFBLOCK_REFCOUNT, "-r all rebuilds the refcount structures" },
    { QI_PROB_REFBLOCK_PAST_EOF, "-r all rebuilds the refcount structures" },
    { QI_PROB_SUBCLUSTER_UNALLOC_ENTRY, "not repaired (neither does qemu-img)" },
    { QI_PROB_COMPRESSED_DATA_FILE, "not repaired (neither does qemu-img)" },
    { QI_PROB_READ_ERROR, "-r all rebuilds the refcount structures when they cannot be read; "
      "otherwise nothing can be repaired until the metadata reads" },
};

const char *qi_problem_repair(qi_problem_code code)
{
    for (size_t i = 0; i < sizeof repairs / sizeof repairs[0]; i++)
        if (repairs[i].code == code)
            return repairs[i].text;
    return NULL;
}
