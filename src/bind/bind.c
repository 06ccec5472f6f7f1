/* bind.c - the `qinspect` Lua module (layer 6).
 *
 * luaopen_qinspect creates the metatables of every object type, registers
 * the Lua files embedded by scripts/embed-lua.sh in package.preload and
 * returns the module table {open, version, problems}. A development variable,
 * QINSPECT_LUA_PATH=DIR, makes `require "qinspect.x"` load DIR/qinspect/x.lua
 * when that file exists, so edited Lua files work without rebuilding.
 * Calls: bind_image, bind_meta, bind_table, bind_refcount, bind_owners,
 * bind_err, Lua. */
#include <stdlib.h>
#include <string.h>

#include "bind.h"
#include "bind_int.h"
#include "lua_blobs.h"

/* Loader for an embedded module: upvalue 1 is the blob as a light
 * userdata. Called by require as loader(name). */
static int load_blob(lua_State *L)
{
    const qi_lua_blob *b = lua_touserdata(L, lua_upvalueindex(1));
    const char *dir = getenv("QINSPECT_LUA_PATH");
    int rc = LUA_ERRFILE;
    if (dir && dir[0]) {
        luaL_Buffer p;
        luaL_buffinit(L, &p);
        luaL_addstring(&p, dir);
        luaL_addchar(&p, '/');
        luaL_addgsub(&p, b->name, ".", "/");
        luaL_addstring(&p, ".lua");
        luaL_pushresult(&p);
        rc = luaL_loadfile(L, lua_tostring(L, -1));
        if (rc == LUA_ERRFILE)
            lua_pop(L, 2);
    }
    if (rc == LUA_ERRFILE) {
        lua_pushfstring(L, "=[%s]", b->name);
        rc = luaL_loadbuffer(L, b->data, b->size, lua_tostring(L, -1));
    }
    if (rc != LUA_OK)
        return lua_error(L);
    lua_pushstring(L, b->name);
    lua_call(L, 1, 1);
    return 1;
}

static void register_blobs(lua_State *L)
{
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    for (const qi_lua_blob *b = qi_lua_blobs; b->name; b++) {
        lua_pushlightuserdata(L, (void *)b);
        lua_pushcclosure(L, load_blob, 1);
        lua_setfield(L, -2, b->name);
    }
    lua_pop(L, 1);
}

/* qinspect.image_of(obj) -> the image an object belongs to (an image is
 * its own), or nil for anything else. explain() uses it to read refcounts
 * and owners for an entry. */
static int image_of(lua_State *L)
{
    if (luaL_testudata(L, 1, QI_MT_IMAGE)) {
        lua_settop(L, 1);
        return 1;
    }
    if (lua_type(L, 1) != LUA_TUSERDATA || !lua_getmetatable(L, 1) ||
        lua_getfield(L, -1, "__qi_label") == LUA_TNIL) {
        lua_pushnil(L);
        return 1;
    }
    lua_getiuservalue(L, 1, 1);
    if (!luaL_testudata(L, -1, QI_MT_IMAGE))
        lua_pushnil(L);
    return 1;
}

static const luaL_Reg module_funcs[] = {
    { "open", qi_bind_open },
    { "create", qi_bind_create },
    { "image_of", image_of },
    { "findings_at", qi_bind_findings_at },
    { NULL, NULL }
};

int luaopen_qinspect(lua_State *L)
{
    qi_bind_err_register(L);
    qi_bind_image_register(L);
    qi_bind_meta_register(L);
    qi_bind_table_register(L);
    qi_bind_refcount_register(L);
    qi_bind_owners_register(L);
    register_blobs(L);
    luaL_newlib(L, module_funcs);
    qi_bind_push_problems(L);
    lua_setfield(L, -2, "problems");
    lua_pushliteral(L, QI_VERSION_STRING);
    lua_setfield(L, -2, "version");
    return 1;
}
