/* repl.c - the read-eval-print loop and protected calls (layer 7).
 *
 * Shaped like Lua's lua.c: all work runs under lua_pcall with a message
 * handler that turns error objects into one line through __tostring; SIGINT
 * during a call only sets a hook that raises "interrupted!" at the next Lua
 * instruction; each line is first tried as `return LINE;`, and a chunk
 * continues on the next line while its syntax error ends in <eof>; history
 * is added only for complete chunks and appended to ~/.qinspect_history;
 * values print through qinspect.pretty. Calls: Lua, readline. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <readline/history.h>
#include <readline/readline.h>

#include "repl.h"

#define HISTORY_FILE ".qinspect_history"
#define HISTORY_MAX 1000
#define EOF_MARK "<eof>"

static lua_State *global_L;

static void lstop(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted!");
}

/* SIGINT: only set a hook; the interpreter raises at the next instruction
 * (a signal handler may not call Lua). A second Ctrl-C kills the process. */
static void on_sigint(int sig)
{
    signal(sig, SIG_DFL);
    lua_sethook(global_L, lstop, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* Message handler: keep strings, use __tostring for objects. One line, no
 * traceback: the contract is one line on stderr. */
static int msghandler(lua_State *L)
{
    if (lua_type(L, 1) == LUA_TSTRING)
        return 1;
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
        return 1;
    lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    return 1;
}

int qi_repl_docall(lua_State *L, int narg, int nres)
{
    int base = lua_gettop(L) - narg;
    int status;
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    global_L = L;
    signal(SIGINT, on_sigint);
    status = lua_pcall(L, narg, nres, base);
    signal(SIGINT, SIG_DFL);
    lua_remove(L, base);
    return status;
}

void qi_repl_report(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    if (!msg)
        msg = "(error object is not a string)";
    fputs("qinspect: ", stderr);
    for (const char *p = msg; *p; p++)
        fputc(*p == '\n' ? ' ' : *p, stderr);
    fputc('\n', stderr);
    fflush(stderr);
    lua_pop(L, 1);
}

/* ---- reading chunks ---- */

static int incomplete(lua_State *L, int status)
{
    size_t len;
    const char *msg;
    if (status != LUA_ERRSYNTAX)
        return 0;
    msg = lua_tolstring(L, -1, &len);
    if (len >= sizeof EOF_MARK - 1 &&
        !strcmp(msg + len - (sizeof EOF_MARK - 1), EOF_MARK)) {
        lua_pop(L, 1);
        return 1;
    }
    return 0;
}

/* Try `return LINE;`: leaves the function on the stack and returns
 * LUA_OK, or leaves nothing and returns an error status. */
static int add_return(lua_State *L, const char *line)
{
    const char *code = lua_pushfstring(L, "return %s;", line);
    int status = luaL_loadbuffer(L, code, strlen(code), "=stdin");
    lua_remove(L, -2);
    if (status != LUA_OK)
        lua_pop(L, 1);
    return status;
}

/* Read a statement chunk starting with the string on top, continuing
 * while incomplete. Leaves the function (or an error message) and the
 * chunk text below it; returns the load status. */
static int multiline(lua_State *L, const char *prompt2)
{
    for (;;) {
        size_t len;
        const char *code = lua_tolstring(L, -1, &len);
        int status = luaL_loadbuffer(L, code, len, "=stdin");
        char *more;
        if (!incomplete(L, status) || !(more = readline(prompt2)))
            return status;
        lua_pushliteral(L, "\n");
        lua_pushstring(L, more);
        free(more);
        lua_concat(L, 3);
    }
}

/* Read one complete chunk; leaves its function (or error message) on top.
 * Returns -1 at end of input, else a load status. */
static int load_chunk(lua_State *L, const char *prompt, const char *prompt2,
                      const char *histfile)
{
    char *line = readline(prompt);
    int status;
    if (!line)
        return -1;
    lua_pushstring(L, line);
    free(line);
    if ((status = add_return(L, lua_tostring(L, -1))) != LUA_OK)
        status = multiline(L, prompt2);
    if (lua_rawlen(L, -2) > 0) {
        add_history(lua_tostring(L, -2));
        if (histfile)
            append_history(1, histfile);
    }
    lua_remove(L, -2);
    return status;
}

/* ---- printing ---- */

/* Print the N values on top through qinspect.pretty.print (plain print
 * if the pretty printer cannot be loaded). */
static void print_values(lua_State *L, int n)
{
    lua_getglobal(L, "require");
    lua_pushliteral(L, "qinspect.pretty");
    if (qi_repl_docall(L, 1, 1) == LUA_OK && lua_istable(L, -1)) {
        lua_getfield(L, -1, "print");
        lua_remove(L, -2);
    } else {
        lua_pop(L, 1);
        lua_getglobal(L, "print");
    }
    lua_insert(L, -n - 1);
    if (qi_repl_docall(L, n, 0) != LUA_OK)
        qi_repl_report(L);
}

static char *history_path(void)
{
    const char *home = getenv("HOME");
    char *p;
    FILE *f;
    if (!home || !home[0] || !(p = malloc(strlen(home) + sizeof HISTORY_FILE + 1)))
        return NULL;
    sprintf(p, "%s/%s", home, HISTORY_FILE);
    if ((f = fopen(p, "a")) != NULL)
        fclose(f);
    return p;
}

int qi_repl_run(lua_State *L, const char *label)
{
    char *histfile = history_path();
    const char *prompt = lua_pushfstring(L, "%s> ", label);
    int status;
    using_history();
    stifle_history(HISTORY_MAX);
    if (histfile)
        read_history(histfile);
    while ((status = load_chunk(L, prompt, ">> ", histfile)) != -1) {
        int base = lua_gettop(L);
        if (status == LUA_OK)
            status = qi_repl_docall(L, 0, LUA_MULTRET);
        if (status == LUA_OK && lua_gettop(L) >= base)
            print_values(L, lua_gettop(L) - base + 1);
        else if (status != LUA_OK)
            qi_repl_report(L);
        lua_settop(L, base - 1);
    }
    fputc('\n', stdout);
    if (histfile)
        history_truncate_file(histfile, HISTORY_MAX);
    free(histfile);
    lua_pop(L, 1);
    return 0;
}
