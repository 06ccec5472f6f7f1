/* Tests of problem.c: the table is consistent (unique codes and names,
 * every field filled, lookups agree with iteration). */
#include <string.h>

#include "problem.h"
#include "tap.h"

int main(void)
{
    size_t n = qi_problem_count();
    int dup = 0, empty = 0, lookups = 1;
    for (size_t i = 0; i < n; i++) {
        const qi_problem *p = qi_problem_at(i);
        if (!p->name[0] || !p->summary[0] || strlen(p->explanation) < 40)
            empty++;
        for (size_t j = 0; j < i; j++)
            if (qi_problem_at(j)->code == p->code || !strcmp(qi_problem_at(j)->name, p->name))
                dup++;
        if (qi_problem_lookup(p->code) != p || qi_problem_find(p->name) != p)
            lookups = 0;
    }
    tap_ok(n >= 10, "the table has records");
    tap_ok(dup == 0, "codes and names are unique");
    tap_ok(empty == 0, "every record has a name, a summary and an explanation");
    tap_ok(lookups, "lookup by code and by name return the iterated record");
    tap_ok(qi_problem_at(n) == NULL && qi_problem_lookup(0) == NULL && qi_problem_find("nope") == NULL,
       "out of range and unknown keys give NULL");
    tap_ok(!strcmp(qi_severity_name(qi_problem_lookup(QI_PROB_COPIED_MISSING_DEDUP)->severity), "note"),
       "the dedup COPIED state is a note");
    return tap_done();
}
