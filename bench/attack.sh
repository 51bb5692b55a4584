#!/usr/bin/env bash
# The attack lab (`make bench-attack`): runs every scenario of
# bench/scenarios/ (or those named) twice with the same legitimate users,
# against (1) gatehouse with its shield on and (2) the common setup:
# nginx with per-address limit_req/limit_conn in front of gatehouse with
# its shield off; writes bench/results/attack-report.md, attack.csv and
# one PNG per scenario. How to read it: docs/internals/attack-lab.md.
#
#   bench/attack.sh [--smoke] [--out DIR] [--only gatehouse|nginx] [SCENARIO...]
#
# --smoke: 5-second runs of l7-flood and reg-flood (or those named), fewer
# users, rates scaled by 0.25 (tests/e2e/attack-smoke.test.mjs); keeps
# gh_load's CSVs under OUT/raw/SCENARIO-SETUP/ (also with ATTACK_RAW=1).
# Environment: BUILD, BENCH_PORT_BASE (default here 18500), ATTACK_DURATION
# (override every scenario's duration, s), ATTACK_SCALE (attack rates
# factor), BENCH_KEEP=1, and those of bench/lib.sh. The bench is not a test:
# targets print pass/miss; the exit status is 1 only when a run broke.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
export BENCH_PORT_BASE=${BENCH_PORT_BASE:-18500}
# shellcheck source=bench/lib.sh
. bench/lib.sh

smoke=0
outdir=bench/results
only=""
names=()
while (($#)); do
    case "$1" in
    --smoke) smoke=1 ;;
    --out) outdir=$2; shift ;;
    --only) only=$2; shift ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    -*) die "unknown option $1" ;;
    *) names+=("${1%.conf}") ;;
    esac
    shift
done
GH_LOAD="$BUILD/gh_load"
keep_raw=${ATTACK_RAW:-0}
((smoke)) && keep_raw=1
duration=${ATTACK_DURATION:-}
scale=${ATTACK_SCALE:-1}
users_opt=()
if ((smoke)); then
    duration=${duration:-5}
    scale=${ATTACK_SCALE:-0.25}
    users_opt=(--users 6)
    ((${#names[@]})) || names=(l7-flood reg-flood)
fi
if ! ((${#names[@]})); then
    for f in bench/scenarios/*.conf; do names+=("$(basename "$f" .conf)"); done
fi
for n in "${names[@]}"; do [ -f "bench/scenarios/$n.conf" ] || die "no scenario bench/scenarios/$n.conf"; done

bench_init attack
[ -x "$GH_LOAD" ] || die "$GH_LOAD not built (make bench-attack builds it)"
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
setups=(gatehouse nginx)
if [ ! -x "$NGINX" ]; then
    echo "attack: nginx not found at $NGINX: the common setup is skipped" >&2
    setups=(gatehouse)
fi
[ -n "$only" ] && setups=("$only")
have_gnuplot=0
command -v gnuplot >/dev/null && have_gnuplot=1
have_slow=0
command -v slowhttptest >/dev/null && have_slow=1

# ini_get FILE SECTION KEY: a value of the scenario file ("" when absent)
ini_get() {
    awk -v s="$2" -v k="$3" '
        /^[ \t]*[#;]/ { next }
        /^[ \t]*\[/ { gsub(/[][ \t]/, ""); sec = $0; next }
        sec == s { i = index($0, "="); if (!i) next
            key = substr($0, 1, i - 1); gsub(/[ \t]/, "", key)
            if (key != k) next
            v = substr($0, i + 1); sub(/[ \t]+#.*/, "", v); gsub(/^[ \t]+|[ \t]+$/, "", v)
            print v; exit }' "$1"
}

# start_nginx_attack DIR: nginx from bench/attack/nginx-limits.conf in
# front of gatehouse on GH_PORT (like start_nginx of lib.sh, one more
# placeholder); sets NGINX_PID and NGINX_WORKER.
start_nginx_attack() {
    local dir=$1
    port_must_be_free "$NGINX_PORT"
    mkdir -p "$dir"
    sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$NGINX_PORT|g" -e "s|@UPSTREAM@|$GH_PORT|g" \
        -e "s|@NOFILE@|$(ulimit -n)|g" bench/attack/nginx-limits.conf >"$dir/nginx.conf"
    taskset -c "$SERVER_CPU" "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" \
        -g "daemon off; pid $dir/nginx.pid;" >"$dir/nginx.out" 2>&1 &
    NGINX_PID=$!
    track_pid "$NGINX_PID"
    wait_healthz "$NGINX_PORT" "$NGINX_PID" "$dir/error.log"
    NGINX_WORKER=$(pgrep -P "$NGINX_PID" | head -1)
    [ -n "$NGINX_WORKER" ] || die "nginx worker process not found"
}

# sampler PID...: "epoch_ms cpu_ticks rss_kb" every 0.25 s until killed
sampler() {
    local t pid line f ticks rss v
    while :; do
        t=$(date +%s%3N)
        ticks=0
        rss=0
        for pid in "$@"; do
            line=$(cat "/proc/$pid/stat" 2>/dev/null) || exit 0
            read -r -a f <<<"${line##*) }"
            ticks=$((ticks + f[11] + f[12]))
            v=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
            rss=$((rss + ${v:-0}))
        done
        echo "$t $ticks $rss"
        sleep 0.25
    done
}

# hwm_kb PID...: peak resident memory (VmHWM) summed
hwm_kb() {
    local sum=0 pid v
    for pid in "$@"; do
        v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
        sum=$((sum + ${v:-0}))
    done
    echo "$sum"
}

# run_one SCENARIO SETUP: one measured run; leaves $BENCH_TMP/SCENARIO-SETUP/
run_one() {
    local name=$1 setup=$2 conf="bench/scenarios/$1.conf"
    local dir="$BENCH_TMP/$name-$setup"
    mkdir -p "$dir/out"
    local gh_sets=()
    if [ "$setup" = gatehouse ]; then
        gh_sets=(--set shield.enabled=true)
    else
        # the application behind a proxy that does the limiting: its own
        # shield off, and the per-address limits of its account code
        # raised, since every request now comes from nginx's address
        gh_sets=(--set shield.enabled=false --set limits.max_conns_per_addr=100000
            --set identity.login_fail_per_addr=100000000 --set sms.per_addr_hour=100000000
            --set sms.per_net_hour=100000000 --set identity.login_tiers=false)
    fi
    start_gatehouse "$dir/gh" "${gh_sets[@]}"
    local pids=("$GH_PID") target=$GH_PORT
    if [ "$setup" = nginx ]; then
        start_nginx_attack "$dir/nginx"
        pids+=("$NGINX_PID" "$NGINX_WORKER")
        target=$NGINX_PORT
    fi
    sampler "${pids[@]}" >"$dir/samples" &
    local sampler_pid=$!
    track_pid "$sampler_pid"

    # beside gh_load, once its run has begun: SMS baseline and slowhttptest
    local slow_mode slow_pid=""
    slow_mode=$(ini_get "$conf" slowhttptest mode)
    (
        for _ in $(seq 1500); do [ -f "$dir/out/t0" ] && break; sleep 0.1; done
        [ -f "$dir/out/t0" ] || exit 0
        wc -l <"$dir/gh/sms-outbox.jsonl" 2>/dev/null >"$dir/sms0" || echo 0 >"$dir/sms0"
        if [ -n "$slow_mode" ] && ((have_slow)); then
            local k start length conns rate
            k=1
            [ -n "$duration" ] && k=$(calc "$duration / $(ini_get "$conf" scenario duration)")
            start=$(calc "$(ini_get "$conf" slowhttptest start) * $k" "%.1f")
            length=$(calc "$(ini_get "$conf" slowhttptest length) * $k" "%.0f")
            ((length < 2)) && length=2
            conns=$(calc "$(ini_get "$conf" slowhttptest conns) * $scale" "%.0f")
            rate=$(calc "$(ini_get "$conf" slowhttptest rate) * $scale" "%.0f")
            ((conns < 10)) && conns=10
            ((rate < 5)) && rate=5
            sleep "$start"
            local mflag=-H
            [ "$slow_mode" = slowbody ] && mflag="-B -s 8192"
            # shellcheck disable=SC2086 # mflag is two words for slow bodies
            exec timeout $((length + 30)) taskset -c "$CLIENT_CPU" slowhttptest $mflag \
                -c "$conns" -r "$rate" -i "$(ini_get "$conf" slowhttptest interval)" \
                -x 24 -p 3 -l "$length" -t POST -u "http://127.0.0.1:$target/api/auth/login" \
                -g -o "$dir/slow" >"$dir/slow.log" 2>&1
        fi
    ) &
    slow_pid=$!
    track_pid "$slow_pid"

    local dopt=()
    [ -n "$duration" ] && dopt=(--duration "$duration")
    timeout 900 taskset -c "$CLIENT_CPU" "$GH_LOAD" --scenario "$conf" --target "127.0.0.1:$target" \
        --setup-target "127.0.0.1:$GH_PORT" --data "$dir/gh" --out "$dir/out" \
        --admin "127.0.0.1:$GH_ADMIN_PORT" --admin-token-file "$dir/gh/admin.token" \
        --scale "$scale" "${dopt[@]}" "${users_opt[@]}" >"$dir/gh_load.txt" 2>&1 &
    local load_pid=$!
    track_pid "$load_pid"
    local rc=0
    wait "$load_pid" || rc=$?
    wait "$slow_pid" 2>/dev/null
    kill "$sampler_pid" 2>/dev/null
    wait "$sampler_pid" 2>/dev/null
    hwm_kb "${pids[@]}" >"$dir/hwm"
    local sms_total
    sms_total=$(wc -l <"$dir/gh/sms-outbox.jsonl" 2>/dev/null || echo 0)
    echo $((sms_total - $(cat "$dir/sms0" 2>/dev/null || echo 0))) >"$dir/sms"
    [ "$setup" = nginx ] && stop_pid "$NGINX_PID"
    stop_pid "$GH_PID"
    if ((rc != 0)) || [ ! -s "$dir/out/summary.csv" ]; then
        cat "$dir/gh_load.txt" >&2
        echo "attack: $name on $setup: gh_load failed (exit $rc)" >&2
        return 1
    fi
    sed 's/^/    /' "$dir/gh_load.txt"
    if ((keep_raw)); then
        mkdir -p "$outdir/raw/$name-$setup"
        cp "$dir/out/summary.csv" "$dir/out/timeseries.csv" "$dir/out/run.txt" "$outdir/raw/$name-$setup/"
    fi
    metrics "$dir" >"$dir/metrics"
    return 0
}

# metrics DIR: key=value figures of one run, from gh_load's CSVs, the
# CPU/RSS samples, VmHWM and the SMS outbox
metrics() {
    local dir=$1
    local t0 as ae
    t0=$(awk -F= '$1 == "t0_epoch_ms" {print $2}' "$dir/out/run.txt")
    as=$(awk -F= '$1 == "attack_start" {print $2}' "$dir/out/run.txt")
    ae=$(awk -F= '$1 == "attack_stop" {print $2}' "$dir/out/run.txt")
    awk -F, -v clk="$CLK_TCK" '
        NR == 1 { for (i = 1; i <= NF; i++) c[$i] = i; next }
        $c["script"] == "legit" && $c["phase"] == "calm" { lcs += $c["sent"]; lco += $c["ok"]; lcp = $c["p99_ms"] }
        $c["script"] == "legit" && $c["phase"] == "attack" {
            ls += $c["sent"]; lo += $c["ok"]; lp = $c["p99_ms"]; lp50 = $c["p50_ms"]; lmax = $c["max_ms"] }
        $c["script"] == "legit" && $c["phase"] == "all" {
            las += $c["sent"]; lao += $c["ok"]; lar += $c["refused"]; laf += $c["failed"]
            lac += $c["closed"]; lae += $c["errors"] }
        $c["script"] != "legit" && $c["script"] != "action" && $c["phase"] == "all" {
            as += $c["sent"]; ao += $c["ok"]; ar += $c["refused"]; af += $c["failed"]
            ac += $c["closed"]; ae += $c["errors"]; rate += $c["rate"]
            s429 += $c["s429"]; s403 += $c["s403"]; s503 += $c["s503"] }
        $c["script"] == "action" { split($c["group"], ga, "/")
            if ($c["phase"] == "calm") pc[ga[2]] = $c["p99_ms"]
            if ($c["phase"] == "attack") { pa[ga[2]] = $c["p99_ms"]; sa[ga[2]] = $c["sent"]; oa[ga[2]] = $c["ok"] } }
        END {
            split("login me models chat", an, " ")
            for (i = 1; i <= 4; i++) {
                a = an[i]
                printf "p99_calm_%s=%s\np99_attack_%s=%s\nok_attack_%s=%d/%d\n", a, pc[a], a, pa[a], a, oa[a], sa[a] }
            printf "legit_calm_sent=%d\nlegit_calm_ok=%d\nlegit_calm_p99=%s\n", lcs, lco, lcp
            printf "legit_sent=%d\nlegit_ok=%d\nlegit_p99=%s\nlegit_p50=%s\nlegit_max=%s\n", ls, lo, lp, lp50, lmax
            printf "legit_success=%s\n", ls ? sprintf("%.2f", 100 * lo / ls) : "n/a"
            printf "legit_all_sent=%d\nlegit_all_ok=%d\nlegit_all_refused=%d\nlegit_all_failed=%d\nlegit_all_closed=%d\nlegit_all_errors=%d\n", las, lao, lar, laf, lac, lae
            printf "attack_rate=%s\nattack_sent=%d\nattack_ok=%d\nattack_refused=%d\nattack_failed=%d\nattack_closed=%d\nattack_errors=%d\n", rate, as, ao, ar, af, ac, ae
            printf "attack_429=%d\nattack_403=%d\nattack_503=%d\n", s429, s403, s503
            printf "attack_refused_pct=%s\n", as ? sprintf("%.1f", 100 * (ar + ac) / as) : "n/a"
            printf "attack_served_pct=%s\n", as ? sprintf("%.1f", 100 * ao / as) : "n/a"
        }' "$dir/out/summary.csv"
    # server CPU over the attack window
    awk -v t0="$t0" -v as="$as" -v ae="$ae" -v clk="$CLK_TCK" '
        { t = ($1 - t0) / 1000
          if (NR == 1) { first = $2; s0 = $2 }
          if (t <= as) s0 = $2
          if (t >= ae && !got1) { s1 = $2; got1 = 1 }
          last = $2 }
        END { if (!got1) s1 = last
              printf "cpu_attack_s=%.2f\ncpu_total_s=%.2f\n", (s1 - s0) / clk, (last - first) / clk }' "$dir/samples"
    echo "peak_rss_mb=$(calc "$(cat "$dir/hwm") / 1024" "%.1f")"
    echo "sms_sent=$(cat "$dir/sms")"
    awk -F, 'NR > 1 && $11 > m { m = $11 } END { split("normal elevated under_attack", n, " ")
        print "max_level=" (m > 0 ? n[m + 1] : (m == 0 ? "normal" : "n/a")) }' "$dir/out/timeseries.csv"
    if [ -f "$dir/slow.csv" ]; then
        # slowhttptest -g: seconds,closed,pending,connected,service available
        awk -F, 'NR > 1 && $4 > m { m = $4 } END { print "slow_max_connected=" m + 0 }' "$dir/slow.csv"
    fi
}

# plot_data DIR: per second: t legit_ok_pct legit_p99 attack_sent attack_refused level; and cpu.dat
plot_data() {
    local dir=$1 t0
    t0=$(awk -F= '$1 == "t0_epoch_ms" {print $2}' "$dir/out/run.txt")
    awk -F, '
        NR == 1 { next }
        { t = $1; seen[t] = 1; lvl[t] = $11 }
        $12 == "legit" { ls[t] += $3; lo[t] += $4; lp[t] = $10 }
        $12 != "legit" { as[t] += $3; ar[t] += $5 + $7 }
        END { for (t = 0; t in seen; t++)
            printf "%d %s %s %d %d %s\n", t, (ls[t] ? 100 * lo[t] / ls[t] : "NaN"), (ls[t] ? lp[t] : "NaN"),
                as[t], ar[t], (lvl[t] >= 0 ? lvl[t] : "NaN") }' "$dir/out/timeseries.csv" >"$dir/plot.dat"
    awk -v t0="$t0" -v clk="$CLK_TCK" '
        NR > 1 && $1 > pt { printf "%.2f %.1f %.1f\n", ($1 - t0) / 1000, 100 * ($2 - pv) / clk / (($1 - pt) / 1000), $3 / 1024 }
        { pt = $1; pv = $2 }' "$dir/samples" >"$dir/cpu.dat"
}

mget() { awk -F= -v k="$2" '$1 == k {print $2}' "$1/metrics" 2>/dev/null; }

machine=$(machine_desc)
echo "attack lab: ${#names[@]} scenarios × ${setups[*]}; server on CPU $SERVER_CPU, gh_load on CPU $CLIENT_CPU"
broken=()
sections="$BENCH_TMP/sections.md"
csv="$BENCH_TMP/attack.csv"
echo "scenario,setup,metric,value" >"$csv"
: >"$sections"
: >"$BENCH_TMP/verdicts"
for name in "${names[@]}"; do
    conf="bench/scenarios/$name.conf"
    title=$(ini_get "$conf" scenario title)
    echo
    echo "== $name: $title"
    ok_setups=()
    for setup in "${setups[@]}"; do
        echo "-- $setup"
        if run_one "$name" "$setup"; then
            ok_setups+=("$setup")
            plot_data "$BENCH_TMP/$name-$setup"
            while IFS='=' read -r k v; do echo "$name,$setup,$k,$v" >>"$csv"; done <"$BENCH_TMP/$name-$setup/metrics"
        else
            broken+=("$name/$setup")
        fi
    done
    ((${#ok_setups[@]})) || continue
    G="$BENCH_TMP/$name-gatehouse"
    N="$BENCH_TMP/$name-nginx"
    col() { # METRIC: the table cells of both setups
        local s out=""
        for s in "${setups[@]}"; do
            out+=" $(mget "$BENCH_TMP/$name-$s" "$1") |"
        done
        echo "$out"
    }
    cpu_per_k() {
        local d=$1 r c
        r=$(($(mget "$d" attack_refused) + $(mget "$d" attack_closed)))
        c=$(mget "$d" cpu_attack_s)
        if ((r > 0)); then calc "$c * 1000 / $r" "%.3f"; else echo "n/a"; fi
    }
    ratio_p99() {
        local d=$1 c a
        c=$(mget "$d" legit_calm_p99)
        a=$(mget "$d" legit_p99)
        awk -v c="$c" -v a="$a" 'BEGIN { if (c > 0 && a != "") printf "%.2f", a / c; else print "n/a" }'
    }
    head_row="| figure |"
    sep_row="|---|"
    for s in "${setups[@]}"; do
        [ "$s" = gatehouse ] && head_row+=" gatehouse, shield on |" || head_row+=" nginx limit_req/limit_conn + gatehouse, shield off |"
        sep_row+="---|"
    done
    cpuk=""
    ratios=""
    for s in "${setups[@]}"; do
        cpuk+=" $(cpu_per_k "$BENCH_TMP/$name-$s") |"
        ratios+=" $(ratio_p99 "$BENCH_TMP/$name-$s") |"
    done
    {
        echo "## $name: $title"
        echo
        echo "Scenario: \`bench/scenarios/$name.conf\`; attack window $(awk -F= '$1 == "attack_start" {s = $2} $1 == "attack_stop" {e = $2} END {printf "%.0f–%.0f s", s, e}' "$BENCH_TMP/$name-${ok_setups[0]}/out/run.txt") of $(awk -F= '$1 == "duration" {printf "%.0f s", $2}' "$BENCH_TMP/$name-${ok_setups[0]}/out/run.txt")."
        echo
        echo "$head_row"
        echo "$sep_row"
        echo "| legitimate success under attack, % |$(col legit_success)"
        echo "| legitimate requests under attack (ok / sent) |$(for s in "${setups[@]}"; do printf ' %s / %s |' "$(mget "$BENCH_TMP/$name-$s" legit_ok)" "$(mget "$BENCH_TMP/$name-$s" legit_sent)"; done)"
        echo "| legitimate p99 calm, ms |$(col legit_calm_p99)"
        echo "| legitimate p99 under attack, ms |$(col legit_p99)"
        echo "| p99 under attack / calm |$ratios"
        echo "| legitimate p99 by request, calm → attack, ms: login · /api/me · /v1/models · chat stream |$(for s in "${setups[@]}"; do d="$BENCH_TMP/$name-$s"; printf ' %s→%s · %s→%s · %s→%s · %s→%s |' "$(mget "$d" p99_calm_login)" "$(mget "$d" p99_attack_login)" "$(mget "$d" p99_calm_me)" "$(mget "$d" p99_attack_me)" "$(mget "$d" p99_calm_models)" "$(mget "$d" p99_attack_models)" "$(mget "$d" p99_calm_chat)" "$(mget "$d" p99_attack_chat)"; done)"
        echo "| legitimate ok/sent under attack: login · me · models · chat |$(for s in "${setups[@]}"; do d="$BENCH_TMP/$name-$s"; printf ' %s · %s · %s · %s |' "$(mget "$d" ok_attack_login)" "$(mget "$d" ok_attack_me)" "$(mget "$d" ok_attack_models)" "$(mget "$d" ok_attack_chat)"; done)"
        echo "| attack rate, requests/s (gh_load) |$(col attack_rate)"
        echo "| attack requests sent |$(col attack_sent)"
        echo "| attack refused (429/403/503/408 or closed), % |$(col attack_refused_pct)"
        echo "| attack served (2xx), % |$(col attack_served_pct)"
        echo "| attack answered 429 / 403 / 503 |$(for s in "${setups[@]}"; do printf ' %s / %s / %s |' "$(mget "$BENCH_TMP/$name-$s" attack_429)" "$(mget "$BENCH_TMP/$name-$s" attack_403)" "$(mget "$BENCH_TMP/$name-$s" attack_503)"; done)"
        echo "| server CPU during the attack, s |$(col cpu_attack_s)"
        echo "| server CPU s per 1,000 refused requests |$cpuk"
        echo "| peak resident memory of the server processes, MB |$(col peak_rss_mb)"
        echo "| SMS sent during the run |$(col sms_sent)"
        echo "| highest attack level (GET /admin/v1/level) |$(col max_level)"
        if [ -n "$(ini_get "$conf" slowhttptest mode)" ]; then
            echo "| slowhttptest: most connections held open |$(col slow_max_connected)"
        fi
        echo
    } >>"$sections"
    # targets (pass/miss), printed and written
    if [ -d "$G" ] && [ -f "$G/metrics" ]; then
        gs=$(mget "$G" legit_success)
        gr=$(ratio_p99 "$G")
        v1=$(awk -v s="$gs" 'BEGIN { print (s != "n/a" && s >= 99.9) ? "pass" : "miss" }')
        v2=$(awk -v r="$gr" 'BEGIN { print (r != "n/a" && r <= 2) ? "pass" : "miss" }')
        {
            echo "- $name: gatehouse legitimate success $gs % (target ≥ 99.9 %): **$v1**"
            echo "- $name: gatehouse legitimate p99 under attack / calm = $gr (target ≤ 2): **$v2**"
        } >>"$BENCH_TMP/verdicts"
        if [ -f "$N/metrics" ]; then
            ns=$(mget "$N" legit_success)
            gp=$(mget "$G" legit_p99)
            np=$(mget "$N" legit_p99)
            v3=$(awk -v a="$gs" -v b="$ns" 'BEGIN { print (a != "n/a" && (b == "n/a" || a >= b)) ? "pass" : "miss" }')
            v4=$(awk -v a="$gp" -v b="$np" 'BEGIN { if (a != "" && (b == "" || a <= b)) print "pass"
                else if (a != "" && a <= 1.05 * b) print "even (within 5 %, counted as miss)"; else print "miss" }')
            {
                echo "- $name: legitimate success gatehouse $gs % vs nginx setup $ns % (gatehouse ahead or equal): **$v3**"
                echo "- $name: legitimate p99 under attack gatehouse $gp ms vs nginx setup $np ms (gatehouse ahead or equal): **$v4**"
            } >>"$BENCH_TMP/verdicts"
        fi
    fi
    sed "/^- $name:/!d; s/^- //; s/\*\*//g" "$BENCH_TMP/verdicts" | sed 's/^/  /'
    # the plot
    if ((have_gnuplot)); then
        png="$outdir/attack-$name.png"
        gh_dat=/dev/null; ng_dat=/dev/null; gh_cpu=/dev/null; ng_cpu=/dev/null
        [ -f "$G/plot.dat" ] && gh_dat="$G/plot.dat" && gh_cpu="$G/cpu.dat"
        [ -f "$N/plot.dat" ] && ng_dat="$N/plot.dat" && ng_cpu="$N/cpu.dat"
        read -r as ae dur < <(awk -F= '$1 == "attack_start" {s = $2} $1 == "attack_stop" {e = $2} $1 == "duration" {d = $2} END {print s, e, d}' "$BENCH_TMP/$name-${ok_setups[0]}/out/run.txt")
        if gnuplot -e "ghd='$gh_dat'; ngd='$ng_dat'; ghc='$gh_cpu'; ngc='$ng_cpu'; out='$png'; ttl='$name: ${title//\'/}'; as=$as; ae=$ae; dur=$dur" \
            bench/attack/plot.gp >"$BENCH_TMP/gnuplot-$name.log" 2>&1; then
            echo "![$name over time](attack-$name.png)" >>"$sections"
            echo >>"$sections"
            echo "  plot: $png"
        else
            echo "attack: gnuplot failed for $name: $(tail -3 "$BENCH_TMP/gnuplot-$name.log")" >&2
        fi
    fi
done

report="$outdir/attack-report.md"
{
    echo "# gatehouse attack lab"
    echo
    echo "Written by \`make bench-attack\` (bench/attack.sh$( ((smoke)) && echo ' --smoke')); how to read it:"
    echo "docs/internals/attack-lab.md. Each scenario ran twice with the same legitimate"
    echo "users (registered accounts logging in, calling /api/me, listing /v1/models,"
    echo "streaming chats from the echo model): against gatehouse with its shield on,"
    echo "and against nginx with per-address \`limit_req\`/\`limit_conn\`"
    echo "(bench/attack/nginx-limits.conf) in front of gatehouse with its shield off."
    echo "Servers pinned to CPU $SERVER_CPU (nginx and gatehouse share it), gh_load and"
    echo "slowhttptest to CPU $CLIENT_CPU. Legitimate p99 calm = before the attack"
    echo "starts, in the same run. Figures from one run on a shared machine."
    echo
    # shellcheck disable=SC2001 # a prefix on every line
    sed 's/^/- /' <<<"$machine"
    echo "- scale of attack rates: $scale$([ -n "$duration" ] && echo "; durations overridden: $duration s")"
    echo
    echo "## Targets"
    echo
    if [ -s "$BENCH_TMP/verdicts" ]; then cat "$BENCH_TMP/verdicts"; else echo "- no run completed"; fi
    echo
    cat "$sections"
    if ((${#broken[@]})); then
        echo "## Broken runs"
        echo
        printf -- '- %s\n' "${broken[@]}"
        echo
    fi
} >"$report"
cp "$csv" "$outdir/attack.csv"
echo
echo "wrote $report and $outdir/attack.csv"
echo
echo "== targets"
sed 's/\*\*//g' "$BENCH_TMP/verdicts"
if ((${#broken[@]})); then
    echo "attack: broken: ${broken[*]}" >&2
    exit 1
fi
exit 0
