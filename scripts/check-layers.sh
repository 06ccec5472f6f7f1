#!/bin/sh
# check-layers.sh: the layering rules of shared/STYLE.md 1.1, checked on the
# #include lines and on printing calls. Prints each violation; exit 1 if any.
#  - src/engine (layers 0-5) never includes lua or readline headers and
#    never prints (no printf/fprintf/puts/perror/putchar, no stdout/stderr);
#  - an engine file includes only engine headers of its own layer or below;
#  - src/bind and src/cli include only qi/*.h, lua/readline/system headers
#    and headers of their own layer or the bind layer below, never private
#    engine headers.
cd "$(dirname "$0")/.." || exit 2
bad=0
fail() { echo "layers: $*"; bad=1; }

layer_of() {  # engine module (header or source base name) -> layer number
    case $1 in
        err|mem|endian|hashtab|hash|bio|journal|undo|format|compress) echo 0 ;;
        cache) echo 1 ;;
        refcount|image|layout) echo 2 ;;   # image.h is the shared state header
        cluster|dedupidx|bitmap) echo 3 ;;   # bitmap: persistent dirty bitmaps
        rw|cwrite|map|meta|refwalk|refindex|rebuild|create|shrink|scan) echo 4 ;;
        check|repair|problem|snapshot|dedup) echo 5 ;;
        *) echo 9 ;;
    esac
}

for f in src/engine/*.c src/engine/*.h; do
    base=$(basename "$f"); mod=${base%.*}
    # image.c is layer 4 even though image.h (the state header) is shared below
    if [ "$base" = image.c ]; then mine=4; else mine=$(layer_of "$mod"); fi
    grep -nE '^#include[[:space:]]*[<"](lua|lauxlib|lualib|readline/)' "$f" |
        while IFS= read -r l; do echo "layers: $f: engine includes Lua/readline: $l"; done | grep . && bad=1
    if grep -nE '(^|[^a-z_])(printf|fprintf|puts|fputs|perror|putchar)[[:space:]]*\(|(^|[^a-z_])(stdout|stderr)([^a-z_]|$)' "$f" |
        grep -vE 'snprintf|vsnprintf|^\s*[0-9]+:\s*(/\*|\*)' | grep -q .; then
        fail "$f: the engine never prints"
    fi
    for inc in $(sed -n 's/^#include[[:space:]]*"\([a-z_]*\)\.h".*/\1/p' "$f"); do
        [ -f "src/engine/$inc.h" ] || continue
        l=$(layer_of "$inc")
        if [ "$l" -gt "$mine" ]; then
            fail "$f (layer $mine) includes $inc.h (layer $l)"
        fi
    done
done

for f in src/bind/*.[ch] src/cli/*.[ch]; do
    [ -f "$f" ] || continue
    for inc in $(sed -n 's/^#include[[:space:]]*"\([a-z_/]*\)\.h".*/\1/p' "$f"); do
        case $inc in qi/*) continue ;; esac
        if [ -f "src/engine/$inc.h" ]; then
            fail "$f includes the private engine header $inc.h"
        fi
        case $f in
            src/bind/*) [ -f "src/bind/$inc.h" ] || fail "$f includes $inc.h from outside src/bind" ;;
        esac
    done
done
[ $bad -eq 0 ] && echo "layers: ok"
exit $bad
