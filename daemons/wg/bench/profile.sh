#!/usr/bin/env bash
# daemons/wg/bench/profile.sh - where the CPU goes in an edge-wg <-> edge-wg iperf3 run.
#
# Two namespaces (ewg-pa / ewg-pb) joined by a veth pair, edge-wg in each, iperf3 with
# -P STREAMS for SECONDS; meanwhile `perf record -a -g` (software cpu-clock: this VM has no
# hardware counters) samples the whole machine. Prints the share of samples by process,
# by shared object, and the top symbols of the edge-wg processes.
#
# Usage: sudo daemons/wg/bench/profile.sh [-P STREAMS] [-t SECONDS] [EDGE_WG_BINARY]
set -euo pipefail
P=4; T=8
while [ $# -gt 0 ]; do
    case "$1" in
        -P) P="$2"; shift 2 ;;
        -t) T="$2"; shift 2 ;;
        *) BIN="$1"; shift ;;
    esac
done
HERE="$(cd "$(dirname "$0")" && pwd)"
BIN="${BIN:-$HERE/../../../target/release/edge-wg}"
[ "$(id -u)" = 0 ] || { echo "profile.sh: must run as root" >&2; exit 1; }
command -v perf >/dev/null || { echo "profile.sh: apt-get install linux-perf" >&2; exit 1; }
A=ewg-pa; B=ewg-pb; IA=ewgpa; IB=ewgpb
TMP="$(mktemp -d)"; PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    sleep 0.5
    ip netns del $A 2>/dev/null || true; ip netns del $B 2>/dev/null || true
    rm -f /var/run/wireguard/$IA.sock /var/run/wireguard/$IB.sock
    rm -rf "$TMP"
}
trap cleanup EXIT
ip netns add $A; ip netns add $B
ip -n $A link add va type veth peer name vb netns $B
ip -n $A addr add 10.99.0.1/24 dev va; ip -n $B addr add 10.99.0.2/24 dev vb
for n in $A $B; do ip -n $n link set lo up; done
ip -n $A link set va up; ip -n $B link set vb up
umask 077
wg genkey > "$TMP/a"; wg pubkey < "$TMP/a" > "$TMP/a.pub"; wg genkey > "$TMP/b"; wg pubkey < "$TMP/b" > "$TMP/b.pub"
ip netns exec $A "$BIN" -f $IA > "$TMP/a.log" 2>&1 & PIDS+=($!)
ip netns exec $B "$BIN" -f $IB > "$TMP/b.log" 2>&1 & PIDS+=($!)
for i in $(seq 50); do [ -S /var/run/wireguard/$IA.sock ] && [ -S /var/run/wireguard/$IB.sock ] && break; sleep 0.1; done
ip -n $A addr add 10.98.0.1/24 dev $IA; ip -n $B addr add 10.98.0.2/24 dev $IB
ip -n $A link set $IA mtu 1420 up; ip -n $B link set $IB mtu 1420 up
ip netns exec $A wg set $IA private-key "$TMP/a" listen-port 51820 peer "$(cat "$TMP/b.pub")" allowed-ips 10.98.0.2/32 endpoint 10.99.0.2:51820
ip netns exec $B wg set $IB private-key "$TMP/b" listen-port 51820 peer "$(cat "$TMP/a.pub")" allowed-ips 10.98.0.1/32 endpoint 10.99.0.1:51820
ip netns exec $A ping -c 1 -W 2 10.98.0.2 >/dev/null
ip netns exec $B iperf3 -s -1 >/dev/null 2>&1 & PIDS+=($!)
sleep 0.5
ip netns exec $A iperf3 -c 10.98.0.2 -t $((T + 2)) -P "$P" > "$TMP/iperf.txt" &
IP=$!
sleep 1
perf record -q -a -g -e cpu-clock -F 499 -o "$TMP/perf.data" -- sleep "$T" 2>/dev/null
wait $IP || true
grep -E "SUM.*receiver|receiver$" "$TMP/iperf.txt" | tail -1
echo "--- share of all CPU samples by process"
perf report -i "$TMP/perf.data" --stdio --sort comm --no-children 2>/dev/null | grep -E '^ +[0-9]' | head -8
echo "--- edge-wg threads: by shared object"
perf report -i "$TMP/perf.data" --stdio --comms wg-tx0,wg-tx1,wg-rxv4,wg-timer --sort dso --no-children 2>/dev/null | grep -E '^ +[0-9]' | head -6
echo "--- edge-wg threads: top symbols"
perf report -i "$TMP/perf.data" --stdio --comms wg-tx0,wg-tx1,wg-rxv4 --sort sym --no-children 2>/dev/null | grep -E '^ +[0-9]' | head -25
