#!/usr/bin/env bash
# The shield's benchmarks (issue 4), three parts (SHIELD_PARTS, default
# "shed spray slowloris"):
#
#  shed      Server CPU per 429 refusal: wrk -t1 -c64 against a route
#            limited to 1 request/s per address (so nearly every answer is
#            429), gatehouse (--workers 1, access log off) against nginx
#            limit_req (bench/nginx/shield.conf: empty_gif content
#            handler, limit_req_status 429, limit_req_log_level info),
#            alternating, BENCH_RUNS runs each of BENCH_DURATION s.
#            Target: gatehouse <= 0.67 x nginx.
#  spray     SPRAY_COUNT (1,000,000) requests to POST /api/auth/sms-code,
#            each from its own 127.0.0.0/8 address bound before connect
#            (bench/tools/spray.c), at most SPRAY_SECONDS (120): resident
#            memory against the limiter's configured capacity, what the
#            prefix and global rules refused, and a signed-in user's
#            GET /api/me (20/s, keep-alive, another address) calm and
#            during the spray: success >= 99.9 %, p99 <= 2 x calm.
#  slowloris slowhttptest -H -c 3000 -i 10 -r 1000 -l SLOW_SECONDS (30)
#            while a legitimate client opens a new connection per request
#            (20/s, another address): success >= 99.9 %, slowhttptest
#            reports the service available. Twice: with the default
#            per-address connection cap (256: slowhttptest's connections
#            all come from 127.0.0.1) and with the cap raised to 4000.
#
# Environment: SHIELD_PARTS, BENCH_RUNS (3), BENCH_DURATION (5),
# SPRAY_COUNT, SPRAY_SECONDS, SLOW_SECONDS, and those of bench/lib.sh.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init shield

PARTS=${SHIELD_PARTS:-shed spray slowloris}
RUNS=${BENCH_RUNS:-3}
DURATION=${BENCH_DURATION:-5}
CONNS=64
SPRAY_COUNT=${SPRAY_COUNT:-1000000}
SPRAY_SECONDS=${SPRAY_SECONDS:-120}
SLOW_SECONDS=${SLOW_SECONDS:-30}
SPRAY="$BUILD/spray"
[ -x "$SPRAY" ] || die "$SPRAY not built"

stop_gatehouse() {
    stop_pid "$GH_PID"
}

# ---------------------------------------------------------------- shed
part_shed() {
    command -v wrk >/dev/null || die "wrk missing (apt-get install wrk)"
    start_gatehouse "$BENCH_TMP/gh-shed" --set 'shield.rules=anon:addr:1/1s'
    start_nginx shield.conf "$BENCH_TMP/nginx-shed"
    local a
    a=$(http_get "$GH_PORT" /api/policy | head -1)
    a=$(http_get "$GH_PORT" /api/policy | head -1)
    echo "$a" | grep -q ' 429 ' || die "gatehouse: /api/policy is not refused 429 ($a)"
    a=$(http_get "$NGINX_PORT" /limited | head -1)
    a=$(http_get "$NGINX_PORT" /limited | head -1)
    echo "$a" | grep -q ' 429 ' || die "nginx: /limited is not refused 429 ($a)"

    : >"$BENCH_TMP/shed-table.md"
    measure_shed() {
        local name=$1 url=$2 run=$3
        shift 3
        local out="$BENCH_TMP/wrk-shed-$name-$run.txt" u0 s0 u1 s1
        read -r u0 s0 <<<"$(cpu_ticks "$@")"
        timeout $((DURATION + 30)) taskset -c "$CLIENT_CPU" \
            wrk -t1 -c"$CONNS" -d"${DURATION}s" "$url" >"$out" 2>&1 &
        local wp=$!
        track_pid "$wp"
        wait "$wp" || die "wrk failed against $name: $(tail -3 "$out")"
        read -r u1 s1 <<<"$(cpu_ticks "$@")"
        local reqs non2xx ticks us rps
        reqs=$(awk '/requests in/ {print $1}' "$out")
        rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
        non2xx=$(awk '/Non-2xx/ {print $NF}' "$out")
        ticks=$((u1 - u0 + s1 - s0))
        [ "${reqs:-0}" -gt 0 ] && [ "$ticks" -gt 0 ] || die "no measure for $name ($out)"
        us=$(calc "$ticks / $CLK_TCK * 1e6 / $reqs" "%.3f")
        bench_row "$name" "$run" refusals "${non2xx:-0}" count
        bench_row "$name" "$run" responses "$reqs" count
        bench_row "$name" "$run" cpu_per_refusal "$us" us
        local user_pct
        user_pct=$(calc "100 * ($u1 - $u0) / $ticks" "%.0f")
        bench_row "$name" "$run" cpu_user_share "$user_pct" %
        printf '  %-9s run %d: %9.0f resp/s, %d of %d refused, cpu %5.2f s (%s%% user) = %6.3f us/refusal\n' \
            "$name" "$run" "$rps" "${non2xx:-0}" "$reqs" "$(calc "$ticks / $CLK_TCK")" "$user_pct" "$us"
        echo "| $name | $run | $rps | ${non2xx:-0} / $reqs | $(calc "$ticks / $CLK_TCK" "%.2f") | $user_pct % | $us |" \
            >>"$BENCH_TMP/shed-table.md"
        echo "$us" >>"$BENCH_TMP/shed-$name"
    }
    echo "shed: wrk -t1 -c$CONNS -d${DURATION}s on a 1/s-per-address route, $RUNS runs each"
    local gurl="http://127.0.0.1:$GH_PORT/api/policy" nurl="http://127.0.0.1:$NGINX_PORT/limited" run
    timeout 30 taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d1s "$gurl" >/dev/null 2>&1 || true
    timeout 30 taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d1s "$nurl" >/dev/null 2>&1 || true
    for run in $(seq "$RUNS"); do
        if [ $((run % 2)) = 1 ]; then
            measure_shed gatehouse "$gurl" "$run" "$GH_PID"
            measure_shed nginx "$nurl" "$run" "$NGINX_PID" "$NGINX_WORKER"
        else
            measure_shed nginx "$nurl" "$run" "$NGINX_PID" "$NGINX_WORKER"
            measure_shed gatehouse "$gurl" "$run" "$GH_PID"
        fi
    done
    local g n ratio verdict
    g=$(median <"$BENCH_TMP/shed-gatehouse")
    n=$(median <"$BENCH_TMP/shed-nginx")
    ratio=$(calc "$g / $n" "%.2f")
    verdict=$(awk -v r="$ratio" 'BEGIN { print (r <= 0.67 ? "pass" : "miss") }')
    bench_row gatehouse median cpu_per_refusal "$g" us
    bench_row nginx median cpu_per_refusal "$n" us
    bench_row gatehouse/nginx median cpu_per_refusal_ratio "$ratio" x
    bench_md <<EOF
## Shedding cost: server CPU per 429 refusal

One flooding client: \`wrk -t1 -c$CONNS -d${DURATION}s\` on CPU $CLIENT_CPU against a route
allowed 1 request/s per address, each server on CPU $SERVER_CPU with one worker and no
access log. gatehouse: \`GET /api/policy\` under \`shield.rules = anon:addr:1/1s\` (429
\`rate_limited\` JSON with Retry-After and X-RateLimit-*; refusals counted in /metrics,
never logged one by one). nginx: \`limit_req zone=perip\` (1r/s per \$binary_remote_addr)
in front of \`empty_gif\`, \`limit_req_status 429\`, \`limit_req_log_level info\` under an
error log at warn (nothing logged per refusal). CPU = user+system of the server
processes over the run / responses.

| server | run | responses/s | refused / responses | CPU s | of it user | CPU µs/refusal |
|---|---|---|---|---|---|---|
$(cat "$BENCH_TMP/shed-table.md")

Median: gatehouse **$g µs**, nginx **$n µs**, ratio **$ratio** (target ≤ 0.67): **$verdict**.

EOF
    bench_ratio "shield shed: cpu/refusal gatehouse $g us, nginx $n us, ratio $ratio (target <= 0.67): $verdict"
    stop_gatehouse
    stop_pid "$NGINX_PID"
}

# --------------------------------------------------------------- spray
# metric NAME_REGEX: the sum of the matching /metrics lines.
metric() {
    curl -s "http://127.0.0.1:$GH_ADMIN_PORT/metrics" -H "authorization: Bearer $(cat "$1/admin.token")" |
        awk -v re="$2" '$0 ~ re {s += $NF} END {printf "%d\n", s}'
}

part_spray() {
    local dir="$BENCH_TMP/gh-spray" mem=16m rules
    rules='register:addr:5/1m, register:prefix:20/1m, register:global:50/1s, anon:addr:100/1s:burst=200'
    start_gatehouse "$dir" --set "shield.limiter_memory=$mem" --set "shield.rules=$rules" \
        --set log.level=error
    local cookie
    cookie=$(register_user "$dir" "$GH_PORT")
    [ -n "$cookie" ] || die "no session for the probe user"
    http_get "$GH_PORT" /healthz >/dev/null
    local rss0 hwm0
    rss0=$(rss_kb "$GH_PID")
    echo "spray: limiter_memory $mem, rules: $rules; RSS before: $rss0 KiB"
    # warm-up, then calm
    taskset -c "$CLIENT_CPU" "$SPRAY" probe -t "$GH_PORT" -k "$cookie" -r 20 -d 2 >/dev/null
    taskset -c "$CLIENT_CPU" "$SPRAY" probe -t "$GH_PORT" -k "$cookie" -r 20 -d 10 \
        >"$BENCH_TMP/probe-calm.txt"
    # the probe, and the spray during it
    local probe_s=$((SPRAY_SECONDS + 10))
    taskset -c "$CLIENT_CPU" "$SPRAY" probe -t "$GH_PORT" -k "$cookie" -r 20 -d "$probe_s" \
        >"$BENCH_TMP/probe-spray.txt" &
    local pp=$!
    track_pid "$pp"
    sleep 1
    taskset -c "$CLIENT_CPU" "$SPRAY" spray -t "$GH_PORT" -n "$SPRAY_COUNT" -c 256 \
        -d "$SPRAY_SECONDS" >"$BENCH_TMP/spray.txt" &
    local sp=$!
    track_pid "$sp"
    local peak=0 r
    while kill -0 "$sp" 2>/dev/null; do
        r=$(rss_kb "$GH_PID")
        [ "$r" -gt "$peak" ] && peak=$r
        sleep 1
        kill -0 "$pp" 2>/dev/null || break
    done
    wait "$sp" || true
    kill -TERM "$pp" 2>/dev/null || true
    wait "$pp" 2>/dev/null || true
    local rss1
    rss1=$(rss_kb "$GH_PID")
    [ "$rss1" -gt "$peak" ] && peak=$rss1
    local v
    v() { awk -v k="$2" '$1 == k {print $2}' "$1"; }
    local sent done_ ok2 r429 errs el rate
    sent=$(v "$BENCH_TMP/spray.txt" sent)
    done_=$(v "$BENCH_TMP/spray.txt" done)
    ok2=$(awk '$1 == "status" && $2 == "2xx" {print $3}' "$BENCH_TMP/spray.txt")
    r429=$(awk '$1 == "status" && $2 == "429" {print $3}' "$BENCH_TMP/spray.txt")
    errs=$(v "$BENCH_TMP/spray.txt" errors)
    el=$(v "$BENCH_TMP/spray.txt" elapsed)
    rate=$(v "$BENCH_TMP/spray.txt" rate)
    local ev cap pref glob addr
    ev=$(metric "$dir" '^gatehouse_shield_limiter_evictions_total ')
    cap=$(metric "$dir" '^gatehouse_shield_limiter_capacity ')
    addr=$(metric "$dir" 'gatehouse_shield_limit_decisions_total\{rule="register:addr:[^"]*",result="refused"')
    pref=$(metric "$dir" 'gatehouse_shield_limit_decisions_total\{rule="register:prefix:[^"]*",result="refused"')
    glob=$(metric "$dir" 'gatehouse_shield_limit_decisions_total\{rule="register:global:[^"]*",result="refused"')
    local cs cp50 cp99 ss sp50 sp99 sreq cpok
    cs=$(v "$BENCH_TMP/probe-calm.txt" success_pct)
    cp50=$(v "$BENCH_TMP/probe-calm.txt" p50_ms)
    cp99=$(v "$BENCH_TMP/probe-calm.txt" p99_ms)
    ss=$(v "$BENCH_TMP/probe-spray.txt" success_pct)
    sp50=$(v "$BENCH_TMP/probe-spray.txt" p50_ms)
    sp99=$(v "$BENCH_TMP/probe-spray.txt" p99_ms)
    sreq=$(v "$BENCH_TMP/probe-spray.txt" requests)
    local growth limkib p99r verdict
    growth=$((peak - rss0))
    limkib=$((16 * 1024))
    p99r=$(calc "$sp99 / $cp99" "%.2f")
    local v1 v2 v3
    v1=$(awk -v s="$ss" 'BEGIN { print (s >= 99.9 ? "success pass" : "success miss") }')
    v2=$(awk -v r="$p99r" 'BEGIN { print (r <= 2 ? "p99 pass" : "p99 miss") }')
    v3=$(awk -v g="$growth" -v l="$limkib" 'BEGIN { print (g <= l + 65536 ? "memory pass" : "memory miss") }')
    verdict="$v1, $v2, $v3"
    for k in sent done_ ok2 r429 errs el rate ev cap addr pref glob rss0 peak growth cs cp50 cp99 ss sp50 sp99 p99r; do
        bench_row gatehouse 1 "spray_$k" "${!k}" ""
    done
    echo "  spray: sent $sent, answered $done_ in ${el}s ($rate/s): 2xx $ok2, 429 $r429, errors $errs"
    echo "  refused by rule: addr $addr, prefix $pref, global $glob; limiter capacity $cap keys, evictions $ev"
    echo "  RSS: $rss0 KiB before, peak $peak KiB (+$growth KiB; limiter table $limkib KiB)"
    echo "  /api/me calm: $cs % ok, p50 $cp50 ms, p99 $cp99 ms; during spray: $sreq requests, $ss % ok, p50 $sp50 ms, p99 $sp99 ms (x$p99r)"
    bench_md <<EOF
## Spray: one request from each of many addresses

\`bench/tools/spray\`: $sent connections, each from its own source address of
127.0.0.0/8 (bound before connect; 254 per /24), one \`POST /api/auth/sms-code\` each,
256 at a time, stopped after ${SPRAY_SECONDS} s at most; gatehouse on CPU $SERVER_CPU with one
worker, \`shield.limiter_memory = $mem\`, rules \`$rules\`.

| figure | value |
|---|---|
| requests answered | $done_ in ${el} s ($rate/s); errors $errs |
| 202 (passed every rule) | $ok2 |
| 429 | $r429 (by rule: addr $addr, prefix $pref, global $glob) |
| limiter capacity / evictions | $cap keys / $ev |
| resident memory | $rss0 KiB before, peak $peak KiB: +$growth KiB (limiter table: $limkib KiB, allocated at start) |
| /api/me calm (20/s, 10 s) | $cs % ok, p50 $cp50 ms, p99 $cp99 ms |
| /api/me during the spray | $sreq requests, $ss % ok, p50 $sp50 ms, p99 $sp99 ms (×$p99r calm) |

Targets: /api/me ≥ 99.9 % ok and p99 ≤ 2 × calm; memory within the table plus a
constant; the prefix and global rules keep refusing: **$verdict**.

EOF
    bench_ratio "shield spray: $done_ addresses in ${el}s; 429 $r429 (prefix $pref, global $glob), 2xx $ok2; RSS +$growth KiB (table $limkib KiB); /api/me $ss % ok, p99 $sp99 ms vs calm $cp99 ms (x$p99r): $verdict"
    stop_gatehouse
}

# ----------------------------------------------------------- slowloris
slow_once() {
    local label=$1
    shift
    local dir="$BENCH_TMP/gh-slow-$label"
    command -v slowhttptest >/dev/null || die "slowhttptest missing (apt-get install slowhttptest)"
    start_gatehouse "$dir" "$@"
    taskset -c "$CLIENT_CPU" slowhttptest -H -c 3000 -i 10 -r 1000 -l "$SLOW_SECONDS" \
        -u "http://127.0.0.1:$GH_PORT/api/policy" -p 3 >"$BENCH_TMP/slow-$label.txt" 2>&1 </dev/null &
    local sp=$!
    track_pid "$sp"
    sleep 1
    taskset -c "$CLIENT_CPU" "$SPRAY" probe -N -t "$GH_PORT" -u /api/policy -r 20 \
        -d $((SLOW_SECONDS - 2)) >"$BENCH_TMP/slowprobe-$label.txt" &
    local pp=$!
    track_pid "$pp"
    local maxconns=0 c
    while kill -0 "$pp" 2>/dev/null; do
        c=$(ss -Htn state established "( sport = :$GH_PORT )" 2>/dev/null | wc -l)
        [ "$c" -gt "$maxconns" ] && maxconns=$c
        sleep 1
    done
    wait "$pp" || true
    timeout $((SLOW_SECONDS + 30)) tail --pid="$sp" -f /dev/null || kill -TERM "$sp" 2>/dev/null || true
    wait "$sp" 2>/dev/null || true
    local avail succ p99 reqs
    avail=$(tr '\r' '\n' <"$BENCH_TMP/slow-$label.txt" | sed 's/\x1b\[[0-9;]*m//g' |
        grep -i 'service available' | tail -1 |
        sed 's/.*available: *//I' | awk '{print $1}')
    succ=$(awk '$1 == "success_pct" {print $2}' "$BENCH_TMP/slowprobe-$label.txt")
    p99=$(awk '$1 == "p99_ms" {print $2}' "$BENCH_TMP/slowprobe-$label.txt")
    reqs=$(awk '$1 == "requests" {print $2}' "$BENCH_TMP/slowprobe-$label.txt")
    local timeouts refused
    timeouts=$(metric "$dir" '^gatehouse_connections_refused_total\{limit="header_timeout"')
    refused=$(metric "$dir" '^gatehouse_connections_refused_total\{limit="per_addr"')
    bench_row gatehouse "$label" slowloris_probe_success "$succ" %
    bench_row gatehouse "$label" slowloris_probe_p99 "$p99" ms
    bench_row gatehouse "$label" slowloris_service_available "${avail:-unknown}" ""
    bench_row gatehouse "$label" slowloris_max_established "$maxconns" count
    echo "  slowloris ($label): legit $reqs new connections, $succ % ok, p99 $p99 ms; slowhttptest: service available ${avail:-?}; most established $maxconns"
    bench_row gatehouse "$label" slowloris_per_addr_refusals "$refused" count
    bench_row gatehouse "$label" slowloris_header_timeouts "$timeouts" count
    echo "  refused at the per-address cap $refused, closed at the header deadline $timeouts"
    echo "| $label | $maxconns | $refused | $timeouts | ${avail:-?} | $reqs | $succ % | $p99 |" >>"$BENCH_TMP/slow-table.md"
    stop_gatehouse
}

part_slowloris() {
    : >"$BENCH_TMP/slow-table.md"
    echo "slowloris: slowhttptest -H -c 3000 -i 10 -r 1000 -l $SLOW_SECONDS"
    slow_once default-cap
    slow_once cap-4000 --set limits.max_conns_per_addr=4000
    bench_md <<EOF
## Slowloris

\`slowhttptest -H -c 3000 -i 10 -r 1000 -l $SLOW_SECONDS -p 3\` against \`GET /api/policy\`
(all its connections from 127.0.0.1) while a legitimate client (127.0.0.2) opens a new
connection for each of 20 requests per second; gatehouse with one worker on CPU
$SERVER_CPU, defaults (\`limits.header_timeout = 10s\`, \`max_pending_headers = 4096\`),
once with the default per-address cap (256) and once with it raised to 4000.

| per-address cap | most established | refused at the cap | header deadline closes | slowhttptest: service available | legit requests | legit ok | legit p99 ms |
|---|---|---|---|---|---|---|---|
$(cat "$BENCH_TMP/slow-table.md")

Target: the legitimate client ≥ 99.9 % ok, and slowhttptest reports the service available.

EOF
    local line
    line=$(awk -F'|' '{printf "%s: legit%s ok, available %s; ", $2, $8, $6}' "$BENCH_TMP/slow-table.md")
    bench_ratio "shield slowloris: $line"
}

for p in $PARTS; do
    case "$p" in
    shed) part_shed ;;
    spray) part_spray ;;
    slowloris) part_slowloris ;;
    *) die "unknown part $p (shed, spray, slowloris)" ;;
    esac
done
