#!/usr/bin/env bash
# One node in cluster mode against the same node in single-node mode, same
# run, same machine (issue 14): the single node keeps its accounts in
# SQLite; the cluster node in PostgreSQL (a throwaway server on loopback,
# tests/e2e/lib/postgres.mjs), as every node of scripts/cluster.sh does.
# Three loads, wrk on CLIENT_CPU and each gatehouse (one worker) on
# SERVER_CPU, alternating the two modes RUNS times:
#
#   me       GET /api/me with a session cookie (the user record read
#            from the store)
#   chat     a streamed chat completion of the echo model with an API key
#   refusal  POST /api/auth/login refused with 429 before its body (a
#            login:global rule spent at start)
#
# Figures: requests/s, p99 (wrk --latency), server CPU per request: the
# node's user+system time, and for the cluster node also that of the
# PostgreSQL server's processes (the work the node hands to the store
# counts). Targets: CPU <= 1.15 x single-node, p99 <= 1.5 x.
#
# Environment: RUNS (3), DURATION seconds (5), CONNS (8), QUOTAS (unset:
# gatehouse's default chat quotas, a concurrency of 16 per user that the
# cluster node counts in Redis; 1: rates and a day's tokens too; 0: none),
# and those of bench/lib.sh. Skipped with a message where PostgreSQL is not installed.
# Usage: bench/cluster.sh   (or bench/run.sh cluster)
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_init cluster
command -v wrk >/dev/null || die "wrk missing (apt-get install wrk)"
command -v node >/dev/null || die "node missing"

cd "$BENCH_ROOT"
RUNS=${RUNS:-3} DURATION=${DURATION:-5} CONNS=${CONNS:-8} \
    node bench/tools/cluster.mjs "$GATEHOUSE" "$BENCH_TMP" "$SERVER_CPU" "$CLIENT_CPU" "$BENCH_PORT_BASE" |
    bench_lines
exit "${PIPESTATUS[0]}"
