#!/bin/sh
# unit-deps.sh MODULE[_PART]: the engine objects a unit test of MODULE may link
# (test_cache_write.c is a second test file of module cache):
# MODULE's own layer and every layer below it (../shared/STYLE.md 1.1).
# An upward call from a module then fails to link in its unit test.
L0="err mem hashtab bio journal undo format compress"
L1="$L0 cache"
L2="$L1 refcount layout"
L3="$L2 cluster bitmap"
L4="$L3 image rw cwrite map meta refwalk refindex rebuild create shrink scan"
L5="$L4 problem"
case ${1%%_*} in
    err|mem|hashtab|bio|journal|undo|format|compress) deps=$L0 ;;
    cache) deps=$L1 ;;
    refcount|layout) deps=$L2 ;;
    cluster|bitmap) deps=$L3 ;;
    image|rw|cwrite|map|meta|refwalk|refindex|rebuild|create|shrink|scan) deps=$L4 ;;
    problem) deps=$L5 ;;
    *) echo "unit-deps.sh: unknown module '$1'" >&2; exit 1 ;;
esac
dir=$(dirname "$0")/../src/engine
for m in $deps; do
    [ -f "$dir/$m.c" ] && printf '%s ' "$m"
done
echo
