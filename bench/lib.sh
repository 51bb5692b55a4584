# shellcheck shell=bash disable=SC2034
# Shared helpers of the bench scenarios (sourced, not run).
#
# A scenario sources this file, calls bench_init, starts servers with
# start_gatehouse / start_nginx (every process it starts is killed on
# exit, by pid), measures, and reports with bench_row (CSV), bench_md
# (Markdown) and bench_ratio (the lines bench/run.sh prints at the end).
# Run from bench/run.sh, the rows and ratios are collected into
# bench/results/; run alone, a scenario prints its figures and writes
# nothing outside its temporary directory.
#
# Environment:
#   BUILD            build directory (default: build)
#   BENCH_PORT_BASE  first of the loopback ports used (default 18480):
#                    +0 gatehouse, +1 gatehouse admin, +2 nginx
#   BENCH_SERVER_CPU / BENCH_CLIENT_CPU   CPUs for taskset (default 0 / 1)
#   BENCH_OUT        set by run.sh: where rows, sections and ratios go
#   BENCH_KEEP       set: keep the temporary directory (logs, wrk output)

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-build}
case "$BUILD" in /*) ;; *) BUILD="$BENCH_ROOT/$BUILD" ;; esac
GATEHOUSE="$BUILD/gatehouse"
NGINX=${NGINX:-/usr/sbin/nginx}
BENCH_PORT_BASE=${BENCH_PORT_BASE:-18480}
GH_PORT=$((BENCH_PORT_BASE))
GH_ADMIN_PORT=$((BENCH_PORT_BASE + 1))
NGINX_PORT=$((BENCH_PORT_BASE + 2))
SERVER_CPU=${BENCH_SERVER_CPU:-0}
CLIENT_CPU=${BENCH_CLIENT_CPU:-1}
CLK_TCK=$(getconf CLK_TCK)
BENCH_PIDS=()

die() {
    echo "bench: $*" >&2
    exit 1
}

# bench_init NAME [GROUP]: a private temporary directory ($BENCH_TMP), the
# EXIT trap, the file limit, and the checks every scenario needs. Results
# of the scenarios of one GROUP (default: NAME) go to bench/results/GROUP.*
bench_init() {
    BENCH_NAME=$1
    BENCH_GROUP=${2:-$1}
    BENCH_TMP=$(mktemp -d "/tmp/gh-bench-$BENCH_NAME.XXXXXX")
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    # as many descriptors as allowed, up to 65536 (containers often cap
    # the hard limit lower; 10k connections need a bit over 10k)
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    [ -x "$GATEHOUSE" ] || die "$GATEHOUSE not built (run: make bench)"
    command -v taskset >/dev/null || die "taskset missing (util-linux)"
    BENCH_OUT=${BENCH_OUT:-$BENCH_TMP/out}
    mkdir -p "$BENCH_OUT/$BENCH_GROUP"
    if [ "$(nproc)" -lt 2 ]; then
        echo "bench: warning: $(nproc) CPU; server and client share it" >&2
        CLIENT_CPU=$SERVER_CPU
    fi
}

bench_cleanup() {
    local pid
    for pid in "${BENCH_PIDS[@]}"; do
        [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${BENCH_PIDS[@]}"; do
        [ -n "$pid" ] || continue
        local i
        for i in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    done
    BENCH_PIDS=()
    [ -n "${BENCH_TMP:-}" ] && [ -z "${BENCH_KEEP:-}" ] && rm -rf "$BENCH_TMP"
    return 0
}

track_pid() { BENCH_PIDS+=("$1"); }

# stop_pid PID: SIGTERM, up to 10 s for a graceful exit, then SIGKILL.
stop_pid() {
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    return 0
}

# port_must_be_free PORT: fails clearly when something listens there.
port_must_be_free() {
    local port=$1
    if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
        die "port $port is busy (something listens on it); set BENCH_PORT_BASE to a free range"
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        die "port $port is busy (it accepts connections); set BENCH_PORT_BASE to a free range"
    fi
}

# http_get PORT PATH: the raw answer of one HTTP/1.0 request (bash only).
http_get() {
    local port=$1 path=$2
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
        printf "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" "$1" >&3
        cat <&3' "$port" "$path" 2>/dev/null
}

# wait_healthz PORT PID LOG: until GET /healthz answers 200 (10 s).
wait_healthz() {
    local port=$1 pid=$2 log=$3 _
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || {
            tail -5 "$log" >&2
            die "the server on port $port exited at start (log: $log)"
        }
        http_get "$port" /healthz | head -1 | grep -q ' 200 ' && return 0
        sleep 0.1
    done
    tail -5 "$log" >&2
    die "no answer on port $port after 10 s"
}

# start_gatehouse DIR ARGS...: one worker pinned to SERVER_CPU, access log
# off; sets GH_PID.
start_gatehouse() {
    local dir=$1
    shift
    port_must_be_free "$GH_PORT"
    port_must_be_free "$GH_ADMIN_PORT"
    mkdir -p "$dir"
    taskset -c "$SERVER_CPU" "$GATEHOUSE" serve \
        --listen "127.0.0.1:$GH_PORT" --admin-listen "127.0.0.1:$GH_ADMIN_PORT" \
        --data "$dir" --workers 1 --set log.access_log=off --set log.level=warn \
        --set identity.cookie_secure=false "$@" \
        >"$dir/gatehouse.log" 2>&1 &
    GH_PID=$!
    track_pid "$GH_PID"
    wait_healthz "$GH_PORT" "$GH_PID" "$dir/gatehouse.log"
}

# start_nginx TEMPLATE DIR: our own nginx (never the system's) from
# bench/nginx/TEMPLATE, one worker pinned to SERVER_CPU; sets NGINX_PID
# (master) and NGINX_WORKER (the first worker; @WORKERS@ is NGINX_WORKERS,
# default 1).
start_nginx() {
    local tpl=$1 dir=$2
    [ -x "$NGINX" ] || die "nginx not found at $NGINX (apt-get install nginx-light)"
    port_must_be_free "$NGINX_PORT"
    mkdir -p "$dir"
    sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$NGINX_PORT|g" -e "s|@NOFILE@|$(ulimit -n)|g" -e "s|@WORKERS@|${NGINX_WORKERS:-1}|g" \
        "$BENCH_ROOT/bench/nginx/$tpl" >"$dir/nginx.conf"
    taskset -c "$SERVER_CPU" "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" \
        -g "daemon off; pid $dir/nginx.pid;" >"$dir/nginx.out" 2>&1 &
    NGINX_PID=$!
    track_pid "$NGINX_PID"
    wait_healthz "$NGINX_PORT" "$NGINX_PID" "$dir/error.log"
    NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -1)
    [ -n "$NGINX_WORKER" ] || die "nginx worker process not found"
}

# cpu_ticks PID...: "USER SYSTEM" CPU time in clock ticks (getconf
# CLK_TCK) of the processes, all threads included (/proc/PID/stat fields
# 14 utime and 15 stime).
cpu_ticks() {
    local u=0 s=0 pid line f
    for pid in "$@"; do
        line=$(cat "/proc/$pid/stat" 2>/dev/null) || die "process $pid has gone"
        # split after the command name, which may hold spaces: f[0] is field 3
        read -r -a f <<<"${line##*) }"
        u=$((u + f[11]))
        s=$((s + f[12]))
    done
    echo "$u $s"
}

# rss_kb PID...: VmRSS summed over the processes, in KiB.
rss_kb() {
    local sum=0 pid v
    for pid in "$@"; do
        v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
        [ -n "$v" ] || die "process $pid has gone"
        sum=$((sum + v))
    done
    echo "$sum"
}

# register_user DIR PORT: a user registered through the API on the
# gatehouse whose data directory is DIR; prints the session cookie ("gh_session=…").
register_user() {
    local dir=$1 port=$2 phone="+8613900001234" code jar="$BENCH_TMP/jar.txt" i
    curl -s -o /dev/null -H 'content-type: application/json' \
        -d "{\"phone\":\"$phone\",\"purpose\":\"register\"}" "http://127.0.0.1:$port/api/auth/sms-code"
    for i in $(seq 50); do
        code=$(sed -n "s/.*\"to\":\"+8613900001234\".*\"code\":\"\([0-9]*\)\".*/\1/p" \
            "$dir/sms-outbox.jsonl" 2>/dev/null | tail -1)
        [ -n "$code" ] && break
        sleep 0.1
    done
    [ -n "$code" ] || die "no SMS code for the probe user"
    curl -s -o /dev/null -c "$jar" -H 'content-type: application/json' \
        -d "{\"phone\":\"$phone\",\"code\":\"$code\",\"password\":\"correct horse battery\"}" \
        "http://127.0.0.1:$port/api/auth/register"
    awk '$6 == "gh_session" {print "gh_session=" $7}' "$jar"
}

# ---- reporting ----

# bench_row SERVER RUN METRIC VALUE UNIT: one CSV row of this scenario
# (RUN is a number, or "median" for a summary).
bench_row() {
    echo "$BENCH_NAME,$1,$2,$3,$4,$5" >>"$BENCH_OUT/$BENCH_GROUP/rows.csv"
}

# bench_md: appends stdin to this scenario's Markdown section.
bench_md() {
    cat >>"$BENCH_OUT/$BENCH_GROUP/$BENCH_NAME.md"
}

# bench_ratio TEXT: a summary line, printed now and again by run.sh.
bench_ratio() {
    echo "$*"
    echo "$*" >>"$BENCH_OUT/ratios.txt"
    echo "$*" >>"$BENCH_OUT/$BENCH_GROUP/ratios.txt"
}

# bench_lines: reports the lines of a measuring tool on stdin:
# "row: SERVER RUN METRIC VALUE UNIT" (bench_row), "md: TEXT" (bench_md),
# "ratio: TEXT" (bench_ratio), "skip: WHY" (printed); others are printed.
bench_lines() {
    local line server run metric value unit
    while IFS= read -r line; do
        case "$line" in
        row:*) read -r server run metric value unit <<<"${line#row: }"; bench_row "$server" "$run" "$metric" "$value" "$unit" ;;
        md:*) echo "${line#md: }" | bench_md ;;
        ratio:*) bench_ratio "${line#ratio: }" ;;
        skip:*) echo "bench $BENCH_NAME: ${line#skip: }" ;;
        *) echo "$line" ;;
        esac
    done
}

# median of the numbers on stdin (one per line)
median() {
    sort -g | awk '{v[NR] = $1} END {
        if (NR == 0) { print "nan"; exit }
        if (NR % 2) print v[(NR + 1) / 2]; else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# calc EXPR: floating-point arithmetic (awk), printed with %.4g unless a
# format is given as the second argument.
calc() {
    awk -v fmt="${2:-%.4g}" "BEGIN { printf fmt \"\\n\", $1 }"
}

# machine_desc: "key: value" lines describing this machine and the tools.
machine_desc() {
    local cpu
    cpu=$(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "nproc: $(nproc)"
    echo "cpu: ${cpu:-unknown}"
    echo "kernel: $(uname -sr)"
    echo "memory: $(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "gatehouse: $("$GATEHOUSE" --version 2>/dev/null | head -1 || echo '?') ($(git -C "$BENCH_ROOT" rev-parse --short HEAD 2>/dev/null || echo 'no git'), $(grep -m1 '^CMAKE_BUILD_TYPE' "$BUILD/CMakeCache.txt" 2>/dev/null | cut -d= -f2))"
    echo "nginx: $("$NGINX" -v 2>&1 | sed 's/^nginx version: //')"
    echo "wrk: $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
}
