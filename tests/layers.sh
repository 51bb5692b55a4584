#!/bin/sh
# The layering of docs/ARCHITECTURE.md ("Layers"), checked by ctest
# (`layers`): each folder of src/ includes only the folders listed for it.
# A folder that is not listed may include nothing outside itself.
# Run from the repository root; prints every include that breaks a rule.
allowed() {
    case "$1" in
    core) echo "obs" ;;     # a worker's loop statistics (obs/metrics.h)
    obs) echo "core" ;;     # core/common.h, core/buf.h
    http) echo "core obs" ;;
    store) echo "core obs" ;;
    status) echo "core obs http" ;;
    shield) echo "core obs http status" ;;
    identity) echo "core obs http store shield status" ;;
    gateway) echo "core obs http store shield status identity" ;;
    admin) echo "core obs http store shield status identity gateway" ;;
    *) echo "" ;;
    esac
}
bad=0
for dir in src/*/; do
    d=$(basename "$dir")
    ok="$d $(allowed "$d")"
    for f in "$dir"*.c "$dir"*.cc "$dir"*.h; do
        [ -e "$f" ] || continue
        for inc in $(sed -n 's/^#include "\([a-z_]*\)\/.*/\1/p' "$f"); do
            case " $ok " in
            *" $inc "*) ;;
            *) echo "$f includes $inc/: $d may include only: $ok"; bad=1 ;;
            esac
        done
    done
done
exit $bad
