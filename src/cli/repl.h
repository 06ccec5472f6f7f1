/* repl.h - the Lua REPL and protected calls with Ctrl-C support (layer 7). */
#ifndef QI_REPL_H
#define QI_REPL_H

#include <lua.h>

/* Call the function below NARG arguments on L's stack in protected mode
 * with a message handler that turns error objects into one-line strings
 * (through __tostring). SIGINT during the call interrupts it with a Lua
 * error. Returns a LUA_* status; on error the message string is on top. */
int qi_repl_docall(lua_State *L, int narg, int nres);

/* Print the error string on top of L as one line "qinspect: MSG" on
 * stderr (newlines inside it become spaces) and pop it. */
void qi_repl_report(lua_State *L);

/* Run the read-eval-print loop on the terminal until end of input (Ctrl-D)
 * or os.exit(), with LABEL in the prompt (e.g. "a.qcow2 (ro)"). Lines are
 * tried as `return LINE` first; incomplete chunks continue on the next
 * line; values print through qinspect.pretty.show (paged when taller than
 * the terminal); Ctrl-C drops the chunk being typed or interrupts the
 * running one; Tab completes through qinspect.complete; complete chunks
 * are appended to $QINSPECT_HISTORY or ~/.qinspect_history. Installs its
 * own SIGINT and SIGPIPE handlers while it runs and restores the previous
 * ones. Returns 0. */
int qi_repl_run(lua_State *L, const char *label);

#endif
