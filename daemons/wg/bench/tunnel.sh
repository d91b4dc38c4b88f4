#!/usr/bin/env bash
# daemons/wg/bench/tunnel.sh - the measuring half of the WireGuard benchmark.
#
# run.sh picks the implementations and prints the table; this script does the work:
# it makes two network namespaces for itself, joins them by a veth pair created inside
# them (nothing is configured in the root namespace), and for each implementation starts
# one daemon per namespace, configures the pair with `wg` and `ip`, and runs iperf3 from
# side A to side B through the tunnel.
#
#   ewb<pid>a: veth 10.201.0.1/24   tunnel 10.202.0.1/24   iperf3 client   daemon A
#   ewb<pid>b: veth 10.201.0.2/24   tunnel 10.202.0.2/24   iperf3 server   daemon B
#
# Usage: tunnel.sh -o DIR [-r RUNS] [-t SECONDS] [-P "1 4"] [--veth]
#                  [-i NAME TEMPLATE_A TEMPLATE_B]...
#
#   --veth  adds the row "veth": iperf3 straight over the veth pair, no tunnel (the ceiling).
#   -i      adds an implementation. A template is the daemon's command line with {IFACE}
#           where the interface name goes, e.g. 'wireguard-go -f {IFACE}'. It is split on
#           blanks (no shell quoting: paths must not contain blanks) and started with
#           `ip netns exec`. The daemon must stay in the foreground, create the TUN
#           interface {IFACE} and answer on /var/run/wireguard/{IFACE}.sock (the UAPI
#           that `wg` talks to). NAME is free text without commas.
#
# The runs interleave: run 1 measures every implementation in the order given (each with
# every stream count), then run 2 does the same, and so on, so that a slow minute on a
# shared machine hits all implementations rather than one.
#
# Results in DIR:
#   raw.csv    run,name,streams,gbps,bytes,retransmits,cpu_s_A,cpu_s_B,hwm_kb_A,hwm_kb_B,load1
#              gbps is iperf3's receiver rate (FAIL when the tunnel or the test failed);
#              cpu_s_X the user+system seconds daemon X and its children used during the
#              test; hwm_kb_X its peak RSS (VmHWM, summed over its process tree) after all
#              its tests; load1 the 1-minute load average before the test.
#   env.txt    machine, tool versions and the templates
#   iperf3 JSON of every test and the output of every daemon start.
#
# Cleanup (trap on EXIT, INT and TERM): the processes this script started are stopped by
# their PIDs, both namespaces are deleted (and with them the veth pair and any TUN left
# behind), and the UAPI sockets of its two interface names are removed.
#
# Needs: root, iproute2, iperf3, wireguard-tools (wg), iputils-ping, procps (pgrep),
# python3, /dev/net/tun.
set -uo pipefail

RUNS=3
DURATION=10
STREAMS="1 4"
OUT=""
WITH_VETH=0
NAMES=(); TMPL_A=(); TMPL_B=()

while [ $# -gt 0 ]; do
    case "$1" in
        -o) OUT="$2"; shift 2 ;;
        -r) RUNS="$2"; shift 2 ;;
        -t) DURATION="$2"; shift 2 ;;
        -P) STREAMS="$2"; shift 2 ;;
        --veth) WITH_VETH=1; shift ;;
        -i) [ $# -ge 4 ] || { echo "tunnel.sh: -i needs NAME TEMPLATE_A TEMPLATE_B" >&2; exit 2; }
            NAMES+=("$2"); TMPL_A+=("$3"); TMPL_B+=("$4"); shift 4 ;;
        -h|--help) sed -n '2,/^set -uo/p' "$0" | sed -e '/^set -uo/d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "tunnel.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

fail() { echo "tunnel.sh: $*" >&2; exit 1; }
say() { echo "[$(date +%H:%M:%S)] $*" >&2; }

[ "$(id -u)" = 0 ] || fail "must run as root (it creates network namespaces)"
[ -n "$OUT" ] || fail "-o DIR is required"
[ -c /dev/net/tun ] || fail "/dev/net/tun is missing"
for tool in ip iperf3 wg ping pgrep timeout python3; do
    command -v "$tool" >/dev/null || fail "$tool not found (see the Needs: line of $0)"
done
for i in "${!NAMES[@]}"; do
    [[ "${NAMES[$i]}" != *,* ]] || fail "name '${NAMES[$i]}' contains a comma"
    for t in "${TMPL_A[$i]}" "${TMPL_B[$i]}"; do
        [[ "$t" == *"{IFACE}"* ]] || fail "template '$t' has no {IFACE}"
    done
done
mkdir -p "$OUT" || fail "cannot create $OUT"

# Everything this run creates carries its PID, so two runs never collide and cleanup can
# never touch what belongs to someone else.
TAG="ewb$$"
NS_A="${TAG}a";   NS_B="${TAG}b"       # network namespaces
VETH_A="${TAG}va"; VETH_B="${TAG}vb"   # veth ends (interface names: at most 15 characters)
IF_A="${TAG}A";   IF_B="${TAG}B"       # tunnel interfaces; the UAPI socket directory is not
                                       # per namespace, so the two names must differ
UNDER_A=10.201.0.1; UNDER_B=10.201.0.2
OVER_A=10.202.0.1;  OVER_B=10.202.0.2
PORT=51820
MTU=1420
UAPI=/var/run/wireguard
KEYS="$(mktemp -d /tmp/ewb-keys.XXXXXX)" || fail "mktemp"
RAW="$OUT/raw.csv"
TICKS_PER_S="$(getconf CLK_TCK)"

# ------------------------------------------------------------ our processes --
# Every background process is started by this script and remembered here; nothing else
# is ever signalled.
STARTED=()
SERVER_PID=""
CLIENT_PID=""
DAEMON_A=""; DAEMON_B=""
MADE_NS=()

tree_of() {  # a PID and all its descendants, parents first
    local child
    echo "$1"
    for child in $(pgrep -P "$1" 2>/dev/null); do tree_of "$child"; done
}

stop() {  # stop one of our PIDs: TERM, up to 5 s grace, then KILL its whole tree; reap it
    local pid="$1" n
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for n in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            for n in $(tree_of "$pid"); do kill -KILL "$n" 2>/dev/null; done
        fi
    fi
    wait "$pid" 2>/dev/null
    return 0
}

forget() {  # drop stopped PIDs from STARTED: once reaped, the number may go to someone else
    local p q keep=()
    for p in "${STARTED[@]}"; do
        for q in "$@"; do [ "$p" = "$q" ] && continue 2; done
        keep+=("$p")
    done
    STARTED=("${keep[@]}")
}

cleanup() {
    trap - EXIT INT TERM
    local pid ns
    stop "$CLIENT_PID"
    for pid in "${STARTED[@]}"; do stop "$pid"; done
    for ns in "${MADE_NS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    rm -f "$UAPI/$IF_A.sock" "$UAPI/$IF_B.sock"
    rm -rf "$KEYS"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM

# ---------------------------------------------------- what a daemon costs --
cpu_ticks() {  # utime+stime of a process tree (a process's stat already covers its threads)
    local total=0 pid stat fields
    for pid in $(tree_of "$1"); do
        stat="$(cat "/proc/$pid/stat" 2>/dev/null)" || continue
        # the command name may contain blanks: the fixed fields start after its ")".
        # There, utime and stime are the 12th and 13th (fields 14 and 15 of proc(5)).
        read -r -a fields <<< "${stat##*) }"
        total=$((total + fields[11] + fields[12]))
    done
    echo "$total"
}

peak_rss_kb() {  # VmHWM summed over a process tree
    local total=0 pid kb
    for pid in $(tree_of "$1"); do
        kb="$(awk '$1 == "VmHWM:" { print $2 }' "/proc/$pid/status" 2>/dev/null)"
        total=$((total + ${kb:-0}))
    done
    echo "$total"
}

seconds() { awk -v t="$1" -v hz="$TICKS_PER_S" 'BEGIN { printf "%.2f", t / hz }'; }

# ----------------------------------------------------------------- network --
make_namespaces() {
    local ns
    for ns in "$NS_A" "$NS_B"; do
        ip netns add "$ns" || fail "cannot create namespace $ns"
        MADE_NS+=("$ns")   # cleanup deletes only what it made
    done
    # the veth pair is born in A with its peer end placed in B: it never exists in the root
    ip -n "$NS_A" link add "$VETH_A" type veth peer name "$VETH_B" netns "$NS_B" || fail "veth"
    ip -n "$NS_A" addr add "$UNDER_A/24" dev "$VETH_A"
    ip -n "$NS_B" addr add "$UNDER_B/24" dev "$VETH_B"
    ip -n "$NS_A" link set lo up; ip -n "$NS_A" link set "$VETH_A" up
    ip -n "$NS_B" link set lo up; ip -n "$NS_B" link set "$VETH_B" up
    ip netns exec "$NS_A" ping -q -c 1 -W 2 "$UNDER_B" >/dev/null || fail "no ping over the veth pair"
}

start_server() {
    ip netns exec "$NS_B" iperf3 -s >>"$OUT/iperf3-server.log" 2>&1 &
    SERVER_PID=$!
    STARTED+=("$SERVER_PID")
    local n
    for n in $(seq 50); do
        ip netns exec "$NS_B" ss -Hltn 'sport = :5201' 2>/dev/null | grep -q . && return 0
        sleep 0.1
    done
    fail "iperf3 server did not start (see $OUT/iperf3-server.log)"
}

restart_server() {  # after a failed test the server may still hold the dead one
    stop "$SERVER_PID"
    forget "$SERVER_PID"
    start_server
}

make_keys() {
    ( umask 077
      wg genkey > "$KEYS/a"; wg pubkey < "$KEYS/a" > "$KEYS/a.pub"
      wg genkey > "$KEYS/b"; wg pubkey < "$KEYS/b" > "$KEYS/b.pub" )
}

# start_daemon NS IFACE TEMPLATE LOG: starts it, waits for its TUN and UAPI socket.
# Sets LAST_PID (the daemon stays a child of this shell, so no command substitution).
start_daemon() {
    local ns="$1" ifc="$2" tmpl="$3" log="$4" argv n
    read -r -a argv <<< "${tmpl//\{IFACE\}/$ifc}"
    rm -f "$UAPI/$ifc.sock"   # ours by name; a leftover would fool the wait below
    echo "# ip netns exec $ns ${argv[*]}" > "$log"
    # ip netns exec (and env in a template) exec the program: $! is the daemon itself
    ip netns exec "$ns" "${argv[@]}" >>"$log" 2>&1 &
    LAST_PID=$!
    STARTED+=("$LAST_PID")
    for n in $(seq 100); do
        kill -0 "$LAST_PID" 2>/dev/null || { echo "daemon exited: ${argv[*]} (see $log)" >&2; return 1; }
        if [ -S "$UAPI/$ifc.sock" ] && ip -n "$ns" link show "$ifc" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    echo "no $UAPI/$ifc.sock after 10 s: ${argv[*]} (see $log)" >&2
    return 1
}

# configure NS IFACE MY_KEY MY_ADDR PEER_PUB PEER_ADDR PEER_UNDERLAY
configure() {
    ip -n "$1" addr add "$4/24" dev "$2" &&
    ip -n "$1" link set "$2" mtu "$MTU" &&
    ip netns exec "$1" wg set "$2" private-key "$3" listen-port "$PORT" \
        peer "$(cat "$5")" allowed-ips "$6/32" endpoint "$7:$PORT" &&
    ip -n "$1" link set "$2" up
}

tunnel_up() {  # index run -> 0 when a ping crosses the tunnel
    local i="$1" run="$2" slug n rc
    slug="$(slug "${NAMES[$i]}")"
    # remember each PID even when the start fails, so that tunnel_down stops it
    start_daemon "$NS_A" "$IF_A" "${TMPL_A[$i]}" "$OUT/daemon-$slug-r$run-A.log"; rc=$?
    DAEMON_A="$LAST_PID"; [ "$rc" = 0 ] || return 1
    start_daemon "$NS_B" "$IF_B" "${TMPL_B[$i]}" "$OUT/daemon-$slug-r$run-B.log"; rc=$?
    DAEMON_B="$LAST_PID"; [ "$rc" = 0 ] || return 1
    configure "$NS_A" "$IF_A" "$KEYS/a" "$OVER_A" "$KEYS/b.pub" "$OVER_B" "$UNDER_B" || return 1
    configure "$NS_B" "$IF_B" "$KEYS/b" "$OVER_B" "$KEYS/a.pub" "$OVER_A" "$UNDER_A" || return 1
    # the first packet starts the handshake; keep pinging until one comes back
    for n in $(seq 20); do
        ip netns exec "$NS_A" ping -q -c 1 -W 1 "$OVER_B" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "no ping over the tunnel of ${NAMES[$i]} after 20 tries" >&2
    return 1
}

tunnel_down() {
    stop "$DAEMON_A"; stop "$DAEMON_B"
    forget "$DAEMON_A" "$DAEMON_B"
    DAEMON_A=""; DAEMON_B=""
    rm -f "$UAPI/$IF_A.sock" "$UAPI/$IF_B.sock"
    # a daemon that had to be killed may leave its TUN behind
    ip -n "$NS_A" link del "$IF_A" 2>/dev/null
    ip -n "$NS_B" link del "$IF_B" 2>/dev/null
    return 0
}

slug() { echo "$1" | tr -c 'A-Za-z0-9_.\n-' '_'; }

# ------------------------------------------------------------------ a test --
# measure NAME RUN STREAMS TARGET: one iperf3 test; sets RESULT to
# "gbps,bytes,retransmits,cpu_s_A,cpu_s_B,load1". Not run in a command substitution: the
# client must be our child (to be stopped on INT/TERM) and a failed test restarts the server.
measure() {
    local name="$1" run="$2" streams="$3" target="$4" json a0=0 b0=0 a1=0 b1=0 load result
    RESULT=""
    json="$OUT/iperf3-$(slug "$name")-r$run-P$streams.json"
    load="$(cut -d' ' -f1 /proc/loadavg)"
    [ -n "$DAEMON_A" ] && a0="$(cpu_ticks "$DAEMON_A")"
    [ -n "$DAEMON_B" ] && b0="$(cpu_ticks "$DAEMON_B")"
    # in the background and waited for, so that INT/TERM reach our trap at once
    timeout $((DURATION + 30)) ip netns exec "$NS_A" \
        iperf3 -c "$target" -J -t "$DURATION" -P "$streams" >"$json" 2>"$json.err" &
    CLIENT_PID=$!
    wait "$CLIENT_PID"
    CLIENT_PID=""
    [ -s "$json.err" ] || rm -f "$json.err"
    [ -n "$DAEMON_A" ] && a1="$(cpu_ticks "$DAEMON_A")"
    [ -n "$DAEMON_B" ] && b1="$(cpu_ticks "$DAEMON_B")"
    # receiver side: what arrived, not what was sent
    result="$(python3 - "$json" <<'EOF'
import json, sys
try:
    end = json.load(open(sys.argv[1]))["end"]
    got = end["sum_received"]
    print(f'{got["bits_per_second"] / 1e9:.4f},{got["bytes"]},{end["sum_sent"].get("retransmits", "")}')
except Exception:
    print("FAIL,,")
EOF
)"
    [[ "$result" == FAIL* ]] && restart_server
    local cpu_a="" cpu_b=""
    [ -n "$DAEMON_A" ] && cpu_a="$(seconds $((a1 - a0)))"
    [ -n "$DAEMON_B" ] && cpu_b="$(seconds $((b1 - b0)))"
    say "  $(printf '%-22s' "$name") P=$streams run $run: ${result%%,*} Gbit/s, retransmits ${result##*,}, daemon CPU s A=${cpu_a:--} B=${cpu_b:--}"
    RESULT="$result,$cpu_a,$cpu_b,$load"
}

# measure_all INDEX|veth RUN: every stream count for one implementation, rows into raw.csv
measure_all() {
    local i="$1" run="$2" name target s rows=() row hwm_a="" hwm_b="" g by re ca cb lo
    if [ "$i" = veth ]; then
        name=veth; target="$UNDER_B"
    else
        name="${NAMES[$i]}"; target="$OVER_B"
        if ! tunnel_up "$i" "$run"; then
            say "  $name run $run: the tunnel did not come up (logs: $OUT/daemon-$(slug "$name")-r$run-*.log)"
            tunnel_down
            for s in $STREAMS; do echo "$run,$name,$s,FAIL,,,,,,,"; done >> "$RAW"
            return
        fi
    fi
    for s in $STREAMS; do
        measure "$name" "$run" "$s" "$target"
        rows+=("$s:$RESULT")
    done
    [ -n "$DAEMON_A" ] && hwm_a="$(peak_rss_kb "$DAEMON_A")"
    [ -n "$DAEMON_B" ] && hwm_b="$(peak_rss_kb "$DAEMON_B")"
    for row in "${rows[@]}"; do
        # row = streams:gbps,bytes,retr,cpuA,cpuB,load -> the column order of raw.csv
        IFS=, read -r g by re ca cb lo <<< "${row#*:}"
        echo "$run,$name,${row%%:*},$g,$by,$re,$ca,$cb,$hwm_a,$hwm_b,$lo" >> "$RAW"
    done
    [ "$i" = veth ] || tunnel_down
}

# -------------------------------------------------------------------- main --
{
    echo "date: $(date -u '+%F %T UTC')"
    echo "kernel: $(uname -r)"
    echo "cpu: $(nproc) x $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "iperf3: $(iperf3 --version 2>&1 | head -1)"
    echo "wg: $(wg --version 2>&1 | head -1)"
    echo "runs: $RUNS  seconds: $DURATION  streams: $STREAMS  overlay MTU: $MTU"
    for i in "${!NAMES[@]}"; do echo "impl ${NAMES[$i]}: A '${TMPL_A[$i]}'  B '${TMPL_B[$i]}'"; done
} > "$OUT/env.txt"
echo "run,name,streams,gbps,bytes,retransmits,cpu_s_A,cpu_s_B,hwm_kb_A,hwm_kb_B,load1" > "$RAW"

make_namespaces
make_keys
start_server
say "namespaces $NS_A and $NS_B ready; results in $OUT"
for run in $(seq "$RUNS"); do
    say "run $run/$RUNS"
    [ "$WITH_VETH" = 1 ] && measure_all veth "$run"
    for i in "${!NAMES[@]}"; do measure_all "$i" "$run"; done
done
say "raw data: $RAW"
