//! The controller helpers of the harness, for the tests that run `scc`.

pub use netns_tests::cloud::*;
