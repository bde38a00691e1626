#!/usr/bin/env bash
# Builds every `cargo fuzz` target of the workspace (each crate's fuzz/ directory)
# and runs each briefly: a check that the parsers of untrusted bytes do not crash
# on fresh inputs, not a fuzzing campaign. Set FUZZ_RUNS to run longer.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${FUZZ_RUNS:-20000}
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --quiet
fi
# No nightly toolchain here: cargo fuzz needs -Z flags, which RUSTC_BOOTSTRAP allows.
export RUSTC_BOOTSTRAP=1
status=0
for dir in */fuzz; do
    [[ -f $dir/Cargo.toml ]] || continue
    crate=${dir%/fuzz}
    if ! targets=$(cd "$crate" && cargo fuzz list) || [[ -z $targets ]]; then
        echo "fuzz: could not list the targets of $dir" >&2
        status=1
        continue
    fi
    for target in $targets; do
        echo "fuzz: $crate/$target ($RUNS runs)" >&2
        if ! (cd "$crate" && cargo fuzz run "$target" -- -runs="$RUNS" -max_len=4096 >/tmp/fuzz-"$crate"-"$target".log 2>&1); then
            echo "fuzz: $crate/$target FAILED" >&2
            tail -40 /tmp/fuzz-"$crate"-"$target".log >&2
            status=1
        fi
    done
done
if ((status == 0)); then
    echo "fuzz: every target ran $RUNS inputs without a crash" >&2
fi
exit $status
