/* The Lua library files embedded in the binary (build/gen/lua_blobs.c,
 * written by scripts/embed-lua.sh). Terminated by a NULL name. */
#ifndef QI_LUA_BLOBS_H
#define QI_LUA_BLOBS_H
#include <stddef.h>
typedef struct qi_lua_blob {
    const char *name;   /* module name, e.g. "qinspect.pretty" */
    const char *data;
    size_t size;
} qi_lua_blob;
extern const qi_lua_blob qi_lua_blobs[];
#endif
