#!/usr/bin/env python3
"""mutate.py - mutation testing: does the suite fail when the code is wrong?

Usage: python3 scripts/mutate.py [-l LIST] [-k] [-j] [-n] [-B] [NAME...]
       make mutate [MUTATE="NAME..."]

Reads the mutation list (default scripts/mutations.txt), copies the working
tree (uncommitted edits included, build/ and .git left out) to a scratch
directory, builds the ASan variant there once, and then for each mutation:
applies it to the scratch copy, rebuilds, runs the suites the mutation names
through tests/run.sh one word at a time until one fails (that suite caught
it), and puts the file back.
A mutation the suites do not notice SURVIVED: that is a missing test.

List format (blank lines and lines starting with '#' between entries are
ignored):

    == NAME
    file: src/engine/x.c
    suites: WORD...        words for tests/run.sh's SUITES (all: every suite)
    why: one line that says what bug this mutation stands for
    - original line, exactly as in the file (one or more '- ' lines)
    + replacement line (zero or more '+ ' lines)

The '-' lines must occur exactly once in the file, or the mutation is STALE
(the code changed under it: update the entry). A mutation whose code no
longer compiles is reported as BUILD-ERROR (rewrite it: a mutation must be a
plausible bug, not a syntax error).

Output: one line per mutation as it runs, then a table NAME | result | caught
by. Exit status 0 when every mutation was killed, 1 when one survived, was
stale or failed to build, 2 on a usage or setup error.

Options: -l LIST another list file; -k keep the scratch directory (it is
kept anyway when a mutation was not killed, for its logs); -j also write the
table as JSON to mutate-report.json in the scratch directory; -n only check
that every mutation applies to the working tree (no build, no tests); -B
skip the baseline run (by default the unmutated copy must first pass every
suite the list names, or a broken tree would make every mutation look killed).
Environment: MUTATE_TMP (parent of the scratch directory, default $TMPDIR or
/tmp), SUITE_TIMEOUT (passed to tests/run.sh, default 600 here).
This is a development tool; `make check` does not run it.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Mutation:
    def __init__(self, name, lineno):
        self.name = name
        self.lineno = lineno
        self.file = None
        self.suites = []
        self.why = ""
        self.old = []
        self.new = []


def parse_list(path):
    muts, cur = [], None
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if line.startswith("== "):
                cur = Mutation(line[3:].strip(), n)
                muts.append(cur)
            elif cur is None or not line.strip() or line.startswith("#"):
                continue
            elif line.startswith("file:"):
                cur.file = line[5:].strip()
            elif line.startswith("suites:"):
                cur.suites = line[7:].split()
            elif line.startswith("why:"):
                cur.why = line[4:].strip()
            elif line.startswith("- ") or line == "-":
                cur.old.append(line[2:])
            elif line.startswith("+ ") or line == "+":
                cur.new.append(line[2:])
            else:
                sys.exit("%s:%d: cannot parse: %s" % (path, n, line))
    names = set()
    for m in muts:
        if not m.file or not m.suites or not m.old:
            sys.exit("%s:%d: mutation %s needs file:, suites: and '- ' lines"
                     % (path, m.lineno, m.name))
        if m.name in names:
            sys.exit("%s:%d: duplicate mutation name %s" % (path, m.lineno, m.name))
        names.add(m.name)
    return muts


def run(cmd, cwd, env=None, log=None):
    with open(log or os.devnull, "w") as out:
        return subprocess.call(cmd, cwd=cwd, env=env, stdout=out,
                               stderr=subprocess.STDOUT, shell=isinstance(cmd, str))


def build(scratch, log):
    # the ASan variant the suites run, and the release binary bad/run.sh
    # measures memory with (both carry the mutation)
    return run("make VARIANT=asan build/asan/qinspect unit-asan && make qinspect",
               scratch, log=log) == 0


def failing_suites(log):
    """Suites that tests/run.sh reported with failures ("NAME: P passed, F failed")."""
    bad = []
    with open(log, errors="replace") as f:
        for line in f:
            m = re.match(r"^(\S+): \d+ passed, (\d+) failed$", line.strip())
            if m and int(m.group(2)) > 0:
                bad.append(m.group(1))
    return bad


def mutate_one(m, scratch, logdir):
    path = os.path.join(scratch, m.file)
    try:
        with open(path, encoding="utf-8") as f:
            orig = f.read()
    except OSError as e:
        return "STALE", "cannot read %s: %s" % (m.file, e.strerror)
    old = "\n".join(m.old) + "\n"
    new = "\n".join(m.new) + "\n" if m.new else ""
    count = orig.count(old)
    if count != 1:
        return "STALE", "the '-' lines occur %d times in %s" % (count, m.file)
    log = os.path.join(logdir, m.name + ".log")
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(orig.replace(old, new))
        if not build(scratch, log):
            return "BUILD-ERROR", "see " + log
        env = dict(os.environ)
        env["QINSPECT"] = os.path.join(scratch, "build/asan/qinspect")
        env["UNIT_DIR"] = os.path.join(scratch, "build/asan/tests")
        env.setdefault("SUITE_TIMEOUT", "600")
        # one suite word at a time, in the order listed (cheap ones first):
        # the first that fails has killed the mutation
        for word in m.suites:
            if word == "all":
                env.pop("SUITES", None)
            else:
                env["SUITES"] = word
            rc = run(["sh", "tests/run.sh"], scratch, env=env, log=log + "." + word.replace("/", "_"))
            if rc != 0:
                bad = failing_suites(log + "." + word.replace("/", "_"))
                return "killed", ", ".join(bad) if bad else "%s (exit %d)" % (word, rc)
        return "SURVIVED", "suites run: " + " ".join(m.suites)
    finally:
        with open(path, "w", encoding="utf-8") as f:
            f.write(orig)


def main(argv):
    listfile = os.path.join(ROOT, "scripts/mutations.txt")
    keep = want_json = dry = skip_base = False
    names = []
    args = list(argv)
    while args:
        a = args.pop(0)
        if a == "-l" and args:
            listfile = args.pop(0)
        elif a == "-k":
            keep = True
        elif a == "-j":
            want_json = True
        elif a == "-n":
            dry = True
        elif a == "-B":
            skip_base = True
        elif a.startswith("-"):
            print(__doc__.split("\n\n")[1], file=sys.stderr)
            return 2
        else:
            names.extend(a.replace(",", " ").split())
    muts = parse_list(listfile)
    if names:
        unknown = [n for n in names if n not in {m.name for m in muts}]
        if unknown:
            print("mutate: unknown mutation(s): " + " ".join(unknown), file=sys.stderr)
            return 2
        muts = [m for m in muts if m.name in names]
    if dry:
        stale = 0
        for m in muts:
            with open(os.path.join(ROOT, m.file), encoding="utf-8") as f:
                n = f.read().count("\n".join(m.old) + "\n")
            if n != 1:
                stale += 1
                print("STALE %s: the '-' lines occur %d times in %s" % (m.name, n, m.file))
        print("%d mutations, %d stale" % (len(muts), stale))
        return 1 if stale else 0

    parent = os.environ.get("MUTATE_TMP") or tempfile.gettempdir()
    scratch = tempfile.mkdtemp(prefix="qi-mutate.", dir=parent)
    logdir = os.path.join(scratch, "mutate-logs")
    os.makedirs(logdir)
    print("mutate: scratch copy in %s" % scratch, flush=True)
    rc = run("tar -C '%s' --exclude=./build --exclude=./.git --exclude=./qinspect -cf - . "
             "| tar -C '%s' -xf -" % (ROOT, scratch), ROOT)
    if rc != 0:
        print("mutate: copying the tree failed", file=sys.stderr)
        return 2
    base_log = os.path.join(logdir, "base-build.log")
    if not build(scratch, base_log):
        print("mutate: the unmutated tree does not build, see " + base_log, file=sys.stderr)
        return 2

    # Baseline: every suite word must pass on the unmutated copy, or every
    # mutation would look killed.
    if not skip_base:
        words = sorted({w for m in muts for w in m.suites})
        env = dict(os.environ, QINSPECT=os.path.join(scratch, "build/asan/qinspect"),
                   UNIT_DIR=os.path.join(scratch, "build/asan/tests"))
        env.setdefault("SUITE_TIMEOUT", "600")
        if "all" in words:
            env.pop("SUITES", None)
        else:
            env["SUITES"] = " ".join(words)
        blog = os.path.join(logdir, "baseline.log")
        if run(["sh", "tests/run.sh"], scratch, env=env, log=blog) != 0:
            print("mutate: the unmutated tree fails its suites (%s), see %s"
                  % (", ".join(failing_suites(blog)), blog), file=sys.stderr)
            return 2
        print("mutate: baseline passes (%s)" % " ".join(words), flush=True)

    results = []
    for i, m in enumerate(muts, 1):
        t0 = time.time()
        status, detail = mutate_one(m, scratch, logdir)
        results.append((m, status, detail))
        print("[%d/%d] %-32s %-11s %s (%.0fs)" % (i, len(muts), m.name, status, detail,
                                                 time.time() - t0), flush=True)

    print("\n| mutation | file | result | caught by |")
    print("|---|---|---|---|")
    for m, status, detail in results:
        print("| %s | %s | %s | %s |" % (m.name, m.file, status, detail))
    survived = [m.name for m, s, _ in results if s != "killed"]
    print("\n%d mutations: %d killed, %d not killed%s" % (
        len(results), len(results) - len(survived), len(survived),
        (" (" + " ".join(survived) + ")") if survived else ""))
    if want_json:
        with open(os.path.join(scratch, "mutate-report.json"), "w") as f:
            json.dump([{"name": m.name, "file": m.file, "why": m.why, "result": s,
                        "detail": d} for m, s, d in results], f, indent=1)
    if keep or want_json or survived:
        print("mutate: scratch kept in %s (logs in mutate-logs/)" % scratch)
    else:
        shutil.rmtree(scratch, ignore_errors=True)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
