#!/usr/bin/env bash
# Same-run before/after: builds an earlier commit of the project beside this
# checkout and runs the named benchmarks for both builds, alternating, so that a
# change (a refactoring, an optimisation) is judged against its parent under the
# same machine load. Timings on these shared machines drift by tens of percent
# between runs; only pairs measured back to back are compared.
#
#   bash scripts/bench-compare.sh REV [BENCH...]
#
# BENCH is any `bench` subcommand (tunnel, switching, flowmod, …) or a criterion
# bench of the `bench` crate prefixed with `criterion:` (criterion:classifier,
# criterion:netkat_compile). Default: tunnel switching criterion:classifier
# criterion:netkat_compile. ROUNDS (default 2) is how many old/new pairs each
# runtime benchmark gets. Output: one log per run under bench-compare/ (git
# ignores it) and their file names on stdout; copy the tables into bench/RESULTS.md.
# CRITERION_ARGS adds criterion options (e.g. "--measurement-time 3").
# OLD_TREE=DIR uses an existing checkout of REV (with its own target/) instead.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 1 ]]; then
    echo "usage: bash scripts/bench-compare.sh REV [BENCH...]" >&2
    exit 2
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/bench-compare.sh: run as root (benchmarks build network namespaces)" >&2
    exit 1
fi
rev=$(git rev-parse --short "$1")
shift
benches=("$@")
((${#benches[@]})) || benches=(tunnel switching criterion:classifier criterion:netkat_compile)
rounds=${ROUNDS:-2}
here=$(pwd)
out=$here/bench-compare
old=${OLD_TREE:-$out/tree-$rev}
mkdir -p "$out"

if [[ ! -d $old ]]; then
    echo "checking out $rev into $old" >&2
    git worktree add --detach -q "$old" "$rev"
fi
# The peers, tools and this build, as bench.sh installs and builds them.
echo "building this checkout ($(git rev-parse --short HEAD)) and $rev (release)" >&2
env -u CARGO_TARGET_DIR cargo build --release --locked -q -p dataplane -p controller -p bench
(cd "$old" && env -u CARGO_TARGET_DIR cargo build --release --locked -q -p dataplane -p controller -p bench)
export PATH="$HOME/.cargo/bin:$PATH"

run() { # which tree label bench
    local tree=$1 label=$2 what=$3 log
    log=$out/$(date +%H%M%S)-$label-${what//:/-}.log
    if [[ $what == criterion:* ]]; then
        (cd "$tree" && env -u CARGO_TARGET_DIR cargo bench --locked -q -p bench --bench "${what#criterion:}" -- --noplot ${CRITERION_ARGS:-}) >"$log" 2>&1
    else
        # Each build's own runner with its own scd and scc.
        env -u SCD_BIN -u SCC_BIN -u CARGO_TARGET_DIR "$tree/target/release/bench" "$what" >"$log" 2>&1
    fi
    echo "$label $what: $log"
}

for what in "${benches[@]}"; do
    n=$rounds
    [[ $what == criterion:* ]] && n=1
    for ((i = 0; i < n; i++)); do
        run "$old" "before-$rev" "$what"
        run "$here" "after-$(git rev-parse --short HEAD)" "$what"
    done
done
