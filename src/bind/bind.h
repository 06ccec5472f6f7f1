/* bind.h - the Lua bindings as seen from the process edge (layer 7).
 *
 * The CLI session and the REPL only need the module opener: everything
 * else reaches Lua code through the `qinspect` module table it returns. */
#ifndef QI_BIND_H
#define QI_BIND_H

#include <lua.h>

/* Open the `qinspect` module: creates the metatables of every object type,
 * registers the embedded Lua files (qinspect.pretty, ...) in package.preload
 * and returns 1 (the module table) on the stack. Use with luaL_requiref.
 * Raises a Lua error only when memory runs out. */
int luaopen_qinspect(lua_State *L);

/* Whether the image object at IDX is open (not closed by img:close()).
 * Never raises. */
int qi_bind_image_is_open(lua_State *L, int idx);

/* Take the engine image out of the open image object at IDX (which then
 * reads as closed): the caller closes it. NULL if the object is closed or
 * borrowed (a backing image). Never raises. */
struct qi_image;
struct qi_image *qi_bind_image_take(lua_State *L, int idx);

#endif
