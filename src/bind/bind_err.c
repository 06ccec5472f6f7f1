/* bind_err.c - engine failures as Lua error objects (layer 6).
 *
 * An engine status plus the image's qi_err record becomes a table
 * {code = "ECORRUPT", message, file, structure, offset} with the metatable
 * qinspect.error, whose __tostring gives the same one line as the CLI
 * (qi_err_format), so the REPL and the session print one line and scripts
 * can pcall and branch on err.code (STYLE convention 11). Absent parts are
 * nil. Calls: Lua, include/qi. */
#include <stdio.h>
#include <string.h>

#include "bind_int.h"

static void set_str(lua_State *L, const char *k, const char *v)
{
    if (v && v[0]) {
        lua_pushstring(L, v);
        lua_setfield(L, -2, k);
    }
}

/* Copy string field K of the table at -1 into DST (N bytes). */
static void get_str(lua_State *L, const char *k, char *dst, size_t n)
{
    size_t len = 0;
    const char *s;
    lua_getfield(L, -1, k);
    s = lua_tolstring(L, -1, &len);
    if (!s || n == 0)
        len = 0;
    else if (len >= n)
        len = n - 1;
    if (n) {
        memcpy(dst, s ? s : "", len);
        dst[len] = 0;
    }
    lua_pop(L, 1);
}

static int err_tostring(lua_State *L)
{
    qi_err e;
    char buf[2048];
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    memset(&e, 0, sizeof e);
    e.code = QI_EINVAL;
    get_str(L, "file", e.file, sizeof e.file);
    get_str(L, "structure", e.structure, sizeof e.structure);
    get_str(L, "message", e.message, sizeof e.message);
    lua_getfield(L, 1, "offset");
    e.offset = lua_isinteger(L, -1) ? (uint64_t)lua_tointeger(L, -1) : QI_NO_OFFSET;
    lua_pushstring(L, qi_err_format(&e, buf, sizeof buf));
    return 1;
}

/* Create the qinspect.error metatable; stack unchanged. */
void qi_bind_err_register(lua_State *L)
{
    luaL_newmetatable(L, QI_MT_ERROR);
    lua_pushcfunction(L, err_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pop(L, 1);
}

/* Push the error object for E (may be NULL) with status RC; the code is
 * taken from E when it has one, else from RC. */
void qi_bind_push_err(lua_State *L, const qi_err *e, int rc)
{
    int code = e && e->code ? e->code : rc;
    lua_createtable(L, 0, 5);
    lua_pushstring(L, qi_errname(code));
    lua_setfield(L, -2, "code");
    lua_pushstring(L, e && e->message[0] ? e->message : qi_strerror(code));
    lua_setfield(L, -2, "message");
    if (e) {
        set_str(L, "file", e->file);
        set_str(L, "structure", e->structure);
        if (e->offset != QI_NO_OFFSET) {
            lua_pushinteger(L, (lua_Integer)e->offset);
            lua_setfield(L, -2, "offset");
        }
    }
    luaL_setmetatable(L, QI_MT_ERROR);
}

/* Raise the error recorded on IMG for status RC. Call only after every C
 * resource of the failed operation has been released (convention 12).
 * Does not return. */
int qi_bind_raise(lua_State *L, qi_image *img, int rc)
{
    qi_bind_push_err(L, img ? qi_image_error(img) : NULL, rc);
    return lua_error(L);
}

/* Format an open failure as one line that names the file: the engine's
 * line when it names a file, else "PATH: line". Returns BUF. */
const char *qi_bind_format_open_err(char *buf, size_t n, const qi_err *e,
                                    const char *path)
{
    char line[2048];
    qi_err_format(e, line, sizeof line);
    if (e->file[0])
        snprintf(buf, n, "%s", line);
    else
        snprintf(buf, n, "%s: %s", path, line);
    return buf;
}
