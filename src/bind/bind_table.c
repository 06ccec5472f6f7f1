/* bind_table.c - L1 and L2 table and entry objects (layer 6).
 *
 * Each object is a coordinate (STYLE convention 9): an L1 table is "the
 * active one" or (offset, size) of a snapshot's; an L1 entry adds an index;
 * an L2 table is its host offset; an L2 entry adds an index. They pin the
 * image through user value 1, own no C memory, have no __gc, and read the
 * entry through the engine (qi_meta_*) on every access, so they always show
 * the current state. Indices are 0-based as in the spec. Raw 64-bit values
 * are Lua integers (bit 63 makes them negative); __tostring shows them as
 * 0x%016x beside the decoded fields. Fields are field tables with no
 * setters yet (convention 10). Calls: bind_util, bind_err, include/qi. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bind_int.h"

typedef struct l1_coord {
    uint64_t off;   /* snapshot tables only; the active one is re-read */
    uint32_t size;
    int32_t snap;   /* snapshot index, or -1 for the active table */
} l1_coord;

typedef struct l1t_obj {
    l1_coord t;
} l1t_obj;

typedef struct l1e_obj {
    l1_coord t;
    uint32_t index;
} l1e_obj;

typedef struct l2t_obj {
    uint64_t off;
} l2t_obj;

typedef struct l2e_obj {
    uint64_t off;
    uint32_t index;
} l2e_obj;

/* ---- L1 ---- */

static uint32_t l1_size(qi_image *img, const l1_coord *c)
{
    const qi_header *h = qi_meta_header(img);
    return c->snap >= 0 ? c->size : h ? h->l1_size : 0;
}

static uint64_t l1_offset(qi_image *img, const l1_coord *c)
{
    const qi_header *h = qi_meta_header(img);
    return c->snap >= 0 ? c->off : h ? h->l1_table_offset : 0;
}

static void l1_read(lua_State *L, qi_image *img, const l1e_obj *e, qi_l1_entry *out)
{
    int rc = e->t.snap >= 0
        ? qi_meta_l1_get_at(img, e->t.off, e->t.size, e->index, out)
        : qi_meta_l1_get(img, e->index, out);
    if (rc < 0)
        qi_bind_raise(L, img, rc);
}

static int l1t_len(lua_State *L)
{
    qi_image *img;
    l1t_obj *t = qi_bind_checkchild(L, 1, QI_MT_L1TABLE, &img);
    lua_pushinteger(L, l1_size(img, &t->t));
    return 1;
}

static int l1t_index_int(lua_State *L)
{
    qi_image *img;
    l1t_obj *t = qi_bind_checkchild(L, 1, QI_MT_L1TABLE, &img);
    lua_Integer i = luaL_checkinteger(L, 2);
    l1e_obj *e;
    if (i < 0 || i >= (lua_Integer)l1_size(img, &t->t))
        return 0;
    qi_bind_pushowner(L, 1);
    e = qi_bind_newchild(L, sizeof *e, -1, QI_MT_L1ENTRY);
    e->t = t->t;
    e->index = (uint32_t)i;
    return 1;
}

static int l1t_tostring(lua_State *L)
{
    qi_image *img;
    l1t_obj *t = qi_bind_checkchild(L, 1, QI_MT_L1TABLE, &img);
    char hex[19];
    snprintf(hex, sizeof hex, "%#" PRIx64, l1_offset(img, &t->t));
    if (t->t.snap >= 0)
        lua_pushfstring(L, "L1 table of snapshot %d at %s (%d entries)", (int)t->t.snap, hex,
                        (int)l1_size(img, &t->t));
    else
        lua_pushfstring(L, "active L1 table at %s (%d entries)", hex, (int)l1_size(img, &t->t));
    return 1;
}

static int l1t_offset(lua_State *L, void *o, qi_image *img)
{
    lua_pushinteger(L, (lua_Integer)l1_offset(img, &((l1t_obj *)o)->t));
    return 1;
}

static int l1t_size(lua_State *L, void *o, qi_image *img)
{
    lua_pushinteger(L, l1_size(img, &((l1t_obj *)o)->t));
    return 1;
}

static int l1t_snapshot(lua_State *L, void *o, qi_image *img)
{
    (void)img;
    if (((l1t_obj *)o)->t.snap >= 0)
        lua_pushinteger(L, ((l1t_obj *)o)->t.snap);
    else
        lua_pushnil(L);
    return 1;
}

static const qi_bind_field l1t_fields[] = {
    { "offset", l1t_offset, NULL, 0, "host offset of the table" },
    { "size", l1t_size, NULL, 0, "number of entries (also #t)" },
    { "snapshot", l1t_snapshot, NULL, QI_FIELD_DERIVED,
      "index of the snapshot owning it, nil for the active table" },
    { NULL, NULL, NULL, 0, NULL }
};

static const luaL_Reg l1t_methods[] = {
    { "entries", qi_bind_entries },
    { NULL, NULL }
};

static const qi_bind_class l1t_class = {
    QI_MT_L1TABLE, "L1 table", l1t_methods, l1t_fields, l1t_index_int, l1t_len,
    l1t_tostring, qi_bind_child_eq, NULL
};

/* Push an L1 table object pinning the image box at IMAGE_IDX: the active
 * table when SNAP < 0 (OFF and SIZE ignored), else snapshot SNAP's table at
 * OFF with SIZE entries. */
void qi_bind_push_l1table(lua_State *L, int image_idx, uint64_t off,
                          uint32_t size, int64_t snap)
{
    l1t_obj *t = qi_bind_newchild(L, sizeof *t, image_idx, QI_MT_L1TABLE);
    t->t.snap = snap < 0 ? -1 : (int32_t)snap;
    if (snap >= 0) {
        t->t.off = off;
        t->t.size = size;
    }
}

/* Push L1 entry INDEX of the table given as in qi_bind_push_l1table. */
void qi_bind_push_l1entry(lua_State *L, int image_idx, uint64_t off,
                          uint32_t size, int64_t snap, uint32_t index)
{
    l1e_obj *e = qi_bind_newchild(L, sizeof *e, image_idx, QI_MT_L1ENTRY);
    e->t.snap = snap < 0 ? -1 : (int32_t)snap;
    if (snap >= 0) {
        e->t.off = off;
        e->t.size = size;
    }
    e->index = index;
}

#define L1E_GET(name, expr)                                              \
    static int l1e_##name(lua_State *L, void *o, qi_image *img)          \
    {                                                                    \
        qi_l1_entry e;                                                   \
        l1_read(L, img, o, &e);                                          \
        expr;                                                            \
        return 1;                                                        \
    }
L1E_GET(raw, lua_pushinteger(L, (lua_Integer)e.raw))
L1E_GET(l2_offset, lua_pushinteger(L, (lua_Integer)e.l2_offset))
L1E_GET(copied, lua_pushboolean(L, e.copied))
L1E_GET(reserved, lua_pushinteger(L, (lua_Integer)e.reserved))
#undef L1E_GET

static int l1e_index(lua_State *L, void *o, qi_image *img)
{
    (void)img;
    lua_pushinteger(L, ((l1e_obj *)o)->index);
    return 1;
}

static int l1e_table(lua_State *L, void *o, qi_image *img)
{
    l1e_obj *e = o;
    (void)img;
    qi_bind_pushowner(L, 1);
    qi_bind_push_l1table(L, -1, e->t.off, e->t.size, e->t.snap);
    return 1;
}

/* entry:l2() -> the L2 table this entry points to, or nil if unallocated. */
static int l1e_l2(lua_State *L)
{
    qi_image *img;
    l1e_obj *o = qi_bind_checkchild(L, 1, QI_MT_L1ENTRY, &img);
    qi_l1_entry e;
    l1_read(L, img, o, &e);
    if (!e.l2_offset) {
        lua_pushnil(L);
        return 1;
    }
    qi_bind_pushowner(L, 1);
    qi_bind_push_l2table(L, -1, e.l2_offset);
    return 1;
}

static int l1e_tostring(lua_State *L)
{
    qi_image *img;
    l1e_obj *o = qi_bind_checkchild(L, 1, QI_MT_L1ENTRY, &img);
    qi_l1_entry e;
    char raw[19], buf[128];
    l1_read(L, img, o, &e);
    if (e.l2_offset)
        snprintf(buf, sizeof buf, "L2 table at %#" PRIx64 "%s", e.l2_offset,
                 e.copied ? " COPIED" : "");
    else
        snprintf(buf, sizeof buf, "unallocated%s", e.copied ? " COPIED" : "");
    if (e.reserved)
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), " reserved bits %#" PRIx64,
                 e.reserved);
    lua_pushfstring(L, "L1 entry %d: %s %s", (int)o->index, qi_bind_hex64(raw, e.raw), buf);
    return 1;
}

/* e.raw = v on an active L1 entry: a raw edit, written and synced at once,
 * logged in img:edits(). */
static int l1e_store(lua_State *L, l1e_obj *o, qi_image *img, uint64_t raw)
{
    uint64_t old;
    char what[64];
    int rc;
    if (o->t.snap >= 0)
        return luaL_error(L, "only the active L1 table is edited this way "
                          "(a snapshot's: img:poke)");
    if ((rc = qi_meta_l1_set(img, o->index, raw, &old)) < 0)
        return qi_bind_raise(L, img, rc);
    snprintf(what, sizeof what, "L1 entry %u", (unsigned)o->index);
    qi_bind_log_edit(L, 1, what, old, raw);
    return 0;
}

static int l1e_set_raw(lua_State *L, void *obj, qi_image *img, int val)
{
    return l1e_store(L, obj, img, (uint64_t)luaL_checkinteger(L, val));
}

/* RAW with its COPIED bit (63) set to the boolean at VAL. */
static uint64_t with_copied(lua_State *L, int val, uint64_t raw)
{
    luaL_checktype(L, val, LUA_TBOOLEAN);
    return lua_toboolean(L, val) ? raw | (1ull << 63) : raw & ~(1ull << 63);
}

/* e.copied = bool, e.l2_offset = n: the same raw edit of the bits of that
 * field, the others kept (no rule is checked; the offset must fit bits
 * 9-55, a multiple of 512). */
static int l1e_set_copied(lua_State *L, void *obj, qi_image *img, int val)
{
    qi_l1_entry e;
    l1_read(L, img, obj, &e);
    return l1e_store(L, obj, img, with_copied(L, val, e.raw));
}

#define OFFSET_FIELD 0x00fffffffffffe00ull  /* bits 9-55 of L1 and L2 entries */

static uint64_t check_offset_field(lua_State *L, int val)
{
    uint64_t v = (uint64_t)luaL_checkinteger(L, val);
    if (v & ~OFFSET_FIELD)
        luaL_error(L, "offset %#" PRIx64 " does not fit the entry's offset field "
                   "(bits 9-55: a multiple of 512 below 2^56)", v);
    return v;
}

static int l1e_set_l2_offset(lua_State *L, void *obj, qi_image *img, int val)
{
    qi_l1_entry e;
    uint64_t v = check_offset_field(L, val);
    l1_read(L, img, obj, &e);
    return l1e_store(L, obj, img, (e.raw & ~OFFSET_FIELD) | v);
}

static const qi_bind_field l1e_fields[] = {
    { "raw", l1e_raw, l1e_set_raw, 0, "the 64-bit entry as stored (settable with -w: a raw edit)" },
    { "l2_offset", l1e_l2_offset, l1e_set_l2_offset, 0,
      "host offset of the L2 table (0: none; settable with -w: a raw edit)" },
    { "copied", l1e_copied, l1e_set_copied, 0,
      "COPIED flag (bit 63): refcount of the L2 table is 1 (settable with -w: a raw edit)" },
    { "reserved", l1e_reserved, NULL, 0, "reserved bits that are set (should be 0)" },
    { "index", l1e_index, NULL, QI_FIELD_DERIVED, "position in the L1 table (0-based)" },
    { "table", l1e_table, NULL, QI_FIELD_DERIVED, "the L1 table object" },
    { NULL, NULL, NULL, 0, NULL }
};

static const luaL_Reg l1e_methods[] = {
    { "l2", l1e_l2 },
    { NULL, NULL }
};

static const qi_bind_class l1e_class = {
    QI_MT_L1ENTRY, "L1 entry", l1e_methods, l1e_fields, NULL, NULL, l1e_tostring,
    qi_bind_child_eq, NULL
};

/* ---- L2 ---- */

static void l2_read(lua_State *L, qi_image *img, const l2e_obj *o, qi_l2_entry *out)
{
    int rc = qi_meta_l2_get(img, o->off, o->index, out);
    if (rc < 0)
        qi_bind_raise(L, img, rc);
}

static int l2t_len(lua_State *L)
{
    qi_image *img;
    qi_bind_checkchild(L, 1, QI_MT_L2TABLE, &img);
    lua_pushinteger(L, qi_meta_l2_entries(img));
    return 1;
}

static int l2t_index_int(lua_State *L)
{
    qi_image *img;
    l2t_obj *t = qi_bind_checkchild(L, 1, QI_MT_L2TABLE, &img);
    lua_Integer i = luaL_checkinteger(L, 2);
    if (i < 0 || i >= (lua_Integer)qi_meta_l2_entries(img))
        return 0;
    qi_bind_pushowner(L, 1);
    qi_bind_push_l2entry(L, -1, t->off, (uint32_t)i);
    return 1;
}

static int l2t_tostring(lua_State *L)
{
    qi_image *img;
    l2t_obj *t = qi_bind_checkchild(L, 1, QI_MT_L2TABLE, &img);
    char hex[19];
    snprintf(hex, sizeof hex, "%#" PRIx64, t->off);
    lua_pushfstring(L, "L2 table at %s (%d entries)", hex, (int)qi_meta_l2_entries(img));
    return 1;
}

static int l2t_offset(lua_State *L, void *o, qi_image *img)
{
    (void)img;
    lua_pushinteger(L, (lua_Integer)((l2t_obj *)o)->off);
    return 1;
}

static int l2t_size(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    lua_pushinteger(L, qi_meta_l2_entries(img));
    return 1;
}

static const qi_bind_field l2t_fields[] = {
    { "offset", l2t_offset, NULL, QI_FIELD_DERIVED, "host offset of the table" },
    { "size", l2t_size, NULL, QI_FIELD_DERIVED, "number of entries (also #t)" },
    { NULL, NULL, NULL, 0, NULL }
};

static const luaL_Reg l2t_methods[] = {
    { "entries", qi_bind_entries },
    { NULL, NULL }
};

static const qi_bind_class l2t_class = {
    QI_MT_L2TABLE, "L2 table", l2t_methods, l2t_fields, l2t_index_int, l2t_len,
    l2t_tostring, qi_bind_child_eq, NULL
};

/* Push the L2 table object at host offset OFF pinning the box at IMAGE_IDX. */
void qi_bind_push_l2table(lua_State *L, int image_idx, uint64_t off)
{
    l2t_obj *t = qi_bind_newchild(L, sizeof *t, image_idx, QI_MT_L2TABLE);
    t->off = off;
}

/* Push the L2 entry object INDEX of the table at L2_OFF. */
void qi_bind_push_l2entry(lua_State *L, int image_idx, uint64_t l2_off,
                          uint32_t index)
{
    l2e_obj *e = qi_bind_newchild(L, sizeof *e, image_idx, QI_MT_L2ENTRY);
    e->off = l2_off;
    e->index = index;
}

static int has_host(const qi_l2_entry *e)
{
    return e->type == QI_CLUSTER_NORMAL || e->type == QI_CLUSTER_ZERO_ALLOC ||
           e->type == QI_CLUSTER_COMPRESSED;
}

#define L2E_GET(name, expr)                                              \
    static int l2e_##name(lua_State *L, void *o, qi_image *img)          \
    {                                                                    \
        qi_l2_entry e;                                                   \
        l2_read(L, img, o, &e);                                          \
        expr;                                                            \
        return 1;                                                        \
    }
#define PUSH_IF(cond, v) ((cond) ? lua_pushinteger(L, (lua_Integer)(v)) : lua_pushnil(L))
L2E_GET(raw, lua_pushinteger(L, (lua_Integer)e.raw))
L2E_GET(bitmap, PUSH_IF(qi_meta_extended_l2(img), e.bitmap))
L2E_GET(type, lua_pushstring(L, qi_cluster_type_name(e.type)))
L2E_GET(host_offset, PUSH_IF(has_host(&e), e.host_offset))
L2E_GET(copied, lua_pushboolean(L, e.copied))
L2E_GET(compressed, lua_pushboolean(L, e.type == QI_CLUSTER_COMPRESSED))
L2E_GET(csize, PUSH_IF(e.type == QI_CLUSTER_COMPRESSED, e.csize))
L2E_GET(csectors, PUSH_IF(e.type == QI_CLUSTER_COMPRESSED, e.csectors))
L2E_GET(reserved, lua_pushinteger(L, (lua_Integer)e.reserved))
#undef PUSH_IF
#undef L2E_GET

static int l2e_index(lua_State *L, void *o, qi_image *img)
{
    (void)img;
    lua_pushinteger(L, ((l2e_obj *)o)->index);
    return 1;
}

static int l2e_table(lua_State *L, void *o, qi_image *img)
{
    (void)img;
    qi_bind_pushowner(L, 1);
    qi_bind_push_l2table(L, -1, ((l2e_obj *)o)->off);
    return 1;
}

static const char *sc_name(qi_subcluster_state s)
{
    switch (s) {
    case QI_SC_UNALLOCATED: return "unallocated";
    case QI_SC_ALLOCATED: return "allocated";
    case QI_SC_ZERO: return "zero";
    default: return "invalid";
    }
}

/* entry:subcluster(i) -> "unallocated", "allocated", "zero" or "invalid"
 * (both bits set) for subcluster i (0..31) of an extended L2 entry. */
static int l2e_subcluster(lua_State *L)
{
    qi_image *img;
    l2e_obj *o = qi_bind_checkchild(L, 1, QI_MT_L2ENTRY, &img);
    lua_Integer i = luaL_checkinteger(L, 2);
    qi_l2_entry e;
    luaL_argcheck(L, qi_meta_extended_l2(img), 1, "image has no extended L2 entries");
    luaL_argcheck(L, i >= 0 && i < 32, 2, "subcluster index must be 0..31");
    l2_read(L, img, o, &e);
    lua_pushstring(L, sc_name(qi_meta_subcluster(&e, (unsigned)i)));
    return 1;
}

static void l2e_describe(char *buf, size_t n, qi_image *img, const qi_l2_entry *e)
{
    size_t k;
    snprintf(buf, n, "%s", qi_cluster_type_name(e->type));
    k = strlen(buf);
    if (e->type == QI_CLUSTER_COMPRESSED)
        snprintf(buf + k, n - k, " at %#" PRIx64 " csize %" PRIu64, e->host_offset, e->csize);
    else if (has_host(e))
        snprintf(buf + k, n - k, " host %#" PRIx64, e->host_offset);
    k = strlen(buf);
    if (e->copied)
        snprintf(buf + k, n - k, " COPIED");
    k = strlen(buf);
    if (qi_meta_extended_l2(img))
        snprintf(buf + k, n - k, " bitmap 0x%016" PRIx64, e->bitmap);
    k = strlen(buf);
    if (e->reserved)
        snprintf(buf + k, n - k, " reserved bits %#" PRIx64, e->reserved);
}

static int l2e_tostring(lua_State *L)
{
    qi_image *img;
    l2e_obj *o = qi_bind_checkchild(L, 1, QI_MT_L2ENTRY, &img);
    qi_l2_entry e;
    char raw[19], off[19], buf[192];
    l2_read(L, img, o, &e);
    snprintf(off, sizeof off, "%#" PRIx64, o->off);
    l2e_describe(buf, sizeof buf, img, &e);
    lua_pushfstring(L, "L2 entry %d of table %s: %s %s", (int)o->index, off,
                    qi_bind_hex64(raw, e.raw), buf);
    return 1;
}

/* e.raw = v: a raw edit through the L2 cache, logged in img:edits(). */
static int l2e_store(lua_State *L, l2e_obj *o, qi_image *img, uint64_t raw)
{
    uint64_t old;
    char what[80];
    int rc;
    if ((rc = qi_meta_l2_set(img, o->off, o->index, raw, &old)) < 0)
        return qi_bind_raise(L, img, rc);
    snprintf(what, sizeof what, "L2 entry %u of table %#" PRIx64, (unsigned)o->index, o->off);
    qi_bind_log_edit(L, 1, what, old, raw);
    return 0;
}

static int l2e_set_raw(lua_State *L, void *obj, qi_image *img, int val)
{
    return l2e_store(L, obj, img, (uint64_t)luaL_checkinteger(L, val));
}

/* e.copied = bool, e.host_offset = n: a raw edit of that field's bits, the
 * others kept. A compressed entry's host offset is its byte offset field. */
static int l2e_set_copied(lua_State *L, void *obj, qi_image *img, int val)
{
    qi_l2_entry e;
    l2_read(L, img, obj, &e);
    return l2e_store(L, obj, img, with_copied(L, val, e.raw));
}

static int l2e_set_host_offset(lua_State *L, void *obj, qi_image *img, int val)
{
    qi_l2_entry e;
    l2_read(L, img, obj, &e);
    if (e.type == QI_CLUSTER_COMPRESSED) {
        /* bits 0 .. x-1, x = 62 - (cluster_bits - 8) */
        unsigned cb = 0, x;
        for (uint32_t cs = qi_image_cluster_size(img); cs > 1; cs >>= 1)
            cb++;
        x = 62 - (cb - 8);
        uint64_t mask = (1ull << x) - 1, v = (uint64_t)luaL_checkinteger(L, val);
        if (v & ~mask)
            return luaL_error(L, "offset %#" PRIx64 " does not fit the compressed "
                              "entry's offset field (bits 0-%u)", v, x - 1);
        return l2e_store(L, obj, img, (e.raw & ~mask) | v);
    }
    return l2e_store(L, obj, img, (e.raw & ~OFFSET_FIELD) | check_offset_field(L, val));
}

static const qi_bind_field l2e_fields[] = {
    { "raw", l2e_raw, l2e_set_raw, 0, "the 64-bit entry as stored (settable with -w: a raw edit)" },
    { "bitmap", l2e_bitmap, NULL, 0, "extended L2 subcluster bitmap (nil if standard)" },
    { "type", l2e_type, NULL, QI_FIELD_DERIVED,
      "unallocated, normal, zero, zero-allocated or compressed" },
    { "host_offset", l2e_host_offset, l2e_set_host_offset, 0,
      "host cluster (compressed: byte offset), nil when there is none (settable with -w)" },
    { "copied", l2e_copied, l2e_set_copied, 0,
      "COPIED flag (bit 63): refcount of the cluster is 1 (settable with -w: a raw edit)" },
    { "compressed", l2e_compressed, NULL, 0, "compressed cluster (bit 62)" },
    { "csize", l2e_csize, NULL, QI_FIELD_DERIVED,
      "compressed: bytes from host_offset to the end of the last sector" },
    { "csectors", l2e_csectors, NULL, 0, "compressed: number of 512-byte sectors" },
    { "reserved", l2e_reserved, NULL, 0, "reserved bits that are set (should be 0)" },
    { "index", l2e_index, NULL, QI_FIELD_DERIVED, "position in the L2 table (0-based)" },
    { "table", l2e_table, NULL, QI_FIELD_DERIVED, "the L2 table object" },
    { NULL, NULL, NULL, 0, NULL }
};

static const luaL_Reg l2e_methods[] = {
    { "subcluster", l2e_subcluster },
    { NULL, NULL }
};

static const qi_bind_class l2e_class = {
    QI_MT_L2ENTRY, "L2 entry", l2e_methods, l2e_fields, NULL, NULL, l2e_tostring,
    qi_bind_child_eq, NULL
};

/* Create the L1/L2 table and entry metatables; stack unchanged. */
void qi_bind_table_register(lua_State *L)
{
    qi_bind_newclass(L, &l1t_class);
    qi_bind_newclass(L, &l1e_class);
    qi_bind_newclass(L, &l2t_class);
    qi_bind_newclass(L, &l2e_class);
}
