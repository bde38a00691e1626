#!/usr/bin/env bash
# Builds every `cargo fuzz` target of the workspace (all live in the one fuzz/
# crate, so the crates they share are built once, into fuzz/target) and runs each
# briefly: a check that the parsers of untrusted bytes do not crash on fresh
# inputs, not a fuzzing campaign. Set FUZZ_RUNS to run longer.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${FUZZ_RUNS:-20000}
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --quiet
fi
# No nightly toolchain here: cargo fuzz needs -Z flags, which RUSTC_BOOTSTRAP allows.
export RUSTC_BOOTSTRAP=1
if ! targets=$(cargo fuzz list) || [[ -z $targets ]]; then
    echo "fuzz: could not list the targets of fuzz/" >&2
    exit 1
fi
echo "fuzz: building $(echo $targets)" >&2
if ! cargo fuzz build >/tmp/fuzz-build.log 2>&1; then
    echo "fuzz: the build FAILED" >&2
    tail -40 /tmp/fuzz-build.log >&2
    exit 1
fi
status=0
for target in $targets; do
    echo "fuzz: $target ($RUNS runs)" >&2
    if ! cargo fuzz run "$target" -- -runs="$RUNS" -max_len=4096 >/tmp/fuzz-"$target".log 2>&1; then
        echo "fuzz: $target FAILED" >&2
        tail -40 /tmp/fuzz-"$target".log >&2
        status=1
    fi
done
if ((status == 0)); then
    echo "fuzz: every target ran $RUNS inputs without a crash" >&2
fi
exit $status
