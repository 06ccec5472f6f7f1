/* bind_image.c - qinspect.open and the image object (layer 6).
 *
 * The image userdata is a closed-first box (STYLE convention 8): allocated
 * with img = NULL and its metatable set before the engine opens anything,
 * so a failure leaves a harmless closed box. __gc and __close share one
 * close that does nothing on a closed box; a borrowed box (img:backing())
 * never closes the engine image, which its overlay owns. Properties go
 * through the field table, methods through a luaL_Reg table. Reads write
 * straight into luaL_Buffer memory after a length cap (convention 12).
 * Calls: bind_util, bind_err, bind_meta, bind_table, include/qi. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qi/compress.h"
#include "qi/trace.h"
#include "bind_int.h"

/* ---- open / close ---- */

/* qinspect.open(path [, {rw= (or write=), force_share=, backing=, repair=,
 * undo=FILE, dry_run=}]) -> image, or nil, message, code (io.open style,
 * convention 11). undo and dry_run need rw (qi_open_opts.undo_path,
 * QI_OPEN_DRY_RUN). */
int qi_bind_open(lua_State *L)
{
    static const char *const opt_names[] = { "rw", "write", "force_share", "backing",
                                             "repair", "undo", "dry_run", NULL };
    const char *path = luaL_checkstring(L, 1);
    qi_open_opts o = QI_OPEN_OPTS_INIT;
    qi_bind_image *b;
    qi_err err;
    char msg[2304];
    int rc;
    qi_bind_checkoptions(L, 2, opt_names);
    if (lua_istable(L, 2)) {
        if (lua_getfield(L, 2, "rw") != LUA_TNIL && lua_toboolean(L, -1))
            o.flags |= QI_OPEN_RW;
        if (lua_getfield(L, 2, "force_share") != LUA_TNIL && lua_toboolean(L, -1))
            o.flags |= QI_OPEN_FORCE_SHARE;
        if (lua_getfield(L, 2, "backing") != LUA_TNIL && !lua_toboolean(L, -1))
            o.flags |= QI_OPEN_NO_BACKING;
        if (lua_getfield(L, 2, "repair") != LUA_TNIL && lua_toboolean(L, -1))
            o.flags |= QI_OPEN_REPAIR;
        if (lua_getfield(L, 2, "write") != LUA_TNIL && lua_toboolean(L, -1))
            o.flags |= QI_OPEN_RW;
        if (lua_getfield(L, 2, "dry_run") != LUA_TNIL && lua_toboolean(L, -1))
            o.flags |= QI_OPEN_DRY_RUN;
        if (lua_getfield(L, 2, "undo") != LUA_TNIL)
            o.undo_path = luaL_checkstring(L, -1);   /* the table keeps it alive */
        lua_pop(L, 7);
        if ((o.undo_path || (o.flags & QI_OPEN_DRY_RUN)) && !(o.flags & QI_OPEN_RW))
            return luaL_error(L, "qinspect.open: undo and dry_run need write=true");
    }
    b = qi_bind_newbox(L);
    rc = qi_image_open(&b->img, path, &o, &err);
    if (rc < 0) {
        b->img = NULL;
        luaL_pushfail(L);
        lua_pushstring(L, qi_bind_format_open_err(msg, sizeof msg, &err, path));
        lua_pushstring(L, qi_errname(err.code ? err.code : rc));
        return 3;
    }
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 2);
    return 1;
}

/* One string option of qinspect.create's table at IDX (NULL if absent). */
static const char *opt_string(lua_State *L, int idx, const char *key)
{
    const char *v = NULL;
    int t = lua_getfield(L, idx, key);
    if (t != LUA_TNIL) {
        if (t != LUA_TSTRING)
            luaL_error(L, "bad option '%s' to 'create' (string expected, got %s)", key,
                       luaL_typename(L, -1));
        v = lua_tostring(L, -1);
    }
    lua_pop(L, 1);   /* the table keeps the string alive */
    return v;
}

static bool opt_bool(lua_State *L, int idx, const char *key)
{
    bool v = lua_getfield(L, idx, key) != LUA_TNIL && lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static lua_Integer opt_int(lua_State *L, int idx, const char *key, lua_Integer max)
{
    lua_Integer v = 0;
    int isnum = 1;
    if (lua_getfield(L, idx, key) != LUA_TNIL) {
        v = lua_tointegerx(L, -1, &isnum);
        if (!isnum || v <= 0 || v > max)
            luaL_error(L, "bad option '%s' to 'create' (a positive integer up to %I "
                       "expected)", key, max);
    }
    lua_pop(L, 1);
    return v;
}

/* The enum options, by their -o values. */
static void create_enums(lua_State *L, int idx, qi_create_opts *c)
{
    static const char *const prealloc[] = { "off", "metadata", "falloc", "full", NULL };
    const char *v;
    if ((v = opt_string(L, idx, "compat"))) {
        if (!strcmp(v, "0.10") || !strcmp(v, "v2"))
            c->version = 2;
        else if (!strcmp(v, "1.1") || !strcmp(v, "v3"))
            c->version = 3;
        else
            luaL_error(L, "bad option 'compat' to 'create' (0.10 or 1.1 expected, got '%s')",
                       v);
    }
    if ((v = opt_string(L, idx, "compression_type"))) {
        if (strcmp(v, "zlib") && strcmp(v, "zstd"))
            luaL_error(L, "bad option 'compression_type' to 'create' (zlib or zstd "
                       "expected, got '%s')", v);
        c->zstd = !strcmp(v, "zstd");
    }
    if ((v = opt_string(L, idx, "preallocation"))) {
        int i;
        for (i = 0; prealloc[i] && strcmp(v, prealloc[i]); i++)
            ;
        if (!prealloc[i])
            luaL_error(L, "bad option 'preallocation' to 'create' (off, metadata, falloc "
                       "or full expected, got '%s')", v);
        c->prealloc = (qi_prealloc)i;
    }
}

/* qinspect.create(path, size [, opts]) -> image opened read-write. OPTS
 * takes the names of qemu-img create's -o options. Engine refusals raise
 * a qinspect.error with qemu-img's reason. */
int qi_bind_create(lua_State *L)
{
    static const char *const names[] = { "compat", "cluster_size", "refcount_bits",
        "extended_l2", "lazy_refcounts", "compression_type", "data_file", "data_file_raw",
        "preallocation", "backing_file", "backing_fmt", NULL };
    const char *path = luaL_checkstring(L, 1);
    lua_Integer size = luaL_checkinteger(L, 2);
    qi_create_opts c = QI_CREATE_OPTS_INIT;
    qi_bind_image *b;
    qi_err err;
    int rc;
    luaL_argcheck(L, size >= 0, 2, "size must not be negative");
    qi_bind_checkoptions(L, 3, names);
    c.size = (uint64_t)size;
    if (lua_istable(L, 3)) {
        create_enums(L, 3, &c);
        c.cluster_size = (uint32_t)opt_int(L, 3, "cluster_size", UINT32_MAX);
        c.refcount_bits = (unsigned)opt_int(L, 3, "refcount_bits", 1024);
        c.extended_l2 = opt_bool(L, 3, "extended_l2");
        c.lazy_refcounts = opt_bool(L, 3, "lazy_refcounts");
        c.data_file_raw = opt_bool(L, 3, "data_file_raw");
        c.data_file = opt_string(L, 3, "data_file");
        c.backing_file = opt_string(L, 3, "backing_file");
        c.backing_fmt = opt_string(L, 3, "backing_fmt");
    }
    b = qi_bind_newbox(L);
    rc = qi_image_create(&b->img, path, &c, NULL, &err);
    if (rc < 0) {
        b->img = NULL;
        qi_bind_push_err(L, &err, rc);
        return lua_error(L);
    }
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 2);
    return 1;
}

static int image_close(lua_State *L)
{
    qi_bind_image *b = luaL_checkudata(L, 1, QI_MT_IMAGE);
    if (b->img && !(b->flags & QI_BIND_BORROWED))
        qi_image_close(b->img);
    b->img = NULL;
    return 0;
}

/* img:close(): flushes and closes the image (a backing image only detaches:
 * its overlay owns it). Closing twice is an error, as for Lua files. */
static int m_close(lua_State *L)
{
    qi_image *img = qi_bind_check_image_any(L, 1);
    qi_bind_image *b = lua_touserdata(L, 1);
    int rc;
    /* a failed write-back raises and leaves the image open (retry, or let
     * __gc close it); only __gc and __close swallow it */
    if (!(b->flags & QI_BIND_BORROWED) && (rc = qi_image_flush(img)) < 0)
        return qi_bind_raise(L, img, rc);
    return image_close(L);
}

static int image_tostring(lua_State *L)
{
    qi_bind_image *b = luaL_checkudata(L, 1, QI_MT_IMAGE);
    char cs[32];
    const char *path;
    lua_getiuservalue(L, 1, 2);
    path = lua_isstring(L, -1) ? lua_tostring(L, -1) : "?";
    if (!qi_bind_box_open(L, 1)) {
        lua_pushfstring(L, "image '%s' (closed)", path);
        return 1;
    }
    if (qi_image_header_error(b->img))
        lua_pushfstring(L, "%s image '%s' (%s, header invalid)", qi_image_format(b->img),
                        path, qi_image_writable(b->img) ? "rw" : "ro");
    else if (qi_image_cluster_size(b->img))
        lua_pushfstring(L, "%s image '%s' (%s, %s clusters)", qi_image_format(b->img),
                        path, qi_image_writable(b->img) ? "rw" : "ro",
                        qi_bind_format_size(cs, sizeof cs, qi_image_cluster_size(b->img)));
    else
        lua_pushfstring(L, "%s image '%s' (%s)", qi_image_format(b->img), path,
                        qi_image_writable(b->img) ? "rw" : "ro");
    return 1;
}

/* ---- reads ---- */

/* img:read(offset, length) -> string of guest bytes (backing chain
 * honoured). Raises on a range beyond the virtual size or an engine error. */
static int m_read(lua_State *L)
{
    qi_image *img = qi_bind_check_image(L, 1);
    uint64_t off = qi_bind_checkoffset(L, 2);
    size_t len = qi_bind_checklength(L, 3);
    uint64_t size = qi_image_size(img);
    luaL_Buffer b;
    char *p;
    int rc;
    luaL_argcheck(L, off <= size && len <= size - off, 3,
                  "offset + length is beyond the virtual size");
    p = luaL_buffinitsize(L, &b, len);
    if ((rc = qi_image_read(img, p, off, len)) < 0)
        return qi_bind_raise(L, img, rc);
    luaL_pushresultsize(&b, len);
    return 1;
}

/* img:read_snapshot(index_or_name, offset, length) -> string of the
 * snapshot's guest view. */
static int m_read_snapshot(lua_State *L)
{
    qi_image *img = qi_bind_check_image(L, 1);
    uint32_t snap = qi_bind_checksnapshot(L, img, 2);
    uint64_t off = qi_bind_checkoffset(L, 3);
    size_t len = qi_bind_checklength(L, 4);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, len);
    int rc;
    if ((rc = qi_image_read_snapshot(img, snap, p, off, len)) < 0)
        return qi_bind_raise(L, img, rc);
    luaL_pushresultsize(&b, len);
    return 1;
}

/* ---- metadata entry points ---- */

/* img:l2_for(guest_offset) -> L2 entry, L2 table; or nil when the L1 entry
 * covering the offset has no L2 table. */
static int m_l2_for(lua_State *L)
{
    qi_image *img = qi_bind_check_image(L, 1);
    uint64_t goff = qi_bind_checkoffset(L, 2), l2_off = 0;
    uint32_t index = 0;
    qi_l2_entry e;
    int rc;
    luaL_argcheck(L, goff < qi_image_size(img), 2, "offset is beyond the virtual size");
    if ((rc = qi_meta_l2_lookup(img, goff, &l2_off, &index, &e)) < 0)
        return qi_bind_raise(L, img, rc);
    if (!l2_off) {
        lua_pushnil(L);
        return 1;
    }
    qi_bind_push_l2entry(L, 1, l2_off, index);
    qi_bind_push_l2table(L, 1, l2_off);
    return 2;
}

/* img:refcount(host_offset) -> refcount of the host cluster holding it. */
static int m_refcount(lua_State *L)
{
    qi_image *img = qi_bind_check_image(L, 1);
    uint64_t off = qi_bind_checkoffset(L, 2), rc_val = 0;
    int rc;
    if ((rc = qi_meta_refcount(img, off, &rc_val)) < 0)
        return qi_bind_raise(L, img, rc);
    lua_pushinteger(L, (lua_Integer)rc_val);
    return 1;
}

/* img:backing() -> the backing image (borrowed: it pins this image and is
 * closed with it), or nil. */
static int m_backing(lua_State *L)
{
    qi_image *img = qi_bind_check_image(L, 1);
    qi_image *bk = qi_image_backing(img);
    qi_bind_image *b;
    if (!bk) {
        lua_pushnil(L);
        return 1;
    }
    b = qi_bind_newbox(L);
    b->img = bk;
    b->flags = QI_BIND_BORROWED;
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, -2, 1);
    lua_pushstring(L, qi_image_path(bk));
    lua_setiuservalue(L, -2, 2);
    return 1;
}

/* ---- map iterator ---- */

typedef struct map_first {
    qi_map_ext ext;
    int got;
} map_first;

static int map_stop(void *payload, const qi_map_ext *ext)
{
    map_first *m = payload;
    m->ext = *ext;
    m->got = 1;
    return 1;
}

static void push_ext(lua_State *L, const qi_map_ext *e)
{
    lua_createtable(L, 0, 10);
    lua_pushinteger(L, (lua_Integer)e->start);
    lua_setfield(L, -2, "start");
    lua_pushinteger(L, (lua_Integer)e->length);
    lua_setfield(L, -2, "length");
    lua_pushinteger(L, e->depth);
    lua_setfield(L, -2, "depth");
    lua_pushboolean(L, e->present);
    lua_setfield(L, -2, "present");
    lua_pushboolean(L, e->zero);
    lua_setfield(L, -2, "zero");
    lua_pushboolean(L, e->data);
    lua_setfield(L, -2, "data");
    lua_pushboolean(L, e->compressed);
    lua_setfield(L, -2, "compressed");
    if (e->has_offset) {
        lua_pushinteger(L, (lua_Integer)e->offset);
        lua_setfield(L, -2, "offset");
    }
    if (e->file) {
        lua_pushstring(L, e->file);
        lua_setfield(L, -2, "file");
    }
}

/* One step: the next merged run from upvalue 2 (position) to upvalue 3
 * (end). The engine walk stops at the first complete run, so each run is
 * exactly the one qemu-img map would print. */
static int map_next(lua_State *L)
{
    qi_image *img = qi_bind_check_image(L, lua_upvalueindex(1));
    uint64_t pos = (uint64_t)lua_tointeger(L, lua_upvalueindex(2));
    uint64_t end = (uint64_t)lua_tointeger(L, lua_upvalueindex(3));
    map_first m = { .got = 0 };
    int rc;
    if (pos >= end)
        return 0;
    rc = qi_image_map(img, pos, end - pos, map_stop, &m);
    if (rc < 0)
        return qi_bind_raise(L, img, rc);
    if (!m.got)
        return 0;
    lua_pushinteger(L, (lua_Integer)(m.ext.start + m.ext.length));
    lua_replace(L, lua_upvalueindex(2));
    push_ext(L, &m.ext);
    return 1;
}

/* img:map([start [, length]]) -> iterator over runs
 * {start, length, depth, present, zero, data, compressed, offset, file}. */
static int m_map(lua_State *L)
{
    qi_image *img = qi_bind_check_image(L, 1);
    uint64_t size = qi_image_size(img);
    uint64_t start = lua_isnoneornil(L, 2) ? 0 : qi_bind_checkoffset(L, 2);
    uint64_t len;
    luaL_argcheck(L, start <= size, 2, "start is beyond the virtual size");
    len = lua_isnoneornil(L, 3) ? size - start : (uint64_t)luaL_checkinteger(L, 3);
    luaL_argcheck(L, len <= size - start, 3, "range is beyond the virtual size");
    lua_pushvalue(L, 1);
    lua_pushinteger(L, (lua_Integer)start);
    lua_pushinteger(L, (lua_Integer)(start + len));
    lua_pushcclosure(L, map_next, 3);
    return 1;
}

/* ---- fields ---- */

static int f_path(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    lua_pushstring(L, qi_image_path(img));
    return 1;
}

static int f_format(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    lua_pushstring(L, qi_image_format(img));
    return 1;
}

static int f_size(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    lua_pushinteger(L, (lua_Integer)qi_image_size(img));
    return 1;
}

static int f_cluster_size(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    lua_pushinteger(L, qi_image_cluster_size(img));
    return 1;
}

static int f_file_size(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    lua_pushinteger(L, (lua_Integer)qi_image_file_size(img));
    return 1;
}

static int f_writable(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    lua_pushboolean(L, qi_image_writable(img));
    return 1;
}

static int f_header_error(lua_State *L, void *o, qi_image *img)
{
    const qi_err *e = qi_image_header_error(img);
    (void)o;
    if (e)
        qi_bind_push_err(L, e, e->code);
    else
        lua_pushnil(L);
    return 1;
}

static int is_qcow2(qi_image *img)
{
    return qi_meta_header(img) != NULL;
}

static int f_refcount_bits(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    if (is_qcow2(img))
        lua_pushinteger(L, qi_meta_refcount_bits(img));
    else
        lua_pushnil(L);
    return 1;
}

static int f_extended_l2(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    lua_pushboolean(L, is_qcow2(img) && qi_meta_extended_l2(img));
    return 1;
}

static int f_l2_entries(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    if (is_qcow2(img))
        lua_pushinteger(L, qi_meta_l2_entries(img));
    else
        lua_pushnil(L);
    return 1;
}

static int f_header(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    if (is_qcow2(img))
        qi_bind_push_header(L, 1);
    else
        lua_pushnil(L);
    return 1;
}

static int f_l1(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    if (is_qcow2(img))
        qi_bind_push_l1table(L, 1, 0, 0, -1);
    else
        lua_pushnil(L);
    return 1;
}

static int f_snapshots(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    (void)img;
    qi_bind_push_snapshots(L, 1);
    return 1;
}

static int f_refcounts(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    if (is_qcow2(img))
        qi_bind_push_refcounts(L, 1);
    else
        lua_pushnil(L);
    return 1;
}

static int f_bitmaps(lua_State *L, void *o, qi_image *img)
{
    (void)o;
    return qi_bind_push_bitmaps(L, img);
}

static const qi_bind_field image_fields[] = {
    { "path", f_path, NULL, QI_FIELD_DERIVED, "file name as given to open" },
    { "format", f_format, NULL, QI_FIELD_DERIVED, "\"qcow2\" or \"raw\"" },
    { "size", f_size, NULL, 0, "virtual size in bytes" },
    { "cluster_size", f_cluster_size, NULL, QI_FIELD_DERIVED, "cluster size in bytes (0 for raw)" },
    { "file_size", f_file_size, NULL, QI_FIELD_DERIVED, "length of the host file" },
    { "writable", f_writable, NULL, QI_FIELD_DERIVED, "opened read-write (-w)" },
    { "header_error", f_header_error, NULL, QI_FIELD_DERIVED | QI_FIELD_ANY_STATE,
      "nil, or the error of a header a raw edit left invalid (raw edits only until fixed)" },
    { "refcount_bits", f_refcount_bits, NULL, 0, "width of a refcount entry" },
    { "extended_l2", f_extended_l2, NULL, QI_FIELD_DERIVED, "L2 entries have subclusters" },
    { "l2_entries", f_l2_entries, NULL, QI_FIELD_DERIVED, "entries per L2 table" },
    { "header", f_header, NULL, QI_FIELD_DERIVED | QI_FIELD_ANY_STATE,
      "the header object (nil for raw)" },
    { "l1", f_l1, NULL, QI_FIELD_DERIVED, "the active L1 table object (nil for raw)" },
    { "snapshots", f_snapshots, NULL, QI_FIELD_DERIVED, "the internal snapshot table" },
    { "refcounts", f_refcounts, NULL, QI_FIELD_DERIVED, "the refcount table object (nil for raw)" },
    { "bitmaps", f_bitmaps, NULL, QI_FIELD_DERIVED,
      "persistent dirty bitmaps: list of {name, type, granularity_bits, flags, table_offset, ...} "
      "(writes keep them as QEMU does: help \"bitmaps\")" },
    { NULL, NULL, NULL, 0, NULL }
};

/* ---- writes ---- */

/* img:write(offset, data): guest write (copy-on-write where the cluster is
 * shared, compressed, zero or unallocated). Raises on a read-only image, a
 * range beyond the virtual size, or an engine error. */
static int m_write(lua_State *L)
{
    qi_image *img = qi_bind_check_image(L, 1);
    uint64_t off = qi_bind_checkoffset(L, 2);
    size_t len;
    const char *data = luaL_checklstring(L, 3, &len);
    uint64_t size = qi_image_size(img);
    int rc;
    if (!qi_image_writable(img))
        return luaL_error(L, "image opened read-only; reopen with -w");
    luaL_argcheck(L, off <= size && len <= size - off, 3,
                  "offset + length is beyond the virtual size");
    if ((rc = qi_image_write(img, data, off, len)) < 0)
        return qi_bind_raise(L, img, rc);
    return 0;
}

/* Compress DATA (LEN bytes, zero padded to a cluster) for IMG into OUT
 * (cluster - 1 bytes): the length, 0 when it does not shrink, or QI_E*. */
static long compress_for(qi_image *img, const char *data, size_t len, uint8_t *in,
                         uint8_t *out)
{
    const qi_header *h = qi_meta_header(img);
    qi_compressor *c = NULL;
    uint32_t cs = qi_image_cluster_size(img);
    long n;
    int rc = qi_compressor_new(&c, h ? h->compression_type : 0, cs);
    if (rc < 0)
        return rc;
    memset(in, 0, cs);
    memcpy(in, data, len);
    n = qi_compressor_run(c, in, out);
    qi_compressor_free(c);
    return n;
}

/* img:write_compressed(offset, data): a compressed write of one guest
 * cluster (DATA: a whole cluster, or the last one up to the virtual size),
 * as QEMU's: packed after the previous compressed cluster, or written
 * uncompressed when compression does not shrink it. Only to a cluster
 * without a host cluster. */
static int m_write_compressed(lua_State *L)
{
    qi_image *img = qi_bind_check_image(L, 1);
    uint64_t off = qi_bind_checkoffset(L, 2);
    size_t len;
    const char *data = luaL_checklstring(L, 3, &len);
    uint32_t cs = qi_image_cluster_size(img);
    uint8_t *in, *out;
    long n;
    int rc;
    if (!qi_image_writable(img))
        return luaL_error(L, "image opened read-only; reopen with -w");
    luaL_argcheck(L, cs && len >= 1 && len <= cs, 3, "data must be one cluster or less");
    in = lua_newuserdatauv(L, 2 * (size_t)cs, 0);
    out = in + cs;
    if ((n = compress_for(img, data, len, in, out)) < 0)
        return luaL_error(L, "compression failed: %s", qi_strerror((int)n));
    if ((rc = qi_image_write_compressed(img, off, data, len, out, (size_t)n)) < 0)
        return qi_bind_raise(L, img, rc);
    return 0;
}

/* img:zero(offset, length [, {unmap=bool}]): make the range read as zeros
 * (zero flag on whole clusters, zero bytes on pieces). */
static int m_zero(lua_State *L)
{
    static const char *const opt_names[] = { "unmap", NULL };
    qi_image *img = qi_bind_check_image(L, 1);
    uint64_t off = qi_bind_checkoffset(L, 2), len = qi_bind_checkoffset(L, 3);
    bool unmap = false;
    int rc;
    qi_bind_checkoptions(L, 4, opt_names);
    if (lua_istable(L, 4)) {
        unmap = lua_getfield(L, 4, "unmap") != LUA_TNIL && lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    if (!qi_image_writable(img))
        return luaL_error(L, "image opened read-only; reopen with -w");
    luaL_argcheck(L, off <= qi_image_size(img) && len <= qi_image_size(img) - off, 3,
                  "offset + length is beyond the virtual size");
    if ((rc = qi_image_zero(img, off, len, unmap)) < 0)
        return qi_bind_raise(L, img, rc);
    return 0;
}

/* img:discard(offset, length): drop the whole clusters in the range. */
static int m_discard(lua_State *L)
{
    qi_image *img = qi_bind_check_image(L, 1);
    uint64_t off = qi_bind_checkoffset(L, 2), len = qi_bind_checkoffset(L, 3);
    int rc;
    if (!qi_image_writable(img))
        return luaL_error(L, "image opened read-only; reopen with -w");
    luaL_argcheck(L, off <= qi_image_size(img) && len <= qi_image_size(img) - off, 3,
                  "offset + length is beyond the virtual size");
    if ((rc = qi_image_discard(img, off, len)) < 0)
        return qi_bind_raise(L, img, rc);
    return 0;
}

/* img:resize(new_size [, {shrink=true}]): change the virtual size as
 * qemu-img resize does (a multiple of 512); a smaller size only with
 * shrink=true, as qemu-img's --shrink. */
static int m_resize(lua_State *L)
{
    qi_image *img = qi_bind_check_image(L, 1);
    lua_Integer size = luaL_checkinteger(L, 2);
    bool shrink = false;
    int rc;
    luaL_argcheck(L, size > 0, 2, "new image size must be positive");
    if (!lua_isnoneornil(L, 3)) {
        luaL_checktype(L, 3, LUA_TTABLE);
        shrink = lua_getfield(L, 3, "shrink") != LUA_TNIL && lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    if ((uint64_t)size < qi_image_size(img) && !shrink)
        return luaL_error(L, "use the shrink option to perform a shrink operation "
                          "(img:resize(size, {shrink=true})): shrinking deletes all data "
                          "beyond the new end");
    if (!qi_image_writable(img))
        return luaL_error(L, "image opened read-only; reopen with -w");
    if ((rc = qi_image_resize(img, (uint64_t)size)) < 0)
        return qi_bind_raise(L, img, rc);
    return 0;
}

/* ---- raw edits ---- */

/* img:poke(host_offset, bytes) -> the bytes that were there. Arbitrary
 * bytes into the image file (a raw edit: no rule is checked), after every
 * cached change is written back; logged in img:edits(). */
static int m_poke(lua_State *L)
{
    qi_image *img = qi_bind_check_image_any(L, 1);
    uint64_t off = qi_bind_checkoffset(L, 2);
    size_t len;
    const char *data = luaL_checklstring(L, 3, &len);
    luaL_Buffer b;
    char what[64];
    int rc;
    luaL_argcheck(L, len <= (1u << 20), 3, "at most 1 MiB per poke");
    char *old = luaL_buffinitsize(L, &b, len);
    if ((rc = qi_meta_poke(img, off, data, len, old)) < 0)
        return qi_bind_raise(L, img, rc);
    snprintf(what, sizeof what, "%zu bytes at %#" PRIx64 " (poke)", len, off);
    qi_bind_log_edit_bytes(L, 1, what, old, data, len);
    luaL_pushresultsize(&b, len);
    return 1;
}

/* img:set_refcount(host_offset, n) -> the old refcount (a raw edit through
 * the refcount block cache; logged in img:edits()). */
static int m_set_refcount(lua_State *L)
{
    qi_image *img = qi_bind_check_image(L, 1);
    uint64_t off = qi_bind_checkoffset(L, 2), old;
    lua_Integer n = luaL_checkinteger(L, 3);
    char what[64];
    int rc;
    luaL_argcheck(L, n >= 0, 3, "a refcount is not negative");
    if ((rc = qi_meta_set_refcount(img, off, (uint64_t)n, &old)) < 0)
        return qi_bind_raise(L, img, rc);
    snprintf(what, sizeof what, "refcount of the cluster at %#" PRIx64,
             off & ~((uint64_t)qi_image_cluster_size(img) - 1));
    qi_bind_log_edit(L, 1, what, old, (uint64_t)n);
    lua_pushinteger(L, (lua_Integer)old);
    return 1;
}

/* img:edits() -> the raw edits made through this image object, in order:
 * {what, old, new}. */
static int m_edits(lua_State *L)
{
    qi_bind_check_image_any(L, 1);
    qi_bind_push_edits(L, 1);
    return 1;
}

/* ---- img:trace ---- */

#define QI_MT_TRACEBOX "qinspect.tracebox"

/* The records of a stopped trace, owned by a userdata so that a raise
 * while building the Lua result frees them (convention 12). */
typedef struct tracebox {
    qi_trace_rec *recs;
} tracebox;

static int tracebox_gc(lua_State *L)
{
    tracebox *t = luaL_checkudata(L, 1, QI_MT_TRACEBOX);
    free(t->recs);
    t->recs = NULL;
    return 0;
}

static void push_u64_field(lua_State *L, const char *k, uint64_t v)
{
    lua_pushinteger(L, (lua_Integer)v);
    lua_setfield(L, -2, k);
}

static void push_record(lua_State *L, const qi_trace_rec *r)
{
    uint32_t kept = r->n_changes < QI_TRACE_MAX_CHANGES ? r->n_changes : QI_TRACE_MAX_CHANGES;
    lua_createtable(L, 0, 6);
    lua_pushstring(L, r->structure);
    lua_setfield(L, -2, "structure");
    lua_pushstring(L, r->file);
    lua_setfield(L, -2, "file");
    push_u64_field(L, "offset", r->offset);
    push_u64_field(L, "length", r->length);
    if (r->n_changes) {
        lua_createtable(L, (int)kept, 0);
        for (uint32_t i = 0; i < kept; i++) {
            lua_createtable(L, 0, 3);
            push_u64_field(L, "offset", r->changes[i].offset);
            push_u64_field(L, "old", r->changes[i].old_value);
            push_u64_field(L, "new", r->changes[i].new_value);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        lua_setfield(L, -2, "changes");
        push_u64_field(L, "changed_words", r->n_changes);
    }
}

/* img:trace(fn) -> list of the on-disk writes fn caused, in order: each
 * {structure, file, offset, length [, changes = {{offset, old, new}...},
 * changed_words]}, syncs as {structure = "barrier"}. An error in fn is
 * raised again after tracing stops. */
static int m_trace(lua_State *L)
{
    qi_bind_check_image(L, 1);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    tracebox *box = lua_newuserdatauv(L, sizeof *box, 0);
    box->recs = NULL;
    if (luaL_newmetatable(L, QI_MT_TRACEBOX)) {
        lua_pushcfunction(L, tracebox_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    if (qi_trace_start() < 0)
        return luaL_error(L, "img:trace is already recording (it does not nest)");
    lua_pushvalue(L, 2);
    int st = lua_pcall(L, 0, 0, 0);
    size_t n = 0;
    int rc = qi_trace_stop(&box->recs, &n);
    if (st != LUA_OK)
        return lua_error(L);
    if (rc < 0)
        return luaL_error(L, "out of memory while recording the trace");
    lua_createtable(L, n > INT32_MAX ? 0 : (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        push_record(L, &box->recs[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static void push_bytes_field(lua_State *L, const char *key, const uint8_t *p, size_t n)
{
    if (p)
        lua_pushlstring(L, (const char *)p, n);
    else {
        luaL_Buffer lb;
        memset(luaL_buffinitsize(L, &lb, n), 0, n);
        luaL_pushresultsize(&lb, n);
    }
    lua_setfield(L, -2, key);
}

static int push_change(void *payload, const qi_change *c)
{
    static const char *const kinds[] = { "write", "discard", "truncate" };
    lua_State *L = payload;
    lua_createtable(L, 0, 8);
    lua_pushstring(L, kinds[c->kind]);
    lua_setfield(L, -2, "kind");
    lua_pushstring(L, c->file);
    lua_setfield(L, -2, "file");
    lua_pushstring(L, c->structure);
    lua_setfield(L, -2, "structure");
    if (c->kind == QI_CHANGE_TRUNCATE) {
        push_u64_field(L, "old_size", c->old_size);
        push_u64_field(L, "new_size", c->new_size);
    } else {
        push_u64_field(L, "offset", c->offset);
        push_u64_field(L, "length", c->len);
        push_bytes_field(L, "old", c->old_bytes, c->len);
        push_bytes_field(L, "new", c->new_bytes, c->len);
    }
    lua_rawseti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
    return 0;
}

/* img:changes() -> the writes a dry run (dry_run=true) made so far, in order:
 * {kind="write"|"discard", file, structure, offset, length, old, new} (old
 * and new as byte strings; a discard's new is zeros) or {kind="truncate",
 * file, structure, old_size, new_size}. img:flush() first to see the cached
 * metadata. An empty list for an image that is not a dry run. */
static int m_changes(lua_State *L)
{
    qi_image *img = qi_bind_check_image_any(L, 1);
    lua_newtable(L);
    qi_image_dry_run_changes(img, push_change, L);
    return 1;
}

/* img:flush(): write every cached change back in crash-safe order and sync. */
static int m_flush(lua_State *L)
{
    qi_image *img = qi_bind_check_image_any(L, 1);
    int rc;
    if ((rc = qi_image_flush(img)) < 0)
        return qi_bind_raise(L, img, rc);
    return 0;
}

static const luaL_Reg image_methods[] = {
    { "read", m_read },
    { "write", m_write },
    { "write_compressed", m_write_compressed },
    { "zero", m_zero },
    { "discard", m_discard },
    { "resize", m_resize },
    { "flush", m_flush },
    { "changes", m_changes },
    { "trace", m_trace },
    { "poke", m_poke },
    { "set_refcount", m_set_refcount },
    { "edits", m_edits },
    { "read_snapshot", m_read_snapshot },
    { "snapshot_create", qi_bind_snapshot_create },
    { "snapshot_apply", qi_bind_snapshot_apply },
    { "snapshot_delete", qi_bind_snapshot_delete },
    { "l2_for", m_l2_for },
    { "refcount", m_refcount },
    { "owners", qi_bind_owners },
    { "references", qi_bind_references },
    { "check", qi_bind_check },
    { "scan", qi_bind_scan },
    { "allocation", qi_bind_allocation },
    { "backing", m_backing },
    { "map", m_map },
    { "close", m_close },
    { NULL, NULL }
};

static const luaL_Reg image_meta[] = {
    { "__gc", image_close },
    { "__close", image_close },
    { NULL, NULL }
};

static const qi_bind_class image_class = {
    QI_MT_IMAGE, "image", image_methods, image_fields, NULL, NULL,
    image_tostring, NULL, image_meta
};

/* Create the qinspect.image metatable; stack unchanged. */
void qi_bind_image_register(lua_State *L)
{
    qi_bind_newclass(L, &image_class);
}
