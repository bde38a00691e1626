#!/usr/bin/env bash
# The main job (README's first command): a supercloud network on this one machine,
# in network namespaces. Installs what it needs, builds the binaries, runs the demo
# and removes everything it created on exit, also on Ctrl-C.
#
# This version shows one host: two VMs on one `scd`, routed by flow tables, with
# ARP answered locally and live counters. Multi-cloud tunnels, the controller and
# migration join it as they land (see the open issues).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/demo.sh: run as root (it builds network namespaces)" >&2
    exit 1
fi
need=()
for cmd in ip:iproute2 ping:iputils-ping iperf3:iperf3 curl:curl; do
    command -v "${cmd%%:*}" >/dev/null 2>&1 || need+=("${cmd##*:}")
done
if ((${#need[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

echo "building scd (release)..."
cargo build --release --locked -q -p dataplane
SCD=$PWD/target/release/scd

TAG=demo$$
WORK=$(mktemp -d /tmp/supercloud-demo.XXXXXX)
HOST=$TAG-host-a
NAMESPACES=()
SCD_PID=
cleanup() {
    set +e
    [[ -n $SCD_PID ]] && kill "$SCD_PID" 2>/dev/null && wait "$SCD_PID" 2>/dev/null
    for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$WORK"
    echo "demo: cleaned up (namespaces ${NAMESPACES[*]} removed)"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

GW=02:5c:00:00:00:01
cat >"$WORK/host-a.toml" <<TOML
datapath_id = 1
name = "host-a"
[overlay]
prefix = "100.64.0.0/10"
gateway_mac = "$GW"
[metrics]
listen = "127.0.0.1:9464"
[flows]
file = "flows"
[[port]]
number = 1
name = "${TAG}w"
[[port]]
number = 2
name = "${TAG}d"
TOML
cat >"$WORK/flows" <<FLOWS
# web1 (100.64.1.1) on port 1, db1 (100.64.1.2) on port 2: routed, MACs rewritten.
priority=100,ip,nw_dst=100.64.1.1,actions=set_field:$GW->eth_src,set_field:02:00:00:00:01:01->eth_dst,output:1
priority=100,ip,nw_dst=100.64.1.2,actions=set_field:$GW->eth_src,set_field:02:00:00:00:01:02->eth_dst,output:2
FLOWS

ip netns add "$HOST"; NAMESPACES+=("$HOST")
ip -n "$HOST" link set lo up
ip netns exec "$HOST" "$SCD" run -c "$WORK/host-a.toml" 2>"$WORK/scd.log" &
SCD_PID=$!
for _ in $(seq 50); do
    ip netns exec "$HOST" curl -sf 127.0.0.1:9464/metrics >/dev/null 2>&1 && break
    sleep 0.1
done

attach() { # name tap mac ip
    ip netns add "$TAG-$1"; NAMESPACES+=("$TAG-$1")
    ip -n "$HOST" link set "$2" netns "$TAG-$1"
    ip -n "$TAG-$1" link set "$2" address "$3"
    ip -n "$TAG-$1" addr add "$4/10" dev "$2"
    ip -n "$TAG-$1" link set "$2" up
    ip -n "$TAG-$1" link set lo up
    echo "  VM $1: $4 ($3) on host-a"
}
echo "cloud 1 / host-a: scd pid $SCD_PID"
attach web1 "${TAG}w" 02:00:00:00:01:01 100.64.1.1
attach db1 "${TAG}d" 02:00:00:00:01:02 100.64.1.2

echo; echo "web1 -> db1: ping (ARP answered by host-a's anycast gateway)"
ip netns exec "$TAG-web1" ping -c 3 -i 0.2 100.64.1.2 | tail -2
echo "web1's neighbour table: $(ip -n "$TAG-web1" neigh show | head -1)"

echo; echo "web1 -> db1: TCP throughput for 5 s through scd"
ip netns exec "$TAG-db1" iperf3 -s -1 -D
sleep 0.3
ip netns exec "$TAG-web1" iperf3 -c 100.64.1.2 -t 5 -f m | grep -E "sender|receiver"

echo; echo "host-a counters:"
ip netns exec "$HOST" curl -s 127.0.0.1:9464/metrics |
    grep -E '^scd_(flow_packets|arp_replies|malformed|cache_(hits|misses))' | sed 's/^/  /'
