#!/usr/bin/env bash
# The entry point of `make bench` (after build/gatehouse is built): runs
# every bench/*.sh scenario in name order (or those named: bench/run.sh
# core idle), writes bench/results/GROUP.md and GROUP.csv for each group of
# scenarios that ran (core.sh and idle.sh form the group "core"), and
# prints the scenarios' ratio lines at the end.
#
# The bench is not a test: figures that miss their targets say "miss", and
# the exit status is 0 unless a scenario broke (could not measure).
# shellcheck disable=SC2001 # sed over multi-line text reads better
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
# shellcheck source=bench/lib.sh
. bench/lib.sh

out=$(mktemp -d /tmp/gh-bench-run.XXXXXX)
trap 'rm -rf "$out"' EXIT
export BENCH_OUT="$out"

scenarios=()
if (($#)); then
    for s in "$@"; do
        s=${s%.sh}
        [ -f "bench/$s.sh" ] || die "no scenario bench/$s.sh"
        scenarios+=("bench/$s.sh")
    done
else
    for f in bench/*.sh; do
        case "$(basename "$f")" in run.sh | lib.sh | attack.sh) continue ;; esac  # attack.sh: make bench-attack
        scenarios+=("$f")
    done
fi

machine=$(machine_desc)
sed 's/^/# /' <<<"$machine"
broken=()
for f in "${scenarios[@]}"; do
    echo
    echo "== $f"
    if ! bash "$f"; then
        broken+=("$f")
        echo "bench: $f broke (see above)" >&2
    fi
done

mkdir -p bench/results
for g in "$out"/*/; do
    [ -d "$g" ] || continue
    group=$(basename "$g")
    md="bench/results/$group.md"
    csv="bench/results/$group.csv"
    {
        echo "# gatehouse bench: $group"
        echo
        echo "Written by \`make bench\` (bench/run.sh); how to read it:"
        echo "docs/internals/benchmarks.md. Figures from one run on a shared machine:"
        echo "compare the ratios, not the absolute numbers, across runs."
        echo
        sed 's/^/- /' <<<"$machine"
        echo
        for f in "${scenarios[@]}"; do
            s=$(basename "$f" .sh)
            [ -f "$g/$s.md" ] && cat "$g/$s.md"
        done
        if [ -f "$g/ratios.txt" ]; then
            echo "## Summary"
            echo
            sed 's/^/- /' "$g/ratios.txt"
        fi
    } >"$md"
    {
        echo "scenario,server,run,metric,value,unit"
        echo "$machine" | awk -F': ' '{gsub(/,/, ";", $2); print "machine,,," $1 "," $2 ","}'
        [ -f "$g/rows.csv" ] && cat "$g/rows.csv"
    } >"$csv"
    echo
    echo "wrote $md and $csv"
done

echo
echo "== summary"
[ -f "$out/ratios.txt" ] && cat "$out/ratios.txt"
if ((${#broken[@]})); then
    echo "bench: broken: ${broken[*]}" >&2
    exit 1
fi
exit 0
