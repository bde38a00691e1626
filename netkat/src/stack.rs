//! Stack safety for the compiler's recursive walks. This module owns [`deep`],
//! through which every walk whose depth follows the input (syntax trees of long
//! chains, decision diagrams testing thousands of values) takes its recursive
//! step: when the thread's stack runs low, the step continues on a fresh
//! heap-allocated segment (the technique rustc uses), so no input can overflow
//! the stack of whatever thread compiles it, small async workers included. It
//! also owns the iterative teardown of deep trees ([`drop_iteratively`]), since
//! a derived `Drop` recurses once per level. It never limits what compiles:
//! limits with positioned errors live in the parser.

/// Below this much stack left, a step moves to a new segment.
const RED_ZONE: usize = 128 * 1024;

/// Size of each new segment.
const SEGMENT: usize = 2 * 1024 * 1024;

/// Runs `step` (one level of a recursive walk) with at least [`RED_ZONE`] bytes
/// of stack.
pub(crate) fn deep<R>(step: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(RED_ZONE, SEGMENT, step)
}

/// A tree node whose children can be moved out, leaving a leaf behind.
pub(crate) trait Detach: Sized {
    /// Moves this node's boxed children into `out`.
    fn detach_children(&mut self, out: &mut Vec<Self>);
}

/// Drops the children of `root` one by one from a heap stack, so that dropping
/// a tree of any depth uses constant call stack: every node is emptied of its
/// children before it is dropped.
pub(crate) fn drop_iteratively<T: Detach>(root: &mut T) {
    let mut pending = Vec::new();
    root.detach_children(&mut pending);
    while let Some(mut node) = pending.pop() {
        node.detach_children(&mut pending);
    }
}
