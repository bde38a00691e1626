//! The handle of an installed flow entry: the plain type the pipeline and its
//! classifier share, below both of them.

/// Stable handle of an installed entry, valid until the next table change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowId(pub(crate) u32);
