#!/usr/bin/env bash
# The compiler's scale table (bench/RESULTS.md, issue #20): fat-trees k = 4..24 and
# deny-ACLs of 10..100,000 entries, each compiled in its own process by
# netkat/examples/compile_scale.rs (release build), one row per input:
# | input | rules | seconds | peak MiB | CPU s |, phase times on stderr. "CPU s"
# is the process's user + system time (/usr/bin/time): on a shared machine the
# wall-clock seconds include waiting for a core, the CPU seconds do not.
#
# Usage: bash bench/compile-scale.sh [BINARY...]
# With several binaries (e.g. an older build of the same example), each input runs
# under each binary in turn, so before and after share the machine's load.
set -euo pipefail
cd "$(dirname "$0")/.."
if (($# == 0)); then
    cargo build --release -p netkat --example compile_scale >&2
    set -- target/release/examples/compile_scale
fi
inputs=()
for k in 4 8 12 16 20 24; do inputs+=("fat-tree $k"); done
for n in 10 100 1000 10000 100000; do inputs+=("acl $n"); done
cpu=$(mktemp)
trap 'rm -f "$cpu"' EXIT
echo "| input | binary | rules | seconds | peak MiB | CPU s |"
echo "|---|---|---:|---:|---:|---:|"
for input in "${inputs[@]}"; do
    for bin in "$@"; do
        # shellcheck disable=SC2086 # the input is two words on purpose
        row=$(/usr/bin/time -o "$cpu" -f "%U %S" "$bin" $input)
        secs=$(awk '{ printf "%.2f", $1 + $2 }' "$cpu")
        echo "$row $secs |" | sed "s#^| \([^|]*\) |#| \1 | $bin |#"
    done
done
