/* bind_util.c - object-type machinery shared by the Lua bindings (layer 6).
 *
 * Builds the metatable of each object type from a qi_bind_class: methods in
 * a table, fields in a field table dispatched by __index/__newindex
 * (STYLE convention 10), and the metadata help() reads (__qi_label,
 * __qi_methods, __qi_fields). Makes child objects: small userdata whose user
 * value 1 is the image box, so the image outlives them (convention 9).
 * Checks arguments with Lua's own wording (luaposix _helpers.c pattern).
 * Calls: Lua, include/qi. Invariant: nothing here owns C memory, so any
 * function may raise. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bind.h"
#include "bind_int.h"

static const qi_bind_field *find_field(const qi_bind_class *c, const char *name)
{
    for (const qi_bind_field *f = c->fields; f && f->name; f++)
        if (!strcmp(f->name, name))
            return f;
    return NULL;
}

/* Is the image box at IDX open, including every overlay it is borrowed
 * from? Returns 1 or 0 and never raises; detaches a borrowed box whose
 * owner was closed. */
int qi_bind_image_is_open(lua_State *L, int idx)
{
    return luaL_testudata(L, idx, QI_MT_IMAGE) && qi_bind_box_open(L, idx);
}

qi_image *qi_bind_image_take(lua_State *L, int idx)
{
    qi_bind_image *b;
    qi_image *img;
    if (!qi_bind_image_is_open(L, idx))
        return NULL;
    b = lua_touserdata(L, idx);
    if (b->flags & QI_BIND_BORROWED)
        return NULL;
    img = b->img;
    b->img = NULL;   /* the object reads as closed from now on */
    return img;
}

int qi_bind_box_open(lua_State *L, int idx)
{
    qi_bind_image *b = lua_touserdata(L, idx);
    int open;
    if (!b || !b->img)
        return 0;
    if (!(b->flags & QI_BIND_BORROWED))
        return 1;
    luaL_checkstack(L, 2, "backing chain too deep");
    lua_getiuservalue(L, idx, 1);
    open = qi_bind_box_open(L, lua_gettop(L));
    lua_pop(L, 1);
    if (!open)
        b->img = NULL;
    return open;
}

/* The open engine image of the box at IDX, in any state; raises "image is
 * closed". Only raw edits that can repair a header (img:poke, header field
 * setters) and what does not read the image (edits, flush, close) use it. */
qi_image *qi_bind_check_image_any(lua_State *L, int idx)
{
    qi_bind_image *b = luaL_checkudata(L, idx, QI_MT_IMAGE);
    if (!qi_bind_box_open(L, lua_absindex(L, idx)))
        luaL_error(L, "image is closed");
    return b->img;
}

/* The open engine image of the box at IDX; raises "image is closed", and
 * the validation error while a raw edit left the header invalid
 * (qi_image_header_error). Every image method starts with this
 * (convention 8). */
qi_image *qi_bind_check_image(lua_State *L, int idx)
{
    qi_image *img = qi_bind_check_image_any(L, idx);
    const qi_err *e = qi_image_header_error(img);
    if (e) {
        qi_bind_push_err(L, e, e->code);
        lua_error(L);
    }
    return img;
}

/* Push a new closed image box with its metatable set (convention 8: the
 * engine is called only after this, so a failure leaves a harmless closed
 * box for the collector). Returns the box; the caller fills it. */
qi_bind_image *qi_bind_newbox(lua_State *L)
{
    qi_bind_image *b = lua_newuserdatauv(L, sizeof *b, 2);
    b->img = NULL;
    b->flags = 0;
    luaL_setmetatable(L, QI_MT_IMAGE);
    return b;
}

/* Push a new child object of SIZE bytes (zeroed) of type TNAME whose user
 * value pins the image box at stack index IMAGE_IDX. Returns its memory. */
void *qi_bind_newchild(lua_State *L, size_t size, int image_idx, const char *tname)
{
    void *p;
    image_idx = lua_absindex(L, image_idx);
    p = lua_newuserdatauv(L, size, 1);
    memset(p, 0, size);
    lua_pushvalue(L, image_idx);
    lua_setiuservalue(L, -2, 1);
    luaL_setmetatable(L, tname);
    return p;
}

/* Push the image box that the child at IDX pins. */
void qi_bind_pushowner(lua_State *L, int idx)
{
    lua_getiuservalue(L, idx, 1);
}

/* Check that IDX is a child of type TNAME whose image is open; store the
 * engine image in *IMG and return the child's memory. Raises otherwise. */
static void *checkchild(lua_State *L, int idx, const char *tname, qi_image **img, int any)
{
    void *p = luaL_checkudata(L, idx, tname);
    idx = lua_absindex(L, idx);
    lua_getiuservalue(L, idx, 1);
    *img = any ? qi_bind_check_image_any(L, -1) : qi_bind_check_image(L, -1);
    lua_pop(L, 1);
    return p;
}

void *qi_bind_checkchild(lua_State *L, int idx, const char *tname, qi_image **img)
{
    return checkchild(L, idx, tname, img, 0);
}

/* The engine image behind object 1 of class C (an image or a child); ANY:
 * also while the header does not validate. */
static qi_image *object_image(lua_State *L, const qi_bind_class *c, int any)
{
    qi_image *img;
    if (!strcmp(c->tname, QI_MT_IMAGE))
        return any ? qi_bind_check_image_any(L, 1) : qi_bind_check_image(L, 1);
    checkchild(L, 1, c->tname, &img, any);
    return img;
}

static int class_index(lua_State *L)
{
    const qi_bind_class *c = lua_touserdata(L, lua_upvalueindex(1));
    const qi_bind_field *f;
    if (c->index_int && lua_isinteger(L, 2))
        return c->index_int(L);
    if (lua_type(L, 2) == LUA_TSTRING) {
        lua_pushvalue(L, 2);
        if (lua_rawget(L, lua_upvalueindex(2)) != LUA_TNIL)
            return 1;
        lua_pop(L, 1);
        if ((f = find_field(c, lua_tostring(L, 2))) != NULL) {
            qi_image *img = object_image(L, c, (f->flags & QI_FIELD_ANY_STATE) != 0);
            return f->get(L, lua_touserdata(L, 1), img);
        }
    }
    return luaL_error(L, "no field '%s' in %s", luaL_tolstring(L, 2, NULL), c->label);
}

static int class_newindex(lua_State *L)
{
    const qi_bind_class *c = lua_touserdata(L, lua_upvalueindex(1));
    const qi_bind_field *f = NULL;
    qi_image *img;
    if (lua_type(L, 2) == LUA_TSTRING)
        f = find_field(c, lua_tostring(L, 2));
    if (!f)
        return luaL_error(L, "no field '%s' in %s", luaL_tolstring(L, 2, NULL), c->label);
    if (!f->set)
        return luaL_error(L, "field '%s' of %s is read-only (%s)", f->name, c->label,
                          (f->flags & QI_FIELD_DERIVED)
                              ? "it is derived from other fields or is a position"
                              : "qinspect cannot write this field yet");
    img = object_image(L, c, (f->flags & QI_FIELD_RAW_EDIT) != 0);
    if (!qi_image_writable(img))
        return luaL_error(L, "image opened read-only; reopen with -w");
    return f->set(L, lua_touserdata(L, 1), img, 3);
}

/* Metatable fields read by help(): label, method names, the methods by
 * name, and the field list {name=, doc=, writable=}. */
static void set_help_meta(lua_State *L, const qi_bind_class *c)
{
    int n = 0;
    lua_pushstring(L, c->label);
    lua_setfield(L, -2, "__qi_label");
    lua_newtable(L);
    for (const luaL_Reg *m = c->methods; m && m->name; m++) {
        lua_pushstring(L, m->name);
        lua_rawseti(L, -2, ++n);
    }
    lua_setfield(L, -2, "__qi_methods");
    lua_newtable(L);            /* name -> function: help(img.read) finds it */
    if (c->methods)
        luaL_setfuncs(L, c->methods, 0);
    lua_setfield(L, -2, "__qi_methodtable");
    lua_newtable(L);
    n = 0;
    for (const qi_bind_field *f = c->fields; f && f->name; f++) {
        lua_createtable(L, 0, 3);
        lua_pushstring(L, f->name);
        lua_setfield(L, -2, "name");
        lua_pushstring(L, f->doc);
        lua_setfield(L, -2, "doc");
        lua_pushboolean(L, f->set != NULL);
        lua_setfield(L, -2, "writable");
        lua_rawseti(L, -2, ++n);
    }
    lua_setfield(L, -2, "__qi_fields");
}

/* Create the metatable of class C (which must have static storage: it is
 * kept as a light userdata upvalue) and leave the stack unchanged. */
void qi_bind_newclass(lua_State *L, const qi_bind_class *c)
{
    luaL_newmetatable(L, c->tname);
    lua_pushlightuserdata(L, (void *)c);
    lua_newtable(L);
    if (c->methods)
        luaL_setfuncs(L, c->methods, 0);
    lua_pushcclosure(L, class_index, 2);
    lua_setfield(L, -2, "__index");
    lua_pushlightuserdata(L, (void *)c);
    lua_pushcclosure(L, class_newindex, 1);
    lua_setfield(L, -2, "__newindex");
    if (c->len) {
        lua_pushcfunction(L, c->len);
        lua_setfield(L, -2, "__len");
    }
    if (c->len && c->index_int) {
        lua_pushcfunction(L, qi_bind_entries);
        lua_setfield(L, -2, "__pairs");
    }
    if (c->tostring) {
        lua_pushcfunction(L, c->tostring);
        lua_setfield(L, -2, "__tostring");
    }
    if (c->eq) {
        lua_pushcfunction(L, c->eq);
        lua_setfield(L, -2, "__eq");
    }
    if (c->meta)
        luaL_setfuncs(L, c->meta, 0);
    set_help_meta(L, c);
    lua_pop(L, 1);
}

/* V as "64 KiB": the largest binary unit that divides it, to GiB. */
const char *qi_bind_format_size(char *buf, size_t n, uint64_t v)
{
    static const char *const unit[] = { "B", "KiB", "MiB", "GiB" };
    int u = 0;
    while (u < 3 && v >= 1024 && v % 1024 == 0) {
        v /= 1024;
        u++;
    }
    snprintf(buf, n, "%" PRIu64 " %s", v, unit[u]);
    return buf;
}

/* Argument ARG as a byte offset: a non-negative integer. */
uint64_t qi_bind_checkoffset(lua_State *L, int arg)
{
    lua_Integer v = luaL_checkinteger(L, arg);
    luaL_argcheck(L, v >= 0, arg, "offset is negative");
    return (uint64_t)v;
}

/* Argument ARG as a read length: 0 .. QI_BIND_MAX_READ. */
size_t qi_bind_checklength(lua_State *L, int arg)
{
    lua_Integer v = luaL_checkinteger(L, arg);
    luaL_argcheck(L, v >= 0, arg, "length is negative");
    luaL_argcheck(L, (uint64_t)v <= QI_BIND_MAX_READ, arg, "length exceeds 1 GiB");
    return (size_t)v;
}

/* Raise if the option table at IDX (absent or nil is fine) has a key that
 * is not in NAMES (NULL-terminated). */
void qi_bind_checkoptions(lua_State *L, int idx, const char *const names[])
{
    if (lua_isnoneornil(L, idx))
        return;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        size_t i;
        lua_pop(L, 1);
        for (i = 0; names[i]; i++)
            if (lua_type(L, -1) == LUA_TSTRING && !strcmp(names[i], lua_tostring(L, -1)))
                break;
        if (!names[i]) {
            lua_pushfstring(L, "unknown option '%s'", luaL_tolstring(L, -1, NULL));
            luaL_argerror(L, idx, lua_tostring(L, -1));
        }
    }
}

static int entries_next(lua_State *L)
{
    lua_Integer i = luaL_checkinteger(L, 2) + 1;
    lua_len(L, 1);
    if (i >= lua_tointeger(L, -1))
        return 0;
    lua_pushinteger(L, i);
    lua_geti(L, 1, i);
    return 2;
}

/* t:entries() for any table object with __len and integer __index:
 * `for i, e in t:entries()` with 0-based i, re-reading the length on each
 * step so it follows the current state of the image. */
int qi_bind_entries(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TUSERDATA);
    lua_pushcfunction(L, entries_next);
    lua_pushvalue(L, 1);
    lua_pushinteger(L, -1);
    return 3;
}

/* __eq for child objects: same type, same image, same coordinates. */
int qi_bind_child_eq(lua_State *L)
{
    size_t n = lua_rawlen(L, 1);
    int same;
    if (!lua_getmetatable(L, 1) || !lua_getmetatable(L, 2) || !lua_rawequal(L, -1, -2) ||
        n != lua_rawlen(L, 2) || memcmp(lua_touserdata(L, 1), lua_touserdata(L, 2), n))
        return lua_pushboolean(L, 0), 1;
    lua_pop(L, 2);
    lua_getiuservalue(L, 1, 1);
    lua_getiuservalue(L, 2, 1);
    same = lua_rawequal(L, -1, -2);
    if (!same) {
        qi_bind_image *a = lua_touserdata(L, -1), *b = lua_touserdata(L, -2);
        same = a && b && a->img && a->img == b->img;
    }
    lua_pushboolean(L, same);
    return 1;
}

/* Format V as 0x%016x into BUF (19 bytes); returns BUF. */
const char *qi_bind_hex64(char buf[19], uint64_t v)
{
    snprintf(buf, 19, "0x%016" PRIx64, v);
    return buf;
}

/* ---- the raw-edit log: registry table {image box -> list}, weak keys ---- */

#define QI_EDITS_KEY "qinspect.edits"

/* Push the weak-keyed table registry[KEY], created on first use (state
 * kept per image box, gone with the box). */
void qi_bind_push_weak_registry(lua_State *L, const char *key)
{
    if (lua_getfield(L, LUA_REGISTRYINDEX, key) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, key);
}

static void push_edit_lists(lua_State *L)
{
    qi_bind_push_weak_registry(L, QI_EDITS_KEY);
}

void qi_bind_push_edits(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    push_edit_lists(L);
    lua_pushvalue(L, idx);
    if (lua_rawget(L, -2) != LUA_TTABLE) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, idx);
        lua_pushvalue(L, -2);
        lua_rawset(L, -4);
    }
    lua_remove(L, -2);
}

static void push_hex(lua_State *L, const unsigned char *p, size_t n)
{
    static const char digits[] = "0123456789abcdef";
    char buf[2 * 32 + 4];
    size_t k = 0, m = n > 32 ? 32 : n;
    for (size_t i = 0; i < m; i++) {
        buf[k++] = digits[p[i] >> 4];
        buf[k++] = digits[p[i] & 15];
    }
    if (n > m)
        buf[k++] = '.', buf[k++] = '.', buf[k++] = '.';
    lua_pushlstring(L, buf, k);
}

void qi_bind_log_edit_bytes(lua_State *L, int idx, const char *what, const void *old,
                            const void *nw, size_t n)
{
    idx = lua_absindex(L, idx);
    lua_pushvalue(L, idx);
    qi_bind_push_edits(L, -1);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, what);
    lua_setfield(L, -2, "what");
    push_hex(L, old, n);
    lua_setfield(L, -2, "old");
    push_hex(L, nw, n);
    lua_setfield(L, -2, "new");
    lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
    lua_pop(L, 2);
}

void qi_bind_log_edit(lua_State *L, int idx, const char *what, uint64_t old, uint64_t nw)
{
    idx = lua_absindex(L, idx);
    if (luaL_testudata(L, idx, QI_MT_IMAGE))
        lua_pushvalue(L, idx);
    else
        qi_bind_pushowner(L, idx);
    qi_bind_push_edits(L, -1);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, what);
    lua_setfield(L, -2, "what");
    lua_pushinteger(L, (lua_Integer)old);
    lua_setfield(L, -2, "old");
    lua_pushinteger(L, (lua_Integer)nw);
    lua_setfield(L, -2, "new");
    lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
    lua_pop(L, 2);
}
