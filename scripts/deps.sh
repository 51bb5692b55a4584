#!/usr/bin/env bash
# Installs what gatehouse needs on a Debian 12 machine, idempotently and
# without questions. Usage: scripts/deps.sh [build|test|bench]...
# Each group is a superset of "build". Packages already present are skipped,
# so a second run costs a few dpkg queries and nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

build_pkgs=(build-essential cmake pkg-config clang libclang-rt-14-dev
    libuv1-dev libhttp-parser-dev libcurl4-openssl-dev libsodium-dev
    libphonenumber-dev libsqlite3-dev sqlite3 libpq-dev libjansson-dev libinih-dev
    libcmocka-dev node-llhttp libnftables-dev libhiredis-dev)
# prometheus: for promtool (no smaller Debian 12 package ships it) and
# python3-prometheus-client: tests/e2e/metrics-format.test.mjs checks
# /metrics with both; python3-httpx: the Python openai SDK's transport
# (Debian has no python3-openai), tests/e2e/body-too-large.test.mjs;
# nftables and util-linux (unshare): tests/e2e/penalty-box.test.mjs runs
# the kernel penalty box in a network namespace of its own;
# postgresql: tests/e2e/store-postgres.test.mjs runs a throwaway server;
# haproxy: tests/cluster/ puts three nodes behind one (scripts/cluster.sh);
# redis-server: tests/cluster/redis.test.mjs shares limits between nodes
test_pkgs=(curl procps iproute2 nftables util-linux chromium fonts-dejavu-core fonts-noto-cjk
    prometheus python3-prometheus-client python3-httpx postgresql haproxy redis-server)
# make run-cluster: scripts/cluster.sh
cluster_pkgs=(curl postgresql haproxy redis-server)
bench_pkgs=(wrk nginx-light haproxy slowhttptest gnuplot-nox util-linux procps postgresql redis-server)

want=("${build_pkgs[@]}")
npm_dirs=()
for group in "${@:-build}"; do
    case "$group" in
    build) ;;
    test) want+=("${test_pkgs[@]}"); npm_dirs+=(tests) ;;
    bench) want+=("${bench_pkgs[@]}") ;;
    cluster) want+=("${cluster_pkgs[@]}") ;;
    *) echo "deps.sh: unknown group '$group' (build, test, bench, cluster)" >&2; exit 2 ;;
    esac
done

# Node.js: any node >= 18 with npm will do. Some images ship NodeSource's
# nodejs (which bundles npm and conflicts with Debian's npm package), so
# look for the commands, and only install Debian's packages without them.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    want+=(nodejs npm)
fi

missing=()
for p in "${want[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done

if ((${#missing[@]})); then
    echo "deps.sh: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # nginx-light starts a system nginx on :80; the benchmarks run their own.
    if printf '%s\n' "${missing[@]}" | grep -q '^nginx'; then
        $sudo systemctl disable --now nginx >/dev/null 2>&1 || $sudo service nginx stop >/dev/null 2>&1 || true
    fi
    # prometheus starts a system server on :9090; the tests need only promtool.
    if printf '%s\n' "${missing[@]}" | grep -qx 'prometheus'; then
        $sudo systemctl disable --now prometheus >/dev/null 2>&1 || $sudo service prometheus stop >/dev/null 2>&1 || true
    fi
    # haproxy starts a system service; the tests and the cluster run their own.
    if printf '%s\n' "${missing[@]}" | grep -qx 'haproxy'; then
        $sudo systemctl disable --now haproxy >/dev/null 2>&1 || $sudo service haproxy stop >/dev/null 2>&1 || true
    fi
    # postgresql starts a system cluster on :5432; the tests run their own.
    if printf '%s\n' "${missing[@]}" | grep -qx 'postgresql'; then
        $sudo systemctl disable --now postgresql >/dev/null 2>&1 || $sudo service postgresql stop >/dev/null 2>&1 || true
    fi
fi

for d in "${npm_dirs[@]}"; do
    [ -f "$d/package.json" ] || continue
    stamp="$d/node_modules/.deps-stamp"
    if [ ! -f "$stamp" ] || [ "$d/package-lock.json" -nt "$stamp" ] || [ "$d/package.json" -nt "$stamp" ]; then
        echo "deps.sh: npm install in $d"
        (cd "$d" && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error; else npm install --no-audit --no-fund --loglevel=error; fi)
        touch "$stamp"
    fi
done
