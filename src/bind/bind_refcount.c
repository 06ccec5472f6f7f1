/* bind_refcount.c - refcount table, refcount block and refcount entry
 * objects (layer 6).
 *
 * img.refcounts is the refcount table: #t entries, t[i] a table entry
 * (raw, offset of the block, reserved bits), t:block(i) the refcount block
 * it points to. A block b has #b = refcounts per block, b[i] the refcount
 * value (any width, 1 to 64 bits) and b:entry(i) an entry object for
 * explain(). Every object is a coordinate (STYLE convention 9): a table
 * index, or a (table index, block index) pair; each access re-reads through
 * the engine (qi_meta_reftable_get, qi_meta_refcount), so the objects always
 * show the current state. Field tables have no setters yet (convention 10).
 * Calls: bind_util, bind_err, include/qi. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bind_int.h"

#define REFT_OFFSET_MASK UINT64_C(0xfffffffffffffe00)
#define REFT_RESERVED_MASK UINT64_C(0x1ff)

typedef struct rt_obj {
    uint8_t kind;       /* one refcount table per image */
} rt_obj;

typedef struct rte_obj {
    uint64_t index;     /* refcount table index */
} rte_obj;

typedef struct rb_obj {
    uint64_t index;     /* refcount table index of the block */
} rb_obj;

typedef struct rce_obj {
    uint64_t tindex;    /* refcount table index */
    uint64_t index;     /* entry index inside the block */
} rce_obj;

static uint64_t rt_raw(lua_State *L, qi_image *img, uint64_t index)
{
    uint64_t raw = 0;
    int rc = qi_meta_reftable_get(img, index, &raw);
    if (rc < 0)
        qi_bind_raise(L, img, rc);
    return raw;
}

/* Host offset of the first byte covered by entry INDEX of block TINDEX;
 * raises if it does not fit in 63 bits. */
static uint64_t covered_offset(lua_State *L, qi_image *img, uint64_t tindex, uint64_t index)
{
    uint64_t rbe = qi_meta_refblock_entries(img), cluster = 0, off = 0;
    uint32_t cs = qi_image_cluster_size(img);
    if (__builtin_mul_overflow(tindex, rbe, &cluster) ||
        __builtin_add_overflow(cluster, index, &cluster) ||
        __builtin_mul_overflow(cluster, (uint64_t)cs, &off) || off > (uint64_t)INT64_MAX)
        luaL_error(L, "refcount entry %I of block %I covers no representable offset",
                   (lua_Integer)index, (lua_Integer)tindex);
    return off;
}

static uint64_t refcount_at(lua_State *L, qi_image *img, uint64_t tindex, uint64_t index)
{
    uint64_t v = 0;
    int rc = qi_meta_refcount(img, covered_offset(L, img, tindex, index), &v);
    if (rc < 0)
        qi_bind_raise(L, img, rc);
    return v;
}

/* ---- refcount table ---- */

static int rt_len(lua_State *L)
{
    qi_image *img;
    qi_bind_checkchild(L, 1, QI_MT_REFTABLE, &img);
    lua_pushinteger(L, (lua_Integer)qi_meta_reftable_size(img));
    return 1;
}

static void push_rte(lua_State *L, int owner_of, uint64_t index)
{
    rte_obj *e;
    qi_bind_pushowner(L, owner_of);
    e = qi_bind_newchild(L, sizeof *e, -1, QI_MT_REFTENTRY);
    e->index = index;
    lua_remove(L, -2);
}

static int rt_index_int(lua_State *L)
{
    qi_image *img;
    lua_Integer i = luaL_checkinteger(L, 2);
    qi_bind_checkchild(L, 1, QI_MT_REFTABLE, &img);
    if (i < 0 || (uint64_t)i >= qi_meta_reftable_size(img))
        return 0;
    push_rte(L, 1, (uint64_t)i);
    return 1;
}

static void push_block(lua_State *L, int owner_of, uint64_t index)
{
    rb_obj *b;
    qi_bind_pushowner(L, owner_of);
    b = qi_bind_newchild(L, sizeof *b, -1, QI_MT_REFBLOCK);
    b->index = index;
    lua_remove(L, -2);
}

/* t:block(i) -> the refcount block entry i points to, or nil when the entry
 * is 0 (all refcounts it would hold are 0). */
static int rt_block(lua_State *L)
{
    qi_image *img;
    lua_Integer i = luaL_checkinteger(L, 2);
    qi_bind_checkchild(L, 1, QI_MT_REFTABLE, &img);
    luaL_argcheck(L, i >= 0 && (uint64_t)i < qi_meta_reftable_size(img), 2,
                  "refcount table index out of range");
    if (!(rt_raw(L, img, (uint64_t)i) & REFT_OFFSET_MASK)) {
        lua_pushnil(L);
        return 1;
    }
    push_block(L, 1, (uint64_t)i);
    return 1;
}

static int rt_offset(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    lua_pushinteger(L, (lua_Integer)qi_meta_header(img)->refcount_table_offset);
    return 1;
}

static int rt_clusters(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    lua_pushinteger(L, qi_meta_header(img)->refcount_table_clusters);
    return 1;
}

static int rt_size(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    lua_pushinteger(L, (lua_Integer)qi_meta_reftable_size(img));
    return 1;
}

static int rt_bits(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    lua_pushinteger(L, qi_meta_refcount_bits(img));
    return 1;
}

static int rt_block_entries(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    lua_pushinteger(L, (lua_Integer)qi_meta_refblock_entries(img));
    return 1;
}

static int rt_tostring(lua_State *L)
{
    qi_image *img;
    char off[24];
    qi_bind_checkchild(L, 1, QI_MT_REFTABLE, &img);
    snprintf(off, sizeof off, "%#" PRIx64, qi_meta_header(img)->refcount_table_offset);
    lua_pushfstring(L, "refcount table at %s (%I entries, %d-bit refcounts, %I per block)", off,
                    (lua_Integer)qi_meta_reftable_size(img), (int)qi_meta_refcount_bits(img),
                    (lua_Integer)qi_meta_refblock_entries(img));
    return 1;
}

static const qi_bind_field rt_fields[] = {
    { "offset", rt_offset, NULL, 0, "host offset of the refcount table" },
    { "clusters", rt_clusters, NULL, 0, "clusters the table occupies" },
    { "size", rt_size, NULL, QI_FIELD_DERIVED, "number of entries (also #t)" },
    { "refcount_bits", rt_bits, NULL, 0, "width of one refcount (1 << refcount_order)" },
    { "block_entries", rt_block_entries, NULL, QI_FIELD_DERIVED,
      "refcounts per block: cluster_size * 8 / refcount_bits" },
    { NULL, NULL, NULL, 0, NULL }
};

static const luaL_Reg rt_methods[] = {
    { "entries", qi_bind_entries },
    { "block", rt_block },
    { NULL, NULL }
};

static const qi_bind_class rt_class = {
    QI_MT_REFTABLE, "refcount table", rt_methods, rt_fields, rt_index_int, rt_len,
    rt_tostring, qi_bind_child_eq, NULL
};

/* ---- refcount table entry ---- */

#define RTE_GET(name, expr)                                              \
    static int rte_##name(lua_State *L, void *o, qi_image *img)          \
    {                                                                    \
        uint64_t raw = rt_raw(L, img, ((rte_obj *)o)->index);            \
        expr;                                                            \
        return 1;                                                        \
    }
RTE_GET(raw, lua_pushinteger(L, (lua_Integer)raw))
RTE_GET(offset, lua_pushinteger(L, (lua_Integer)(raw & REFT_OFFSET_MASK)))
RTE_GET(reserved, lua_pushinteger(L, (lua_Integer)(raw & REFT_RESERVED_MASK)))
#undef RTE_GET

static int rte_index(lua_State *L, void *o, qi_image *img)
{
    (void)img;
    lua_pushinteger(L, (lua_Integer)((rte_obj *)o)->index);
    return 1;
}

static int rte_first_offset(lua_State *L, void *o, qi_image *img)
{
    lua_pushinteger(L, (lua_Integer)covered_offset(L, img, ((rte_obj *)o)->index, 0));
    return 1;
}

/* entry:block() -> the refcount block, or nil when the entry is 0. */
static int rte_block(lua_State *L)
{
    qi_image *img;
    rte_obj *e = qi_bind_checkchild(L, 1, QI_MT_REFTENTRY, &img);
    if (!(rt_raw(L, img, e->index) & REFT_OFFSET_MASK)) {
        lua_pushnil(L);
        return 1;
    }
    push_block(L, 1, e->index);
    return 1;
}

static int rte_tostring(lua_State *L)
{
    qi_image *img;
    rte_obj *e = qi_bind_checkchild(L, 1, QI_MT_REFTENTRY, &img);
    uint64_t raw = rt_raw(L, img, e->index);
    char hex[19], buf[96];
    if (raw & REFT_OFFSET_MASK)
        snprintf(buf, sizeof buf, "refcount block at %#" PRIx64, raw & REFT_OFFSET_MASK);
    else
        snprintf(buf, sizeof buf, "no block (all refcounts 0)");
    if (raw & REFT_RESERVED_MASK)
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), " reserved bits %#" PRIx64,
                 raw & REFT_RESERVED_MASK);
    lua_pushfstring(L, "refcount table entry %I: %s %s", (lua_Integer)e->index,
                    qi_bind_hex64(hex, raw), buf);
    return 1;
}

static const qi_bind_field rte_fields[] = {
    { "raw", rte_raw, NULL, 0, "the 64-bit entry as stored" },
    { "offset", rte_offset, NULL, 0, "host offset of the refcount block (0: none)" },
    { "reserved", rte_reserved, NULL, 0, "reserved bits 0-8 that are set (should be 0)" },
    { "index", rte_index, NULL, QI_FIELD_DERIVED, "position in the refcount table (0-based)" },
    { "first_offset", rte_first_offset, NULL, QI_FIELD_DERIVED,
      "host offset of the first cluster its block counts" },
    { NULL, NULL, NULL, 0, NULL }
};

static const luaL_Reg rte_methods[] = {
    { "block", rte_block },
    { NULL, NULL }
};

static const qi_bind_class rte_class = {
    QI_MT_REFTENTRY, "refcount table entry", rte_methods, rte_fields, NULL, NULL,
    rte_tostring, qi_bind_child_eq, NULL
};

/* ---- refcount block ---- */

static int rb_len(lua_State *L)
{
    qi_image *img;
    qi_bind_checkchild(L, 1, QI_MT_REFBLOCK, &img);
    lua_pushinteger(L, (lua_Integer)qi_meta_refblock_entries(img));
    return 1;
}

static int rb_index_int(lua_State *L)
{
    qi_image *img;
    rb_obj *b = qi_bind_checkchild(L, 1, QI_MT_REFBLOCK, &img);
    lua_Integer i = luaL_checkinteger(L, 2);
    if (i < 0 || (uint64_t)i >= qi_meta_refblock_entries(img))
        return 0;
    lua_pushinteger(L, (lua_Integer)refcount_at(L, img, b->index, (uint64_t)i));
    return 1;
}

/* b:entry(i) -> refcount entry object (for explain and, later, setting). */
static int rb_entry(lua_State *L)
{
    qi_image *img;
    rb_obj *b = qi_bind_checkchild(L, 1, QI_MT_REFBLOCK, &img);
    lua_Integer i = luaL_checkinteger(L, 2);
    rce_obj *e;
    luaL_argcheck(L, i >= 0 && (uint64_t)i < qi_meta_refblock_entries(img), 2,
                  "refcount block index out of range");
    qi_bind_pushowner(L, 1);
    e = qi_bind_newchild(L, sizeof *e, -1, QI_MT_REFENTRY);
    e->tindex = b->index;
    e->index = (uint64_t)i;
    return 1;
}

static int rb_offset(lua_State *L, void *o, qi_image *img)
{
    lua_pushinteger(L, (lua_Integer)(rt_raw(L, img, ((rb_obj *)o)->index) & REFT_OFFSET_MASK));
    return 1;
}

static int rb_index(lua_State *L, void *o, qi_image *img)
{
    (void)img;
    lua_pushinteger(L, (lua_Integer)((rb_obj *)o)->index);
    return 1;
}

static int rb_size(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    lua_pushinteger(L, (lua_Integer)qi_meta_refblock_entries(img));
    return 1;
}

static int rb_first_offset(lua_State *L, void *o, qi_image *img)
{
    lua_pushinteger(L, (lua_Integer)covered_offset(L, img, ((rb_obj *)o)->index, 0));
    return 1;
}

static int rb_tostring(lua_State *L)
{
    qi_image *img;
    rb_obj *b = qi_bind_checkchild(L, 1, QI_MT_REFBLOCK, &img);
    char off[24];
    snprintf(off, sizeof off, "%#" PRIx64, rt_raw(L, img, b->index) & REFT_OFFSET_MASK);
    lua_pushfstring(L, "refcount block %I at %s (%I %d-bit refcounts)", (lua_Integer)b->index,
                    off, (lua_Integer)qi_meta_refblock_entries(img),
                    (int)qi_meta_refcount_bits(img));
    return 1;
}

static const qi_bind_field rb_fields[] = {
    { "offset", rb_offset, NULL, QI_FIELD_DERIVED, "host offset of the block (from the table)" },
    { "index", rb_index, NULL, QI_FIELD_DERIVED, "its refcount table index" },
    { "size", rb_size, NULL, QI_FIELD_DERIVED, "refcounts in the block (also #b)" },
    { "first_offset", rb_first_offset, NULL, QI_FIELD_DERIVED,
      "host offset of the cluster its entry 0 counts" },
    { NULL, NULL, NULL, 0, NULL }
};

static const luaL_Reg rb_methods[] = {
    { "entries", qi_bind_entries },
    { "entry", rb_entry },
    { NULL, NULL }
};

static const qi_bind_class rb_class = {
    QI_MT_REFBLOCK, "refcount block", rb_methods, rb_fields, rb_index_int, rb_len,
    rb_tostring, qi_bind_child_eq, NULL
};

/* ---- refcount entry ---- */

static int rce_value(lua_State *L, void *o, qi_image *img)
{
    rce_obj *e = o;
    lua_pushinteger(L, (lua_Integer)refcount_at(L, img, e->tindex, e->index));
    return 1;
}

static int rce_host_offset(lua_State *L, void *o, qi_image *img)
{
    rce_obj *e = o;
    lua_pushinteger(L, (lua_Integer)covered_offset(L, img, e->tindex, e->index));
    return 1;
}

static int rce_index(lua_State *L, void *o, qi_image *img)
{
    (void)img;
    lua_pushinteger(L, (lua_Integer)((rce_obj *)o)->index);
    return 1;
}

static int rce_block(lua_State *L, void *o, qi_image *img)
{
    (void)img;
    push_block(L, 1, ((rce_obj *)o)->tindex);
    return 1;
}

static int rce_tostring(lua_State *L)
{
    qi_image *img;
    rce_obj *e = qi_bind_checkchild(L, 1, QI_MT_REFENTRY, &img);
    char off[24];
    snprintf(off, sizeof off, "%#" PRIx64, covered_offset(L, img, e->tindex, e->index));
    lua_pushfstring(L, "refcount entry %I of block %I: cluster at %s refcount %I",
                    (lua_Integer)e->index, (lua_Integer)e->tindex, off,
                    (lua_Integer)refcount_at(L, img, e->tindex, e->index));
    return 1;
}

static const qi_bind_field rce_fields[] = {
    { "value", rce_value, NULL, 0, "the refcount (0 free, 1 used, 2+ shared)" },
    { "host_offset", rce_host_offset, NULL, QI_FIELD_DERIVED, "host offset of the cluster it counts" },
    { "index", rce_index, NULL, QI_FIELD_DERIVED, "position in the block (0-based)" },
    { "block", rce_block, NULL, QI_FIELD_DERIVED, "the refcount block object" },
    { NULL, NULL, NULL, 0, NULL }
};

static const qi_bind_class rce_class = {
    QI_MT_REFENTRY, "refcount entry", NULL, rce_fields, NULL, NULL, rce_tostring,
    qi_bind_child_eq, NULL
};

/* Push the refcount table object of the image box at IMAGE_IDX. */
void qi_bind_push_refcounts(lua_State *L, int image_idx)
{
    qi_bind_newchild(L, sizeof(rt_obj), image_idx, QI_MT_REFTABLE);
}

/* Create the refcount metatables; stack unchanged. */
void qi_bind_refcount_register(lua_State *L)
{
    qi_bind_newclass(L, &rt_class);
    qi_bind_newclass(L, &rte_class);
    qi_bind_newclass(L, &rb_class);
    qi_bind_newclass(L, &rce_class);
}
