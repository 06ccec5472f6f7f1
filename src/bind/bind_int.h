/* bind_int.h - shared declarations of the Lua binding layer (layer 6).
 *
 * Only files in src/bind/ include this. It declares the image box, the
 * field-table dispatch (STYLE convention 10), child-object helpers
 * (convention 9), argument helpers and the structured error object
 * (convention 11). Every function here may raise a Lua error; none of them
 * holds a C resource across a raise. */
#ifndef QI_BIND_INT_H
#define QI_BIND_INT_H

#include <stddef.h>
#include <stdint.h>

#include <lua.h>
#include <lauxlib.h>

#include "qi/qi.h"

#define QI_MT_IMAGE     "qinspect.image"
#define QI_MT_HEADER    "qinspect.header"
#define QI_MT_L1TABLE   "qinspect.l1table"
#define QI_MT_L1ENTRY   "qinspect.l1entry"
#define QI_MT_L2TABLE   "qinspect.l2table"
#define QI_MT_L2ENTRY   "qinspect.l2entry"
#define QI_MT_SNAPTABLE "qinspect.snapshots"
#define QI_MT_SNAPSHOT  "qinspect.snapshot"
#define QI_MT_REFTABLE  "qinspect.reftable"
#define QI_MT_REFTENTRY "qinspect.reftentry"
#define QI_MT_REFBLOCK  "qinspect.refblock"
#define QI_MT_REFENTRY  "qinspect.refentry"
#define QI_MT_ERROR     "qinspect.error"
#define QI_MT_SCRATCH   "qinspect.scratch"

/* Largest read returned as one Lua string. */
#define QI_BIND_MAX_READ ((size_t)1 << 30)

/* The image userdata (convention 8). User value 1: for a borrowed image
 * (a backing file, owned by its overlay) the overlay's box; user value 2:
 * the path string, kept so a closed image still prints its name. */
typedef struct qi_bind_image {
    qi_image *img;      /* NULL once closed */
    unsigned flags;
} qi_bind_image;

#define QI_BIND_BORROWED 0x1u /* img is owned by the overlay: never close it */

/* A field of an object type (convention 10). GET pushes exactly one value.
 * SET (NULL until the writes issue) gets the new value at stack index VAL
 * after the dispatcher has checked that the image is writable. */
typedef int (*qi_bind_getter)(lua_State *L, void *obj, qi_image *img);
typedef int (*qi_bind_setter)(lua_State *L, void *obj, qi_image *img, int val);

typedef struct qi_bind_field {
    const char *name;
    qi_bind_getter get;
    qi_bind_setter set;
    unsigned flags;
    const char *doc;
} qi_bind_field;

/* qi_bind_field.flags: the value is a coordinate or derived from others,
 * so it can never be assigned (the error message says so). */
#define QI_FIELD_DERIVED 0x1u
/* The setter is a raw edit that can make an invalid header valid again: it
 * works while the header does not validate (qi_image_header_error), when
 * every other access raises the validation error. */
#define QI_FIELD_RAW_EDIT 0x2u
/* The getter works in that state too (it does not read the image). */
#define QI_FIELD_ANY_STATE 0x4u

/* An object type: its metatable name, the label used in messages
 * ("L2 entry"), methods, fields (terminated by a NULL name) and optional
 * metamethods. INDEX_INT answers t[i] for integer keys (tables). */
typedef struct qi_bind_class {
    const char *tname;
    const char *label;
    const luaL_Reg *methods;
    const qi_bind_field *fields;
    lua_CFunction index_int;
    lua_CFunction len;
    lua_CFunction tostring;
    lua_CFunction eq;
    const luaL_Reg *meta;   /* more metamethods (__gc, __close), or NULL */
} qi_bind_class;

/* bind_util.c */
void qi_bind_newclass(lua_State *L, const qi_bind_class *c);
void *qi_bind_newchild(lua_State *L, size_t size, int image_idx, const char *tname);
void *qi_bind_checkchild(lua_State *L, int idx, const char *tname, qi_image **img);
void qi_bind_pushowner(lua_State *L, int idx);
qi_bind_image *qi_bind_newbox(lua_State *L);
qi_image *qi_bind_check_image(lua_State *L, int idx);
qi_image *qi_bind_check_image_any(lua_State *L, int idx);
int qi_bind_box_open(lua_State *L, int idx);
/* Push registry[KEY], a weak-keyed table (created on first use). */
void qi_bind_push_weak_registry(lua_State *L, const char *key);
/* V as "64 KiB" (the largest unit up to GiB that divides it) into BUF. */
const char *qi_bind_format_size(char *buf, size_t n, uint64_t v);

uint64_t qi_bind_checkoffset(lua_State *L, int arg);
size_t qi_bind_checklength(lua_State *L, int arg);
void qi_bind_checkoptions(lua_State *L, int idx, const char *const names[]);
int qi_bind_entries(lua_State *L);
int qi_bind_child_eq(lua_State *L);
const char *qi_bind_hex64(char buf[19], uint64_t v);

/* bind_err.c */
void qi_bind_err_register(lua_State *L);
void qi_bind_push_err(lua_State *L, const qi_err *e, int rc);
int qi_bind_raise(lua_State *L, qi_image *img, int rc);

/* Append {what, old, new} to the raw-edit log of the image that owns the
 * object at IDX (an image or a child object); img:edits() returns it. */
void qi_bind_log_edit(lua_State *L, int idx, const char *what, uint64_t old, uint64_t nw);

/* The same for a poke of N bytes at the image box IDX: old and new are
 * logged as hex strings (the first 32 bytes). */
void qi_bind_log_edit_bytes(lua_State *L, int idx, const char *what, const void *old,
                            const void *nw, size_t n);

/* Push the raw-edit log of the image box at IDX (a new empty list if none). */
void qi_bind_push_edits(lua_State *L, int idx);
const char *qi_bind_format_open_err(char *buf, size_t n, const qi_err *e,
                                    const char *path);

/* bind_image.c */
void qi_bind_image_register(lua_State *L);
int qi_bind_open(lua_State *L);
int qi_bind_create(lua_State *L);

/* bind_snapshot.c: img:snapshot_create/apply/delete */
int qi_bind_snapshot_create(lua_State *L);
int qi_bind_snapshot_apply(lua_State *L);
int qi_bind_snapshot_delete(lua_State *L);

/* bind_meta.c: header and snapshots */
void qi_bind_meta_register(lua_State *L);
void qi_bind_push_header(lua_State *L, int image_idx);
void qi_bind_push_snapshots(lua_State *L, int image_idx);
uint32_t qi_bind_checksnapshot(lua_State *L, qi_image *img, int arg);

/* bind_table.c: L1/L2 tables and entries */
void qi_bind_table_register(lua_State *L);
void qi_bind_push_l1table(lua_State *L, int image_idx, uint64_t off,
                          uint32_t size, int64_t snap);
void qi_bind_push_l2table(lua_State *L, int image_idx, uint64_t off);
void qi_bind_push_l2entry(lua_State *L, int image_idx, uint64_t l2_off,
                          uint32_t index);

/* bind_refcount.c: refcount table, blocks and entries */
void qi_bind_refcount_register(lua_State *L);
void qi_bind_push_refcounts(lua_State *L, int image_idx);

/* bind_owners.c: img:owners(), img.bitmaps, qinspect.problems */
void qi_bind_owners_register(lua_State *L);
int qi_bind_owners(lua_State *L);
int qi_bind_references(lua_State *L);

/* bind_check.c */
int qi_bind_check(lua_State *L);
struct qi_finding;
void qi_bind_push_finding(lua_State *L, const struct qi_finding *f, int box,
                          qi_image *img); /* bind_check.c */
int qi_bind_findings_at(lua_State *L); /* bind_verdict.c: qinspect.findings_at */
int qi_bind_scan(lua_State *L);     /* bind_scan.c: img:scan([fn]) */
int qi_bind_allocation(lua_State *L); /* bind_scan.c: img:allocation() */
int qi_bind_push_bitmaps(lua_State *L, qi_image *img);
void qi_bind_push_problems(lua_State *L);
void qi_bind_push_l1entry(lua_State *L, int image_idx, uint64_t off,
                          uint32_t size, int64_t snap, uint32_t index);

#endif
