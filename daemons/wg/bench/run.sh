#!/usr/bin/env bash
# daemons/wg/bench/run.sh - the edge-wg throughput benchmark, one command.
#
# iperf3 TCP with 1 and 4 streams through a tunnel between two network namespaces,
# for every implementation below, all in one run on this machine, runs interleaved:
#   veth            bare veth pair (the ceiling)
#   wggo-2022       wireguard-go <-> wireguard-go, Debian bookworm (0.0.20220316)
#   wggo-bpo        wireguard-go <-> wireguard-go, bookworm-backports (0.0.20231211): the anchor
#   boringtun       boringtun-cli 0.7.1 <-> same (crates.io)
#   gotatun         gotatun-cli <-> same (crates.io)
#   edge-wg         edge-wg <-> edge-wg (release build of this workspace)
#   edge-wg<->wggo-bpo   edge-wg (A, iperf3 client side) <-> wireguard-go backports (B)
# An anchor that is not installed is left out with a message (the mixed row then uses
# Debian's wireguard-go, and so does the ratio column, with a note).
#
# It prints Gbit/s (median of the runs), the ratio to wggo-bpo (median of same-run
# pairs), daemon CPU seconds per GB moved (both ends) and the peak RSS of each daemon.
# The measuring is done by tunnel.sh beside this script (namespaces, daemons, iperf3,
# cleanup); this script installs the anchors, picks the implementations and summarizes.
#
# Usage: sudo daemons/wg/bench/run.sh [-r RUNS] [-t SECONDS] [-o DIR] [--no-install]
#        (EDGE_WG_BIN=path uses a prebuilt edge-wg instead of `cargo build --release`;
#         EDGE_WG_BASE=path adds "edge-wg (base)", another build such as the last release,
#         measured in the same runs: before/after figures from one run)
#        Results go to DIR (default target/wg-bench/<timestamp>): raw.csv, summary.md,
#        env.txt, iperf3 JSON and daemon logs. Paths must not contain blanks.
# Needs: root; the Debian packages iproute2, iperf3, wireguard-tools, wireguard-go,
#   iputils-ping, procps and python3; cargo. Missing anchors are fetched unless --no-install:
#   wireguard-go bookworm-backports: `apt-get download -t bookworm-backports wireguard-go`
#     + dpkg-deb -x, only if apt already knows the bookworm-backports suite (this script
#     never changes apt's configuration; without that suite it says how to add it)
#   boringtun-cli / gotatun-cli:     `cargo install --root $ANCHORS/<name>` by crate name
# into $ANCHORS (default /opt/ewg-anchors; never committed).
set -euo pipefail

RUNS=3
DURATION=10
OUT=""
INSTALL=1
ANCHORS="${ANCHORS:-/opt/ewg-anchors}"
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"

while [ $# -gt 0 ]; do
    case "$1" in
        -r) RUNS="$2"; shift 2 ;;
        -t) DURATION="$2"; shift 2 ;;
        -o) OUT="$2"; shift 2 ;;
        --no-install) INSTALL=0; shift ;;
        -h|--help) sed -n '2,/^set -e/p' "$0" | sed -e '/^set -e/d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "run.sh: must run as root (network namespaces)" >&2; exit 1; }
OUT="${OUT:-$ROOT/target/wg-bench/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"

# ------------------------------------------------------------------ anchors --
WG_GO_DEB="$(command -v wireguard-go || true)"
WG_GO_BPO="$ANCHORS/wggo-bpo/usr/bin/wireguard-go"
BT="$ANCHORS/boringtun/bin/boringtun-cli"
GT="$ANCHORS/gotatun/bin/gotatun"
if [ "$INSTALL" = 1 ]; then
    if [ ! -x "$WG_GO_BPO" ]; then
        # Only from a suite apt already has: adding one is the administrator's decision.
        if apt-cache policy wireguard-go 2>/dev/null | grep bookworm-backports >/dev/null; then
            tmp="$(mktemp -d)"
            if (cd "$tmp" && apt-get download -q -t bookworm-backports wireguard-go >/dev/null); then
                mkdir -p "$ANCHORS/wggo-bpo"
                dpkg-deb -x "$tmp"/wireguard-go_*.deb "$ANCHORS/wggo-bpo"
            fi
            rm -rf "$tmp"
        else
            echo "run.sh: apt knows no bookworm-backports wireguard-go. For the anchor, add the" >&2
            echo "  bookworm-backports suite to your apt sources (see Debian's backports" >&2
            echo "  instructions), run apt-get update, and run this again." >&2
        fi
    fi
    [ -x "$BT" ] || cargo install --quiet --locked --root "$ANCHORS/boringtun" boringtun-cli --version 0.7.1 || true
    [ -x "$GT" ] || cargo install --quiet --root "$ANCHORS/gotatun" gotatun-cli || true
fi
if [ -n "${EDGE_WG_BIN:-}" ]; then
    EDGE="$EDGE_WG_BIN"   # a prebuilt binary (e.g. from another target dir)
else
    (cd "$ROOT" && cargo build --quiet --release -p edge-wg)
    EDGE="$ROOT/target/release/edge-wg"
fi
[ -x "$EDGE" ] || { echo "run.sh: no edge-wg at $EDGE" >&2; exit 1; }

# ---------------------------------------------------------- implementations --
# NAME, daemon template for side A (iperf3 client), for side B (server); see tunnel.sh.
# boringtun and gotatun get --disable-drop-privileges: their privilege drop asks getlogin(),
# which a process without a login session does not have.
IMPLS=(--veth)
add() { IMPLS+=(-i "$1" "$2" "${3:-$2}"); }
missing() { echo "run.sh: $1: left out" >&2; }
if [ -n "$WG_GO_DEB" ]; then add wggo-2022 "$WG_GO_DEB -f {IFACE}"; else missing "no wireguard-go (apt-get install wireguard-go)"; fi
if [ -x "$WG_GO_BPO" ]; then add wggo-bpo "$WG_GO_BPO -f {IFACE}"; else missing "no bookworm-backports wireguard-go at $WG_GO_BPO"; fi
if [ -x "$BT" ]; then add boringtun "$BT -f --disable-drop-privileges {IFACE}"; else missing "no boringtun-cli at $BT"; fi
if [ -x "$GT" ]; then add gotatun "env WG_LOG_LEVEL=error $GT -f --disable-drop-privileges {IFACE}"; else missing "no gotatun at $GT"; fi
[ -z "${EDGE_WG_BASE:-}" ] || add "edge-wg (base)" "$EDGE_WG_BASE -f {IFACE}"
add edge-wg "$EDGE -f {IFACE}"
# the mixed pair: edge-wg encrypts (A), wireguard-go decrypts (B); the anchor build if there
if [ -x "$WG_GO_BPO" ]; then
    add "edge-wg<->wggo-bpo" "$EDGE -f {IFACE}" "$WG_GO_BPO -f {IFACE}"
elif [ -n "$WG_GO_DEB" ]; then
    add "edge-wg<->wggo-2022" "$EDGE -f {IFACE}" "$WG_GO_DEB -f {IFACE}"
fi

# --------------------------------------------------------------------- runs --
# One harness for all runs; it interleaves the implementations run by run. It runs in the
# background so that INT/TERM sent to this script reach it (its trap cleans up).
"$HERE/tunnel.sh" -o "$OUT" -r "$RUNS" -t "$DURATION" -P "1 4" "${IMPLS[@]}" &
HARNESS_PID=$!
trap 'kill -TERM "$HARNESS_PID" 2>/dev/null; wait "$HARNESS_PID"; exit 130' INT TERM
wait "$HARNESS_PID" || { echo "run.sh: tunnel.sh failed" >&2; exit 1; }
trap - INT TERM

# ------------------------------------------------------------------ summary --
# The ratio column compares with the bookworm-backports wireguard-go run in the same run;
# without it, with Debian's wireguard-go (said in the note).
python3 - "$OUT" <<'PYEOF'
import csv, os, statistics, sys
out = sys.argv[1]
rows = list(csv.DictReader(open(os.path.join(out, "raw.csv"))))
def f(x):
    try: return float(x)
    except (TypeError, ValueError): return None
names = []
for r in rows:
    if r["name"] not in names: names.append(r["name"])
ok = lambda r: f(r["gbps"]) is not None
anchor = next((a for a in ("wggo-bpo", "wggo-2022") if any(r["name"] == a and ok(r) for r in rows)), None)
hdr = ["implementation", "P", "n", "Gbit/s med", "min", "max", f"x {anchor or 'anchor'}",
       "CPU s/GB", "peak RSS MiB A/B", "retr med"]
table = []
for name in names:
    for p in sorted({int(r["streams"]) for r in rows}):
        mine = [r for r in rows if r["name"] == name and int(r["streams"]) == p]
        rs = [r for r in mine if ok(r)]
        fails = len(mine) - len(rs)
        if not rs:
            table.append([name, str(p), f"0 ({fails} failed)"] + ["-"] * 7)
            continue
        g = [f(r["gbps"]) for r in rs]
        # ratio: per run against the anchor's figure of that run, then the median
        base = {r["run"]: f(r["gbps"]) for r in rows if r["name"] == anchor and int(r["streams"]) == p and ok(r)}
        ratios = [f(r["gbps"]) / base[r["run"]] for r in rs if base.get(r["run"])]
        # CPU of both daemons per 10^9 bytes received
        cpu = [(f(r["cpu_s_A"]) + f(r["cpu_s_B"])) / (f(r["bytes"]) / 1e9) for r in rs
               if None not in (f(r["cpu_s_A"]), f(r["cpu_s_B"])) and f(r["bytes"])]
        ha = [f(r["hwm_kb_A"]) for r in rs if f(r["hwm_kb_A"])]
        hb = [f(r["hwm_kb_B"]) for r in rs if f(r["hwm_kb_B"])]
        retr = [f(r["retransmits"]) for r in rs if f(r["retransmits"]) is not None]
        table.append([name, str(p), str(len(rs)) + (f" ({fails} failed)" if fails else ""),
                      f"{statistics.median(g):.3f}", f"{min(g):.3f}", f"{max(g):.3f}",
                      f"{statistics.median(ratios):.2f}" if ratios else "-",
                      f"{statistics.median(cpu):.2f}" if cpu else "-",
                      f"{max(ha)/1024:.1f}/{max(hb)/1024:.1f}" if ha and hb else "-",
                      f"{statistics.median(retr):.0f}" if retr else "-"])
w = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(hdr)]
line = lambda c: "  ".join(x.rjust(w[i]) if i else x.ljust(w[i]) for i, x in enumerate(c))
print(line(hdr)); print(line(["-" * x for x in w]))
for r in table: print(line(r))
ratio_note = {
    "wggo-bpo": "x wggo-bpo: median of same-run ratios to wireguard-go bookworm-backports.",
    "wggo-2022": "x wggo-2022: median of same-run ratios to Debian's wireguard-go (0.0.20220316): "
                 "the bookworm-backports build, the usual anchor, was not measured, so these "
                 "ratios are not comparable with the x wggo-bpo ones.",
    None: "No wireguard-go was measured: no ratios.",
}[anchor]
note = ("Gbit/s: iperf3 receiver rate, median of runs. " + ratio_note + " CPU s/GB: user+system "
        "seconds of both daemons per 10^9 bytes received (kernel TUN/UDP work on their behalf is "
        "not included). Peak RSS: VmHWM of each daemon. retr: TCP retransmits per test.")
print(note)
with open(os.path.join(out, "summary.md"), "w") as fh:
    fh.write("| " + " | ".join(hdr) + " |\n|" + "|".join("---" for _ in hdr) + "|\n")
    for r in table: fh.write("| " + " | ".join(r) + " |\n")
    fh.write("\n" + note + "\n")
PYEOF
echo "results: $OUT (summary.md, raw.csv, env.txt, iperf3 JSON and daemon logs)" >&2
