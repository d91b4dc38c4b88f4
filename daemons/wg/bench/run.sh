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
#
# It prints Gbit/s (median of the runs), the ratio to wggo-bpo (median of same-run
# pairs), daemon CPU seconds per GB moved (both ends) and the peak RSS of each daemon.
# The measuring itself is done by the reference harness /work/shared/bench/wg-anchors.sh
# (called once per implementation group and run; it owns namespaces, daemons, cleanup).
#
# Usage: sudo daemons/wg/bench/run.sh [-r RUNS] [-t SECONDS] [-o DIR] [--no-install]
#        (EDGE_WG_BIN=path uses a prebuilt edge-wg instead of `cargo build --release`;
#         EDGE_WG_BASE=path adds "edge-wg (base)", another build such as the last release,
#         measured in the same runs: before/after figures from one run)
# Needs: root, iperf3, wg, wireguard-go, jq, python3, cargo. Missing anchors are fetched:
#   wireguard-go bookworm-backports: `apt-get download -t bookworm-backports` + dpkg-deb -x
#   boringtun-cli / gotatun-cli:     `cargo install --root $ANCHORS/<name>`
# into $ANCHORS (default /opt/ewg-anchors; never committed).
set -euo pipefail

RUNS=3
DURATION=10
OUT=""
INSTALL=1
ANCHORS="${ANCHORS:-/opt/ewg-anchors}"
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../../.." && pwd)"
HARNESS="${HARNESS:-$ROOT/../shared/bench/wg-anchors.sh}"
[ -x "$HARNESS" ] || HARNESS=/work/shared/bench/wg-anchors.sh

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
[ -x "$HARNESS" ] || { echo "run.sh: harness $HARNESS not found" >&2; exit 1; }
OUT="${OUT:-$ROOT/target/wg-bench/$(date +%Y%m%d-%H%M%S)}"
mkdir -p "$OUT"

# ------------------------------------------------------------------ anchors --
WG_GO_OLD="$(command -v wireguard-go)" || { echo "run.sh: apt-get install wireguard-go" >&2; exit 1; }
WG_GO_BPO="$ANCHORS/wggo-bpo/usr/bin/wireguard-go"
BT="$ANCHORS/boringtun/bin/boringtun-cli"
GT="$ANCHORS/gotatun/bin/gotatun"
if [ "$INSTALL" = 1 ]; then
    if [ ! -x "$WG_GO_BPO" ]; then
        if ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
            echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/bookworm-backports.list
        fi
        apt-get update -qq
        tmp="$(mktemp -d)"
        (cd "$tmp" && apt-get download -t bookworm-backports wireguard-go >/dev/null)
        mkdir -p "$ANCHORS/wggo-bpo"
        dpkg-deb -x "$tmp"/wireguard-go_*.deb "$ANCHORS/wggo-bpo"
        rm -rf "$tmp"
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

# --------------------------------------------------------------------- runs --
# One harness call per group and run; groups interleave within each run so that drift
# on a shared machine hits every implementation alike.
group() {  # run dir-suffix label env... -- harness args...
    local run="$1" sfx="$2"; shift 2
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    env "${envs[@]}" "$HARNESS" -r 1 -t "$DURATION" -o "$OUT/r$run-$sfx" "$@" \
        > "$OUT/r$run-$sfx.log" 2>&1 || echo "group $sfx run $run failed (see $OUT/r$run-$sfx.log)" >&2
}
# An anchor that could not be installed is left out (and missing from the table), rather
# than failing every run.
ANCHOR_IMPLS="veth,wggo,wggo-new"
if [ -x "$BT" ]; then ANCHOR_IMPLS="$ANCHOR_IMPLS,bt"; else echo "run.sh: no boringtun-cli at $BT: left out" >&2; fi
[ -x "$GT" ] || echo "run.sh: no gotatun at $GT: left out" >&2
for run in $(seq 1 "$RUNS"); do
    echo "[$(date +%H:%M:%S)] run $run/$RUNS" >&2
    group "$run" anchors WG_GO="$WG_GO_OLD" WG_GO_NEW="$WG_GO_BPO" BORINGTUN="$BT" -- \
        -i "$ANCHOR_IMPLS,extra" -n edge-wg "$EDGE -f {IFACE}"
    if [ -n "${EDGE_WG_BASE:-}" ]; then
        group "$run" base WG_GO="$WG_GO_BPO" -- -i extra -n edge-wg-base "$EDGE_WG_BASE -f {IFACE}"
    fi
    group "$run" mixed WG_GO="$WG_GO_BPO" -- -i extra-mixed -x -n edge-wg "$EDGE -f {IFACE}"
    if [ -x "$GT" ]; then
        group "$run" gotatun WG_GO="$WG_GO_BPO" -- -i extra -n gotatun \
            "env WG_LOG_LEVEL=error $GT -f --disable-drop-privileges {IFACE}"
    fi
done

# ------------------------------------------------------------------ summary --
python3 - "$OUT" "$DURATION" <<'PYEOF'
import csv, glob, os, re, statistics, sys
out, dur = sys.argv[1], float(sys.argv[2])
rows = []
for f in sorted(glob.glob(os.path.join(out, "r*-*/raw.csv"))):
    m = re.search(r"/r(\d+)-(\w+)/raw.csv$", f)
    run, grp = int(m.group(1)), m.group(2)
    for r in csv.DictReader(open(f)):
        name = {"veth": "veth", "wggo": "wggo-2022", "wggo-new": "wggo-bpo", "bt": "boringtun"}.get(r["impl"])
        if r["impl"] == "extra":
            name = {"gotatun": "gotatun", "base": "edge-wg (base)"}.get(grp, "edge-wg")
        if r["impl"] == "extra-mixed":
            name = "edge-wg<->wggo-bpo"
        if name is None:
            continue
        r["name"], r["run"] = name, run
        rows.append(r)
def f(x):
    try: return float(x)
    except (TypeError, ValueError): return None
order = ["veth", "wggo-2022", "wggo-bpo", "boringtun", "gotatun", "edge-wg (base)", "edge-wg", "edge-wg<->wggo-bpo"]
hdr = ["implementation", "P", "n", "Gbit/s med", "min", "max", "x wggo-bpo", "CPU s/GB", "peak RSS MiB A/B", "retr med"]
table = []
for name in order:
    for p in (1, 4):
        rs = [r for r in rows if r["name"] == name and int(r["streams"]) == p and f(r["gbps"])]
        fails = [r for r in rows if r["name"] == name and int(r["streams"]) == p and r["gbps"] == "FAIL"]
        if not rs:
            if fails: table.append([name, str(p), f"0 ({len(fails)} failed)"] + ["-"] * 7)
            continue
        g = [f(r["gbps"]) for r in rs]
        base = {r["run"]: f(r["gbps"]) for r in rows if r["name"] == "wggo-bpo" and int(r["streams"]) == p and f(r["gbps"])}
        ratios = [f(r["gbps"]) / base[r["run"]] for r in rs if base.get(r["run"])]
        cpu = [(f(r["cpu_s_A"]) + f(r["cpu_s_B"])) / (f(r["gbps"]) * dur / 8) for r in rs
               if f(r["cpu_s_A"]) is not None and f(r["cpu_s_B"]) is not None]
        ha = [f(r["hwm_kb_A"]) for r in rs if f(r["hwm_kb_A"])]
        hb = [f(r["hwm_kb_B"]) for r in rs if f(r["hwm_kb_B"])]
        retr = [f(r["retrans"]) for r in rs if f(r["retrans"]) is not None]
        table.append([name, str(p), str(len(rs)) + (f" ({len(fails)} failed)" if fails else ""),
                      f"{statistics.median(g):.3f}", f"{min(g):.3f}", f"{max(g):.3f}",
                      f"{statistics.median(ratios):.2f}" if ratios else "-",
                      f"{statistics.median(cpu):.2f}" if cpu else "-",
                      f"{max(ha)/1024:.1f}/{max(hb)/1024:.1f}" if ha and hb else "-",
                      f"{statistics.median(retr):.0f}" if retr else "-"])
w = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(hdr)]
line = lambda c: "  ".join(x.rjust(w[i]) if i else x.ljust(w[i]) for i, x in enumerate(c))
print(line(hdr)); print(line(["-" * x for x in w]))
for r in table: print(line(r))
note = ("Gbit/s: iperf3 receiver rate, median of runs. x wggo-bpo: median of same-run ratios to "
        "wireguard-go bookworm-backports. CPU s/GB: user+system seconds of both daemons per 10^9 bytes "
        "moved (kernel TUN/UDP work on their behalf is not included). Peak RSS: VmHWM of each daemon.")
print(note)
with open(os.path.join(out, "summary.md"), "w") as fh:
    fh.write("| " + " | ".join(hdr) + " |\n|" + "|".join("---" for _ in hdr) + "|\n")
    for r in table: fh.write("| " + " | ".join(r) + " |\n")
    fh.write("\n" + note + "\n")
PYEOF
echo "results: $OUT (summary.md, per-group raw.csv and daemon logs)" >&2
