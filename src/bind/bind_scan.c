/* bind_scan.c - img:scan() and img:allocation() (layer 6).
 *
 * img:scan() -> runs, info: every host cluster of the file classified
 * (qi_scan, include/qi/scan.h), as a list of run records {offset, length,
 * kind, shape, refcount, shared_kinds}, and info {clusters, runs,
 * refs_incomplete, walk_error}. img:scan(fn) calls fn(run) for each run
 * instead of building the list (constant memory on any image) and returns
 * info; fn returning true stops the scan. An error raised by fn is raised
 * again once the engine call has returned (nothing is left to free then).
 * Calls: bind_util, bind_err, include/qi. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bind_int.h"
#include "qi/scan.h"

typedef struct scan_ctx {
    lua_State *L;
    int fn;         /* stack index of the callback, 0: build the list at LIST */
    int list;
    lua_Integer n;
    int failed;     /* the callback raised: its error is on the stack */
} scan_ctx;

static void set_int(lua_State *L, const char *k, uint64_t v)
{
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

static void push_run(lua_State *L, const qi_scan_run *r)
{
    lua_createtable(L, 0, 6);
    set_int(L, "offset", r->offset);
    set_int(L, "length", r->length);
    lua_pushstring(L, r->kind);
    lua_setfield(L, -2, "kind");
    if (r->shape) {
        lua_pushstring(L, r->shape);
        lua_setfield(L, -2, "shape");
    }
    if (r->refcount != QI_SCAN_NO_REFCOUNT)
        set_int(L, "refcount", r->refcount);
    lua_pushboolean(L, r->shared_kinds);
    lua_setfield(L, -2, "shared_kinds");
}

static int push_run_p(lua_State *L)
{
    push_run(L, lua_touserdata(L, 1));
    return 1;
}

/* The engine callback: builds each record under lua_pcall, so that a Lua
 * error (memory, or the user's function) stops the scan cleanly and the
 * engine frees its arrays before the error is raised again. */
static int on_run(void *payload, const qi_scan_run *r)
{
    scan_ctx *c = payload;
    lua_State *L = c->L;
    lua_pushcfunction(L, push_run_p);
    lua_pushlightuserdata(L, (void *)r);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK)
        return c->failed = 1;
    if (!c->fn) {
        lua_rawseti(L, c->list, ++c->n);
        return 0;
    }
    lua_pushvalue(L, c->fn);
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK)
        return c->failed = 1;
    int stop = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return stop ? 2 : 0;
}

int qi_bind_scan(lua_State *L)
{
    qi_image *img = qi_bind_check_image(L, 1);
    scan_ctx c = { .L = L };
    qi_scan_stats *st;
    int rc;
    if (!lua_isnoneornil(L, 2)) {
        luaL_checktype(L, 2, LUA_TFUNCTION);
        c.fn = 2;
    }
    if (!strcmp(qi_image_format(img), "raw"))
        return luaL_error(L, "scan: a raw image has no qcow2 metadata");
    st = lua_newuserdatauv(L, sizeof *st, 0);   /* Lua-owned: nothing to free */
    if (!c.fn) {
        lua_newtable(L);
        c.list = lua_gettop(L);
    }
    rc = qi_scan(img, on_run, &c, st);
    if (c.failed)
        return lua_error(L);
    if (rc < 0)
        return qi_bind_raise(L, img, rc);
    lua_createtable(L, 0, 4);
    set_int(L, "clusters", st->clusters);
    set_int(L, "runs", st->runs);
    lua_pushboolean(L, st->refs_incomplete);
    lua_setfield(L, -2, "refs_incomplete");
    if (st->refs_incomplete) {
        char where[48] = "";
        if (st->walk_error.offset != QI_NO_OFFSET)
            snprintf(where, sizeof where, " at 0x%" PRIx64, st->walk_error.offset);
        lua_pushfstring(L, "%s%s: %s", st->walk_error.structure, where,
                        st->walk_error.message);
        lua_setfield(L, -2, "walk_error");
    }
    return c.fn ? 1 : 2;
}

/* img:allocation() -> {unallocated=, normal=, zero=, ["zero-allocated"]=,
 * compressed=, l2_tables=}: the entries of the active L2 tables counted by
 * type, in C (a Lua loop over the entry objects of a million-cluster image
 * takes seconds). Raises at the first table that cannot be read. */
int qi_bind_allocation(lua_State *L)
{
    qi_image *img = qi_bind_check_image(L, 1);
    uint64_t count[5] = { 0 }, tables = 0;
    uint32_t n1, n2 = qi_meta_l2_entries(img);
    int rc;
    if (!strcmp(qi_image_format(img), "raw"))
        return luaL_error(L, "allocation: a raw image has no L2 tables");
    n1 = qi_meta_header(img)->l1_size;
    for (uint32_t i = 0; i < n1; i++) {
        qi_l1_entry e1;
        if ((rc = qi_meta_l1_get(img, i, &e1)) < 0)
            return qi_bind_raise(L, img, rc);
        if (!e1.l2_offset)
            continue;
        tables++;
        for (uint32_t j = 0; j < n2; j++) {
            qi_l2_entry e;
            if ((rc = qi_meta_l2_get(img, e1.l2_offset, j, &e)) < 0)
                return qi_bind_raise(L, img, rc);
            if ((unsigned)e.type < 5)
                count[e.type]++;
        }
    }
    lua_createtable(L, 0, 6);
    for (int t = 0; t < 5; t++)
        set_int(L, qi_cluster_type_name((qi_cluster_type)t), count[t]);
    set_int(L, "l2_tables", tables);
    return 1;
}
