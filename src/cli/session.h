/* session.h - scripted and interactive sessions (layer 7). */
#ifndef QI_SESSION_H
#define QI_SESSION_H

/* Run `qinspect [-w] [-U] [-e CHUNK]... IMAGE [SCRIPT [ARGS...]]`
 * (docs/cli-contract.md). ARGV[0] is the program name. Returns the exit
 * status: 0 success, 1 open failure or Lua error (one line on stderr),
 * 2 usage error. */
int qi_session_main(int argc, char **argv);

#endif
