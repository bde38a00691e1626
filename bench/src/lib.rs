//! Shared helpers of the benchmark runner.
#![forbid(unsafe_code)]
