#!/usr/bin/env bash
# Runs every suite: unit tests (cmocka, via ctest) and black-box tests
# (node:test) against the normal build and again against an
# ASan+UBSan build, then each libFuzzer harness for a bounded time.
# Ends with one line "N passed, N failed"; exits 1 if anything failed.
#
# Environment: FUZZ_SECONDS (default 60, split between harnesses),
# SKIP_ASAN=1, SKIP_FUZZ=1, SKIP_E2E=1 to shorten a local run.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/test-output
mkdir -p "$out"
jobs=$(nproc)
passed=0
failed=0
failures=()

note() { printf '\n=== %s\n' "$*"; }

build() { # dir, cmake args...
    local dir=$1
    shift
    cmake -S . -B "$dir" "$@" >"$out/cmake-$(basename "$dir").log" 2>&1 &&
        cmake --build "$dir" -j "$jobs" >>"$out/cmake-$(basename "$dir").log" 2>&1
}

run_unit() { # build dir, label
    local dir=$1 label=$2 log="$out/unit-$2.log"
    note "unit tests ($label)"
    (cd "$dir" && ctest -V -j "$jobs") >"$log" 2>&1
    local p f
    p=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .* Passed' "$log")
    f=$(grep -cE '^ *[0-9]+/[0-9]+ Test +#[0-9]+: .*(Failed|Exception|Timeout|Not Run)' "$log")
    # a program that died before cmocka's summary counts as a failure too
    # count the cmocka cases inside, which is what a reader cares about
    local cp cf
    cp=$(grep -hoE '\[  PASSED  \] [0-9]+ test' "$log" | awk '{s+=$4} END {print s+0}')
    cf=$(grep -hoE '\[  FAILED  \] [0-9]+ test' "$log" | awk '{s+=$4} END {print s+0}')
    echo "$label: $p unit programs passed, $f failed ($cp cases passed, $cf failed)"
    if ((f > 0)); then
        grep -E 'Failed|Exception|Timeout|Not Run|\[  FAILED  \]|ERROR' "$log" | head -40
        failures+=("unit/$label")
    fi
    passed=$((passed + cp))
    failed=$((failed + cf + (f > 0 && cf == 0 ? f : 0)))
}

run_e2e() { # binary, label[, directory of tests: tests/e2e]
    local bin=$1 label=$2 dir=${3:-tests/e2e} log="$out/e2e-$2.log"
    [ "${SKIP_E2E:-}" = 1 ] && return
    note "black-box tests ($label)"
    GATEHOUSE_BIN=$root/$bin GATEHOUSE_TEST_OUT=$out/$label \
        node --test --test-concurrency=1 --test-reporter=tap "$dir/" >"$log" 2>&1
    local p f
    p=$(grep -E '^# pass ' "$log" | awk '{print $3}')
    f=$(grep -E '^# fail ' "$log" | awk '{print $3}')
    p=${p:-0}
    f=${f:-1}
    echo "$label: $p passed, $f failed"
    if ((f > 0)); then
        grep -E '^not ok|^ *not ok|error:|expected|actual' "$log" | head -60
        failures+=("e2e/$label")
    fi
    passed=$((passed + p))
    failed=$((failed + f))
}

run_fuzz() {
    [ "${SKIP_FUZZ:-}" = 1 ] && return
    note "fuzz smoke"
    if ! CC=clang CXX=clang++ build build-fuzz -DGH_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug; then
        echo "fuzz build failed (see $out/cmake-build-fuzz.log)"
        tail -20 "$out/cmake-build-fuzz.log"
        failed=$((failed + 1))
        failures+=("fuzz/build")
        return
    fi
    local harnesses=(build-fuzz/fuzz_*)
    local n=${#harnesses[@]}
    # 60 s in all by default: up to 20 harnesses get 3 s or more each
    local total=${FUZZ_SECONDS:-60}
    local each=$((total / n))
    ((each < 3)) && each=3
    for h in "${harnesses[@]}"; do
        local name corpus work
        name=$(basename "$h")
        corpus=fuzz/corpus/${name#fuzz_}
        work=$out/fuzz-$name
        rm -rf "$work"
        mkdir -p "$work"
        [ -d "$corpus" ] && cp -r "$corpus"/. "$work"/
        # a dictionary of the format's tokens, when the harness has one
        local dict=()
        [ -f "fuzz/${name#fuzz_}.dict" ] && dict=(-dict="fuzz/${name#fuzz_}.dict")
        if "$h" -max_total_time="$each" -timeout=5 -rss_limit_mb=2048 "${dict[@]}" "$work" \
            >"$out/$name.log" 2>&1; then
            echo "$name: ok ($(grep -oE 'Done [0-9]+ runs' "$out/$name.log" | awk '{print $2}') runs)"
            passed=$((passed + 1))
        else
            echo "$name: FAILED"
            tail -30 "$out/$name.log"
            failed=$((failed + 1))
            failures+=("fuzz/$name")
        fi
    done
}

note "build"
if build build -DCMAKE_BUILD_TYPE=RelWithDebInfo; then
    run_unit build normal
    run_e2e build/gatehouse normal
    # several nodes on PostgreSQL behind HAProxy (scripts/cluster.sh)
    run_e2e build/gatehouse cluster tests/cluster
else
    echo "build failed:"
    tail -40 "$out/cmake-build.log"
    failed=$((failed + 1))
    failures+=("build")
fi

if [ "${SKIP_ASAN:-}" != 1 ]; then
    note "build with -fsanitize=address,undefined"
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:halt_on_error=1
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    if build build-asan -DGH_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug; then
        run_unit build-asan asan
        run_e2e build-asan/gatehouse asan
    else
        echo "sanitizer build failed:"
        tail -40 "$out/cmake-build-asan.log"
        failed=$((failed + 1))
        failures+=("build-asan")
    fi
fi

run_fuzz

echo
if ((${#failures[@]})); then
    echo "failing suites: ${failures[*]} (logs in test-output/)"
fi
echo "$passed passed, $failed failed"
((failed == 0))
