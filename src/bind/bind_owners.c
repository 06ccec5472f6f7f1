/* bind_owners.c - img:owners(), img.bitmaps and qinspect.problems (layer 6).
 *
 * img:owners(host_offset) lists every reference to the host cluster holding
 * HOST_OFFSET (qi_meta_owners: active tables, every snapshot, fixed
 * metadata) as plain records; an L1 or L2 entry reference also carries the
 * entry object, so `explain(o.entry)` and `o.entry:l2()` work. The engine
 * walk calls back into C only: references are collected in a scratch box
 * (a userdata whose __gc frees the array, so a Lua error while building the
 * records leaks nothing; STYLE convention 12) and turned into Lua tables
 * after the walk. img.bitmaps is a list of records from the bitmap
 * directory. qinspect.problems is the problem table of include/qi/check.h
 * keyed by name: the one source of problem wording (convention 13).
 * Calls: bind_util, bind_err, bind_table, include/qi. */
#include <stdlib.h>
#include <string.h>

#include "bind_int.h"
#include "qi/check.h"

typedef struct scratch {
    qi_ref *refs;
    size_t n, cap;
    int nomem;
} scratch;

static int scratch_gc(lua_State *L)
{
    scratch *s = luaL_checkudata(L, 1, QI_MT_SCRATCH);
    free(s->refs);
    s->refs = NULL;
    s->n = s->cap = 0;
    return 0;
}

static int collect(void *payload, const qi_ref *ref)
{
    scratch *s = payload;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap + s->cap / 2 : 16;
        qi_ref *p = cap <= SIZE_MAX / sizeof *p ? realloc(s->refs, cap * sizeof *p) : NULL;
        if (!p) {
            s->nomem = 1;
            return 1;
        }
        s->refs = p;
        s->cap = cap;
    }
    s->refs[s->n++] = *ref;
    return 0;
}

static void set_int(lua_State *L, const char *k, uint64_t v)
{
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

/* Push the entry object of reference R (L1/L2 entries), or nothing; the
 * image box is at stack index BOX. */
static int push_entry_object(lua_State *L, int box, qi_image *img, const qi_ref *r)
{
    if (r->kind == QI_REF_L2_ENTRY) {
        qi_bind_push_l2entry(L, box, r->table_offset, r->index);
        return 1;
    }
    if (r->kind == QI_REF_L1_ENTRY) {
        uint32_t n = 0;
        const qi_snapshot *s = qi_meta_snapshots(img, &n);
        if (r->snapshot < 0)
            qi_bind_push_l1entry(L, box, 0, 0, -1, r->index);
        else if ((uint32_t)r->snapshot < n)
            qi_bind_push_l1entry(L, box, s[r->snapshot].l1_table_offset,
                                 s[r->snapshot].l1_size, r->snapshot, r->index);
        else
            return 0;
        return 1;
    }
    return 0;
}

static int is_entry(qi_ref_kind k)
{
    return k == QI_REF_L1_ENTRY || k == QI_REF_L2_ENTRY || k == QI_REF_REFBLOCK ||
           k == QI_REF_BITMAP_DATA;
}

static void push_ref(lua_State *L, int box, qi_image *img, const qi_ref *r)
{
    lua_createtable(L, 0, 9);
    lua_pushstring(L, qi_ref_kind_name(r->kind));
    lua_setfield(L, -2, "kind");
    if (r->snapshot >= 0)
        set_int(L, "snapshot", (uint64_t)r->snapshot);
    set_int(L, "host_offset", r->host_offset);
    set_int(L, "length", r->length);
    if (is_entry(r->kind)) {
        set_int(L, "table_offset", r->table_offset);
        set_int(L, "index", r->index);
        set_int(L, "raw", r->raw);
    }
    if (r->kind == QI_REF_L2_ENTRY) {
        qi_l2_entry e;
        set_int(L, "guest_offset", r->guest_offset);
        /* the type as the raw value says it, without reading the table
         * again (e.g. "normal", "compressed"; entry.type reads it live) */
        qi_meta_decode_l2(img, r->raw, 0, &e);
        lua_pushstring(L, qi_cluster_type_name(e.type));
        lua_setfield(L, -2, "type");
    }
    if (push_entry_object(L, box, img, r))
        lua_setfield(L, -2, "entry");
}

/* Collect the references WALK reports (all of them, or those of one host
 * cluster) into a scratch box, left on the stack; the box is freed by its
 * __gc even when Lua raises. The array is cut to its length (qi_ref is 56
 * bytes: a reference list stays under 64 bytes per reference). */
static scratch *collect_refs(lua_State *L, qi_image *img, bool all, uint64_t off)
{
    scratch *s = lua_newuserdatauv(L, sizeof *s, 1);
    int rc;
    memset(s, 0, sizeof *s);
    luaL_setmetatable(L, QI_MT_SCRATCH);
    rc = all ? qi_meta_references(img, collect, s) : qi_meta_owners(img, off, collect, s);
    if (s->nomem)
        luaL_error(L, "not enough memory for the reference list");
    if (rc < 0)
        qi_bind_raise(L, img, rc);
    if (s->n && s->n < s->cap) {
        qi_ref *p = realloc(s->refs, s->n * sizeof *p);
        if (p) {
            s->refs = p;
            s->cap = s->n;
        }
    }
    return s;
}

/* The owners of one cluster as a Lua list of records (a few per cluster). */
static int push_refs(lua_State *L, qi_image *img, uint64_t off)
{
    scratch *s = collect_refs(L, img, false, off);
    lua_createtable(L, (int)(s->n < 1 << 20 ? s->n : 1 << 20), 0);
    for (size_t i = 0; i < s->n; i++) {
        push_ref(L, 1, img, &s->refs[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* ---- the reference list: records made when indexed ---- */

static scratch *checklist(lua_State *L, qi_image **img)
{
    scratch *s = luaL_checkudata(L, 1, QI_MT_SCRATCH);
    lua_getiuservalue(L, 1, 1);     /* the image box */
    *img = qi_bind_check_image(L, -1);
    return s;
}

/* list[i] -> the record of reference i (1-based), or nil. */
static int reflist_index(lua_State *L)
{
    qi_image *img;
    scratch *s = checklist(L, &img);
    int box = lua_gettop(L);
    lua_Integer i = lua_isinteger(L, 2) ? lua_tointeger(L, 2) : 0;
    if (i < 1 || (uint64_t)i > s->n)
        return lua_pushnil(L), 1;
    push_ref(L, box, img, &s->refs[i - 1]);
    return 1;
}

static int reflist_len(lua_State *L)
{
    lua_pushinteger(L, (lua_Integer)((scratch *)luaL_checkudata(L, 1, QI_MT_SCRATCH))->n);
    return 1;
}

static int reflist_next(lua_State *L)
{
    lua_Integer i = luaL_checkinteger(L, 2) + 1;
    lua_settop(L, 1);
    lua_pushinteger(L, i);
    lua_replace(L, 2);
    lua_settop(L, 2);
    if (reflist_index(L) == 1 && lua_isnil(L, -1))
        return 1;
    lua_pushinteger(L, i);
    lua_insert(L, -2);
    return 2;
}

static int reflist_pairs(lua_State *L)
{
    luaL_checkudata(L, 1, QI_MT_SCRATCH);
    lua_pushcfunction(L, reflist_next);
    lua_pushvalue(L, 1);
    lua_pushinteger(L, 0);
    return 3;
}

static int reflist_tostring(lua_State *L)
{
    scratch *s = luaL_checkudata(L, 1, QI_MT_SCRATCH);
    lua_pushfstring(L, "reference list (%I references)", (lua_Integer)s->n);
    return 1;
}

/* img:owners(host_offset) -> list of owner records {kind, snapshot (nil:
 * active or not view-specific), table_offset, index, raw, entry,
 * guest_offset and type (L2 entries), host_offset, length}. The first call
 * reads all metadata into the owners index (refindex.c); later calls, until
 * the file changes, answer from it. */
int qi_bind_owners(lua_State *L)
{
    qi_image *img = qi_bind_check_image(L, 1);
    uint64_t off = qi_bind_checkoffset(L, 2);
    luaL_argcheck(L, qi_meta_header(img) != NULL, 1, "a raw image has no host clusters to own");
    return push_refs(L, img, off);
}

/* img:references() -> every reference of the image, in one pass over the
 * metadata (what qemu-img check counts refcounts from), as a list object:
 * refs[i] (1-based), #refs, ipairs and pairs give owner records, made when
 * indexed; the list itself holds 56 bytes per reference. */
int qi_bind_references(lua_State *L)
{
    qi_image *img = qi_bind_check_image(L, 1);
    luaL_argcheck(L, qi_meta_header(img) != NULL, 1, "a raw image has no qcow2 metadata");
    collect_refs(L, img, true, 0);
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);    /* the list pins its image */
    return 1;
}

/* img.bitmaps -> list of {name, type, granularity_bits, flags (names),
 * table_offset, table_size, entry_offset}; empty without the extension. */
int qi_bind_push_bitmaps(lua_State *L, qi_image *img)
{
    uint32_t n = 0;
    const qi_bitmap *b = qi_meta_bitmaps(img, &n);
    lua_createtable(L, (int)n, 0);
    for (uint32_t i = 0; i < n; i++) {
        int k = 0;
        lua_createtable(L, 0, 8);
        lua_pushstring(L, b[i].name ? b[i].name : "");
        lua_setfield(L, -2, "name");
        set_int(L, "type", b[i].type);
        set_int(L, "granularity_bits", b[i].granularity_bits);
        set_int(L, "flags_raw", b[i].flags);
        lua_newtable(L);
        if (b[i].flags & QI_BITMAP_IN_USE)
            lua_pushliteral(L, "in_use"), lua_rawseti(L, -2, ++k);
        if (b[i].flags & QI_BITMAP_AUTO)
            lua_pushliteral(L, "auto"), lua_rawseti(L, -2, ++k);
        if (b[i].flags & QI_BITMAP_EXTRA_DATA_COMPATIBLE)
            lua_pushliteral(L, "extra_data_compatible"), lua_rawseti(L, -2, ++k);
        lua_setfield(L, -2, "flags");
        set_int(L, "table_offset", b[i].table_offset);
        set_int(L, "table_size", b[i].table_size);
        set_int(L, "entry_offset", b[i].entry_offset);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

/* qinspect.problems: {[name] = {code, name, severity, summary,
 * explanation}} for every record of the problem table. */
void qi_bind_push_problems(lua_State *L)
{
    size_t n = qi_problem_count();
    lua_createtable(L, 0, (int)n);
    for (size_t i = 0; i < n; i++) {
        const qi_problem *p = qi_problem_at(i);
        lua_createtable(L, 0, 6);
        set_int(L, "code", (uint64_t)p->code);
        set_int(L, "order", i + 1);
        lua_pushstring(L, p->name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, qi_severity_name(p->severity));
        lua_setfield(L, -2, "severity");
        lua_pushstring(L, p->summary);
        lua_setfield(L, -2, "summary");
        lua_pushstring(L, p->explanation);
        lua_setfield(L, -2, "explanation");
        lua_setfield(L, -2, p->name);
    }
}

/* Create the scratch box metatable; stack unchanged. */
void qi_bind_owners_register(lua_State *L)
{
    static const luaL_Reg meta[] = {
        { "__gc", scratch_gc }, { "__index", reflist_index }, { "__len", reflist_len },
        { "__pairs", reflist_pairs }, { "__tostring", reflist_tostring }, { NULL, NULL }
    };
    luaL_newmetatable(L, QI_MT_SCRATCH);
    luaL_setfuncs(L, meta, 0);
    lua_pop(L, 1);
}
