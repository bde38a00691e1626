#!/usr/bin/env bash
# The main job (README's first command): a supercloud on this one machine, in
# network namespaces, with the controller's embedded store in a temporary
# directory. Installs what it needs, builds the binaries, runs the demo
# (netns-tests/src/bin/demo.rs), which removes everything it created on exit,
# also on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/demo.sh: run as root (it builds network namespaces)" >&2
    exit 1
fi
need=()
for cmd in ip:iproute2 ping:iputils-ping ethtool:ethtool tc:iproute2 cc:build-essential protoc:protobuf-compiler; do
    command -v "${cmd%%:*}" >/dev/null 2>&1 || need+=("${cmd##*:}")
done
# etcd-client's build compiles etcd's protocol, which imports protobuf's own
# .proto files: protoc alone (installed without recommends) lacks them.
[[ -f /usr/include/google/protobuf/descriptor.proto ]] || need+=(libprotobuf-dev)
if ((${#need[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

echo "building scd, scc and the demo (release)..."
cargo build --release --locked -q -p dataplane -p controller -p netns-tests --bin scd --bin scc --bin demo --bin nsvm
export SCD_BIN=$PWD/target/release/scd SCC_BIN=$PWD/target/release/scc
echo "the demo prints the web console's address (http://127.0.0.1:8680/console) and the token to sign in with once scc is up"
exec target/release/demo
