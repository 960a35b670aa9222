#!/usr/bin/env bash
# Runs one workload against 3-node ZooKeeper, etcd and rzab clusters on this
# machine (loopback only) and writes compare-out/results.md and compare.png.
#
#   scripts/compare.sh [DURATION_SECS]        # default 10 s per run
#
# ZooKeeper and etcd run twice, with their data on tmpfs (/dev/shm) and on
# disk; rzab keeps its state in memory and runs once. Every run: 32 clients,
# 10k keys, 32-byte values, write ratios 0.05, 0.5 and 1.0 with one request
# in flight per client (rzab also 64 in flight at 0.05). Last, the same
# runs against three `rzab null-server` processes, which answer the client
# protocol and store nothing: the ceiling of the request path (TCP, framing,
# client) on this machine, which no server reached through it can pass.
#
# Environment:
#   LOADGEN    load generator command (default "target/release/rzab loadgen";
#              "example" builds and uses rzab-loadgen's example binary)
#   WARMUP     warm-up seconds per run (default 2)
#   SKIP_RZAB=1, SKIP_ZOOKEEPER=1, SKIP_ETCD=1, SKIP_CEILING=1   leave one out
#   STORAGES   storage passes for ZooKeeper and etcd (default "tmpfs disk")
#   OUT        output directory (default compare-out)
#
# Installs what it lacks with apt-get (Debian; run as root): zookeeper,
# etcd-server, etcd-client, protobuf-compiler (etcd-client's build needs
# protoc), gnuplot-nox. Stops every process it started when it exits.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${1:-${DURATION:-10}}
WARMUP=${WARMUP:-2}
OUT=${OUT:-$ROOT/compare-out}
STORAGES=${STORAGES:-tmpfs disk}
SKIP_RZAB=${SKIP_RZAB:-0}
SKIP_ZOOKEEPER=${SKIP_ZOOKEEPER:-0}
SKIP_ETCD=${SKIP_ETCD:-0}
SKIP_CEILING=${SKIP_CEILING:-0}
CLIENTS=32
KEYS=10000
VALUE_SIZE=32
RATIOS=(0.05 0.5 1.0)

HERE=$ROOT/scripts/compare
WORK=$OUT/work                          # cluster files, on disk
DISK_DATA=$OUT/data                     # "disk" data directories
SHM_DATA=/dev/shm/rzab-compare.$$       # "tmpfs" data directories
LOGS=$OUT/logs
JSON=$OUT/json
MANIFEST=$OUT/runs.tsv

# Waits and runs are bounded: a server gets this long to start serving.
START_TIMEOUT=90
STOP_TIMEOUT=15

log() { printf '[compare %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

case $DURATION in '' | *[!0-9.]*) die "duration '$DURATION' is not a number of seconds" ;; esac
case $WARMUP in '' | *[!0-9.]*) die "WARMUP '$WARMUP' is not a number of seconds" ;; esac

# ---------------------------------------------------------------- processes

PIDS=()

# Stops every process this script started, by PID: TERM, then KILL after
# STOP_TIMEOUT seconds.
stop_all() {
    local pid deadline
    ((${#PIDS[@]})) || return 0
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    deadline=$((SECONDS + STOP_TIMEOUT))
    for pid in "${PIDS[@]}"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        if kill -0 "$pid" 2>/dev/null; then
            log "pid $pid ignored TERM; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}

cleanup() {
    local rc=$?
    stop_all
    rm -rf "$SHM_DATA" "$DISK_DATA"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts a background process with its output in LOG and remembers its PID.
spawn() {
    local logfile=$1
    shift
    "$@" >"$logfile" 2>&1 &
    PIDS+=("$!")
}

# Fails if a TCP port on loopback is already taken (a leftover server would
# be measured instead of ours).
require_free_ports() {
    local port
    for port in "$@"; do
        if ss -Hltn "sport = :$port" | grep -q .; then
            die "port $port is already in use; stop whatever listens there first"
        fi
    done
}

# Polls CHECK (a command) every 0.5 s until it succeeds, for at most
# START_TIMEOUT seconds; fails if a started process died meanwhile.
wait_until() {
    local what=$1
    shift
    local deadline=$((SECONDS + START_TIMEOUT)) pid
    until "$@"; do
        for pid in "${PIDS[@]}"; do
            kill -0 "$pid" 2>/dev/null || die "$what: process $pid exited (see $LOGS)"
        done
        ((SECONDS < deadline)) || die "$what: not ready after ${START_TIMEOUT}s (see $LOGS)"
        sleep 0.5
    done
}

# Sends a command to a TCP port on 127.0.0.1 and prints the reply (bash's
# /dev/tcp, so no netcat is needed), bounded to 3 s.
tcp_ask() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf "%s" "$2" >&3 && cat <&3' _ "$1" "$2" 2>/dev/null
}

tcp_open() {
    # shellcheck disable=SC2016 # expanded by the inner bash
    timeout 3 bash -c 'exec 3<>"/dev/tcp/${1%:*}/${1##*:}"' _ "$1" 2>/dev/null
}

# ---------------------------------------------------------------- setup

install_missing() {
    local want=()
    [[ -f /usr/share/java/zookeeper.jar ]] || want+=(zookeeper)
    command -v etcd >/dev/null || want+=(etcd-server)
    command -v etcdctl >/dev/null || want+=(etcd-client)
    command -v protoc >/dev/null || want+=(protobuf-compiler)
    command -v gnuplot >/dev/null || want+=(gnuplot-nox)
    [[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || want+=(fonts-dejavu-core) # plot labels
    command -v java >/dev/null || want+=(default-jre-headless)
    command -v python3 >/dev/null || want+=(python3)
    command -v ss >/dev/null || want+=(iproute2)
    ((${#want[@]})) || return 0
    log "installing ${want[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
}

build() {
    if [[ ${LOADGEN:-} == example ]]; then
        log "building rzab-loadgen's example (feature compare)"
        cargo build --release -q -p rzab-loadgen --features compare --example loadgen
        LOADGEN=$ROOT/target/release/examples/loadgen
    fi
    # rzab itself, the null servers, or the default load generator need it.
    if [[ -z ${LOADGEN:-} || $SKIP_RZAB != 1 || $SKIP_CEILING != 1 ]]; then
        log "building target/release/rzab (feature compare)"
        cargo build --release -q -p rzab --features compare
    fi
    LOADGEN=${LOADGEN:-$ROOT/target/release/rzab loadgen}
    read -r -a LOADGEN_CMD <<<"$LOADGEN"
}

# ---------------------------------------------------------------- runs

# run_load SYSTEM STORAGE RATIO INFLIGHT PRELOAD SERVERS [EXTRA FLAGS...]
# Records one line in the manifest whether or not the run succeeds. The
# ceiling servers speak rzab's protocol.
run_load() {
    local system=$1 storage=$2 ratio=$3 inflight=$4 preload=$5 servers=$6
    local backend=$system
    [[ $system != ceiling ]] || backend=rzab
    shift 6
    local name=$system-$storage-w$ratio-d$inflight
    local json=$JSON/$name.json status=ok
    local d=${DURATION%.*} w=${WARMUP%.*}
    local limit=$((${d:-0} + ${w:-0} + 180)) # preload and connecting included
    log "$name: $CLIENTS clients x $inflight, write ratio $ratio"
    rm -f "$json"
    if ! timeout "$limit" "${LOADGEN_CMD[@]}" --backend "$backend" --servers "$servers" \
        --clients "$CLIENTS" --inflight "$inflight" --write-ratio "$ratio" --keys "$KEYS" \
        --value-size "$VALUE_SIZE" --warmup "$WARMUP" --duration "$DURATION" \
        "--$preload" --json "$json" "$@" >"$LOGS/$name.log" 2>&1; then
        status=failed
        log "$name failed: $(tail -n 1 "$LOGS/$name.log")"
    else
        grep -m1 '^throughput' "$LOGS/$name.log" >&2 || true
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$system" "$storage" "$ratio" "$inflight" "$json" "$status" >>"$MANIFEST"
}

# run_matrix SYSTEM STORAGE SERVERS [EXTRA FLAGS...]: the write ratios on one
# running cluster; only the first run preloads the keys.
run_matrix() {
    local system=$1 storage=$2 servers=$3 preload=preload ratio
    shift 3
    for ratio in "${RATIOS[@]}"; do
        run_load "$system" "$storage" "$ratio" 1 "$preload" "$servers" "$@"
        preload=no-preload
    done
}

data_root() {
    case $1 in
        tmpfs) echo "$SHM_DATA" ;;
        disk) echo "$DISK_DATA" ;;
        *) die "unknown storage '$1' (tmpfs or disk)" ;;
    esac
}

# ---------------------------------------------------------------- ZooKeeper

ZK_CLIENT_PORTS=(2181 2182 2183)
ZK_QUORUM_PORTS=(2888 2889 2890)
ZK_ELECTION_PORTS=(3888 3889 3890)
# Debian ships no SLF4J binding with ZooKeeper: the simple one, if there,
# puts warnings and errors in the logs instead of nothing.
ZK_LOGGER=""
[[ ! -f /usr/share/java/slf4j-simple.jar ]] || ZK_LOGGER=:/usr/share/java/slf4j-simple.jar

start_zookeeper() {
    local storage=$1 root i dir cfg
    root=$(data_root "$storage")/zookeeper
    require_free_ports "${ZK_CLIENT_PORTS[@]}" "${ZK_QUORUM_PORTS[@]}" "${ZK_ELECTION_PORTS[@]}"
    for i in 1 2 3; do
        dir=$root/zk$i
        cfg=$WORK/zk$i.cfg
        mkdir -p "$dir"
        echo "$i" >"$dir/myid"
        # forceSync stays at its default (yes): writes are fsynced, as in production.
        cat >"$cfg" <<EOF
tickTime=2000
initLimit=10
syncLimit=5
dataDir=$dir
clientPortAddress=127.0.0.1
clientPort=${ZK_CLIENT_PORTS[i - 1]}
maxClientCnxns=0
4lw.commands.whitelist=srvr,ruok
admin.enableServer=false
server.1=127.0.0.1:${ZK_QUORUM_PORTS[0]}:${ZK_ELECTION_PORTS[0]}
server.2=127.0.0.1:${ZK_QUORUM_PORTS[1]}:${ZK_ELECTION_PORTS[1]}
server.3=127.0.0.1:${ZK_QUORUM_PORTS[2]}:${ZK_ELECTION_PORTS[2]}
EOF
        # A small fixed heap: 10k small znodes need little, and three JVMs
        # share this machine with the other systems' runs.
        spawn "$LOGS/zookeeper-$storage-$i.log" java -Xms256m -Xmx768m -XX:+UseG1GC \
            -Dzookeeper.admin.enableServer=false -Dzookeeper.jmx.log4j.disable=true \
            -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
            -cp "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar$ZK_LOGGER" \
            org.apache.zookeeper.server.quorum.QuorumPeerMain "$cfg"
    done
    for i in 0 1 2; do
        wait_until "zookeeper node $((i + 1))" zk_serving "${ZK_CLIENT_PORTS[i]}"
    done
    log "zookeeper ($storage, $root) is serving"
}

# srvr answers with the node's mode once it is part of a quorum.
zk_serving() {
    tcp_ask "$1" srvr | grep -Eq '^Mode: (leader|follower)'
}

# loopback_servers PORT...: "127.0.0.1:PORT,..." for the load generator.
loopback_servers() {
    local p out=()
    for p in "$@"; do out+=("127.0.0.1:$p"); done
    (IFS=,; echo "${out[*]}")
}

zookeeper_servers() { loopback_servers "${ZK_CLIENT_PORTS[@]}"; }

# ---------------------------------------------------------------- etcd

ETCD_CLIENT_PORTS=(2379 2479 2579)
ETCD_PEER_PORTS=(2380 2480 2580)

start_etcd() {
    local storage=$1 root i cluster=""
    root=$(data_root "$storage")/etcd
    require_free_ports "${ETCD_CLIENT_PORTS[@]}" "${ETCD_PEER_PORTS[@]}"
    for i in 1 2 3; do
        cluster+="${cluster:+,}e$i=http://127.0.0.1:${ETCD_PEER_PORTS[i - 1]}"
    done
    for i in 1 2 3; do
        mkdir -p "$root/e$i"
        spawn "$LOGS/etcd-$storage-$i.log" etcd --name "e$i" --data-dir "$root/e$i" \
            --listen-peer-urls "http://127.0.0.1:${ETCD_PEER_PORTS[i - 1]}" \
            --initial-advertise-peer-urls "http://127.0.0.1:${ETCD_PEER_PORTS[i - 1]}" \
            --listen-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORTS[i - 1]}" \
            --advertise-client-urls "http://127.0.0.1:${ETCD_CLIENT_PORTS[i - 1]}" \
            --initial-cluster "$cluster" --initial-cluster-state new \
            --initial-cluster-token "rzab-compare-$$" --logger zap --log-level warn
    done
    wait_until "etcd" etcd_healthy
    log "etcd ($storage, $root) is healthy"
}

etcd_healthy() {
    ETCDCTL_API=3 timeout 5 etcdctl --endpoints "$(etcd_servers)" --command-timeout=2s \
        endpoint health >/dev/null 2>&1
}

etcd_servers() { loopback_servers "${ETCD_CLIENT_PORTS[@]}"; }

# ---------------------------------------------------------------- rzab

# Each node's datagram address and client (TCP) address; 127.0.0.1-3 so the
# nodes are told apart by IP as on three machines.
RZAB_NODES=(127.0.0.1:17000 127.0.0.2:17000 127.0.0.3:17000)
RZAB_CLIENT_ADDRS=(127.0.0.1:7100 127.0.0.2:7100 127.0.0.3:7100)
RZAB_SERVERS=$(IFS=,; echo "${RZAB_CLIENT_ADDRS[*]}")

# Writes the cluster file and starts nodes 0..2 with `rzab serve`.
start_rzab() {
    local id
    {
        echo "# Written by scripts/compare.sh: a 3-node cluster on 127.0.0.1-3."
        echo "cluster_id = 7"
        echo "leader = 0"
        echo "lanes = 1"
        echo
        echo "[transport]"
        echo 'kind = "udp"'
        echo
        echo "[protocol]"
        echo 'broadcast = "unicast"'
        echo
        echo "[client]"
        echo "slots = 64                # sessions each lane holds (0: no client service)"
        for id in 0 1 2; do
            echo
            echo "[[nodes]]"
            echo "id = $id"
            echo "address = \"${RZAB_NODES[id]}\""
            echo "client = \"${RZAB_CLIENT_ADDRS[id]}\""
        done
    } >"$WORK/rzab.toml"
    for id in 0 1 2; do
        spawn "$LOGS/rzab-$id.log" "$ROOT/target/release/rzab" serve --config "$WORK/rzab.toml" --id "$id"
    done
    local s
    for s in "${RZAB_CLIENT_ADDRS[@]}"; do
        wait_until "rzab $s" tcp_open "$s"
    done
    log "rzab is serving on $RZAB_SERVERS"
}

# Three servers that answer without storing anything, on the addresses
# rzab's nodes used.
start_ceiling() {
    local s
    for s in "${RZAB_CLIENT_ADDRS[@]}"; do
        spawn "$LOGS/ceiling-$s.log" "$ROOT/target/release/rzab" null-server --listen "$s"
    done
    for s in "${RZAB_CLIENT_ADDRS[@]}"; do
        wait_until "null server $s" tcp_open "$s"
    done
    log "null servers are answering on $RZAB_SERVERS"
}

# ---------------------------------------------------------------- main

install_missing
build
mkdir -p "$WORK" "$LOGS" "$JSON" "$DISK_DATA"
: >"$MANIFEST"
fs=$(df --output=fstype "$DISK_DATA" | tail -n 1)
[[ $fs != tmpfs ]] || die "$DISK_DATA is on tmpfs; set OUT to a directory on disk"
log "disk data in $DISK_DATA ($fs), tmpfs data in $SHM_DATA; ${DURATION}s runs after ${WARMUP}s warm-up"

# run_stored SYSTEM: the matrix against SYSTEM once per storage pass, each
# on a fresh ensemble (start_SYSTEM, SYSTEM_servers).
run_stored() {
    local system=$1 storage
    for storage in $STORAGES; do
        "start_$system" "$storage"
        run_matrix "$system" "$storage" "$("${system}_servers")"
        stop_all
        rm -rf "$(data_root "$storage")/$system"
    done
}

[[ $SKIP_ZOOKEEPER == 1 ]] || run_stored zookeeper
[[ $SKIP_ETCD == 1 ]] || run_stored etcd

if [[ $SKIP_RZAB != 1 ]]; then
    start_rzab
    token=()
    [[ -z ${RZAB_TOKEN:-} ]] || token=(--token "$RZAB_TOKEN")
    run_matrix rzab memory "$RZAB_SERVERS" "${token[@]}"
    run_load rzab memory 0.05 64 no-preload "$RZAB_SERVERS" "${token[@]}"
    stop_all
fi

if [[ $SKIP_CEILING != 1 ]]; then
    start_ceiling
    run_matrix ceiling none "$RZAB_SERVERS"
    run_load ceiling none 0.05 64 no-preload "$RZAB_SERVERS"
    stop_all
fi

python3 "$HERE/report.py" "$MANIFEST" "$OUT" \
    --title "$CLIENTS clients, $KEYS keys, ${VALUE_SIZE}-byte values, ${DURATION}s runs on $(nproc) cores"
gnuplot -e "dir='$OUT'" "$HERE/plot.gp"
log "wrote $OUT/results.md and $OUT/compare.png"
if grep -q $'\tfailed$' "$MANIFEST"; then
    die "some runs failed (see $OUT/results.md and $LOGS)"
fi
