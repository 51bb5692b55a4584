#!/usr/bin/env bash
# The model layer under saturation (issue 15): the model-server simulator
# (tests/e2e/model-sim.mjs, SLOTS slots) behind gatehouse, arrivals at
# LOAD (3) × its capacity from 50 users with a Zipf mix of answer sizes,
# 10 % of them new accounts (bench/tools/fairness.mjs drives it). Per
# tier: success, time to first token p50/p99, share of capacity; Jain's
# fairness index across the users of a tier (slot time served over each
# user's max-min fair share; also served / asked); the established users'
# p99 against their calm value.
#
# The tiers: gateway.tier_established_age = AGE_S; the 45 old accounts are
# registered first, the 5 new ones AGE_S + 1 s later, and the calm and
# saturated phases (CALM_S + SAT_S) end before the new ones are AGE_S old.
#
# Environment: SLOTS (4), TPS (100), TTFT_MS (50), AGE_S (75), CALM_S (6),
# SAT_S (60: about 28 calls per user, enough for Jain's index to tell a
# queue's fairness from chance), LOAD (3), DEADLINE_S (the gateway's
# queue_timeout, 10), and those of bench/lib.sh. About 2.5 minutes.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init fairness

command -v node >/dev/null || die "node missing"
export SLOTS=${SLOTS:-4} TPS=${TPS:-100} TTFT_MS=${TTFT_MS:-50} AGE_S=${AGE_S:-75}
export CALM_S=${CALM_S:-6} SAT_S=${SAT_S:-60} LOAD=${LOAD:-3} DEADLINE_S=${DEADLINE_S:-10}
((CALM_S + SAT_S < AGE_S)) || die "CALM_S + SAT_S must stay under AGE_S (the new accounts would turn established)"

taskset -c "$CLIENT_CPU" node "$BENCH_ROOT/tests/e2e/model-sim.mjs" --slots "$SLOTS" --tps "$TPS" \
    --ttft "$TTFT_MS" >"$BENCH_TMP/sim.out" 2>&1 &
track_pid "$!"
for _ in $(seq 100); do
    grep -q '^PORT ' "$BENCH_TMP/sim.out" && break
    sleep 0.1
done
SIM_PORT=$(awk '/^PORT / {print $2}' "$BENCH_TMP/sim.out")
[ -n "$SIM_PORT" ] || die "the simulator did not start: $(cat "$BENCH_TMP/sim.out")"
printf '[upstream sim]\nmodel = sim\nbase_url = http://127.0.0.1:%s/v1\nmax_concurrent = %s\n' \
    "$SIM_PORT" "$SLOTS" >"$BENCH_TMP/upstreams.ini"

# registration fast and unthrottled (50 accounts from one address); the
# user's concurrency open (the queue, not the quota, is measured)
start_gatehouse "$BENCH_TMP/gh" \
    --set gateway.upstreams_file="$BENCH_TMP/upstreams.ini" \
    --set gateway.tier_established_age="${AGE_S}s" --set gateway.queue_timeout="${DEADLINE_S}s" \
    --set gateway.user_concurrency=0 --set gateway.key_concurrency=0 \
    --set identity.argon2_ops=1 --set identity.argon2_mem=8k --set identity.backoff_base=0 \
    --set sms.cooldown=0 --set sms.per_number_day=100000 --set sms.per_addr_hour=100000 \
    --set sms.per_net_hour=100000 --set sms.per_prefix_hour=100000 --set sms.per_cc_hour=100000 \
    --set sms.global_hour=1000000

GH_URL="http://127.0.0.1:$GH_PORT" GH_DATA="$BENCH_TMP/gh" \
    taskset -c "$CLIENT_CPU" node "$BENCH_ROOT/bench/tools/fairness.mjs" >"$BENCH_TMP/report.txt"
grep -Ev '^(RATIO|ROW) ' "$BENCH_TMP/report.txt" | bench_md
grep -Ev '^(RATIO|ROW) ' "$BENCH_TMP/report.txt"
while read -r _ metric value unit; do bench_row gatehouse 1 "$metric" "$value" "$unit"; done < <(grep '^ROW ' "$BENCH_TMP/report.txt")
while IFS= read -r line; do bench_ratio "${line#RATIO }"; done < <(grep '^RATIO ' "$BENCH_TMP/report.txt")
