//! A seeded uniform sample of fixed-length vectors, for training models on a stream.

use rand::Rng;

/// Algorithm R over vectors of equal length, stored flat: every vector offered has the same
/// chance to be in the sample, or, with a horizon `h`, every one of the last `h` (older vectors
/// age out, so a model trained on the sample follows a drifting stream). The caller owns the
/// generator, so a seeded generator gives the same sample in every run.
///
/// ```
/// use rand::SeedableRng;
/// use surveil_operators::reservoir::Reservoir;
///
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
/// let mut sample = Reservoir::new(100, None);
/// for i in 0..10_000 {
///     sample.offer(&[i as f64, 1.0], &mut rng);
/// }
/// assert_eq!((sample.len(), sample.seen(), sample.vectors().len()), (100, 10_000, 200));
/// ```
#[derive(Clone, Debug)]
pub struct Reservoir {
    capacity: usize,
    horizon: Option<u64>,
    vectors: Vec<f64>,
    len: usize,
    seen: u64,
}

impl Reservoir {
    /// An empty sample of at most `capacity` vectors, favouring the last `horizon` offered when
    /// given (a horizon below the capacity counts as the capacity).
    pub fn new(capacity: usize, horizon: Option<u64>) -> Reservoir {
        Reservoir { capacity, horizon, vectors: Vec::new(), len: 0, seen: 0 }
    }

    /// Offers one vector (of the same length as the others).
    #[inline]
    pub fn offer<R: Rng>(&mut self, vector: &[f64], rng: &mut R) {
        self.seen += 1;
        if self.len < self.capacity {
            self.vectors.extend_from_slice(vector);
            self.len += 1;
            return;
        }
        let range = self.horizon.map_or(self.seen, |h| self.seen.min(h.max(self.capacity as u64)));
        let slot = rng.random_range(0..range);
        if slot < self.capacity as u64 {
            let dims = vector.len();
            let at = slot as usize * dims;
            self.vectors[at..at + dims].copy_from_slice(vector);
        }
    }

    /// The sampled vectors, one after another.
    pub fn vectors(&self) -> &[f64] {
        &self.vectors
    }

    /// Vectors in the sample.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True before the first offer.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Vectors offered so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// Each of 1,000 values should be kept about 100 times in 1,000 samples of 100.
    #[test]
    fn every_vector_has_the_same_chance() {
        let mut kept = vec![0u32; 1_000];
        for seed in 0..1_000 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let mut sample = Reservoir::new(100, None);
            for i in 0..1_000 {
                sample.offer(&[i as f64], &mut rng);
            }
            for &v in sample.vectors() {
                kept[v as usize] += 1;
            }
        }
        let (first, last) = (kept[..100].iter().sum::<u32>(), kept[900..].iter().sum::<u32>());
        // 10,000 expected in each tenth; a binomial standard deviation is under 100.
        assert!((9_500..10_500).contains(&first) && (9_500..10_500).contains(&last), "{first} {last}");
    }

    #[test]
    fn a_horizon_ages_old_vectors_out() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let mut sample = Reservoir::new(100, Some(1_000));
        for i in 0..100_000 {
            sample.offer(&[i as f64], &mut rng);
        }
        let old = sample.vectors().iter().filter(|&&v| v < 90_000.0).count();
        assert!(old < 5, "{old} vectors older than 10,000 offers remain");
    }
}
