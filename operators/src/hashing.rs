//! Hashing keys for the operators' in-memory tables.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// A fast, non-cryptographic hasher for the keys of per-key state (multiply-fold, as in
/// foldhash, with a fixed seed): much cheaper than SipHash for the small keys operators are
/// keyed by (ids, symbols, short tuples), and well mixed in both the low bits (hashbrown's
/// bucket index) and the top bits (its tags), even for ids that end in zero bits.
///
/// It is deterministic, so a table's iteration order is the same in every run; operators never
/// let that order show in their results. Keys come from the data, so a hostile feed could
/// degrade a table: acceptable for internal state that no untrusted caller can probe.
///
/// ```
/// use surveil_operators::hashing::KeyMap;
///
/// let mut open: KeyMap<u64, &str> = KeyMap::default();
/// open.insert(7, "order 7");
/// assert_eq!(open.get(&7), Some(&"order 7"));
/// ```
#[derive(Clone, Copy, Debug)]
pub struct KeyHasher(u64);

const SEED: u64 = 0x243f_6a88_85a3_08d3;
const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

impl Default for KeyHasher {
    #[inline]
    fn default() -> KeyHasher {
        KeyHasher(SEED)
    }
}

#[inline]
fn fold_multiply(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
        let rest = chunks.remainder();
        let mut word = [0u8; 8];
        word[..rest.len()].copy_from_slice(rest);
        self.write_u64(u64::from_le_bytes(word) ^ ((rest.len() as u64) << 59));
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.write_u64(u64::from(i));
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.0 = fold_multiply(self.0 ^ i, MULTIPLIER);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        fold_multiply(self.0, MULTIPLIER.rotate_left(17) | 1)
    }
}

/// Builds [`KeyHasher`]s.
pub type KeyBuildHasher = BuildHasherDefault<KeyHasher>;

/// A hash map of per-key state, with [`KeyHasher`].
pub type KeyMap<K, V> = HashMap<K, V, KeyBuildHasher>;

/// A hash set of keys, with [`KeyHasher`].
pub type KeySet<K> = HashSet<K, KeyBuildHasher>;

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    fn distinct(values: impl Iterator<Item = u64>) -> usize {
        let mut values: Vec<u64> = values.collect();
        values.sort_unstable();
        values.dedup();
        values.len()
    }

    #[test]
    fn spreads_small_keys_and_keys_ending_in_zero_bits() {
        let build = KeyBuildHasher::default();
        for shift in [0u32, 20, 40] {
            let hashes: Vec<u64> = (0u64..1_000).map(|k| build.hash_one(k << shift)).collect();
            // hashbrown indexes buckets by the low bits and tags entries with the top 7 bits.
            assert!(distinct(hashes.iter().map(|h| h & 1023)) > 550, "low bits, keys << {shift}");
            assert!(distinct(hashes.iter().map(|h| h >> 57)) > 100, "top bits, keys << {shift}");
        }
    }

    #[test]
    fn separates_byte_strings_that_differ_only_in_length() {
        let build = KeyBuildHasher::default();
        assert_ne!(build.hash_one("ab"), build.hash_one("ab\0"));
        assert_ne!(build.hash_one([0u8; 8].as_slice()), build.hash_one([0u8; 7].as_slice()));
    }

    #[test]
    fn is_the_same_in_every_run() {
        assert_eq!(KeyBuildHasher::default().hash_one(42u64), KeyBuildHasher::default().hash_one(42u64));
    }
}
