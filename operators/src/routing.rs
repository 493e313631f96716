//! Routing records to workers by key.

use std::hash::{Hash, Hasher};

/// A stable 64-bit hash of a key, for exchange pacts: every worker of every process running
/// the same binary routes a key to the same worker. (`DefaultHasher::new()` is SipHash with
/// fixed keys, identical for every instance.)
///
/// # Examples
/// ```
/// assert_eq!(surveil_operators::route(&("AAPL", 7u32)), surveil_operators::route(&("AAPL", 7u32)));
/// ```
#[inline]
pub fn route<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}
