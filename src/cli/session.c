/* session.c - scripted sessions: `qinspect [-w] [-U] [-e CHUNK]... IMAGE
 * [SCRIPT [ARGS...]]` (layer 7, docs/cli-contract.md).
 *
 * Parses the session options, creates the Lua state with the standard
 * libraries and the `qinspect` module, opens IMAGE as the global `img`,
 * loads the prelude (help, hex, pp), then runs the -e chunks in order and
 * SCRIPT with the global `arg` (as lua.c does); with neither, runs the REPL
 * when stdin is a terminal and stdin as one chunk when it is not. All Lua
 * work happens under lua_pcall (lua.c's pmain shape), so any error, memory
 * included, ends as one line on stderr and exit status 1.
 * Calls: bind.h (luaopen_qinspect), repl.c, Lua. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "bind.h"
#include "cli.h"
#include "repl.h"
#include "session.h"

#define SESSION_USAGE "usage: qinspect [-w [--undo FILE|--dry-run]] [-U] [-e CHUNK]... IMAGE " \
                      "[SCRIPT [ARGS...]]"

typedef struct session {
    int rw, force_share;
    qi_cli_write w;         /* --undo FILE, --dry-run (with -w) */
    char **chunks;          /* the -e arguments, in order (point into argv) */
    int n_chunks;
    const char *image;
    int script;             /* index of SCRIPT in argv, 0 if none */
    int argc;
    char **argv;
    int status;             /* exit status decided inside pmain */
} session;

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "qinspect: %s%s%s\n%s\n", what, arg ? " " : "", arg ? arg : "",
            SESSION_USAGE);
    return -1;
}

/* --undo FILE (or --undo=FILE) and --dry-run. */
static int parse_long(session *s, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    if (!strcmp(a, "--dry-run")) {
        s->w.dry_run = true;
    } else if (!strncmp(a, "--undo=", 7) && a[7]) {
        s->w.undo = a + 7;
    } else if (!strcmp(a, "--undo")) {
        if (*i + 1 >= argc)
            return usage_error("option requires an argument:", "--undo");
        s->w.undo = argv[++*i];
    } else {
        return usage_error("unknown option", a);
    }
    return 0;
}

/* One option word at argv[*i] (not "--"): flags may be grouped ("-wU");
 * 'e' takes the rest of the word or the next argument. */
static int parse_option(session *s, int argc, char **argv, int *i)
{
    if (argv[*i][1] == '-')
        return parse_long(s, argc, argv, i);
    for (const char *p = argv[*i] + 1; *p; p++) {
        if (*p == 'w') {
            s->rw = 1;
        } else if (*p == 'U') {
            s->force_share = 1;
        } else if (*p == 'e') {
            if (p[1])
                s->chunks[s->n_chunks++] = (char *)p + 1;
            else if (*i + 1 < argc)
                s->chunks[s->n_chunks++] = argv[++*i];
            else
                return usage_error("option requires an argument:", "-e");
            return 0;
        } else {
            return usage_error("unknown option", argv[*i]);
        }
    }
    return 0;
}

/* Options come before SCRIPT: before IMAGE as in the contract, or between
 * IMAGE and SCRIPT. "--" ends them; everything after SCRIPT is ARGS. */
static int parse_args(session *s, int argc, char **argv)
{
    int i = 1, opts = 1;
    for (; i < argc; i++) {
        if (opts && !strcmp(argv[i], "--")) {
            opts = 0;
        } else if (opts && argv[i][0] == '-' && argv[i][1]) {
            if (parse_option(s, argc, argv, &i) < 0)
                return -1;
        } else if (!s->image) {
            s->image = argv[i];
        } else {
            s->script = i;
            break;
        }
    }
    if (!s->image)
        return usage_error("missing IMAGE", NULL);
    if ((s->w.undo || s->w.dry_run) && !s->rw)
        return usage_error("--undo and --dry-run need -w", NULL);
    if (s->w.undo && s->w.dry_run)
        return usage_error("--dry-run writes nothing: it takes no --undo file", NULL);
    s->argc = argc;
    s->argv = argv;
    return 0;
}

/* Open the image through qinspect.open and make it the global `img`.
 * Returns 0, or -1 after printing "qinspect: FILE: MESSAGE". */
#define SESSION_IMAGE "qinspect.session_image"

static int open_image(lua_State *L, const session *s)
{
    lua_getglobal(L, "qinspect");
    lua_getfield(L, -1, "open");
    lua_pushstring(L, s->image);
    lua_createtable(L, 0, 5);
    lua_pushboolean(L, s->rw);
    lua_setfield(L, -2, "rw");
    if (s->w.undo) {
        lua_pushstring(L, s->w.undo);
        lua_setfield(L, -2, "undo");
    }
    lua_pushboolean(L, s->w.dry_run);
    lua_setfield(L, -2, "dry_run");
    lua_pushboolean(L, s->rw);     /* -w opens an image marked corrupt for repair */
    lua_setfield(L, -2, "repair");
    lua_pushboolean(L, s->force_share);
    lua_setfield(L, -2, "force_share");
    lua_call(L, 2, 2);
    if (lua_isnil(L, -2)) {
        fprintf(stderr, "qinspect: %s\n", lua_tostring(L, -1));
        return -1;
    }
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, SESSION_IMAGE);
    lua_setglobal(L, "img");
    lua_pop(L, 1);
    return 0;
}

/* A read-write session ends with the session image flushed, so that a
 * failed write-back (disk full, I/O error) is reported and the exit status
 * says so; the image is still closed afterwards by its __gc. */
static int run(lua_State *L, int narg);

static int flush_image(lua_State *L, const session *s)
{
    if (!s->rw)
        return 0;
    lua_getfield(L, LUA_REGISTRYINDEX, SESSION_IMAGE);
    if (!qi_bind_image_is_open(L, -1)) {
        lua_pop(L, 1);
        return 0;
    }
    lua_getfield(L, -1, "flush");
    lua_insert(L, -2);
    return run(L, 1);
}

/* Call the function below the NARG arguments on top of L and report an
 * error. Returns 0 or -1. */
static int run(lua_State *L, int narg)
{
    if (qi_repl_docall(L, narg, 0) != LUA_OK) {
        qi_repl_report(L);
        return -1;
    }
    return 0;
}

static int load_and_run(lua_State *L, int status)
{
    if (status != LUA_OK) {
        qi_repl_report(L);
        return -1;
    }
    return run(L, 0);
}

/* SCRIPT ARGS...: the global `arg` gets arg[0] = SCRIPT and arg[1..] =
 * ARGS; the chunk also receives ARGS as `...`, as in lua.c. "-" is stdin. */
static int run_script(lua_State *L, const session *s)
{
    const char *name = s->argv[s->script];
    int nargs = s->argc - s->script - 1;
    lua_createtable(L, nargs, 1);
    for (int i = s->script; i < s->argc; i++) {
        lua_pushstring(L, s->argv[i]);
        lua_rawseti(L, -2, i - s->script);
    }
    lua_setglobal(L, "arg");
    if (luaL_loadfile(L, strcmp(name, "-") ? name : NULL) != LUA_OK) {
        qi_repl_report(L);
        return -1;
    }
    luaL_checkstack(L, nargs, "too many script arguments");
    for (int i = s->script + 1; i < s->argc; i++)
        lua_pushstring(L, s->argv[i]);
    return run(L, nargs);
}

static int run_session(lua_State *L, const session *s)
{
    char label[512];
    const char *base = strrchr(s->image, '/');
    for (int i = 0; i < s->n_chunks; i++)
        if (load_and_run(L, luaL_loadbuffer(L, s->chunks[i], strlen(s->chunks[i]),
                                            "=(command line)")) < 0)
            return -1;
    if (s->script)
        return run_script(L, s);
    if (s->n_chunks)
        return 0;
    if (!isatty(STDIN_FILENO))
        return load_and_run(L, luaL_loadfile(L, NULL));
    snprintf(label, sizeof label, "%s (%s)", base ? base + 1 : s->image,
             s->rw ? "rw" : "ro");
    return qi_repl_run(L, label);
}

/* The whole session under lua_pcall; sets s->status. */
static int pmain(lua_State *L)
{
    session *s = lua_touserdata(L, 1);
    s->status = 1;
    luaL_openlibs(L);
    luaL_requiref(L, "qinspect", luaopen_qinspect, 1);
    lua_pop(L, 1);
    if (open_image(L, s) < 0)
        return 0;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "qinspect.prelude");
    if (run(L, 1) < 0)
        return 0;
    if (run_session(L, s) < 0 || flush_image(L, s) < 0)
        return 0;
    s->status = 0;
    if (s->w.dry_run) {  /* close it here, listing what the session would write */
        lua_getfield(L, LUA_REGISTRYINDEX, SESSION_IMAGE);
        qi_image *img = qi_bind_image_take(L, -1);
        lua_pop(L, 1);
        if (img)
            s->status = qi_cli_close_write(img, &s->w, stdout);
    }
    return 0;
}

int qi_session_main(int argc, char **argv)
{
    session s = { .chunks = calloc(argc > 0 ? (size_t)argc : 1, sizeof(char *)) };
    lua_State *L = NULL;
    if (!s.chunks || !(L = luaL_newstate())) {
        fprintf(stderr, "qinspect: out of memory\n");
        free(s.chunks);
        return 1;
    }
    if (parse_args(&s, argc, argv) < 0) {
        lua_close(L);
        free(s.chunks);
        return 2;
    }
    lua_pushcfunction(L, pmain);
    lua_pushlightuserdata(L, &s);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        qi_repl_report(L);
        s.status = 1;
    }
    lua_close(L);
    free(s.chunks);
    return s.status;
}
