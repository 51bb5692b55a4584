#!/usr/bin/env bash
# Server CPU per response: wrk against GET /healthz on gatehouse and on
# nginx answering `return 200` with the same body, one worker each, the
# server pinned to one CPU and wrk to the other, alternating the two in
# the same run. On a 2-core machine wrk saturates too, so requests/s says
# little; the figure that counts is the server's user+system CPU time over
# the run divided by the responses wrk counted.
#
# Environment: BENCH_RUNS (3), BENCH_DURATION seconds (5), BENCH_CONNS (64),
# and those of bench/lib.sh. Target: gatehouse/nginx <= 1.0, aim 0.8.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init core

RUNS=${BENCH_RUNS:-3}
DURATION=${BENCH_DURATION:-5}
CONNS=${BENCH_CONNS:-64}
TARGET=1.0
AIM=0.8
command -v wrk >/dev/null || die "wrk missing (apt-get install wrk)"

start_gatehouse "$BENCH_TMP/gatehouse"
start_nginx core.conf "$BENCH_TMP/nginx"

# The two answers must be comparable: same status, type and body.
check_answer() {
    local name=$1 port=$2 ans
    ans=$(http_get "$port" /healthz | tr -d '\r')
    echo "$ans" | head -1 | grep -q ' 200 ' || die "$name: /healthz did not answer 200"
    echo "$ans" | grep -qi '^content-type: application/json' || die "$name: /healthz is not application/json"
    [ "$(echo "$ans" | sed '1,/^$/d')" = '{"status":"ok"}' ] || die "$name: /healthz body differs"
}
check_answer gatehouse "$GH_PORT"
check_answer nginx "$NGINX_PORT"

# to_ms VALUE: wrk's "512.00us", "1.20ms", "2.00s" in milliseconds
to_ms() {
    case "$1" in
    *us) calc "${1%us} / 1000" ;;
    *ms) calc "${1%ms}" ;;
    *s) calc "${1%s} * 1000" ;;
    *) echo nan ;;
    esac
}

# measure NAME PORT RUN PID...: one wrk run; a row per figure.
measure() {
    local name=$1 port=$2 run=$3
    shift 3
    local out="$BENCH_TMP/wrk-$name-$run.txt" t u0 s0 u1 s1
    t=$(cpu_ticks "$@")
    read -r u0 s0 <<<"$t"
    # in the background so that a signal stops the bench at once
    timeout $((DURATION + 30)) taskset -c "$CLIENT_CPU" \
        wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$port/healthz" >"$out" 2>&1 &
    local wrk_pid=$!
    track_pid "$wrk_pid"
    wait "$wrk_pid" || die "wrk failed against $name: $(tail -3 "$out")"
    t=$(cpu_ticks "$@")
    read -r u1 s1 <<<"$t"
    local reqs rps p99 non2xx errs ticks cpu_us user_pct
    reqs=$(awk '/requests in/ {print $1}' "$out")
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
    non2xx=$(awk '/Non-2xx/ {print $NF}' "$out")
    errs=$(awk -F'[ ,]+' '/Socket errors/ {print $4 + $6 + $8 + $10}' "$out")
    [ "${reqs:-0}" -gt 0 ] || die "wrk counted no responses from $name ($out)"
    [ -z "$non2xx" ] || echo "bench: warning: $name answered $non2xx non-2xx responses" >&2
    ticks=$((u1 - u0 + s1 - s0))
    [ "$ticks" -gt 0 ] || die "no CPU time measured for $name"
    cpu_us=$(calc "$ticks / $CLK_TCK * 1e6 / $reqs" "%.3f")
    user_pct=$(calc "100 * ($u1 - $u0) / $ticks" "%.0f")
    bench_row "$name" "$run" requests "$reqs" count
    bench_row "$name" "$run" requests_per_s "$rps" 1/s
    bench_row "$name" "$run" p99_latency "$p99" ms
    bench_row "$name" "$run" cpu_time "$(calc "$ticks / $CLK_TCK" "%.2f")" s
    bench_row "$name" "$run" cpu_per_response "$cpu_us" us
    bench_row "$name" "$run" cpu_user_share "$user_pct" %
    bench_row "$name" "$run" socket_errors "${errs:-0}" count
    printf '  %-9s run %d: %9.0f req/s  p99 %7.3f ms  cpu %5.2f s (%s%% user) / %8d = %6.3f us/response%s\n' \
        "$name" "$run" "$rps" "$p99" "$(calc "$ticks / $CLK_TCK")" "$user_pct" "$reqs" "$cpu_us" \
        "$([ "${errs:-0}" -gt 0 ] && echo "  ($errs socket errors)")"
    echo "| $name | $run | $rps | $p99 | $(calc "$ticks / $CLK_TCK" "%.2f") | $user_pct % | $reqs | $cpu_us |" \
        >>"$BENCH_TMP/table.md"
    echo "$cpu_us" >>"$BENCH_TMP/cpu-$name"
    echo "$rps" >>"$BENCH_TMP/rps-$name"
    echo "$p99" >>"$BENCH_TMP/p99-$name"
}

echo "core: wrk -t1 -c$CONNS -d${DURATION}s, $RUNS runs each, server on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU"
# warm-up, not counted
for port in "$GH_PORT" "$NGINX_PORT"; do
    timeout 30 taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 ||
        die "wrk warm-up failed on port $port"
done
# alternate, and swap who goes first each run (drift hits both alike)
for run in $(seq "$RUNS"); do
    if [ $((run % 2)) = 1 ]; then
        measure gatehouse "$GH_PORT" "$run" "$GH_PID"
        measure nginx "$NGINX_PORT" "$run" "$NGINX_PID" "$NGINX_WORKER"
    else
        measure nginx "$NGINX_PORT" "$run" "$NGINX_PID" "$NGINX_WORKER"
        measure gatehouse "$GH_PORT" "$run" "$GH_PID"
    fi
done

gh_cpu=$(median <"$BENCH_TMP/cpu-gatehouse")
ng_cpu=$(median <"$BENCH_TMP/cpu-nginx")
gh_rps=$(median <"$BENCH_TMP/rps-gatehouse")
ng_rps=$(median <"$BENCH_TMP/rps-nginx")
gh_p99=$(median <"$BENCH_TMP/p99-gatehouse")
ng_p99=$(median <"$BENCH_TMP/p99-nginx")
ratio=$(calc "$gh_cpu / $ng_cpu" "%.2f")
rps_ratio=$(calc "$gh_rps / $ng_rps" "%.2f")
verdict=$(awk -v r="$ratio" -v t="$TARGET" -v a="$AIM" 'BEGIN {
    if (r <= a) print "pass (aim met)"; else if (r <= t) print "pass (aim " a " missed)"; else print "miss" }')
for s in gatehouse nginx; do
    bench_row "$s" median cpu_per_response "$(median <"$BENCH_TMP/cpu-$s")" us
    bench_row "$s" median requests_per_s "$(median <"$BENCH_TMP/rps-$s")" 1/s
    bench_row "$s" median p99_latency "$(median <"$BENCH_TMP/p99-$s")" ms
done
bench_row gatehouse/nginx median cpu_per_response_ratio "$ratio" x
bench_row gatehouse/nginx median requests_per_s_ratio "$rps_ratio" x

bench_md <<EOF
## Server CPU per response (GET /healthz, keep-alive)

\`wrk -t1 -c$CONNS -d${DURATION}s --latency\` on CPU $CLIENT_CPU; each server on CPU $SERVER_CPU
with one worker, access log off; $RUNS runs each, alternating (odd runs
gatehouse first, even runs nginx first). CPU = user+system time of the
server process (all its threads; for nginx master+worker) from
/proc/PID/stat, divided by the responses wrk counted. Both answer
\`{"status":"ok"}\` as application/json with keep-alive, 1000 requests per
connection.

| server | run | requests/s | p99 ms | server CPU s | of it user | responses | CPU µs/response |
|---|---|---|---|---|---|---|---|
$(cat "$BENCH_TMP/table.md")

| median | requests/s | p99 ms | CPU µs/response |
|---|---|---|---|
| gatehouse | $gh_rps | $gh_p99 | $gh_cpu |
| nginx | $ng_rps | $ng_p99 | $ng_cpu |
| gatehouse/nginx | $rps_ratio | | **$ratio** |

Target: CPU per response ≤ $TARGET × nginx's, aim $AIM ×: **$verdict**.

EOF
bench_ratio "core: cpu/response gatehouse $gh_cpu us, nginx $ng_cpu us, ratio $ratio (target <= $TARGET, aim $AIM): $verdict; req/s ratio $rps_ratio"
