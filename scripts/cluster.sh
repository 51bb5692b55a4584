#!/usr/bin/env bash
# A gatehouse cluster on loopback, for development and the cluster tests:
# a throwaway PostgreSQL, NODES gatehouse nodes sharing it and one secrets
# file, and HAProxy in front (PROXY protocol v2 to the nodes, /healthz
# checks, option redispatch).
#
#   scripts/cluster.sh up       start everything, print the URL
#   scripts/cluster.sh status   what runs, each node's /healthz
#   scripts/cluster.sh down     stop everything (the data stays)
#   scripts/cluster.sh purge    stop everything and remove CLUSTER_DIR
#
# Environment: CLUSTER_DIR (var/cluster), GATEHOUSE (build/gatehouse),
# NODES (3), PORT_BASE (18600): HAProxy listens on PORT_BASE, PostgreSQL
# on PORT_BASE + 1, node i (1..NODES) on PORT_BASE + 10 + i and its admin
# listener on PORT_BASE + 20 + i. NODE_SET: extra "--set k=v" arguments
# for every node; NODE_SET_<i>: more for node i only (after NODE_SET). Everything listens on 127.0.0.1 only. HAProxy reaches
# the nodes from 127.0.0.2, the only address whose connections the nodes
# expect to start with a PROXY header (shield.proxy_protocol_from), so a
# client may also talk to a node directly on its port.
#
# initdb refuses to run as root: as root, PostgreSQL runs as the
# `postgres` user the Debian package creates. Redis (the limits the nodes
# share, [redis]) listens on PORT_BASE + 2 when redis-server is installed
# (without it each node limits on its own, and `up` says so).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER_DIR=${CLUSTER_DIR:-$ROOT/var/cluster}
GATEHOUSE=${GATEHOUSE:-$ROOT/build/gatehouse}
NODES=${NODES:-3}
PORT_BASE=${PORT_BASE:-18600}
HAPROXY=${HAPROXY:-haproxy}
LB_PORT=$PORT_BASE
PG_PORT=$((PORT_BASE + 1))
REDIS_PORT=$((PORT_BASE + 2))
read -r -a NODE_SET <<<"${NODE_SET:-}"

die() {
    echo "cluster: $*" >&2
    exit 1
}

node_port() { echo $((PORT_BASE + 10 + $1)); }
admin_port() { echo $((PORT_BASE + 20 + $1)); }

# Whether something accepts connections on 127.0.0.1:$1.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

pg_bin() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -rn); do
        [ -x "$d/initdb" ] && { echo "$d"; return; }
    done
    d=$(command -v initdb || true)
    [ -n "$d" ] && { dirname "$d"; return; }
    die "PostgreSQL not found (apt-get install postgresql, or scripts/deps.sh test)"
}

# as_pg CMD ARGS...: as the postgres user when root.
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

wait_port() { # port what pidfile log
    local i
    for i in $(seq 200); do
        listening "$1" && return 0
        if [ -n "${3:-}" ] && ! pid_alive "$3"; then
            tail -20 "${4:-/dev/null}" >&2 || true
            die "$2 exited during start-up (log: ${4:-})"
        fi
        sleep 0.05
    done
    tail -20 "${4:-/dev/null}" >&2 || true
    die "$2 is not listening on 127.0.0.1:$1 after 10 s (log: ${4:-})"
}

hexkey() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

up_postgres() {
    local bin data=$CLUSTER_DIR/pg/data log=$CLUSTER_DIR/pg/server.log
    bin=$(pg_bin)
    if [ ! -d "$data" ]; then
        [ "$(id -u)" != 0 ] || id -u postgres >/dev/null 2>&1 ||
            die "running as root without a postgres user to run initdb as (apt-get install postgresql)"
        mkdir -p "$CLUSTER_DIR/pg"
        [ "$(id -u)" != 0 ] || runuser -u postgres -- test -x "$CLUSTER_DIR/pg" ||
            die "the postgres user cannot reach $CLUSTER_DIR: make the directories above it searchable (chmod o+x)"
        local pw
        pw=$(hexkey | head -c 24)
        (umask 077 && echo "$pw" >"$CLUSTER_DIR/pg/password")
        cp "$CLUSTER_DIR/pg/password" "$CLUSTER_DIR/pg/pwfile"
        [ "$(id -u)" != 0 ] || chown -R postgres: "$CLUSTER_DIR/pg"
        as_pg "$bin/initdb" -D "$data" -U gatehouse -A scram-sha-256 --pwfile="$CLUSTER_DIR/pg/pwfile" \
            -E UTF8 --locale=C >"$CLUSTER_DIR/pg/initdb.log" 2>&1 ||
            { cat "$CLUSTER_DIR/pg/initdb.log" >&2; die "initdb failed"; }
        rm -f "$CLUSTER_DIR/pg/pwfile"
    fi
    if ! listening "$PG_PORT"; then
        as_pg "$bin/pg_ctl" -D "$data" -l "$log" -w -t 30 \
            -o "-h 127.0.0.1 -p $PG_PORT -k $CLUSTER_DIR/pg -c max_connections=100" start >/dev/null ||
            { tail -20 "$log" >&2; die "PostgreSQL did not start"; }
        PGPASSWORD=$(cat "$CLUSTER_DIR/pg/password") psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U gatehouse \
            -d postgres -c 'CREATE DATABASE gatehouse' >/dev/null 2>&1 || true
    fi
}

pg_url() {
    echo "postgresql://gatehouse:$(cat "$CLUSTER_DIR/pg/password")@127.0.0.1:$PG_PORT/gatehouse"
}

# Redis for the shared limits: no persistence (a restart only gives each
# limit a fresh allowance), loopback only. Fails soft without redis-server.
up_redis() {
    pid_alive "$CLUSTER_DIR/redis.pid" && return 0
    if ! command -v redis-server >/dev/null; then
        echo "cluster: redis-server not found: each node limits on its own (apt-get install redis-server)" >&2
        return 0
    fi
    mkdir -p "$CLUSTER_DIR/redis"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$CLUSTER_DIR/redis" --daemonize yes --pidfile "$CLUSTER_DIR/redis.pid" \
        --logfile "$CLUSTER_DIR/redis/redis.log" || die "redis-server did not start"
    wait_port "$REDIS_PORT" redis
}

# The --set arguments that point a node at the cluster's Redis, if it runs.
redis_set() {
    pid_alive "$CLUSTER_DIR/redis.pid" || return 0
    echo "--set redis.url=redis://127.0.0.1:$REDIS_PORT --set redis.nodes=$NODES"
}

up_node() {
    local i=$1
    local dir=$CLUSTER_DIR/node$i port admin
    port=$(node_port "$i")
    admin=$(admin_port "$i")
    pid_alive "$dir.pid" && return 0
    mkdir -p "$dir"
    local own_var="NODE_SET_$i" own
    read -r -a own <<<"${!own_var:-}"
    local rset
    read -r -a rset <<<"$(redis_set)"
    "$GATEHOUSE" serve --data "$dir" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
        --workers 1 \
        --set store.backend=postgres --set "store.url=$(pg_url)" \
        --set "secrets.file=$CLUSTER_DIR/secrets" \
        --set shield.proxy_protocol_from=127.0.0.2/32 \
        --set identity.cookie_secure=false \
        "${rset[@]}" "${NODE_SET[@]}" "${own[@]}" >"$dir/gatehouse.log" 2>&1 &
    echo $! >"$dir.pid"
}

up_haproxy() {
    local cfg=$CLUSTER_DIR/haproxy.cfg i
    pid_alive "$CLUSTER_DIR/haproxy.pid" && return 0
    command -v "$HAPROXY" >/dev/null || die "haproxy not found (apt-get install haproxy)"
    {
        cat <<EOF
global
    maxconn 4096
defaults
    mode http
    timeout connect 2s
    timeout client 15m
    timeout server 15m
    timeout http-request 10s
frontend www
    bind 127.0.0.1:$LB_PORT
    default_backend nodes
backend nodes
    # a client stays on one node while it is up: the SMS codes a node sent
    # and its per-account counters are its own until the cluster shares
    # them (README, "The cluster")
    balance source
    hash-type consistent
    option httpchk GET /healthz
    # a connection a dead node refuses is retried at once on another node
    # (every retry redispatched: no 1 s pause before retrying the dead one)
    option redispatch 1
    retries 2
    # a GET or HEAD whose node died before answering is sent again to
    # another; any other method only when it never reached a node (it
    # may have taken effect: the client sees 502)
    retry-on conn-failure empty-response
    http-request disable-l7-retry unless METH_GET
    # which node answered (development and tests; not for production)
    http-response set-header x-gatehouse-node %[srv_name]
    default-server send-proxy-v2 check check-send-proxy inter 1s fall 2 rise 1 source 127.0.0.2
EOF
        for i in $(seq "$NODES"); do
            echo "    server node$i 127.0.0.1:$(node_port "$i")"
        done
    } >"$cfg"
    "$HAPROXY" -c -q -f "$cfg" || die "haproxy refused $cfg"
    "$HAPROXY" -f "$cfg" -D -p "$CLUSTER_DIR/haproxy.pid" || die "haproxy did not start"
}

cmd_up() {
    [ -x "$GATEHOUSE" ] || die "$GATEHOUSE not built (make)"
    mkdir -p "$CLUSTER_DIR"
    # others may only pass through (the postgres user, to its own pg/)
    chmod 711 "$CLUSTER_DIR"
    if [ ! -f "$CLUSTER_DIR/secrets" ]; then
        (umask 077 && printf '# the keys of every node of this cluster\nhmac_key=%s\nenc_key=%s\n' \
            "$(hexkey)" "$(hexkey)" >"$CLUSTER_DIR/secrets")
    fi
    up_postgres
    up_redis
    local i
    # the first node alone first: it applies the migrations and leaves the key check
    up_node 1
    wait_port "$(node_port 1)" node1 "$CLUSTER_DIR/node1.pid" "$CLUSTER_DIR/node1/gatehouse.log"
    for i in $(seq 2 "$NODES"); do up_node "$i"; done
    for i in $(seq 2 "$NODES"); do
        wait_port "$(node_port "$i")" "node$i" "$CLUSTER_DIR/node$i.pid" "$CLUSTER_DIR/node$i/gatehouse.log"
    done
    up_haproxy
    wait_port "$LB_PORT" haproxy
    echo "gatehouse cluster: http://127.0.0.1:$LB_PORT/ ($NODES nodes behind HAProxy; data in $CLUSTER_DIR)"
}

cmd_status() {
    local i rc=0
    if listening "$PG_PORT"; then echo "postgresql  up    127.0.0.1:$PG_PORT"; else echo "postgresql  down"; rc=1; fi
    if pid_alive "$CLUSTER_DIR/redis.pid" && listening "$REDIS_PORT"; then
        echo "redis       up    127.0.0.1:$REDIS_PORT"
    elif command -v redis-server >/dev/null; then
        echo "redis       down"
        rc=1
    fi
    for i in $(seq "$NODES"); do
        local port code
        port=$(node_port "$i")
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/healthz" || true)
        if [ "$code" = 200 ]; then
            echo "node$i       up    127.0.0.1:$port (admin $(admin_port "$i"), token in $CLUSTER_DIR/node$i/admin.token)"
        else
            echo "node$i       down  127.0.0.1:$port (/healthz: ${code:-none})"
            rc=1
        fi
    done
    if pid_alive "$CLUSTER_DIR/haproxy.pid" && listening "$LB_PORT"; then
        echo "haproxy     up    http://127.0.0.1:$LB_PORT/"
    else
        echo "haproxy     down"
        rc=1
    fi
    return $rc
}

stop_pidfile() {
    local f=$1 i
    pid_alive "$f" || { rm -f "$f"; return 0; }
    local pid
    pid=$(cat "$f")
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$f"
}

cmd_down() {
    [ -d "$CLUSTER_DIR" ] || return 0
    local i
    stop_pidfile "$CLUSTER_DIR/haproxy.pid"
    for i in $(seq "$NODES"); do stop_pidfile "$CLUSTER_DIR/node$i.pid"; done
    stop_pidfile "$CLUSTER_DIR/redis.pid"
    if [ -d "$CLUSTER_DIR/pg/data" ]; then
        as_pg "$(pg_bin)/pg_ctl" -D "$CLUSTER_DIR/pg/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
}

case "${1:-}" in
up) cmd_up ;;
status) cmd_status ;;
down) cmd_down ;;
purge)
    cmd_down
    rm -rf "$CLUSTER_DIR"
    ;;
*)
    echo "usage: scripts/cluster.sh up|status|down|purge (see the script's head)" >&2
    exit 2
    ;;
esac
