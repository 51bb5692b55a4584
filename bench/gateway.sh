#!/usr/bin/env bash
# The gateway against nginx proxy_pass, both in front of the same model
# server (an nginx answering chat completions from memory), in the same
# run with the same CPU placement: the proxy under test on SERVER_CPU, the
# model server and wrk on CLIENT_CPU (for the latency figures, by default,
# on SERVER_CPU too: BENCH_LAT_CPUS below).
#
# 1. Proxy overhead: wrk with one connection (requests one after another)
#    straight to the model server, through nginx and through gatehouse,
#    non-streamed and streamed (BENCH_LAT_EVENTS events); the latency a
#    proxy adds is its p50 minus the direct p50. Target: gatehouse <= nginx.
# 2. Relay cost: streamed answers of BENCH_EVENTS events with BENCH_CONNS
#    connections; the proxy's CPU time (user + system) divided by the events
#    relayed. Target: gatehouse <= 1.0 x nginx.
#
# gatehouse needs an API key: BENCH_GATEWAY_KEY, or one is created through
# the identity API (sms-code, the code from sms-outbox.jsonl, register,
# POST /api/keys).
#
# Environment: BENCH_RUNS (3), BENCH_DURATION seconds (5), BENCH_CONNS (8),
# BENCH_EVENTS (1000), BENCH_LAT_EVENTS (20), and those of bench/lib.sh.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init gateway

RUNS=${BENCH_RUNS:-3}
DURATION=${BENCH_DURATION:-5}
CONNS=${BENCH_CONNS:-8}
EVENTS=${BENCH_EVENTS:-1000}
LAT_EVENTS=${BENCH_LAT_EVENTS:-20}
UP_PORT=$((BENCH_PORT_BASE + 3))
command -v wrk >/dev/null || die "wrk missing (apt-get install wrk)"
command -v perl >/dev/null || die "perl missing"
command -v jq >/dev/null || die "jq missing (apt-get install jq)"

# ---- the model server ----
event='data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" tok"},"finish_reason":null}]}'
usage='data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":@N@,"total_tokens":@T@}}'
plain='{"id":"chatcmpl-bench","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the bench"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}}'
sse_body() { # N: N events, the usage chunk and [DONE]
    local n=$1 i
    for ((i = 0; i < n; i++)); do printf '%s\n\n' "$event"; done
    printf '%s\n\n' "${usage//@N@/$n}" | sed "s/@T@/$((n + 9))/"
    printf 'data: [DONE]\n\n'
}
start_model_server() { # DIR EVENTS
    local dir=$1 n=$2
    mkdir -p "$dir"
    sse_body "$n" >"$dir/sse.txt"
    printf '%s' "$plain" >"$dir/plain.txt"
    # nginx's worker may run as another user (nobody) when started as root
    chmod o+x "$BENCH_TMP" "$dir"
    chmod o+r "$dir/sse.txt"
    PLAIN_FILE="$dir/plain.txt" perl -pe '
        BEGIN { local $/; open G, $ENV{PLAIN_FILE}; $plain = <G>; }
        s/\@PLAIN\@/$plain/;' "$BENCH_ROOT/bench/nginx/gateway-upstream.conf" |
        sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$UP_PORT|g" -e "s|@NOFILE@|$(ulimit -n)|g" >"$dir/nginx.conf"
    port_must_be_free "$UP_PORT"
    taskset -c "$CLIENT_CPU" "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" \
        -g "daemon off; pid $dir/nginx.pid;" >"$dir/nginx.out" 2>&1 &
    UP_PID=$!
    track_pid "$UP_PID"
    wait_healthz "$UP_PORT" "$UP_PID" "$dir/error.log"
}

start_proxies() { # EVENTS
    local n=$1 tag=$2
    start_model_server "$BENCH_TMP/model-$tag" "$n"
    mkdir -p "$BENCH_TMP/gh-$tag"
    cat >"$BENCH_TMP/gh-$tag/upstreams.ini" <<INI
[upstream plain]
model = bench-plain
base_url = http://127.0.0.1:$UP_PORT/plain/v1
max_concurrent = 1024
[upstream sse]
model = bench-sse
base_url = http://127.0.0.1:$UP_PORT/sse/v1
max_concurrent = 1024
INI
    # one data directory for both phases: one registration (the shield
    # limits how many a client may make), the same key
    start_gatehouse "$BENCH_TMP/gh" --set gateway.upstreams_file="$BENCH_TMP/gh-$tag/upstreams.ini" \
        --set gateway.echo=false --set gateway.user_concurrency=0 --set gateway.key_concurrency=0
    start_proxy_nginx "$BENCH_TMP/nginx-$tag"
    [ -n "${KEY:-}" ] || KEY=$(api_key "$BENCH_TMP/gh")
}

# start_proxy_nginx DIR: nginx proxy_pass to the model server, one worker
# on SERVER_CPU (start_nginx of lib.sh, with the upstream's port filled in)
start_proxy_nginx() {
    local dir=$1
    port_must_be_free "$NGINX_PORT"
    mkdir -p "$dir"
    sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$NGINX_PORT|g" -e "s|@UPORT@|$UP_PORT|g" \
        -e "s|@NOFILE@|$(ulimit -n)|g" "$BENCH_ROOT/bench/nginx/gateway-proxy.conf" >"$dir/nginx.conf"
    taskset -c "$SERVER_CPU" "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" \
        -g "daemon off; pid $dir/nginx.pid;" >"$dir/nginx.out" 2>&1 &
    NGINX_PID=$!
    track_pid "$NGINX_PID"
    wait_healthz "$NGINX_PORT" "$NGINX_PID" "$dir/error.log"
    NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -1)
    [ -n "$NGINX_WORKER" ] || die "nginx worker process not found"
}

stop_proxies() {
    stop_pid "$GH_PID"
    stop_pid "$NGINX_PID"
    stop_pid "$UP_PID"
}

# api_key DATADIR: a key through the identity API (or BENCH_GATEWAY_KEY)
api_key() {
    if [ -n "${BENCH_GATEWAY_KEY:-}" ]; then
        echo "$BENCH_GATEWAY_KEY"
        return
    fi
    local data=$1 phone="+8613$((RANDOM % 90 + 10))$((RANDOM % 9000 + 1000))$((RANDOM % 900 + 100))"
    local base="http://127.0.0.1:$GH_PORT" code jar="$BENCH_TMP/cookies" csrf
    curl -fsS -o /dev/null -H 'content-type: application/json' \
        -d "{\"phone\":\"$phone\",\"purpose\":\"register\"}" "$base/api/auth/sms-code" ||
        die "cannot create an API key (identity API); set BENCH_GATEWAY_KEY"
    sleep 0.3
    code=$(grep -F "\"$phone\"" "$data/sms-outbox.jsonl" | tail -1 | jq -r .code)
    curl -fsS -o /dev/null -c "$jar" -H 'content-type: application/json' \
        -d "{\"phone\":\"$phone\",\"code\":\"$code\",\"password\":\"bench password 12345\"}" \
        "$base/api/auth/register" || die "register failed"
    csrf=$(awk '$6 == "gh_csrf" {print $7}' "$jar")
    curl -fsS -b "$jar" -H 'content-type: application/json' -H "x-csrf-token: $csrf" \
        -d '{"name":"bench"}' "$base/api/keys" | jq -r .key
}

# wrk's latency figures ("512.00us", "1.20ms") in microseconds
to_us() {
    case "$1" in
    *us) calc "${1%us}" ;;
    *ms) calc "${1%ms} * 1000" ;;
    *s) calc "${1%s} * 1000000" ;;
    *) echo nan ;;
    esac
}

# wrk_run OUT CONNS URL MODEL STREAM [auth]: one wrk run with a POST body
wrk_run() {
    local out=$1 conns=$2 url=$3 model=$4 stream=$5 auth=${6:-}
    cat >"$BENCH_TMP/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"model":"$model","stream":$stream,"messages":[{"role":"user","content":"hello bench"}]}'
wrk.headers["Content-Type"] = "application/json"
LUA
    [ -n "$auth" ] && echo "wrk.headers[\"Authorization\"] = \"Bearer $auth\"" >>"$BENCH_TMP/post.lua"
    timeout $((DURATION + 30)) taskset -c "$CLIENT_CPU" \
        wrk -t1 -c"$conns" -d"${DURATION}s" --latency -s "$BENCH_TMP/post.lua" "$url" >"$out" 2>&1 &
    local pid=$!
    track_pid "$pid"
    wait "$pid" || die "wrk failed: $(tail -3 "$out")"
    grep -q 'Non-2xx' "$out" && die "non-2xx answers in $out: $(grep Non-2xx "$out")"
    return 0
}

# BENCH_PERF=DIR: perf record -g of gatehouse during its runs, into
# DIR/perf-NAME.data (perf report -i …); the figures of a profiled run
# carry perf's own cost.
PERF_PID=
perf_start() {
    [ -n "${BENCH_PERF:-}" ] || return 0
    mkdir -p "$BENCH_PERF"
    perf record -g -q -o "$BENCH_PERF/perf-$1.data" -p "$GH_PID" >/dev/null 2>&1 &
    PERF_PID=$!
    track_pid "$PERF_PID"
    sleep 0.3
}
perf_stop() {
    [ -n "$PERF_PID" ] || return 0
    kill -INT "$PERF_PID" 2>/dev/null || true
    wait "$PERF_PID" 2>/dev/null || true
    PERF_PID=
}

p50_us() { to_us "$(awk '$1 == "50%" {print $2}' "$1")"; }
requests_of() { awk '/requests in/ {print $1}' "$1"; }

# ---- 1. latency added ----
# BENCH_LAT_CPUS=one (default): every process of this phase on SERVER_CPU,
# so the figure is the proxy's own work on the path, not the cost of waking
# another CPU; =split: the placement of phase 2.
SPLIT_CLIENT_CPU=$CLIENT_CPU
[ "${BENCH_LAT_CPUS:-one}" = one ] && CLIENT_CPU=$SERVER_CPU
start_proxies "$LAT_EVENTS" lat
for mode in plain sse; do
    stream=false
    [ $mode = sse ] && stream=true
    for run in $(seq "$RUNS"); do
        # the order alternates (odd runs: nginx first; even: gatehouse
        # first) so a drift of the machine does not favour one of them
        wrk_run "$BENCH_TMP/d-$mode-$run" 1 "http://127.0.0.1:$UP_PORT/$mode/v1/chat/completions" m $stream
        for who in $([ $((run % 2)) = 1 ] && echo "n g" || echo "g n"); do
            if [ "$who" = n ]; then
                wrk_run "$BENCH_TMP/n-$mode-$run" 1 "http://127.0.0.1:$NGINX_PORT/$mode/v1/chat/completions" m $stream
            else
                perf_start "lat-$mode-$run"
                wrk_run "$BENCH_TMP/g-$mode-$run" 1 "http://127.0.0.1:$GH_PORT/v1/chat/completions" "bench-$mode" $stream "$KEY"
                perf_stop
            fi
        done
        d=$(p50_us "$BENCH_TMP/d-$mode-$run")
        n=$(p50_us "$BENCH_TMP/n-$mode-$run")
        g=$(p50_us "$BENCH_TMP/g-$mode-$run")
        bench_row direct "$run" "p50_$mode" "$d" us
        bench_row nginx "$run" "added_p50_$mode" "$(calc "$n - $d")" us
        bench_row gatehouse "$run" "added_p50_$mode" "$(calc "$g - $d")" us
        echo "$mode run $run: p50 direct ${d} us, nginx +$(calc "$n - $d") us, gatehouse +$(calc "$g - $d") us"
    done
done
stop_proxies
LAT_CLIENT_CPU=$CLIENT_CPU
CLIENT_CPU=$SPLIT_CLIENT_CPU

# ---- 2. relay cost ----
start_proxies "$EVENTS" relay
for run in $(seq "$RUNS"); do
    for who in $([ $((run % 2)) = 1 ] && echo "nginx gatehouse" || echo "gatehouse nginx"); do
        out="$BENCH_TMP/relay-$who-$run"
        if [ $who = nginx ]; then pids=("$NGINX_WORKER") url="http://127.0.0.1:$NGINX_PORT/sse/v1/chat/completions" model=m auth=
        else pids=("$GH_PID") url="http://127.0.0.1:$GH_PORT/v1/chat/completions" model=bench-sse auth=$KEY; fi
        [ $who = gatehouse ] && perf_start "relay-$run"
        read -r u0 s0 <<<"$(cpu_ticks "${pids[@]}")"
        wrk_run "$out" "$CONNS" "$url" "$model" true "$auth"
        read -r u1 s1 <<<"$(cpu_ticks "${pids[@]}")"
        [ $who = gatehouse ] && perf_stop
        reqs=$(requests_of "$out")
        us=$(calc "(($u1 - $u0) + ($s1 - $s0)) * 1000000 / $CLK_TCK / ($reqs * ($EVENTS + 2))")
        bench_row "$who" "$run" cpu_per_event "$us" us
        echo "relay run $run: $who $us us of CPU per event ($reqs answers of $EVENTS events)"
    done
done
stop_proxies

# ---- summary ----
med() { # SERVER METRIC
    awk -F, -v s="$1" -v m="$2" '$2 == s && $3 != "median" && $4 == m {print $5}' "$BENCH_OUT/$BENCH_GROUP/rows.csv" | median
}
for mode in plain sse; do
    gn=$(med nginx "added_p50_$mode")
    gg=$(med gatehouse "added_p50_$mode")
    bench_row nginx median "added_p50_$mode" "$gn" us
    bench_row gatehouse median "added_p50_$mode" "$gg" us
    bench_ratio "gateway: latency added, $mode, p50: gatehouse $gg us vs nginx $gn us = $(calc "$gg / $gn") x (target <= 1.0)"
done
cn=$(med nginx cpu_per_event)
cg=$(med gatehouse cpu_per_event)
bench_ratio "gateway: relay CPU per SSE event: gatehouse $cg us vs nginx $cn us = $(calc "$cg / $cn") x (target <= 1.0)"
bench_md <<MD
### Gateway: proxy overhead and relay cost (bench/gateway.sh)

Model server: nginx answering from memory. Latency: proxies on CPU $SERVER_CPU, model server and wrk on CPU $LAT_CLIENT_CPU;
relay cost: proxies on CPU $SERVER_CPU, model server and wrk on CPU $CLIENT_CPU.
Median of $RUNS runs of ${DURATION}s (the order of nginx and gatehouse alternates between runs).

| figure | gatehouse | nginx proxy_pass | ratio |
|---|---|---|---|
| latency added, non-streamed, p50 | $(med gatehouse added_p50_plain) us | $(med nginx added_p50_plain) us | $(calc "$(med gatehouse added_p50_plain) / $(med nginx added_p50_plain)") |
| latency added, streamed ($LAT_EVENTS events), p50 | $(med gatehouse added_p50_sse) us | $(med nginx added_p50_sse) us | $(calc "$(med gatehouse added_p50_sse) / $(med nginx added_p50_sse)") |
| CPU per relayed event ($EVENTS per answer, $CONNS connections) | $cg us | $cn us | $(calc "$cg / $cn") |
MD
