//! Copy-on-write containers in pieces: what lets a copy of the tables cost a few
//! reference counts instead of a copy of every entry.
//!
//! [`ChunkedVec`] is a vector in fixed-size chunks and [`Shards`] a set of hash
//! tables split by the top bits of each key's hash; every piece sits behind an
//! `Arc`. A clone shares every piece; a change copies only the piece it touches,
//! and only when a clone still shares it. So publishing a version of the tables
//! costs in proportion to the number of pieces, and each change after it in
//! proportion to a piece, whatever the tables' size. Reads cost one more pointer
//! than a plain `Vec` or map. This module knows nothing of flows.

use std::sync::Arc;

/// Elements per chunk of a [`ChunkedVec`].
const CHUNK: usize = 64;

/// A vector in chunks of [`CHUNK`] elements, each shared between clones until
/// written.
#[derive(Clone, Debug)]
pub struct ChunkedVec<T> {
    chunks: Vec<Arc<Vec<T>>>,
    len: usize,
}

impl<T> Default for ChunkedVec<T> {
    fn default() -> Self {
        ChunkedVec {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T: Clone> ChunkedVec<T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The element at `i`.
    pub fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i / CHUNK).and_then(|c| c.get(i % CHUNK))
    }

    /// The element at `i`, for writing: its chunk is copied first when a clone
    /// shares it.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.chunks
            .get_mut(i / CHUNK)
            .and_then(|c| Arc::make_mut(c).get_mut(i % CHUNK))
    }

    /// Appends an element.
    pub fn push(&mut self, value: T) {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Arc::new(Vec::with_capacity(CHUNK)));
        }
        if let Some(last) = self.chunks.last_mut() {
            Arc::make_mut(last).push(value);
            self.len += 1;
        }
    }
}

/// Shards of a [`Shards`] container; a power of two.
const SHARDS: usize = 512;

/// `SHARDS` pieces of one kind of hash table, each shared between clones until
/// written; a key lives in the shard its hash's top bits name.
#[derive(Clone, Debug)]
pub struct Shards<M> {
    shards: Vec<Arc<M>>,
}

impl<M: Default> Default for Shards<M> {
    /// Every shard starts as the same empty one: one allocation, and the first
    /// write to a shard gives it its own.
    fn default() -> Self {
        let empty = Arc::new(M::default());
        Shards {
            shards: (0..SHARDS).map(|_| Arc::clone(&empty)).collect(),
        }
    }
}

#[allow(clippy::cast_possible_truncation)] // the top nine bits of a u64
fn shard_of(hash: u64) -> usize {
    (hash >> (64 - SHARDS.trailing_zeros())) as usize
}

impl<M: Clone> Shards<M> {
    /// The shard holding keys of this hash.
    pub fn shard(&self, hash: u64) -> &M {
        &self.shards[shard_of(hash)]
    }

    /// The same, for writing: copied first when a clone shares it.
    pub fn shard_mut(&mut self, hash: u64) -> &mut M {
        Arc::make_mut(&mut self.shards[shard_of(hash)])
    }

    /// Every shard.
    pub fn iter(&self) -> impl Iterator<Item = &M> + '_ {
        self.shards.iter().map(|s| &**s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_clone_shares_until_written() {
        let mut v = ChunkedVec::default();
        for i in 0..1000u32 {
            v.push(i);
        }
        let copy = v.clone();
        *v.get_mut(700).unwrap() = 7;
        assert_eq!((v.get(700), copy.get(700)), (Some(&7), Some(&700)));
        // Only the written chunk was copied.
        let shared = v
            .chunks
            .iter()
            .zip(&copy.chunks)
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(shared, v.chunks.len() - 1);
        assert_eq!((v.len(), v.get(1000)), (1000, None));

        let mut maps: Shards<HashMap<u64, u64>> = Shards::default();
        maps.shard_mut(1).insert(1, 1);
        let before = maps.clone();
        maps.shard_mut(u64::MAX).insert(2, 2);
        assert_eq!(before.shard(u64::MAX).get(&2), None);
        assert_eq!(maps.shard(1).get(&1), Some(&1));
        assert_eq!(maps.iter().map(HashMap::len).sum::<usize>(), 2);
    }
}
