#!/usr/bin/env bash
# Builds the switch and the benchmark runner in release mode (with debug symbols, for
# callgrind), installs the peers and tools it needs (iperf3, sockperf, wireguard-go,
# wireguard-tools, boringtun-cli, Open vSwitch, valgrind, perf), and runs `bench`
# with the given arguments (default: all, which also writes bench/chart.svg).
# Results are Markdown tables with ratios measured in the same run; each replaces
# its area's table in bench/RESULTS.md (the replaced one goes to bench/history/).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/bench.sh: run as root (benchmarks build network namespaces)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
need=()
for p in iperf3 sockperf iputils-ping wireguard-go wireguard-tools iproute2 openvswitch-switch openvswitch-common valgrind linux-perf protobuf-compiler libprotobuf-dev etcd-server etcd-client; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v boringtun-cli >/dev/null 2>&1; then
    echo "installing boringtun-cli from crates.io (about 2 minutes)..." >&2
    cargo install boringtun-cli --locked --quiet || echo "boringtun-cli could not be installed; its row will say so" >&2
fi
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked -q -p dataplane -p controller -p bench
exec "${CARGO_TARGET_DIR:-target}/release/bench" "${@:-all}"
