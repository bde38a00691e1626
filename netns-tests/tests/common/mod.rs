//! The controller helpers of the harness, for the tests that run `scc`.

pub use netns_tests::cloud::*;
#[allow(unused_imports)]
pub use netns_tests::dual_stack::*;
