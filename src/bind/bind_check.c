/* bind_check.c - img:check{} (layer 6).
 *
 * img:check{} runs the read-only check (qi_check, include/qi/check.h) and
 * returns a table with qemu-img check's counters under Lua names
 * (corruptions, leaks, check_errors, image_end_offset, total_clusters,
 * allocated_clusters, fragmented_clusters, compressed_clusters,
 * corruptions_fixed, leaks_fixed) and `findings`, a list of records
 * {code, severity, summary, structure, offset, guest_offset, guest_length,
 * expected, found, qemu, fixed, fix, repair, entry}; `code` is the
 * problem's name in qinspect.problems, `entry` the L1/L2 entry object the
 * finding is about. img:check{repair="leaks"|"all"} (an image opened -w)
 * repairs as qemu-img check -r does (qi_repair) and returns the check of
 * the repaired image with corruptions_fixed and leaks_fixed; its
 * `findings` then hold the repair pass's records (fixed = true where the
 * image changed) followed by the check's, and `repaired` how many of them
 * are the repair pass's. The result lives in a scratch userdata whose __gc frees it, so
 * a Lua error while building the tables leaks nothing (convention 12).
 * Calls: bind_util, bind_err, include/qi. */
#include <string.h>

#include "bind_int.h"
#include "qi/check.h"

#define QI_MT_CHECKRES "qinspect.checkresult"

static int res_gc(lua_State *L)
{
    qi_check_result_free(luaL_checkudata(L, 1, QI_MT_CHECKRES));
    return 0;
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

/* The entry object a finding is about (L1 and L2 entries), or nothing:
 * the finding's offset is the entry's own place in the file. */
static int push_entry(lua_State *L, int box, qi_image *img, const qi_finding *f)
{
    uint64_t cs = qi_image_cluster_size(img), esz = qi_meta_extended_l2(img) ? 16 : 8;
    const qi_header *h = qi_meta_header(img);
    if (!f->structure || !cs || !h)
        return 0;
    if (!strcmp(f->structure, "L2 entry")) {
        uint64_t table = f->offset & ~(cs - 1);
        qi_bind_push_l2entry(L, box, table, (uint32_t)((f->offset - table) / esz));
        return 1;
    }
    if (strcmp(f->structure, "L1 entry") || f->offset % 8)
        return 0;
    if (f->offset >= h->l1_table_offset && f->offset < h->l1_table_offset + 8ull * h->l1_size) {
        qi_bind_push_l1entry(L, box, 0, 0, -1, (uint32_t)((f->offset - h->l1_table_offset) / 8));
        return 1;
    }
    uint32_t n = 0;
    const qi_snapshot *sn = qi_meta_snapshots(img, &n);
    for (uint32_t i = 0; i < n; i++)
        if (f->offset >= sn[i].l1_table_offset &&
            f->offset < sn[i].l1_table_offset + 8ull * sn[i].l1_size) {
            qi_bind_push_l1entry(L, box, sn[i].l1_table_offset, sn[i].l1_size, i,
                                 (uint32_t)((f->offset - sn[i].l1_table_offset) / 8));
            return 1;
        }
    return 0;
}

/* A finding as a record; BOX (0: none) is the stack index of its image's
 * box, to link the entry object the finding is about (field `entry`). */
void qi_bind_push_finding(lua_State *L, const qi_finding *f, int box, qi_image *img)
{
    const qi_problem *p = qi_problem_lookup(f->code);
    lua_createtable(L, 0, 10);
    lua_pushstring(L, p ? p->name : "unknown");
    lua_setfield(L, -2, "code");
    lua_pushstring(L, qi_severity_name(f->severity));
    lua_setfield(L, -2, "severity");
    lua_pushstring(L, p ? p->summary : "");
    lua_setfield(L, -2, "summary");
    lua_pushstring(L, f->structure ? f->structure : "");
    lua_setfield(L, -2, "structure");
    set_int(L, "offset", (lua_Integer)f->offset);
    if (f->guest_offset != QI_NO_GUEST) {
        set_int(L, "guest_offset", (lua_Integer)f->guest_offset);
        set_int(L, "guest_length", (lua_Integer)f->guest_length);
    }
    set_int(L, "expected", (lua_Integer)f->expected);
    set_int(L, "found", (lua_Integer)f->found);
    if (f->qemu[0]) {
        lua_pushstring(L, f->qemu);
        lua_setfield(L, -2, "qemu");
    }
    if (qi_problem_repair(f->code)) {
        lua_pushstring(L, qi_problem_repair(f->code));
        lua_setfield(L, -2, "repair");
    }
    if (box && push_entry(L, box, img, f))
        lua_setfield(L, -2, "entry");
    lua_pushboolean(L, f->fixed);
    lua_setfield(L, -2, "fixed");
    if (f->fix[0]) {
        lua_pushstring(L, f->fix);
        lua_setfield(L, -2, "fix");
    }
}

static void push_result(lua_State *L, const qi_check_result *r, int box, qi_image *img)
{
    lua_createtable(L, 0, 11);
    set_int(L, "corruptions", r->corruptions);
    set_int(L, "leaks", r->leaks);
    set_int(L, "check_errors", r->check_errors);
    set_int(L, "corruptions_fixed", r->corruptions_fixed);
    set_int(L, "leaks_fixed", r->leaks_fixed);
    set_int(L, "image_end_offset", (lua_Integer)r->image_end_offset);
    set_int(L, "total_clusters", (lua_Integer)r->total_clusters);
    set_int(L, "allocated_clusters", (lua_Integer)r->allocated_clusters);
    set_int(L, "fragmented_clusters", (lua_Integer)r->fragmented_clusters);
    set_int(L, "compressed_clusters", (lua_Integer)r->compressed_clusters);
    set_int(L, "repaired", (lua_Integer)r->n_repair);
    lua_createtable(L, (int)(r->n_findings < 1u << 20 ? r->n_findings : 1u << 20), 0);
    for (size_t i = 0; i < r->n_findings; i++) {
        qi_bind_push_finding(L, &r->findings[i], box, img);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    lua_setfield(L, -2, "findings");
}

/* img:check{} -> result table; raises when the check cannot complete. */
int qi_bind_check(lua_State *L)
{
    static const char *const names[] = { "repair", NULL };
    qi_image *img = qi_bind_check_image(L, 1);
    qi_check_opts opts = QI_CHECK_OPTS_INIT;
    qi_check_result *r;
    int rc;
    qi_bind_checkoptions(L, 2, names);
    if (lua_istable(L, 2) && lua_getfield(L, 2, "repair") != LUA_TNIL) {
        const char *m = lua_tostring(L, -1);
        if (m && !strcmp(m, "leaks"))
            opts.flags = QI_CHECK_REPAIR_LEAKS;
        else if (m && !strcmp(m, "all"))
            opts.flags = QI_CHECK_REPAIR_ALL;
        else
            return luaL_error(L, "bad argument #1 to 'check' (repair must be \"leaks\" or "
                              "\"all\")");
        if (!qi_image_writable(img))
            return luaL_error(L, "check: image opened read-only; reopen with -w to repair");
    }
    if (!strcmp(qi_image_format(img), "raw"))
        return luaL_error(L, "check: a raw image has no qcow2 metadata to check");
    r = lua_newuserdatauv(L, sizeof *r, 0);
    memset(r, 0, sizeof *r);
    if (luaL_newmetatable(L, QI_MT_CHECKRES)) {
        lua_pushcfunction(L, res_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    if ((rc = qi_check(img, &opts, r)) < 0)
        return qi_bind_raise(L, img, rc);
    push_result(L, r, 1, img);
    return 1;
}
