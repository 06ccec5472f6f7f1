/* repl.c - the read-eval-print loop and protected calls (layer 7).
 *
 * Shaped like Lua's lua.c: all work runs under lua_pcall with a message
 * handler that turns error objects into one line through __tostring; SIGINT
 * during a call only sets a hook that raises "interrupted!" at the next Lua
 * instruction; each line is first tried as `return LINE;`, and a chunk
 * continues on the next line while its syntax error ends in <eof>. Values
 * print through qinspect.pretty.show, which pages output taller than the
 * terminal; the globals _PROMPT and _PROMPT2 replace the prompts when set
 * (the default prompt shows the image and its mode). Beyond lua.c:
 * - Ctrl-C at the prompt (or in a continuation line) drops the chunk being
 *   typed and shows a fresh prompt; Ctrl-D leaves.
 * - History: complete chunks only (multi-line chunks stay one entry, kept
 *   with readline's timestamp lines), appended after each chunk to
 *   $QINSPECT_HISTORY or ~/.qinspect_history.
 * - Tab completion asks lua/qinspect/complete.lua for the candidates of
 *   the word under the cursor; inside a string literal readline completes
 *   file names.
 * Invariants: readline's SIGINT handling stays in place at the prompt (our
 * own handler only records the signal), and qi_repl_docall restores
 * whatever SIGINT disposition it found. Calls: Lua, readline. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <readline/history.h>
#include <readline/readline.h>

#include "repl.h"

#define HISTORY_FILE ".qinspect_history"
#define HISTORY_MAX 1000
#define EOF_MARK "<eof>"
/* Word breaks for completion: `.`, `:`, `[` and `]` are not among them,
 * so `img.l1[0].co` reaches complete.lua as one word. */
#define WORD_BREAKS " \t\n\"'`@$><=;|&{}()+-*/%^~#,"

static lua_State *global_L;
static lua_State *repl_L;                   /* the REPL's state, for completion */
static volatile sig_atomic_t prompt_sigint; /* Ctrl-C while reading input */
static size_t display_strip;                /* prefix hidden in match lists */

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
    struct sigaction sa, old;
    lua_pushcfunction(L, msghandler);
    lua_insert(L, base);
    global_L = L;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old);
    status = lua_pcall(L, narg, nres, base);
    sigaction(SIGINT, &old, NULL);
    lua_sethook(L, NULL, 0, 0); /* a Ctrl-C just after the call is dropped */
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

/* ---- Ctrl-C at the prompt ---- */

/* Our SIGINT handler while readline reads: readline catches the signal
 * first (it echoes ^C and restores the terminal), then passes it on here. */
static void on_prompt_sigint(int sig)
{
    (void)sig;
    prompt_sigint = 1;
}

/* readline's input function: rl_getc's job, but a Ctrl-C ends the line.
 * The line is emptied and a newline "typed", so readline returns "" and
 * the caller, seeing prompt_sigint, drops the chunk. */
static int repl_getc(FILE *f)
{
    for (;;) {
        unsigned char c;
        ssize_t r;
        if (prompt_sigint) {
            rl_replace_line("", 0);
            return '\n';
        }
        r = read(fileno(f), &c, 1);
        if (r == 1)
            return c;
        if (r == 0)
            return EOF;
        if (errno != EINTR)
            return RL_ISSTATE(RL_STATE_READCMD) ? READERR : EOF;
        rl_check_signals(); /* readline's handling; ends in on_prompt_sigint */
    }
}

/* readline() with the prompt in the global VAR (_PROMPT or _PROMPT2, as
 * lua.c) if it is a string, else DFLT. Returns the line, or NULL at end of
 * input; *INTR is set on Ctrl-C. The stack is left unchanged. */
static char *read_line(lua_State *L, const char *var, const char *dflt, int *intr)
{
    char *line;
    lua_getglobal(L, var);
    prompt_sigint = 0;
    line = readline(lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : dflt);
    lua_pop(L, 1);
    if (prompt_sigint) {
        *intr = 1;
        free(line);
        return NULL;
    }
    return line;
}

/* ---- completion ---- */

/* Is position END of the current line inside a string literal? */
static int in_string(const char *line, int end)
{
    char quote = 0;
    for (int i = 0; i < end && line[i]; i++) {
        if (quote && line[i] == '\\' && i + 1 < end)
            i++;
        else if (quote && line[i] == quote)
            quote = 0;
        else if (!quote && (line[i] == '"' || line[i] == '\''))
            quote = line[i];
        else if (!quote && line[i] == '-' && line[i + 1] == '-')
            return 0; /* a comment: nothing to complete, but not a file name */
    }
    return quote != 0;
}

/* Under lua_pcall: require("qinspect.complete").complete(word) -> 2, or
 * with a second argument (the line before the word, which is inside a
 * string literal) .complete_string(before, word) -> 2, or nil. */
static int complete_call(lua_State *L)
{
    int in_str = lua_gettop(L) >= 2;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "qinspect.complete");
    lua_call(L, 1, 1);
    if (in_str) {
        lua_getfield(L, -1, "complete_string");
        lua_pushvalue(L, 2);
        lua_pushvalue(L, 1);
        lua_call(L, 2, 2);
        return 2;
    }
    lua_getfield(L, -1, "complete");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 2);
    return 2;
}

/* The longest common prefix of the N strings in the table at IDX. */
static char *common_prefix(lua_State *L, int idx, int n)
{
    size_t len;
    const char *first;
    lua_rawgeti(L, idx, 1);
    first = lua_tolstring(L, -1, &len);
    for (int i = 2; i <= n; i++) {
        size_t k = 0;
        const char *s;
        lua_rawgeti(L, idx, i);
        s = lua_tostring(L, -1);
        while (k < len && s[k] == first[k])
            k++;
        len = k;
        lua_pop(L, 1);
    }
    lua_pop(L, 1); /* FIRST stays valid: the table still holds it */
    return strndup(first, len);
}

/* Build readline's match array from the tables {matches} {appends} on top
 * of L: [0] is what replaces the word, then the matches, then NULL. */
static char **match_array(lua_State *L)
{
    int n = (int)lua_rawlen(L, -2);
    char **m;
    if (n == 0 || !(m = calloc((size_t)n + 2, sizeof *m)))
        return NULL;
    if (n == 1) {
        lua_rawgeti(L, -2, 1); /* matches[1] */
        m[0] = strdup(lua_tostring(L, -1));
        lua_rawgeti(L, -2, 1); /* appends[1] */
        rl_completion_append_character = lua_tostring(L, -1)[0];
        rl_completion_suppress_append = rl_completion_append_character == '\0';
        lua_pop(L, 2);
        if (!m[0])
            return free(m), NULL;
        return m;
    }
    m[0] = common_prefix(L, lua_gettop(L) - 1, n);
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -2, i);
        m[i] = strdup(lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    for (int i = 0; i <= n; i++)
        if (!m[i]) {
            for (int j = 0; j <= n; j++)
                free(m[j]);
            return free(m), NULL;
        }
    return m;
}

static void display_matches(char **matches, int n, int max_len);

/* rl_attempted_completion_function: candidates from complete.lua for TEXT.
 * Never falls back to file names except inside a string literal. */
static char **complete(const char *text, int start, int end)
{
    lua_State *L = repl_L;
    int top = lua_gettop(L);
    char **m = NULL;
    const char *sep;
    (void)end;
    if (in_string(rl_line_buffer, start)) {
        /* help "co<Tab>: topic names; any other string: file names */
        if (lua_checkstack(L, 8)) {
            lua_pushcfunction(L, complete_call);
            lua_pushstring(L, text);
            lua_pushlstring(L, rl_line_buffer, (size_t)start);
            if (lua_pcall(L, 2, 2, 0) == LUA_OK && lua_istable(L, -2) && lua_istable(L, -1)) {
                rl_attempted_completion_over = 1;
                display_strip = 0;
                rl_completion_display_matches_hook = display_matches;
                m = match_array(L);
                lua_settop(L, top);
                return m;
            }
            lua_settop(L, top);
        }
        rl_completion_display_matches_hook = NULL; /* file names as usual */
        return NULL;
    }
    rl_completion_display_matches_hook = display_matches;
    rl_attempted_completion_over = 1;
    if (!lua_checkstack(L, 8))
        return NULL;
    lua_pushcfunction(L, complete_call);
    lua_pushstring(L, text);
    if (lua_pcall(L, 1, 2, 0) == LUA_OK && lua_istable(L, -2) && lua_istable(L, -1))
        m = match_array(L);
    lua_settop(L, top);
    sep = strpbrk(text, ".:[") ? text + strlen(text) : NULL;
    while (sep && sep > text && !strchr(".:[", sep[-1]))
        sep--;
    display_strip = sep ? (size_t)(sep - text) : 0;
    return m;
}

/* Show a match list without the part before the last `.`/`:`/`[`, as
 * readline shows file names without their directory. */
static void display_matches(char **matches, int n, int max_len)
{
    char **shown = calloc((size_t)n + 2, sizeof *shown);
    int max = 0;
    if (!shown) {
        rl_display_match_list(matches, n, max_len);
    } else {
        for (int i = 0; i <= n; i++) {
            size_t len = strlen(matches[i]);
            shown[i] = matches[i] + (len >= display_strip ? display_strip : len);
            if (i > 0 && (int)strlen(shown[i]) > max)
                max = (int)strlen(shown[i]);
        }
        rl_display_match_list(shown, n, max);
        free(shown);
    }
    rl_forced_update_display();
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
 * chunk text below it and returns the load status; returns -1 with the
 * stack unchanged if input ended or Ctrl-C was pressed in a continuation
 * line (the chunk is dropped; *INTR tells which). */
static int multiline(lua_State *L, const char *prompt2, int *intr)
{
    for (;;) {
        size_t len;
        const char *code = lua_tolstring(L, -1, &len);
        int status = luaL_loadbuffer(L, code, len, "=stdin");
        char *more;
        if (!incomplete(L, status))
            return status;
        if (!(more = read_line(L, "_PROMPT2", prompt2, intr)))
            return -1;
        lua_pushliteral(L, "\n");
        lua_pushstring(L, more);
        free(more);
        lua_concat(L, 3);
    }
}

/* Add CHUNK to the history and append it to HISTFILE (if not NULL),
 * unless it is blank or the same as the last entry. */
static void save_history(const char *chunk, const char *histfile)
{
    HIST_ENTRY *last = history_length > 0 ? history_get(history_base + history_length - 1)
                                          : NULL;
    if (!chunk[strspn(chunk, " \t\n")] || (last && !strcmp(last->line, chunk)))
        return;
    add_history(chunk);
    /* append_history does not create the file; write_history does */
    if (histfile && append_history(1, histfile) == ENOENT)
        write_history(histfile);
}

/* Read one complete chunk; leaves its function (or error message) on top
 * and returns a load status. Returns -1 at end of input and -2 when Ctrl-C
 * dropped the chunk, with nothing pushed. */
static int load_chunk(lua_State *L, const char *prompt, const char *prompt2,
                      const char *histfile)
{
    int intr = 0, status;
    char *line = read_line(L, "_PROMPT", prompt, &intr);
    if (!line)
        return intr ? -2 : -1;
    lua_pushstring(L, line);
    free(line);
    if ((status = add_return(L, lua_tostring(L, -1))) != LUA_OK &&
        (status = multiline(L, prompt2, &intr)) == -1) {
        lua_pop(L, 1);
        return intr ? -2 : -1;
    }
    save_history(lua_tostring(L, -2), histfile);
    lua_remove(L, -2);
    return status;
}

/* ---- printing ---- */

/* Print the N values on top through qinspect.pretty.show(rows, cols, ...)
 * (plain print if the pretty printer cannot be loaded). ROWS is 0 when
 * stdout is not a terminal, which turns paging off. */
static void print_values(lua_State *L, int n)
{
    int rows = 0, cols = 0, nfix = 1;
    lua_getglobal(L, "require");
    lua_pushliteral(L, "qinspect.pretty");
    if (qi_repl_docall(L, 1, 1) == LUA_OK && lua_istable(L, -1)) {
        lua_getfield(L, -1, "show");
        lua_remove(L, -2);
        if (isatty(STDOUT_FILENO))
            rl_get_screen_size(&rows, &cols);
        lua_pushinteger(L, rows);
        lua_pushinteger(L, cols);
        nfix = 3;
    } else {
        lua_pop(L, 1);
        lua_getglobal(L, "print");
    }
    lua_rotate(L, -(n + nfix), nfix); /* function and its first arguments below the values */
    if (qi_repl_docall(L, n + nfix - 1, 0) != LUA_OK)
        qi_repl_report(L);
}

/* $QINSPECT_HISTORY (empty: no history file), else ~/.qinspect_history,
 * else NULL. Malloc'd. */
static char *history_path(void)
{
    const char *env = getenv("QINSPECT_HISTORY");
    const char *home = getenv("HOME");
    char *p;
    if (env)
        return env[0] ? strdup(env) : NULL;
    if (!home || !home[0] || !(p = malloc(strlen(home) + sizeof HISTORY_FILE + 1)))
        return NULL;
    sprintf(p, "%s/%s", home, HISTORY_FILE);
    return p;
}

/* SIGPIPE when the pager quits early: a handler that does nothing, so the
 * write fails with EPIPE; unlike SIG_IGN it is not inherited by children. */
static void on_sigpipe(int sig)
{
    (void)sig;
}

/* Readline and history settings of the REPL. */
static void setup_readline(const char *histfile)
{
    rl_readline_name = "qinspect";
    rl_getc_function = repl_getc;
    rl_attempted_completion_function = complete;
    rl_basic_word_break_characters = WORD_BREAKS;
    rl_completer_word_break_characters = WORD_BREAKS;
    using_history();
    stifle_history(HISTORY_MAX);
    /* timestamp lines delimit entries, so a multi-line chunk reads back
     * as one entry */
    history_comment_char = '#';
    history_write_timestamps = 1;
    history_multiline_entries = 1;
    if (histfile)
        read_history(histfile);
}

int qi_repl_run(lua_State *L, const char *label)
{
    char *histfile = history_path();
    const char *prompt = lua_pushfstring(L, "%s> ", label);
    struct sigaction sa, old_int, old_pipe;
    int status;
    repl_L = L;
    setup_readline(histfile);
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_prompt_sigint;
    sigaction(SIGINT, &sa, &old_int);
    sa.sa_handler = on_sigpipe;
    sigaction(SIGPIPE, &sa, &old_pipe);
    while ((status = load_chunk(L, prompt, ">> ", histfile)) != -1) {
        int base = lua_gettop(L);
        if (status == -2)
            continue;
        if (status == LUA_OK)
            status = qi_repl_docall(L, 0, LUA_MULTRET);
        if (status == LUA_OK && lua_gettop(L) >= base)
            print_values(L, lua_gettop(L) - base + 1);
        else if (status != LUA_OK)
            qi_repl_report(L);
        lua_settop(L, base - 1);
    }
    fputc('\n', stdout);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    if (histfile)
        history_truncate_file(histfile, 2 * HISTORY_MAX); /* lines: entry + time */
    free(histfile);
    lua_pop(L, 1);
    return 0;
}
