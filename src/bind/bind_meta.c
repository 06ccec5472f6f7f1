/* bind_meta.c - the header and snapshot-table objects (layer 6).
 *
 * img.header is a child object (STYLE convention 9) whose fields are every
 * field of qi_header plus decoded views: `features` (set bits by name,
 * qi_meta_feature_name), `extensions`, backing_file, backing_format and
 * data_file. img.snapshots is a 0-based list object of snapshot entries;
 * a snapshot's `l1` is an L1 table object. Every access re-reads through
 * the engine, and every object pins the image through its user value.
 * Fields are field tables (convention 10); the fixed header fields have
 * setters, raw edits through qi_meta_header_set (version 3 fields refused
 * on a version 2 header, values checked against the field's width only).
 * Calls: bind_util, bind_err, bind_table, include/qi. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bind_int.h"

typedef struct header_obj {
    uint8_t kind;   /* no coordinates: there is one header per image */
} header_obj;

typedef struct snaptab_obj {
    uint8_t kind;
} snaptab_obj;

typedef struct snap_obj {
    uint32_t index; /* position in the snapshot table */
} snap_obj;

/* ---- header ---- */

static const qi_header *hdr(lua_State *L, qi_image *img)
{
    const qi_header *h = qi_meta_header(img);
    if (!h)
        luaL_error(L, "a raw image has no qcow2 header");
    return h;
}

#define HDR_FIELD(f)                                                     \
    static int h_##f(lua_State *L, void *o, qi_image *img)               \
    {                                                                    \
        (void)o;                                                         \
        lua_pushinteger(L, (lua_Integer)hdr(L, img)->f);                 \
        return 1;                                                        \
    }
HDR_FIELD(magic)
HDR_FIELD(version)
HDR_FIELD(backing_file_offset)
HDR_FIELD(backing_file_size)
HDR_FIELD(cluster_bits)
HDR_FIELD(size)
HDR_FIELD(crypt_method)
HDR_FIELD(l1_size)
HDR_FIELD(l1_table_offset)
HDR_FIELD(refcount_table_offset)
HDR_FIELD(refcount_table_clusters)
HDR_FIELD(nb_snapshots)
HDR_FIELD(snapshots_offset)
HDR_FIELD(incompatible_features)
HDR_FIELD(compatible_features)
HDR_FIELD(autoclear_features)
HDR_FIELD(refcount_order)
HDR_FIELD(header_length)
HDR_FIELD(compression_type)
#undef HDR_FIELD

/* img.header.<field> = v: a raw edit of the field's bytes on disk (big-endian
 * at its offset, through img:poke's path), no rule checked but the field's
 * width; the header is then read again and validated (if it no longer
 * validates, the edit stays and the image refuses all but raw edits until
 * one makes it valid again). Logged in img:edits(). */
static int set_field(lua_State *L, qi_image *img, int val, const char *name)
{
    uint64_t old, v = (uint64_t)luaL_checkinteger(L, val);
    const qi_header_field *f = qi_meta_header_field(name);
    char what[80];
    int rc;
    if ((rc = qi_meta_header_set(img, name, v, &old)) < 0)
        return qi_bind_raise(L, img, rc);
    snprintf(what, sizeof what, "header %s (%u bytes at %u)", name, (unsigned)f->width,
             (unsigned)f->offset);
    qi_bind_log_edit(L, 1, what, old, v);
    return 0;
}

#define HDR_SETTER(f)                                                    \
    static int hs_##f(lua_State *L, void *o, qi_image *img, int val)     \
    {                                                                    \
        (void)o;                                                         \
        return set_field(L, img, val, #f);                               \
    }
HDR_SETTER(magic)
HDR_SETTER(version)
HDR_SETTER(backing_file_offset)
HDR_SETTER(backing_file_size)
HDR_SETTER(cluster_bits)
HDR_SETTER(size)
HDR_SETTER(crypt_method)
HDR_SETTER(l1_size)
HDR_SETTER(l1_table_offset)
HDR_SETTER(refcount_table_offset)
HDR_SETTER(refcount_table_clusters)
HDR_SETTER(nb_snapshots)
HDR_SETTER(snapshots_offset)
HDR_SETTER(incompatible_features)
HDR_SETTER(compatible_features)
HDR_SETTER(autoclear_features)
HDR_SETTER(refcount_order)
HDR_SETTER(header_length)
HDR_SETTER(compression_type)
#undef HDR_SETTER

/* A list of the names of the set bits of BITS (type 0/1/2). */
static void push_bit_names(lua_State *L, qi_image *img, int type, uint64_t bits)
{
    int n = 0;
    lua_newtable(L);
    for (int bit = 0; bit < 64; bit++) {
        const char *name;
        if (!(bits >> bit & 1))
            continue;
        name = qi_meta_feature_name(img, type, bit);
        if (name)
            lua_pushstring(L, name);
        else
            lua_pushfstring(L, "bit %d", bit);
        lua_rawseti(L, -2, ++n);
    }
}

static int h_features(lua_State *L, void *o, qi_image *img)
{
    const qi_header *h = hdr(L, img);
    (void)o;
    lua_createtable(L, 0, 3);
    push_bit_names(L, img, 0, h->incompatible_features);
    lua_setfield(L, -2, "incompatible");
    push_bit_names(L, img, 1, h->compatible_features);
    lua_setfield(L, -2, "compatible");
    push_bit_names(L, img, 2, h->autoclear_features);
    lua_setfield(L, -2, "autoclear");
    return 1;
}

static const char *ext_name(uint32_t type)
{
    switch (type) {
    case QI_EXT_BACKING_FMT: return "backing format";
    case QI_EXT_FEATURES: return "feature name table";
    case QI_EXT_BITMAPS: return "bitmaps";
    case QI_EXT_CRYPTO: return "full disk encryption";
    case QI_EXT_DATA_FILE: return "external data file";
    default: return "unknown";
    }
}

static int h_extensions(lua_State *L, void *o, qi_image *img)
{
    uint32_t n = 0;
    const qi_ext *x = qi_meta_extensions(img, &n);
    (void)o;
    lua_createtable(L, (int)n, 0);
    for (uint32_t i = 0; i < n; i++) {
        lua_createtable(L, 0, 5);
        lua_pushinteger(L, x[i].type);
        lua_setfield(L, -2, "type");
        lua_pushstring(L, ext_name(x[i].type));
        lua_setfield(L, -2, "name");
        lua_pushinteger(L, x[i].length);
        lua_setfield(L, -2, "length");
        lua_pushinteger(L, (lua_Integer)x[i].offset);
        lua_setfield(L, -2, "offset");
        lua_pushlstring(L, (const char *)x[i].data, x[i].data ? x[i].length : 0);
        lua_setfield(L, -2, "data");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* The feature name table extension decoded: list of {type, type_name,
 * bit, name} in on-disk order (empty when the image has no table). */
static int h_feature_names(lua_State *L, void *o, qi_image *img)
{
    static const char *const tn[] = { "incompatible", "compatible", "autoclear" };
    uint32_t n = 0;
    const qi_feature_name *f = qi_meta_feature_names(img, &n);
    (void)o;
    lua_createtable(L, (int)n, 0);
    for (uint32_t i = 0; i < n; i++) {
        lua_createtable(L, 0, 4);
        lua_pushinteger(L, f[i].type);
        lua_setfield(L, -2, "type");
        lua_pushstring(L, f[i].type < 3 ? tn[f[i].type] : "unknown");
        lua_setfield(L, -2, "type_name");
        lua_pushinteger(L, f[i].bit);
        lua_setfield(L, -2, "bit");
        lua_pushstring(L, f[i].name);
        lua_setfield(L, -2, "name");
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int push_opt_string(lua_State *L, const char *s)
{
    if (s)
        lua_pushstring(L, s);
    else
        lua_pushnil(L);
    return 1;
}

static int h_backing_file(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    return push_opt_string(L, qi_image_backing_name(img));
}

static int h_backing_format(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    return push_opt_string(L, qi_image_backing_format(img));
}

static int h_data_file(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    return push_opt_string(L, qi_image_data_file_name(img));
}

#define RAW QI_FIELD_RAW_EDIT
static const qi_bind_field header_fields[] = {
    { "magic", h_magic, hs_magic, RAW, "0x514649fb (\"QFI\\xfb\")" },
    { "version", h_version, hs_version, RAW, "2 or 3" },
    { "backing_file_offset", h_backing_file_offset, hs_backing_file_offset, RAW, "where the backing file name is" },
    { "backing_file_size", h_backing_file_size, hs_backing_file_size, RAW, "length of the backing file name" },
    { "cluster_bits", h_cluster_bits, hs_cluster_bits, RAW, "log2 of the cluster size" },
    { "size", h_size, hs_size, RAW, "virtual disk size in bytes" },
    { "crypt_method", h_crypt_method, hs_crypt_method, RAW, "0 none, 1 AES, 2 LUKS" },
    { "l1_size", h_l1_size, hs_l1_size, RAW, "entries in the active L1 table" },
    { "l1_table_offset", h_l1_table_offset, hs_l1_table_offset, RAW, "host offset of the active L1 table" },
    { "refcount_table_offset", h_refcount_table_offset, hs_refcount_table_offset, RAW, "host offset of the refcount table" },
    { "refcount_table_clusters", h_refcount_table_clusters, hs_refcount_table_clusters, RAW, "clusters of the refcount table" },
    { "nb_snapshots", h_nb_snapshots, hs_nb_snapshots, RAW, "number of internal snapshots" },
    { "snapshots_offset", h_snapshots_offset, hs_snapshots_offset, RAW, "host offset of the snapshot table" },
    { "incompatible_features", h_incompatible_features, hs_incompatible_features, RAW, "incompatible feature bits" },
    { "compatible_features", h_compatible_features, hs_compatible_features, RAW, "compatible feature bits" },
    { "autoclear_features", h_autoclear_features, hs_autoclear_features, RAW, "autoclear feature bits" },
    { "refcount_order", h_refcount_order, hs_refcount_order, RAW, "log2 of the refcount width in bits" },
    { "header_length", h_header_length, hs_header_length, RAW, "bytes of the header before extensions" },
    { "compression_type", h_compression_type, hs_compression_type, RAW, "0 zlib (deflate), 1 zstd" },
    { "features", h_features, NULL, QI_FIELD_DERIVED,
      "set feature bits by name: {incompatible=, compatible=, autoclear=}" },
    { "extensions", h_extensions, NULL, QI_FIELD_DERIVED,
      "header extensions: list of {type, name, length, offset, data}" },
    { "feature_names", h_feature_names, NULL, QI_FIELD_DERIVED,
      "feature name table extension: list of {type, type_name, bit, name}" },
    { "backing_file", h_backing_file, NULL, 0, "backing file name as stored (or nil)" },
    { "backing_format", h_backing_format, NULL, 0, "backing format extension (or nil)" },
    { "data_file", h_data_file, NULL, 0, "external data file name (or nil)" },
    { NULL, NULL, NULL, 0, NULL }
};
#undef RAW

static int header_tostring(lua_State *L)
{
    qi_image *img;
    const qi_header *h;
    qi_bind_checkchild(L, 1, QI_MT_HEADER, &img);
    h = hdr(L, img);
    char cs[40];
    if (h->cluster_bits >= 9 && h->cluster_bits <= 21)
        qi_bind_format_size(cs, sizeof cs, (uint64_t)1 << h->cluster_bits);
    else    /* a header being repaired by hand: say what is there */
        snprintf(cs, sizeof cs, "cluster_bits %u (invalid)", (unsigned)h->cluster_bits);
    lua_pushfstring(L, "qcow2 v%d header: %s clusters, size %I, l1_size %d, %d snapshots",
                    (int)h->version, cs, (lua_Integer)h->size,
                    (int)h->l1_size, (int)h->nb_snapshots);
    return 1;
}

static const qi_bind_class header_class = {
    QI_MT_HEADER, "header", NULL, header_fields, NULL, NULL, header_tostring,
    qi_bind_child_eq, NULL
};

/* Push the header object of the image box at IMAGE_IDX. */
void qi_bind_push_header(lua_State *L, int image_idx)
{
    qi_bind_newchild(L, sizeof(header_obj), image_idx, QI_MT_HEADER);
}

/* ---- snapshots ---- */

/* Argument ARG as a snapshot: a 0-based index, or an id or a name (ids are
 * matched first, as qemu-img does). Returns the index; raises if none. */
uint32_t qi_bind_checksnapshot(lua_State *L, qi_image *img, int arg)
{
    uint32_t n = 0;
    const qi_snapshot *s = qi_meta_snapshots(img, &n);
    if (lua_isinteger(L, arg)) {
        lua_Integer i = lua_tointeger(L, arg);
        luaL_argcheck(L, i >= 0 && i < (lua_Integer)n, arg, "no snapshot with this index");
        return (uint32_t)i;
    }
    const char *key = luaL_checkstring(L, arg);
    for (uint32_t i = 0; i < n; i++)
        if (s[i].id && !strcmp(s[i].id, key))
            return i;
    for (uint32_t i = 0; i < n; i++)
        if (s[i].name && !strcmp(s[i].name, key))
            return i;
    lua_pushfstring(L, "no snapshot with id or name '%s'", key);
    return (uint32_t)luaL_argerror(L, arg, lua_tostring(L, -1));
}

static const qi_snapshot *snap_get(lua_State *L, qi_image **img)
{
    snap_obj *o = qi_bind_checkchild(L, 1, QI_MT_SNAPSHOT, img);
    uint32_t n = 0;
    const qi_snapshot *s = qi_meta_snapshots(*img, &n);
    if (o->index >= n)
        luaL_error(L, "snapshot %d no longer exists", (int)o->index);
    return &s[o->index];
}

#define SNAP_FIELD(f)                                                    \
    static int s_##f(lua_State *L, void *o, qi_image *img)               \
    {                                                                    \
        (void)o;                                                         \
        lua_pushinteger(L, (lua_Integer)snap_get(L, &img)->f);           \
        return 1;                                                        \
    }
SNAP_FIELD(entry_offset)
SNAP_FIELD(l1_table_offset)
SNAP_FIELD(l1_size)
SNAP_FIELD(date_sec)
SNAP_FIELD(date_nsec)
SNAP_FIELD(vm_clock_nsec)
SNAP_FIELD(vm_state_size)
SNAP_FIELD(extra_data_size)
#undef SNAP_FIELD

static int s_index(lua_State *L, void *o, qi_image *img)
{
    (void)img;
    lua_pushinteger(L, ((snap_obj *)o)->index);
    return 1;
}

static int s_id(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    return push_opt_string(L, snap_get(L, &img)->id);
}

static int s_name(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    return push_opt_string(L, snap_get(L, &img)->name);
}

static int s_disk_size(lua_State *L, void *o, qi_image *img)
{
    const qi_snapshot *s = snap_get(L, &img);
    (void)o;
    if (s->has_disk_size)
        lua_pushinteger(L, (lua_Integer)s->disk_size);
    else
        lua_pushnil(L);
    return 1;
}

static int s_icount(lua_State *L, void *o, qi_image *img)
{
    const qi_snapshot *s = snap_get(L, &img);
    (void)o;
    if (s->has_icount)
        lua_pushinteger(L, (lua_Integer)s->icount);
    else
        lua_pushnil(L);
    return 1;
}

static int s_l1(lua_State *L, void *o, qi_image *img)
{
    const qi_snapshot *s = snap_get(L, &img);
    qi_bind_pushowner(L, 1);
    qi_bind_push_l1table(L, -1, s->l1_table_offset, s->l1_size,
                         ((snap_obj *)o)->index);
    return 1;
}

/* snap:read(offset, length) -> string of this snapshot's guest view. */
static int s_read(lua_State *L)
{
    qi_image *img;
    snap_obj *o = qi_bind_checkchild(L, 1, QI_MT_SNAPSHOT, &img);
    uint64_t off = qi_bind_checkoffset(L, 2);
    size_t len = qi_bind_checklength(L, 3);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, len);
    int rc;
    if ((rc = qi_image_read_snapshot(img, o->index, p, off, len)) < 0)
        return qi_bind_raise(L, img, rc);
    luaL_pushresultsize(&b, len);
    return 1;
}

static const qi_bind_field snap_fields[] = {
    { "index", s_index, NULL, QI_FIELD_DERIVED, "position in the snapshot table (0-based)" },
    { "id", s_id, NULL, 0, "unique id string" },
    { "name", s_name, NULL, 0, "name" },
    { "date_sec", s_date_sec, NULL, 0, "creation time, seconds since the epoch" },
    { "date_nsec", s_date_nsec, NULL, 0, "creation time, nanoseconds part" },
    { "vm_clock_nsec", s_vm_clock_nsec, NULL, 0, "guest clock when taken" },
    { "vm_state_size", s_vm_state_size, NULL, 0, "bytes of saved VM state" },
    { "extra_data_size", s_extra_data_size, NULL, 0, "bytes of extra data in the entry" },
    { "disk_size", s_disk_size, NULL, 0, "virtual size when taken (nil if not stored)" },
    { "icount", s_icount, NULL, 0, "instruction count (nil if not stored)" },
    { "l1_table_offset", s_l1_table_offset, NULL, 0, "host offset of its L1 table" },
    { "l1_size", s_l1_size, NULL, 0, "entries in its L1 table" },
    { "entry_offset", s_entry_offset, NULL, QI_FIELD_DERIVED, "host offset of this entry" },
    { "l1", s_l1, NULL, QI_FIELD_DERIVED, "its L1 table object" },
    { NULL, NULL, NULL, 0, NULL }
};

static int snap_tostring(lua_State *L)
{
    qi_image *img;
    const qi_snapshot *s = snap_get(L, &img);
    lua_pushfstring(L, "snapshot %d: id '%s', name '%s', %d L1 entries",
                    (int)((snap_obj *)lua_touserdata(L, 1))->index, s->id ? s->id : "",
                    s->name ? s->name : "", (int)s->l1_size);
    return 1;
}

static const luaL_Reg snap_methods[] = {
    { "read", s_read },
    { NULL, NULL }
};

static const qi_bind_class snap_class = {
    QI_MT_SNAPSHOT, "snapshot", snap_methods, snap_fields, NULL, NULL,
    snap_tostring, qi_bind_child_eq, NULL
};

/* ---- the snapshot table (list object) ---- */

static int st_len(lua_State *L)
{
    qi_image *img;
    uint32_t n = 0;
    qi_bind_checkchild(L, 1, QI_MT_SNAPTABLE, &img);
    qi_meta_snapshots(img, &n);
    lua_pushinteger(L, n);
    return 1;
}

static void push_snap(lua_State *L, int owner_of, uint32_t index)
{
    snap_obj *o;
    qi_bind_pushowner(L, owner_of);
    o = qi_bind_newchild(L, sizeof *o, -1, QI_MT_SNAPSHOT);
    o->index = index;
    lua_remove(L, -2);
}

static int st_index_int(lua_State *L)
{
    qi_image *img;
    uint32_t n = 0;
    lua_Integer i = luaL_checkinteger(L, 2);
    qi_bind_checkchild(L, 1, QI_MT_SNAPTABLE, &img);
    qi_meta_snapshots(img, &n);
    if (i < 0 || i >= (lua_Integer)n)
        return 0;
    push_snap(L, 1, (uint32_t)i);
    return 1;
}

/* snaps:find(id_or_name) -> snapshot, or nil. */
static int st_find(lua_State *L)
{
    qi_image *img;
    uint32_t n = 0;
    const char *key = luaL_checkstring(L, 2);
    qi_bind_checkchild(L, 1, QI_MT_SNAPTABLE, &img);
    const qi_snapshot *s = qi_meta_snapshots(img, &n);
    for (int pass = 0; pass < 2; pass++)
        for (uint32_t i = 0; i < n; i++)
            if (!strcmp(pass ? (s[i].name ? s[i].name : "") : (s[i].id ? s[i].id : ""), key)) {
                push_snap(L, 1, i);
                return 1;
            }
    lua_pushnil(L);
    return 1;
}

static int st_offset(lua_State *L, void *o, qi_image *img)
{
    const qi_header *h = qi_meta_header(img);
    (void)o;
    lua_pushinteger(L, h ? (lua_Integer)h->snapshots_offset : 0);
    return 1;
}

static int st_tostring(lua_State *L)
{
    qi_image *img;
    uint32_t n = 0;
    qi_bind_checkchild(L, 1, QI_MT_SNAPTABLE, &img);
    qi_meta_snapshots(img, &n);
    lua_pushfstring(L, "snapshot table (%d entries)", (int)n);
    return 1;
}

static const qi_bind_field st_fields[] = {
    { "offset", st_offset, NULL, QI_FIELD_DERIVED, "host offset of the snapshot table" },
    { NULL, NULL, NULL, 0, NULL }
};

static const luaL_Reg st_methods[] = {
    { "entries", qi_bind_entries },
    { "find", st_find },
    { NULL, NULL }
};

static const qi_bind_class snaptab_class = {
    QI_MT_SNAPTABLE, "snapshot table", st_methods, st_fields, st_index_int, st_len,
    st_tostring, qi_bind_child_eq, NULL
};

/* Push the snapshot table object of the image box at IMAGE_IDX. */
void qi_bind_push_snapshots(lua_State *L, int image_idx)
{
    qi_bind_newchild(L, sizeof(snaptab_obj), image_idx, QI_MT_SNAPTABLE);
}

/* Create the header and snapshot metatables; stack unchanged. */
void qi_bind_meta_register(lua_State *L)
{
    qi_bind_newclass(L, &header_class);
    qi_bind_newclass(L, &snap_class);
    qi_bind_newclass(L, &snaptab_class);
}
