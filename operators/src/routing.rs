//! Routing records to workers by key.

use std::hash::{BuildHasher, Hash};

use foldhash::fast::FixedState;

/// The fixed seed of the routing hash: every worker of every process must agree on it.
const ROUTING_SEED: u64 = 0x5eed_0f5e_a1ed_da7a;

/// A stable 64-bit hash of a key, for exchange pacts: every worker of every process running
/// the same binary routes a key to the same worker. It is foldhash with a fixed seed rather
/// than SipHash: routing needs no protection against chosen keys, and on the join benchmark the
/// hash was a third of the operator's cost with SipHash (see `docs/benchmarks.md`).
///
/// # Examples
/// ```
/// assert_eq!(surveil_operators::route(&("AAPL", 7u32)), surveil_operators::route(&("AAPL", 7u32)));
/// ```
#[inline]
pub fn route<K: Hash + ?Sized>(key: &K) -> u64 {
    FixedState::with_seed(ROUTING_SEED).hash_one(key)
}
