#!/usr/bin/env bash
# Memory per idle keep-alive connection: 10,000 connections (each has
# completed one GET /healthz and is now idle) held by build/idle_conns,
# against gatehouse and nginx in turn, one worker each. Resident memory
# per connection = (VmRSS with the connections open - VmRSS before) / the
# connections that were open.
#
# Environment: BENCH_IDLE_CONNS (10000), and those of bench/lib.sh.
# Target: gatehouse <= 1 KiB per connection, aim: nginx's figure.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init idle core

N=${BENCH_IDLE_CONNS:-10000}
TARGET_B=1024
TOOL="$BUILD/idle_conns"
[ -x "$TOOL" ] || die "$TOOL not built (bench/tools/idle_conns.c; run: make bench)"
[ "$(ulimit -n)" -gt $((N + 100)) ] ||
    die "open file limit $(ulimit -n) is too low for $N connections (ulimit -Hn: $(ulimit -Hn))"

# hold NAME PORT PID...: opens the connections, measures, closes them.
# Sets PER_CONN (bytes).
hold() {
    local name=$1 port=$2
    shift 2
    local dir="$BENCH_TMP/$name-idle" before after ready open _ tool_pid fd
    mkdir -p "$dir"
    # a few requests first, so that what every server allocates once (first
    # request, first buffers) is in the baseline
    for _ in 1 2 3; do http_get "$port" /healthz >/dev/null; done
    sleep 0.5
    before=$(rss_kb "$@")
    mkfifo "$dir/in"
    taskset -c "$CLIENT_CPU" "$TOOL" -n "$N" -t 600 -T 120 127.0.0.1 "$port" \
        <"$dir/in" >"$dir/out" 2>"$dir/err" &
    tool_pid=$!
    track_pid "$tool_pid"
    exec {fd}>"$dir/in"
    for _ in $(seq 1300); do
        grep -q '^ready' "$dir/out" 2>/dev/null && break
        kill -0 "$tool_pid" 2>/dev/null || break
        sleep 0.1
    done
    ready=$(awk '/^ready/ {print $2}' "$dir/out")
    [ -n "$ready" ] || die "$name: idle_conns never got ready: $(tail -3 "$dir/err")"
    [ "$ready" -gt 0 ] || die "$name: no connection became idle: $(tail -3 "$dir/err")"
    [ "$ready" = "$N" ] || echo "bench: warning: $name: only $ready of $N connections idle: $(tail -2 "$dir/err")" >&2
    sleep 1 # let the server settle
    after=$(rss_kb "$@")
    echo status >&"$fd"
    exec {fd}>&- # idle_conns prints "open K" and exits
    for _ in $(seq 100); do
        kill -0 "$tool_pid" 2>/dev/null || break
        sleep 0.1
    done
    wait "$tool_pid" 2>/dev/null || true
    open=$(awk '/^open/ {v = $2} END {print v}' "$dir/out")
    [ "${open:-0}" = "$ready" ] ||
        die "$name: the server closed connections while they were measured ($ready ready, ${open:-?} open)"
    PER_CONN=$(calc "($after - $before) * 1024 / $ready" "%.0f")
    bench_row "$name" 1 connections "$ready" count
    bench_row "$name" 1 rss_before "$before" KiB
    bench_row "$name" 1 rss_with_conns "$after" KiB
    bench_row "$name" 1 rss_per_conn "$PER_CONN" B
    printf '  %-9s RSS %7d KiB before, %7d KiB with %d idle connections: %5d B/connection\n' \
        "$name" "$before" "$after" "$ready" "$PER_CONN"
    echo "| $name | $ready | $before | $after | $PER_CONN |" >>"$BENCH_TMP/table.md"
}

echo "idle: $N idle keep-alive connections, server on CPU $SERVER_CPU, client on CPU $CLIENT_CPU"
start_gatehouse "$BENCH_TMP/gatehouse" --set limits.max_conns_per_addr=100000 \
    --set limits.idle_timeout=10m --set limits.max_conns=100000
hold gatehouse "$GH_PORT" "$GH_PID"
gh_b=$PER_CONN
stop_pid "$GH_PID"

start_nginx idle.conf "$BENCH_TMP/nginx"
hold nginx "$NGINX_PORT" "$NGINX_PID" "$NGINX_WORKER"
ng_b=$PER_CONN
stop_pid "$NGINX_PID"

ratio=$(calc "$gh_b / ($ng_b > 0 ? $ng_b : 1)" "%.2f")
verdict=$(awk -v g="$gh_b" -v n="$ng_b" -v t="$TARGET_B" 'BEGIN {
    if (g <= n) print "pass (aim met)"; else if (g <= t) print "pass (aim: nginx, " n " B, missed)"; else print "miss" }')
bench_row gatehouse/nginx 1 rss_per_conn_ratio "$ratio" x

bench_md <<EOF
## Memory per idle keep-alive connection

\`build/idle_conns -n $N\` (on CPU $CLIENT_CPU) opens $N connections from
127.0.0.2–51, sends one GET /healthz on each, reads the answer and keeps
them open and idle. Each server runs alone, one worker on CPU $SERVER_CPU
(gatehouse: \`limits.max_conns_per_addr=100000\`, \`limits.idle_timeout=10m\`;
nginx: \`worker_connections 20000\`, \`keepalive_timeout 10m\`). VmRSS (for
nginx master+worker) after three warm-up requests, then with the connections
open; idle_conns checks afterwards that none was closed. Socket buffers are
kernel memory and not in VmRSS. nginx allocates its connection table for
all worker_connections at start, so that part is in its baseline, not in
its per-connection figure.

| server | connections | VmRSS before KiB | VmRSS with connections KiB | B/connection |
|---|---|---|---|---|
$(cat "$BENCH_TMP/table.md")

gatehouse/nginx: **$ratio**. Target: ≤ $TARGET_B B per connection, aim nginx's: **$verdict**.

EOF
bench_ratio "idle: memory/connection gatehouse $gh_b B, nginx $ng_b B, ratio $ratio (target <= $TARGET_B B, aim nginx's): $verdict"
