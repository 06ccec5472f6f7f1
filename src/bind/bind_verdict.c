/* bind_verdict.c - qinspect.findings_at(): the check's findings about one
 * place, for explain() (layer 6).
 *
 * explain() judges an entry by the engine's rules, not by rules of its own:
 * the image is checked once (qi_check with the reference counts kept) per
 * file state, the result cached with the image, and each question filtered
 * from it (qi_check_findings_at). The cache is a userdata in a weak-keyed
 * registry table indexed by the image box; it is stale when the image's
 * generation (qi_image_generation, after a flush of cached changes on a
 * writable image) differs, and its __gc frees the result.
 * Calls: bind_util, bind_err, bind_check, include/qi. */
#include <string.h>

#include "bind_int.h"
#include "qi/check.h"

#define QI_MT_CHECKCACHE "qinspect.checkcache"
#define CACHE_KEY "qinspect.checkcaches"

typedef struct check_cache {
    qi_check_result res;
    uint64_t gen;
    int rc;             /* qi_check's return: < 0, the check stopped early */
    bool valid;
} check_cache;

static int cache_gc(lua_State *L)
{
    check_cache *c = luaL_checkudata(L, 1, QI_MT_CHECKCACHE);
    qi_check_result_free(&c->res);
    c->valid = false;
    return 0;
}

/* The cache of the image box at IDX (created empty if needed), pushed. */
static check_cache *cache_of(lua_State *L, int idx)
{
    check_cache *c;
    idx = lua_absindex(L, idx);
    qi_bind_push_weak_registry(L, CACHE_KEY);
    lua_pushvalue(L, idx);
    if (lua_rawget(L, -2) == LUA_TUSERDATA) {
        lua_remove(L, -2);
        return lua_touserdata(L, -1);
    }
    lua_pop(L, 1);
    c = lua_newuserdatauv(L, sizeof *c, 0);
    memset(c, 0, sizeof *c);
    if (luaL_newmetatable(L, QI_MT_CHECKCACHE)) {
        lua_pushcfunction(L, cache_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    lua_pushvalue(L, idx);
    lua_pushvalue(L, -2);
    lua_rawset(L, -4);
    lua_remove(L, -2);
    return c;
}

typedef struct push_ctx {
    lua_State *L;
    qi_image *img;
} push_ctx;

static int push_one(void *payload, const qi_finding *f)
{
    push_ctx *c = payload;
    qi_bind_push_finding(c->L, f, 1, c->img);
    lua_rawseti(c->L, -2, (lua_Integer)lua_rawlen(c->L, -2) + 1);
    return 0;
}

/* qinspect.findings_at(img, site [, target]) -> findings, references,
 * dedup, complete: the findings of the image's check whose place is SITE
 * (a host offset: an entry's own bytes, or a structure; false or nil:
 * none), and those about
 * the refcount of the cluster holding TARGET; the references the check
 * counted to that cluster; whether the image is a dedup image; whether the
 * check completed (false: the metadata stopped it, findings are partial). */
int qi_bind_findings_at(lua_State *L)
{
    qi_image *img = qi_bind_check_image(L, 1);
    uint64_t site = QI_NO_GUEST, target = QI_NO_GUEST, refs = 0;
    qi_check_opts opts = QI_CHECK_OPTS_INIT;
    check_cache *c;
    int rc;
    if (!lua_isnoneornil(L, 2) && !(lua_isboolean(L, 2) && !lua_toboolean(L, 2)))
        site = qi_bind_checkoffset(L, 2);
    if (!lua_isnoneornil(L, 3))
        target = qi_bind_checkoffset(L, 3);
    if (!strcmp(qi_image_format(img), "raw"))
        return luaL_error(L, "findings_at: a raw image has no qcow2 metadata");
    if (qi_image_writable(img) && (rc = qi_image_flush(img)) < 0)
        return qi_bind_raise(L, img, rc);
    c = cache_of(L, 1);
    if (!c->valid || c->gen != qi_image_generation(img)) {
        qi_check_result_free(&c->res);
        c->valid = false;
        opts.flags = QI_CHECK_KEEP_COUNTS;
        c->rc = qi_check(img, &opts, &c->res);
        c->gen = qi_image_generation(img);
        c->valid = true;
    }
    lua_newtable(L);
    push_ctx pc = { L, img };
    qi_check_findings_at(&c->res, qi_meta_header(img)->cluster_bits, site, target, push_one,
                         &pc, &refs);
    lua_pushinteger(L, (lua_Integer)refs);
    lua_pushboolean(L, qi_check_is_dedup(img));
    lua_pushboolean(L, c->rc >= 0);
    return 4;
}
