/* opts.h - qemu-style `-o key=val,key2=val2` image options (layer 7).
 *
 * The syntax and messages are qemu-img 7.2's (QemuOpts): pairs separated by
 * ',', ",," a literal comma inside a value, "key" alone meaning key=on and
 * "nokey" key=off, a later value of a key replacing an earlier one, "help"
 * or "?" anywhere asking for the option list. Values are checked against
 * the option's type when parsed (size, number, bool), as QEMU does before
 * it prints "Formatting ...". Enum values (compat, preallocation,
 * compression_type) are checked when the options are turned into a
 * qi_create_opts, which QEMU does after printing that line. */
#ifndef QI_CLI_OPTS_H
#define QI_CLI_OPTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "qi/qi.h"

/* One option given: its name, its value as given (a size as its number in
 * decimal) and, for sizes and numbers, the parsed number. */
typedef struct qi_cli_opt {
    char *key;
    char *val;
    uint64_t num;
} qi_cli_opt;

typedef struct qi_cli_opts {
    char *list;        /* every -o argument joined with ',' (qemu-img) */
    qi_cli_opt *v;     /* parsed options, in the order given */
    size_t n, cap;
    bool help;         /* "help" or "?" was among them */
    bool split;        /* the list has been split into v */
    bool raw;          /* set by the caller: the raw format's options */
} qi_cli_opts;

#define QI_CLI_OPTS_INIT { NULL, NULL, 0, 0, false, false, false }

/* Add one -o argument (qemu-img joins repeated -o options with ','). An
 * empty argument, or one starting or ending with a single ',', is refused
 * as qemu-img refuses it: returns -1 with "Invalid option list: ARG" in
 * MSG. Returns 0, or -2 when out of memory. */
int qi_cli_opts_add(qi_cli_opts *o, const char *arg, char *msg, size_t n);

/* Split the joined list (once) and say whether "help" or "?" is among
 * the options (qemu-img's has_help_option). Returns 1, 0, or -2 when out
 * of memory. */
int qi_cli_opts_wants_help(qi_cli_opts *o);

/* Parse the joined list. "help"/"?" sets o->help (and nothing else is
 * checked). Otherwise each key must be an option of the format (o->raw)
 * or of the file protocol, and each value of
 * its type; on the first bad one returns -1 with qemu-img's message
 * ("Invalid parameter 'x'", "Parameter 'x' expects ...") in MSG. */
int qi_cli_opts_parse(qi_cli_opts *o, char *msg, size_t n);

/* The value last given for KEY, or NULL. */
const qi_cli_opt *qi_cli_opts_get(const qi_cli_opts *o, const char *key);

/* Set KEY to VAL (as -b and -F do: they replace a -o value). Returns 0 or
 * -2 when out of memory. */
int qi_cli_opts_set(qi_cli_opts *o, const char *key, const char *val);

/* Print the "Formatting 'FILE', fmt=qcow2 ..." line without the newline:
 * every option given and every option with a default, in qemu-img's order,
 * sizes and numbers as numbers, the rest as given. */
void qi_cli_opts_print(FILE *f, const qi_cli_opts *o, const char *file,
                       const char *fmt);

/* Print the option list as `qemu-img create -o help` does: the qcow2
 * options (RAW: the raw format's), and with FILE_OPTS the file protocol's
 * options merged in (qemu-img does that when a file name is given). */
void qi_cli_opts_help(FILE *f, bool raw, bool file_opts);

/* Fill C from the options (the fields of options not given keep their
 * value). Enum values not accepted give qemu-img's message ("Parameter
 * 'version' does not accept value 'x'") in MSG and -1; options qinspect
 * does not implement (encryption) give -1 with a message saying so. */
int qi_cli_opts_to_create(const qi_cli_opts *o, qi_create_opts *c, char *msg,
                          size_t n);

/* Free everything; the struct is then empty (QI_CLI_OPTS_INIT). */
void qi_cli_opts_free(qi_cli_opts *o);

#endif
