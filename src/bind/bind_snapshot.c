/* bind_snapshot.c - img:snapshot_create/apply/delete (layer 6).
 *
 * The Lua face of include/qi/snapshot.h: each method checks its argument
 * and that the image is writable, calls one engine function, and raises
 * the engine's error object on failure (STYLE convention 11); img.snapshots
 * reads the engine's list on every access, so it shows the change at once.
 * Calls: include/qi, bind_util, bind_err, Lua. */
#include <lauxlib.h>
#include <lua.h>

#include "bind_int.h"

/* The image at 1, writable, and the string argument at 2 (a name, or an
 * id then a name). */
static qi_image *check_args(lua_State *L, const char **key)
{
    qi_image *img = qi_bind_check_image(L, 1);
    *key = luaL_checkstring(L, 2);
    if (!qi_image_writable(img))
        luaL_error(L, "image opened read-only; reopen with -w");
    return img;
}

/* img:snapshot_create(name) -> the new snapshot's id (a string). */
int qi_bind_snapshot_create(lua_State *L)
{
    const char *name;
    qi_image *img = check_args(L, &name);
    uint32_t n = 0;
    const qi_snapshot *s;
    int rc;
    if ((rc = qi_snapshot_create(img, name)) < 0)
        return qi_bind_raise(L, img, rc);
    s = qi_meta_snapshots(img, &n);
    lua_pushstring(L, s[n - 1].id);
    return 1;
}

/* img:snapshot_apply(id_or_name): revert to a snapshot (id first). */
int qi_bind_snapshot_apply(lua_State *L)
{
    const char *key;
    qi_image *img = check_args(L, &key);
    int rc;
    if ((rc = qi_snapshot_apply(img, key)) < 0)
        return qi_bind_raise(L, img, rc);
    return 0;
}

/* img:snapshot_delete(id_or_name): delete a snapshot (id first). */
int qi_bind_snapshot_delete(lua_State *L)
{
    const char *key;
    qi_image *img = check_args(L, &key);
    int rc;
    if ((rc = qi_snapshot_delete(img, key)) < 0)
        return qi_bind_raise(L, img, rc);
    return 0;
}
