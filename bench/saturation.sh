#!/usr/bin/env bash
# Existing users first when the server's CPU is saturated (issue 11).
#
# gatehouse with WORKERS workers on the server CPUs; SPRAY_PROCS spray
# processes (bench/tools/spray) on the client CPUs, each request a new
# connection from its own 127.x.y.z address (POST /api/auth/sms-code,
# Connection: close), as fast as they go; and legitimate clients on the
# client CPUs, 20 requests/s each: a logged-in keep-alive client on
# /api/me, a client opening a new connection per request on /api/me, and
# the same two on /healthz. CALM_SECONDS of probes alone, then
# SPRAY_SECONDS of spray with the probes. Then the same spray and the
# /healthz probes against nginx (limit_req + limit_conn per address in
# front of empty_gif, bench/nginx/saturation.conf, as many workers), in
# the same run.
#
# Figures: the probes' success and p50/p99 calm and under spray, server
# CPU per spray request (user+system of the server processes over the
# spray / spray requests answered), the spray's answers by status, and
# penalty-box entries when gatehouse has one. Targets: logged-in
# keep-alive p99 under spray <= 2 x calm and <= nginx's keep-alive p99;
# new-connection clients >= 99.9 % ok.
#
# Environment: WORKERS (1), SPRAY_PROCS (1), CPUS ("SERVER:CLIENT" CPU
# lists for taskset, default "0:1"; e.g. CPUS=0-3:4-15 WORKERS=4
# SPRAY_PROCS=8 on 16 cores), CALM_SECONDS (8), SPRAY_SECONDS (20),
# SPRAY_CONC (256 connections at once per spray process), SAT_RULES (the
# shield's rules; by default a global rule for the register class that
# the spray drives into refusing, so both the served and the refused
# paths are measured), and those of bench/lib.sh.
#
# PROBE_RT (1): the probes run at real-time priority (chrt -f 50) where
# the machine allows it. They share the client CPUs with the spray, and
# without it a probe's figure is mostly its own wait for a CPU the spray
# holds (the kernel's time slice, milliseconds), the same for both
# servers; with it, it is the server's latency. PROBE_RT=0 measures the
# probes as ordinary processes.
#
# CPU_WARM (1): no CPU halts while idle for the whole run: the script
# holds a CPU latency request of 0 (/dev/cpu_dma_latency, PM QoS), so the
# kernel's idle loop polls instead of halting, and the request ends with
# the script. On a virtual machine a halted vCPU takes up to milliseconds
# to wake for a request: calm phases suffered that and spray phases
# (every CPU busy) did not, so "p99 under spray <= 2 x calm" compared the
# spray with the hypervisor. (A SCHED_IDLE busy loop did the same before,
# and was worse: the scheduler gave it a whole tick, 4 ms at HZ=250, now
# and then while the server's loop was runnable, so the spray phases
# paid stalls of 4 ms that no server caused.)
#
# PENALTY (off) runs gatehouse with its penalty box: "memory" sets
# shield.ban_after/ban_window/ban_time (BAN_AFTER 200, BAN_WINDOW 10s,
# BAN_TIME 10m), so that the spray's /24s, refused by the prefix rule,
# are banned: their SYNs dropped by the listening sockets' filter (closed
# at accept where the kernel refuses the process a socket filter; the
# report says which); "kernel" also sets shield.kernel_ban,
# so that their SYNs are dropped by nftables: the whole run (both
# servers, spray, probes) then happens in a network namespace the script
# makes (unshare -n), never on the host's firewall, and is skipped with a
# message where that cannot be done. With a penalty box the spray is a
# botnet that keeps sending: its sources cycle through SPRAY_ADDRS (4064:
# 16 /24s) addresses per process, keeps SPRAY_CONC (1024) connections at
# once and gives up on a connection that has no answer after
# SPRAY_TIMEOUT_MS (100; counted as timeouts), for both servers. Extra figures: server CPU per spray attempt after the first
# second of the spray (CPU from spray start + 1 s to its end / connections
# the spray started in that window), its ratio to nginx's (target <= 0.2
# with the penalty box), bans, closes at accept, kernel-set additions and
# dropped packets. Results go to the group saturation-$PENALTY
# (bench/results/saturation-kernel.md), not over saturation.md.
set -euo pipefail
PENALTY=${PENALTY:-off}
case $PENALTY in
off | memory | kernel) ;;
*)
    echo "saturation: PENALTY must be off, memory or kernel (not '$PENALTY')" >&2
    exit 2
    ;;
esac
if [ "$PENALTY" = kernel ] && [ -z "${GH_SAT_NETNS:-}" ]; then
    # nftables only inside a network namespace of our own: the host's
    # firewall is never touched
    for t in unshare ip nft; do
        if ! command -v "$t" >/dev/null; then
            echo "saturation: PENALTY=kernel skipped: $t not found (util-linux, iproute2, nftables)" >&2
            exit 0
        fi
    done
    if ! err=$(unshare -n sh -c 'ip link set lo up && nft list tables' 2>&1); then
        echo "saturation: PENALTY=kernel skipped: cannot make a network namespace with nftables here (needs root, nf_tables): ${err:0:200}" >&2
        exit 0
    fi
    # shellcheck disable=SC2016 # expanded by the inner bash
    GH_SAT_NETNS=1 exec unshare -n bash -c 'ip link set lo up && exec bash "$0" "$@"' "$0" "$@"
fi
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
if [ "$PENALTY" = off ]; then bench_init saturation; else bench_init saturation "saturation-$PENALTY"; fi

WORKERS=${WORKERS:-1}
SPRAY_PROCS=${SPRAY_PROCS:-1}
CPUS=${CPUS:-$SERVER_CPU:$CLIENT_CPU}
SERVER_CPU=${CPUS%%:*}
CLIENT_CPU=${CPUS#*:}
CALM_SECONDS=${CALM_SECONDS:-8}
SPRAY_SECONDS=${SPRAY_SECONDS:-20}
# with a penalty box the spray gives up on dropped SYNs: more at once,
# so that its attempts per second stay near what the servers answer
if [ "$PENALTY" = off ]; then SPRAY_CONC=${SPRAY_CONC:-256}; else SPRAY_CONC=${SPRAY_CONC:-1024}; fi
SAT_RULES=${SAT_RULES:-register:addr:5/1m, register:prefix:20/1m, register:global:200/1s, anon:addr:100/1s:burst=200}
SPRAY_ADDRS=${SPRAY_ADDRS:-4064}
SPRAY_TIMEOUT_MS=${SPRAY_TIMEOUT_MS:-100}
BAN_AFTER=${BAN_AFTER:-200}
BAN_WINDOW=${BAN_WINDOW:-10s}
BAN_TIME=${BAN_TIME:-10m}
export NGINX_WORKERS=$WORKERS
# the spray's options besides its addresses; every run marks its first second
SPRAY_OPTS=(-m 1000)
PENALTY_SET=()
if [ "$PENALTY" != off ]; then
    SPRAY_OPTS+=(-a "$SPRAY_ADDRS" -T "$SPRAY_TIMEOUT_MS")
    PENALTY_SET=(--set "shield.ban_after=$BAN_AFTER" --set "shield.ban_window=$BAN_WINDOW"
        --set "shield.ban_time=$BAN_TIME")
    [ "$PENALTY" = kernel ] && PENALTY_SET+=(--set shield.kernel_ban=on)
fi
SPRAY="$BUILD/spray"
CPU_WARM=${CPU_WARM:-1}

if [ "$CPU_WARM" = 1 ] && [ -w /dev/cpu_dma_latency ]; then
    # the request holds while the file is open: a sleeper keeps it
    sh -c 'printf 0 >&9 && exec sleep 100000' 9>/dev/cpu_dma_latency &
    track_pid "$!"
    warm_desc="CPUs poll instead of halting while idle (a CPU latency request of 0, CPU_WARM=1)"
else
    warm_desc="CPUs halt while idle (CPU_WARM=0 or no /dev/cpu_dma_latency): calm figures include waking them"
fi
[ -x "$SPRAY" ] || die "$SPRAY not built"

v() { awk -v k="$2" '$1 == k {print $2}' "$1"; }

# the figures, by "server.what" (run_server fills it, the report reads it)
declare -A FIG=()

# gh_metric DIR REGEX: the sum of gatehouse's matching /metrics lines.
gh_metric() {
    curl -s "http://127.0.0.1:$GH_ADMIN_PORT/metrics" -H "authorization: Bearer $(cat "$1/admin.token")" |
        awk -v re="$2" '$0 ~ re {s += $NF} END {printf "%d\n", s}'
}

# probes PHASE PORT SECONDS COOKIE: the legitimate clients, in the
# background (PROBE_PIDS); /api/me only with a cookie (gatehouse).
PROBE_RT=${PROBE_RT:-1}
PROBE_PRIO=()
if [ "$PROBE_RT" = 1 ] && chrt -f 50 true 2>/dev/null; then
    PROBE_PRIO=(chrt -f 50)
fi
PROBE_PIDS=()
probes() {
    local phase=$1 port=$2 secs=$3 cookie=$4
    PROBE_PIDS=()
    local src=2 what
    for what in me-ka me-new hz-ka hz-new; do
        local path=/healthz args=()
        case $what in me-*) [ -n "$cookie" ] || continue; path=/api/me; args=(-k "$cookie") ;; esac
        case $what in *-new) args+=(-N) ;; esac
        taskset -c "$CLIENT_CPU" "${PROBE_PRIO[@]}" "$SPRAY" probe -t "$port" -u "$path" "${args[@]}" -r 20 \
            -d "$secs" -s "127.0.0.$src" -S 2 >"$BENCH_TMP/probe-$phase-$what.txt" \
            2>"$BENCH_TMP/probe-$phase-$what.slow" &
        PROBE_PIDS+=($!)
        track_pid "$!"
        src=$((src + 1))
    done
}

wait_probes() {
    local p
    for p in "${PROBE_PIDS[@]}"; do wait "$p" || true; done
}

# run_server NAME PORT COOKIE PIDS...: calm, then spray; sets globals
# with the figures (read by report).
run_server() {
    local name=$1 port=$2 cookie=$3
    shift 3
    echo "$name: calm ${CALM_SECONDS}s"
    taskset -c "$CLIENT_CPU" "$SPRAY" probe -t "$port" -u /healthz -r 20 -d 1 >/dev/null
    local cu0 cs0 cu1 cs1
    read -r cu0 cs0 <<<"$(cpu_ticks "$@")"
    probes "$name-calm" "$port" "$CALM_SECONDS" "$cookie"
    wait_probes
    read -r cu1 cs1 <<<"$(cpu_ticks "$@")"
    # the probes' own cost (server CPU per second, calm), taken off below
    local calm_cps
    calm_cps=$(calc "($cu1 - $cu0 + $cs1 - $cs0) / $CLK_TCK / $CALM_SECONDS" "%.4f")
    echo "$name: spray ${SPRAY_SECONDS}s ($SPRAY_PROCS process(es), $SPRAY_CONC at once each)"
    probes "$name-spray" "$port" $((SPRAY_SECONDS - 2)) "$cookie"
    local sp=() i u0 s0 u1 s1 um sm
    read -r u0 s0 <<<"$(cpu_ticks "$@")"
    for i in $(seq 0 $((SPRAY_PROCS - 1))); do
        taskset -c "$CLIENT_CPU" "$SPRAY" spray -t "$port" -n 100000000 -c "$SPRAY_CONC" \
            -d "$SPRAY_SECONDS" -o $((i * 5000000)) "${SPRAY_OPTS[@]}" \
            >"$BENCH_TMP/spray-$name-$i.txt" &
        sp+=($!)
        track_pid "$!"
    done
    sleep 1 # the spray's first second, marked by each process (-m 1000)
    read -r um sm <<<"$(cpu_ticks "$@")"
    for i in "${sp[@]}"; do wait "$i" || true; done
    read -r u1 s1 <<<"$(cpu_ticks "$@")"
    wait_probes
    local done_=0 r429=0 other=0 errs=0 tmo=0 late=0 f ms
    for f in "$BENCH_TMP"/spray-"$name"-*.txt; do
        done_=$((done_ + $(v "$f" "done")))
        errs=$((errs + $(v "$f" errors)))
        tmo=$((tmo + $(v "$f" timeouts)))
        ms=$(v "$f" mark_sent)
        late=$((late + $(v "$f" sent) - ${ms:-0}))
        r429=$((r429 + $(awk '$1 == "status" && $2 == "429" {print $3}' "$f")))
    done
    local answered=$((done_ - errs - tmo))
    other=$((answered - r429))
    local ticks=$((u1 - u0 + s1 - s0)) us="-" us_late="-"
    [ "$answered" -gt 0 ] && us=$(calc "$ticks / $CLK_TCK * 1e6 / $answered" "%.1f")
    # per attempt after the first second: what a ban saves shows there
    [ "$late" -gt 0 ] && us_late=$(calc "($u1 - $um + $s1 - $sm) / $CLK_TCK * 1e6 / $late" "%.2f")
    # the same, net of the probes' calm cost over the window (SPRAY_SECONDS - 1)
    local us_net="-"
    # (0 when the window cost no more than calm: nothing measurable)
    [ "$late" -gt 0 ] && us_net=$(calc "(($u1 - $um + $s1 - $sm) / $CLK_TCK - $calm_cps * ($SPRAY_SECONDS - 1)) * 1e6 / $late" "%.2f")
    us_net=$(awk -v x="$us_net" 'BEGIN { print (x == "-" ? x : (x + 0 < 0 ? "0.00" : x)) }')
    local rate
    rate=$(calc "$answered / $SPRAY_SECONDS" "%.0f")
    bench_row "$name" 1 spray_answered "$answered" count
    bench_row "$name" 1 spray_refused_429 "$r429" count
    bench_row "$name" 1 spray_errors "$errs" count
    bench_row "$name" 1 spray_timeouts "$tmo" count
    bench_row "$name" 1 cpu_per_spray_request "$us" us
    bench_row "$name" 1 spray_attempts_after_1s "$late" count
    bench_row "$name" 1 cpu_per_spray_attempt_after_1s "$us_late" us
    bench_row "$name" 1 cpu_per_spray_attempt_after_1s_net_of_calm "$us_net" us
    bench_row "$name" 1 cpu_calm_per_s "$calm_cps" s
    printf '  spray: %s answered (%s/s), 429 %s, other answers %s, errors %s, timeouts %s; server CPU %.2f s = %s us/request\n' \
        "$answered" "$rate" "$r429" "$other" "$errs" "$tmo" "$(calc "$ticks / $CLK_TCK")" "$us"
    printf '  after the first second: %s attempts, server CPU %.2f s = %s us/attempt (%s net of the calm %.3f s/s)\n' \
        "$late" "$(calc "($u1 - $um + $s1 - $sm) / $CLK_TCK")" "$us_late" "$us_net" "$calm_cps"
    FIG[$name.us_net]=$us_net
    FIG[$name.calm_cps]=$calm_cps
    FIG[$name.tmo]=$tmo
    FIG[$name.late]=$late
    FIG[$name.us_late]=$us_late
    FIG[$name.cpu_late]=$(calc "($u1 - $um + $s1 - $sm) / $CLK_TCK" "%.2f")
    FIG[$name.answered]=$answered
    FIG[$name.rate]=$rate
    FIG[$name.r429]=$r429
    FIG[$name.other]=$other
    FIG[$name.errs]=$errs
    FIG[$name.us]=$us
    local what phase
    for phase in calm spray; do
        for what in me-ka me-new hz-ka hz-new; do
            f="$BENCH_TMP/probe-$name-$phase-$what.txt"
            [ -f "$f" ] || continue
            local ok p50 p99 n
            ok=$(v "$f" success_pct)
            p50=$(v "$f" p50_ms)
            p99=$(v "$f" p99_ms)
            n=$(v "$f" requests)
            bench_row "$name" 1 "${what}_${phase}_success" "$ok" %
            bench_row "$name" 1 "${what}_${phase}_p50" "$p50" ms
            bench_row "$name" 1 "${what}_${phase}_p99" "$p99" ms
            printf '  %-6s %-5s %4s requests, %6s %% ok, p50 %7s ms, p99 %7s ms\n' "$what" "$phase" "$n" "$ok" "$p50" "$p99"
            echo "| $name | $what | $phase | $n | $ok % | $p50 | $p99 |" >>"$BENCH_TMP/probe-table.md"
            FIG[$name.$what.$phase.ok]=$ok
            FIG[$name.$what.$phase.p99]=$p99
        done
    done
}

: >"$BENCH_TMP/probe-table.md"

# ---- gatehouse
dir="$BENCH_TMP/gh"
start_gatehouse "$dir" --set "shield.rules=$SAT_RULES" --set log.level=error --workers "$WORKERS" \
    "${PENALTY_SET[@]}"
# start_gatehouse pins to BENCH_SERVER_CPU; re-pin every thread to the server CPUs
taskset -a -p -c "$SERVER_CPU" "$GH_PID" >/dev/null
cookie=$(register_user "$dir" "$GH_PORT")
[ -n "$cookie" ] || die "no session for the probe user"
run_server gatehouse "$GH_PORT" "$cookie" "$GH_PID"
bans=$(gh_metric "$dir" '^gatehouse_shield_bans_total')
at_accept=$(gh_metric "$dir" '^gatehouse_shield_ban_refused_total')
k_added=$(gh_metric "$dir" '^gatehouse_shield_kernel_ban_added_total')
k_drops=$(gh_metric "$dir" '^gatehouse_shield_kernel_ban_dropped_packets_total')
k_active=$(gh_metric "$dir" '^gatehouse_shield_kernel_ban_active')
early=$(gh_metric "$dir" '^gatehouse_shield_refused_before_body_total')
sock=$(gh_metric "$dir" '^gatehouse_shield_socket_ban_entries')
for m in bans at_accept k_added k_drops k_active early sock; do bench_row gatehouse 1 "$m" "${!m}" count; done
stop_pid "$GH_PID"

# ---- nginx
start_nginx saturation.conf "$BENCH_TMP/nginx"
taskset -a -p -c "$SERVER_CPU" "$NGINX_PID" >/dev/null
# shellcheck disable=SC2046 # one pid per word
for p in $(pgrep -P "$NGINX_PID"); do taskset -p -c "$SERVER_CPU" "$p" >/dev/null; done
# shellcheck disable=SC2046
run_server nginx "$NGINX_PORT" "" "$NGINX_PID" $(pgrep -P "$NGINX_PID")
stop_pid "$NGINX_PID"

# ---- report
g_ka_calm=${FIG[gatehouse.me-ka.calm.p99]}
g_ka_spray=${FIG[gatehouse.me-ka.spray.p99]}
n_ka_spray=${FIG[nginx.hz-ka.spray.p99]}
g_new_ok=${FIG[gatehouse.me-new.spray.ok]}
g_hznew_ok=${FIG[gatehouse.hz-new.spray.ok]}
r_calm=$(calc "$g_ka_spray / $g_ka_calm" "%.2f")
r_nginx=$(calc "$g_ka_spray / $n_ka_spray" "%.2f")
cpu_r=$(calc "${FIG[gatehouse.us]} / ${FIG[nginx.us]}" "%.2f")
cpu_late_r=$(calc "${FIG[gatehouse.us_late]} / ${FIG[nginx.us_late]}" "%.3f")
cpu_net_r=$(calc "${FIG[gatehouse.us_net]} / ${FIG[nginx.us_net]}" "%.3f")
if [ "$PENALTY" = off ]; then
    v4=$(awk -v r="$cpu_late_r" 'BEGIN { print (r <= 1 ? "pass" : "miss") }')
    cpu_target="≤ 1.0 × nginx's without the penalty box"
else
    v4=$(awk -v r="$cpu_late_r" 'BEGIN { print (r <= 0.2 ? "pass" : "miss") }')
    cpu_target="≤ 0.2 × nginx's with the penalty box"
fi
case $PENALTY in
off) pen_desc="penalty box off" ;;
memory) pen_desc="penalty box in memory: \`shield.ban_after = $BAN_AFTER\`, \`ban_window = $BAN_WINDOW\`, \`ban_time = $BAN_TIME\` (banned sources closed at accept)" ;;
kernel) pen_desc="penalty box in the kernel: \`shield.ban_after = $BAN_AFTER\`, \`ban_window = $BAN_WINDOW\`, \`ban_time = $BAN_TIME\`, \`kernel_ban = on\` (nftables drops banned sources' SYNs; run in a network namespace of its own)" ;;
esac
spray_desc="each request a new connection from its own 127.x.y.z address"
[ "$PENALTY" = off ] || spray_desc="each request a new connection, its sources cycling through $SPRAY_ADDRS 127.x.y.z addresses per process ($((SPRAY_ADDRS / 254)) /24s), a connection unanswered after $SPRAY_TIMEOUT_MS ms given up (timeouts)"
v1=$(awk -v r="$r_calm" 'BEGIN { print (r <= 2 ? "pass" : "miss") }')
v2=$(awk -v r="$r_nginx" 'BEGIN { print (r <= 1 ? "pass" : "miss") }')
v3=$(awk -v a="$g_new_ok" -v b="$g_hznew_ok" \
    'BEGIN { print (a >= 99.9 && b >= 99.9 ? "pass" : "miss") }')
bench_row gatehouse/nginx 1 cpu_per_spray_request_ratio "$cpu_r" x
bench_row gatehouse/nginx 1 cpu_per_spray_attempt_after_1s_ratio "$cpu_late_r" x
bench_row gatehouse/nginx 1 cpu_per_spray_attempt_after_1s_net_ratio "$cpu_net_r" x
bench_row gatehouse 1 me_ka_p99_spray_over_calm "$r_calm" x
bench_row gatehouse/nginx 1 ka_p99_spray_ratio "$r_nginx" x
if [ ${#PROBE_PRIO[@]} -gt 0 ]; then
    probe_desc="real-time priority, \`chrt -f 50\`: their figures are the servers' latency, not their own wait for a CPU the spray holds"
else
    probe_desc="ordinary priority: their figures include their own wait for a CPU the spray holds"
fi
bench_md <<EOF
## Saturation: existing users first under a connection flood (PENALTY=$PENALTY)

$SPRAY_PROCS spray process(es) (\`bench/tools/spray\`, $SPRAY_CONC connections at once each)
on CPU(s) $CLIENT_CPU, $spray_desc
(\`POST /api/auth/sms-code\`, \`Connection: close\`), for $SPRAY_SECONDS s after
$CALM_SECONDS s calm; each server with $WORKERS worker(s) on CPU(s) $SERVER_CPU; $warm_desc.
Legitimate probes on CPU(s) $CLIENT_CPU ($probe_desc), 20 requests/s each: keep-alive (\`ka\`) and a
new connection per request (\`new\`), on \`/api/me\` signed in (\`me\`, gatehouse only) and
\`/healthz\` (\`hz\`); ok = 200 within 2 s. gatehouse: \`shield.rules = $SAT_RULES\`;
$pen_desc.
nginx: bench/nginx/saturation.conf (\`limit_req\` 20r/s burst 40 + \`limit_conn\` 32 per
address, \`empty_gif\`: the spray's POSTs get 405).

| server | spray answered | per s | 429 | other answers | errors | timeouts | server CPU µs per spray request | attempts after 1 s | server CPU then | µs per attempt after 1 s | calm CPU (probes) s/s | µs per attempt after 1 s, net of calm |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
| gatehouse | ${FIG[gatehouse.answered]} | ${FIG[gatehouse.rate]} | ${FIG[gatehouse.r429]} | ${FIG[gatehouse.other]} | ${FIG[gatehouse.errs]} | ${FIG[gatehouse.tmo]} | ${FIG[gatehouse.us]} | ${FIG[gatehouse.late]} | ${FIG[gatehouse.cpu_late]} s | ${FIG[gatehouse.us_late]} | ${FIG[gatehouse.calm_cps]} | ${FIG[gatehouse.us_net]} |
| nginx | ${FIG[nginx.answered]} | ${FIG[nginx.rate]} | ${FIG[nginx.r429]} | ${FIG[nginx.other]} | ${FIG[nginx.errs]} | ${FIG[nginx.tmo]} | ${FIG[nginx.us]} | ${FIG[nginx.late]} | ${FIG[nginx.cpu_late]} s | ${FIG[nginx.us_late]} | ${FIG[nginx.calm_cps]} | ${FIG[nginx.us_net]} |

gatehouse refused before reading the body: $early. Penalty box: $bans bans
(\`gatehouse_shield_bans_total\`), $at_accept connections closed at accept
(\`ban_refused_total\`), $sock bans in the listening sockets' SYN filter at the end
(\`socket_ban_entries\`; 0 with the kernel set, or where the kernel refuses the process a
socket filter), kernel set active $k_active, $k_added kernel-set additions,
$k_drops packets dropped by the kernel (\`/metrics\`). Errors are connections closed
before an answer (at accept, for a banned source); timeouts are connections the spray
gave up on (dropped SYNs).

| server | probe | phase | requests | ok | p50 ms | p99 ms |
|---|---|---|---|---|---|---|
$(cat "$BENCH_TMP/probe-table.md")

Targets: logged-in keep-alive p99 under spray ≤ 2 × calm ($g_ka_spray ms vs $g_ka_calm ms:
×$r_calm, **$v1**) and ≤ nginx's keep-alive p99 ($n_ka_spray ms: ×$r_nginx, **$v2**);
new-connection clients ≥ 99.9 % ok (/api/me $g_new_ok %, /healthz
$g_hznew_ok %: **$v3**). CPU per spray request gatehouse/nginx: ×$cpu_r. Server CPU
per spray attempt after the first second, gatehouse/nginx: ×$cpu_late_r (target
$cpu_target: **$v4**); net of each server's calm CPU (its probes; gatehouse serves
two more of them, on \`/api/me\`): ×$cpu_net_r.

EOF
bench_ratio "saturation: keep-alive /api/me p99 calm $g_ka_calm ms -> spray $g_ka_spray ms (x$r_calm, target <= 2: $v1), nginx keep-alive p99 $n_ka_spray ms (x$r_nginx, target <= 1: $v2); new-connection ok $g_new_ok % ($v3); CPU/spray request gatehouse ${FIG[gatehouse.us]} us, nginx ${FIG[nginx.us]} us (x$cpu_r)"
bench_ratio "saturation (PENALTY=$PENALTY): server CPU per spray attempt after the first second gatehouse ${FIG[gatehouse.us_late]} us, nginx ${FIG[nginx.us_late]} us (x$cpu_late_r, target $cpu_target: $v4; net of the calm load x$cpu_net_r); bans $bans, closed at accept $at_accept, kernel drops $k_drops"
