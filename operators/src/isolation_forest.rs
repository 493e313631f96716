//! A seeded, deterministic isolation forest (Liu, Ting & Zhou 2008).
//!
//! Anomalies are few and different, so random axis-aligned splits isolate them in fewer steps
//! than normal points. Each tree is grown on a subsample of `ψ` rows drawn without replacement;
//! a node picks a feature uniformly among those not constant in the node and a threshold
//! uniformly in `[min, max)` of that feature, sends `x <= threshold` left, and becomes a leaf at
//! the depth limit (`ceil(log2 ψ)` by default) or when its rows are identical or single. The
//! path length of a point in a tree is the depth of its leaf plus `c(n)`, the average path
//! length of an unsuccessful binary-search-tree search among the leaf's `n` rows; the score is
//! `s = 2^(-E(h) / c(ψ))`: near 1 for anomalies, at most about 0.5 for normal points. These are
//! the rules of the paper and of scikit-learn's `IsolationForest`.
//!
//! # Determinism
//!
//! A forest is a function of the data, the parameters and the seed: tree `t` draws from
//! ChaCha8 seeded with `seed` on stream `t`, so no tree depends on another or on a thread.
//! Scoring sums the trees' path lengths in tree order with plain IEEE arithmetic, and the two
//! transcendental functions (`ln` in `c(n)`, `2^x` in the score) come from `libm`, a pure-Rust
//! implementation, so the same model scores the same row to the same bits on any machine.
//! Saved models store every float as its bit pattern, so a round trip through a text format
//! changes nothing.
//!
//! # Attribution
//!
//! [`IsolationForest::explain`] splits a score into per-feature contributions by path length.
//! At a split of a node holding `n` training rows, the point moves to a child holding `m`; its
//! expected remaining path length goes from `c(n)` to `1 + c(m)`, so the split *saved*
//! `c(n) - 1 - c(m)` steps (positive when the point lands in a small child, slightly negative
//! when it follows the crowd). Each saving is credited to the split's feature. Along a path the
//! savings telescope to `c(ψ) - h`, so the contributions, averaged over trees and divided by
//! `c(ψ)`, sum exactly to `1 - E(h)/c(ψ) = 1 + log2(s)`: zero at the neutral score 0.5, and
//! larger features are the ones that isolated the point.
//!
//! # Examples
//! ```
//! use rand::{Rng, SeedableRng};
//! use surveil_operators::isolation_forest::{ForestParams, IsolationForest};
//!
//! // 500 points of 2 features (row-major), each a sum of uniforms: a bell around the origin.
//! let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
//! let rows: Vec<f64> = (0..1000).map(|_| (0..4).map(|_| rng.random::<f64>()).sum::<f64>() - 2.0).collect();
//! let params = ForestParams { seed: 7, ..ForestParams::default() };
//! let forest = IsolationForest::fit(&rows, 2, params).expect("valid data");
//! // A point far out on the first feature scores high, the centre low.
//! let outlier = forest.score(&[4.0, 0.0]);
//! assert!(outlier > 0.6 && forest.score(&[0.0, 0.0]) < 0.5);
//! // The first feature drove it, and the contributions sum to 1 + log2(score).
//! let why = forest.explain(&[4.0, 0.0]);
//! assert!(why[0] > 0.3 && why[1] < 0.0);
//! assert!((why.iter().sum::<f64>() - (1.0 + outlier.log2())).abs() < 1e-9);
//! // Same data and seed, same bits.
//! let again = IsolationForest::fit(&rows, 2, params).expect("valid data");
//! assert_eq!(again.score(&[4.0, 0.0]).to_bits(), outlier.to_bits());
//! ```

use std::collections::HashSet;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Version of the saved model layout; loading a model of another version fails.
pub const FORMAT_VERSION: u32 = 1;

/// Euler–Mascheroni constant, for the harmonic-number estimate in `c(n)`.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// Marks a leaf in the saved node arrays.
const LEAF: u32 = u32::MAX;

/// Rows scored together per tree in [`IsolationForest::score_batch`], so a block of rows and
/// one tree stay in cache together.
const BATCH_BLOCK: usize = 128;

/// Rows walked down a tree in lock-step: a walk is a chain of dependent loads, so interleaving
/// independent walks lets the processor overlap their latencies. Eight walks keep their
/// positions in registers.
const LANES: usize = 8;
const _: () = assert!(BATCH_BLOCK.is_multiple_of(LANES), "a block is whole lane groups");

/// Deepest tree laid out as a complete binary tree for bulk scoring (`2^D` positions, 80 KiB at
/// this depth); deeper trees, grown only with a raised `max_depth`, are walked node by node.
const COMPLETE_MAX_DEPTH: u32 = 12;

/// Most features for which bulk scoring keys a block of rows (8 bytes per feature and row,
/// 4 MiB at this width); wider forests are walked node by node.
const COMPLETE_MAX_DIMS: usize = 4096;

/// Training parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForestParams {
    /// Number of trees.
    pub trees: usize,
    /// Rows per tree (`ψ`), drawn without replacement; all rows when fewer are given.
    pub sample_size: usize,
    /// Depth limit; `None` means `ceil(log2 ψ)`, the paper's and scikit-learn's choice.
    pub max_depth: Option<usize>,
    /// Seed of every random draw.
    pub seed: u64,
}

impl Default for ForestParams {
    /// 100 trees of 256 rows, the paper's defaults, seed 0.
    fn default() -> Self {
        ForestParams { trees: 100, sample_size: 256, max_depth: None, seed: 0 }
    }
}

/// Why a forest could not be trained, scored or loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForestError {
    /// Vectors need at least one feature.
    #[error("feature vectors need at least one dimension")]
    NoDimensions,
    /// The data length is not a multiple of the dimension.
    #[error("{len} values do not split into rows of {dims} features")]
    RaggedRows {
        /// Number of values given.
        len: usize,
        /// Features per row.
        dims: usize,
    },
    /// Training needs two rows or more.
    #[error("training needs at least 2 rows, got {0}")]
    TooFewRows(usize),
    /// A training value is NaN or infinite.
    #[error("training row {row}, feature {feature} is not finite")]
    NotFinite {
        /// Row index.
        row: usize,
        /// Feature index.
        feature: usize,
    },
    /// A parameter is out of range.
    #[error("invalid parameter: {0}")]
    InvalidParams(&'static str),
    /// A saved model is of another format version or is inconsistent.
    #[error("invalid saved model: {0}")]
    InvalidModel(String),
}

/// A node of the flat tree arrays: a split sends `x[feature] <= threshold` to `child` and the
/// rest to `child + 1`. A leaf is a fixed point of that step (`child` is itself, `threshold` is
/// +inf, `feature` 0), so a walk needs no branch: it takes as many steps as the tree is deep.
/// 16 bytes, so four nodes share a cache line.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Node {
    threshold: f64,
    feature: u32,
    child: u32,
}

impl Node {
    fn leaf(index: usize) -> Node {
        Node { threshold: f64::INFINITY, feature: 0, child: index as u32 }
    }

    #[inline(always)]
    fn next(&self, row: &[f64]) -> usize {
        self.child as usize + usize::from(row[self.feature as usize] > self.threshold)
    }
}

/// A trained isolation forest; see the [module documentation](self).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(into = "StoredForest", try_from = "StoredForest")]
pub struct IsolationForest {
    params: ForestParams,
    dims: usize,
    /// `ψ`: the rows each tree was grown on.
    samples_per_tree: usize,
    /// `c(ψ)`, the normaliser of the score.
    normaliser: f64,
    /// Root node of each tree, in tree order.
    roots: Vec<u32>,
    /// Depth of each tree (its deepest leaf).
    depths: Vec<u32>,
    /// Every tree's nodes, each tree contiguous in preorder with sibling pairs adjacent.
    nodes: Vec<Node>,
    /// A leaf's path length, depth + c(rows); 0 for splits.
    leaf_values: Vec<f64>,
    /// Training rows that reached each node, for attribution.
    sizes: Vec<u32>,
    /// The trees again, laid out for bulk scoring; derived from the above, never saved.
    complete: CompleteTrees,
}

/// The trees laid out as complete binary trees of their depth `D`, for bulk scoring. A tree's
/// positions are numbered from 1 in heap order: position `i` splits to `2i` (`x <= threshold`)
/// and `2i + 1`, so a walk is `D` steps of `i = 2i + (x > threshold)` with no child loads and no
/// leaf test, ending at a bottom position `2^D + j` whose path length is `leaves[j]`. A leaf
/// above the bottom becomes a pass-through (threshold +inf, feature 0: every row, NaN included,
/// goes left, as it stays put at a leaf of the node arrays) and its path length goes to the
/// bottom position its leftmost descendant would take. Positions under a pass-through's right
/// side are never reached. Scoring compares [`order_key`]s, which give the same answers as the
/// floating-point comparison of the node walk, so both give the same path lengths.
#[derive(Clone, Debug, Default, PartialEq)]
struct CompleteTrees {
    /// Per tree, where its positions start in `keys` and `columns` (`2^D` each, entry 0 unused)
    /// and its bottom positions in `leaves` (`2^D`); `None` for a tree deeper than
    /// [`COMPLETE_MAX_DEPTH`] or in a forest wider than [`COMPLETE_MAX_DIMS`].
    starts: Vec<Option<(usize, usize)>>,
    /// The order key of each inner position's threshold.
    keys: Vec<i64>,
    /// Each inner position's split feature times [`BATCH_BLOCK`]: where the feature's keys start
    /// in a keyed block of rows.
    columns: Vec<u32>,
    /// The path length of each bottom position.
    leaves: Vec<f64>,
}

impl CompleteTrees {
    /// Lays out every tree of `forest` (its node arrays and depths must be consistent, as `fit`
    /// builds them and `try_from` checks them).
    fn new(forest: &IsolationForest) -> CompleteTrees {
        let mut layout = CompleteTrees::default();
        let mut stack = Vec::new();
        let keyed = forest.dims <= COMPLETE_MAX_DIMS;
        for (&root, &depth) in forest.roots.iter().zip(&forest.depths) {
            if !keyed || depth > COMPLETE_MAX_DEPTH {
                layout.starts.push(None);
                continue;
            }
            let (inner_at, leaves_at) = (layout.keys.len(), layout.leaves.len());
            layout.starts.push(Some((inner_at, leaves_at)));
            let bottom = 1usize << depth;
            // Inner positions start as pass-throughs.
            layout.keys.resize(inner_at + bottom, order_key(f64::INFINITY));
            layout.columns.resize(inner_at + bottom, 0);
            layout.leaves.resize(leaves_at + bottom, 0.0);
            let keys = &mut layout.keys[inner_at..];
            let columns = &mut layout.columns[inner_at..];
            let leaves = &mut layout.leaves[leaves_at..];
            stack.push((root as usize, 1usize));
            while let Some((i, mut at)) = stack.pop() {
                let node = forest.nodes[i];
                if is_leaf(i, &node) {
                    while at < bottom {
                        at *= 2;
                    }
                    leaves[at - bottom] = forest.leaf_values[i];
                } else {
                    keys[at] = order_key(node.threshold);
                    columns[at] = node.feature * BATCH_BLOCK as u32;
                    stack.push((node.child as usize, 2 * at));
                    stack.push((node.child as usize + 1, 2 * at + 1));
                }
            }
        }
        layout
    }

    /// Whether any tree is laid out, so bulk scoring needs keyed blocks.
    fn any(&self) -> bool {
        self.starts.iter().any(Option::is_some)
    }
}

/// An integer key with `order_key(x) > order_key(t)` exactly when `x > t`, for any `x` and any
/// non-NaN `t`: the IEEE bits made monotonic as a signed integer (a negative value's magnitude
/// bits flipped), with -0.0 keyed as +0.0 (they compare equal) and NaN keyed below everything
/// (it compares greater than nothing). An integer comparison is shorter on the critical path of
/// a tree walk than a floating-point one, and it vectorizes.
#[inline(always)]
fn order_key(value: f64) -> i64 {
    // Adding +0.0 turns -0.0 into +0.0 and changes nothing else; no branches, as signs are random.
    let bits = (value + 0.0).to_bits() as i64;
    let key = bits ^ ((bits >> 63) as u64 >> 1) as i64;
    if value.is_nan() { i64::MIN } else { key }
}

/// `value`, passed through an empty assembly template the compiler cannot see into. In the
/// lock-step walk this keeps it from turning the lanes into vector gathers, as it does when
/// AVX-512 is enabled at build time (`-C target-cpu=native`): bulk scoring then ran at half
/// speed on the AMD EPYC measured. The template emits no instruction.
#[inline(always)]
fn opaque(value: usize) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        let mut value = value;
        // SAFETY: the template is a comment: no instruction, no memory access, flags kept.
        unsafe { std::arch::asm!("/* {0} */", inout(reg) value, options(pure, nomem, nostack, preserves_flags)) };
        value
    }
    #[cfg(not(target_arch = "x86_64"))]
    value
}

/// `c(n)`: the average path length of an unsuccessful search in a binary search tree of `n`
/// points, `2 H(n-1) - 2 (n-1)/n` with `H(i) ≈ ln(i) + γ` (0 for `n <= 1`, 1 for `n = 2`).
pub fn average_path_length(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * (libm::log(n - 1.0) + EULER_GAMMA) - 2.0 * (n - 1.0) / n
        }
    }
}

impl IsolationForest {
    /// Trains a forest on `rows`, row-major with `dims` features per row.
    ///
    /// Fails on ragged or non-finite data, fewer than 2 rows, zero trees or a sample size below 2.
    pub fn fit(rows: &[f64], dims: usize, params: ForestParams) -> Result<IsolationForest, ForestError> {
        if dims == 0 {
            return Err(ForestError::NoDimensions);
        }
        if !rows.len().is_multiple_of(dims) {
            return Err(ForestError::RaggedRows { len: rows.len(), dims });
        }
        let n = rows.len() / dims;
        if n < 2 {
            return Err(ForestError::TooFewRows(n));
        }
        if params.trees == 0 {
            return Err(ForestError::InvalidParams("trees must be at least 1"));
        }
        if params.sample_size < 2 {
            return Err(ForestError::InvalidParams("sample_size must be at least 2"));
        }
        if dims >= LEAF as usize {
            return Err(ForestError::InvalidParams("too many features"));
        }
        if let Some(i) = rows.iter().position(|v| !v.is_finite()) {
            return Err(ForestError::NotFinite { row: i / dims, feature: i % dims });
        }
        let psi = params.sample_size.min(n);
        // ceil(log2 ψ) for ψ >= 2.
        let max_depth = params.max_depth.unwrap_or((usize::BITS - (psi - 1).leading_zeros()) as usize);
        let max_nodes = params.trees.checked_mul(2 * psi - 1).filter(|&m| m < LEAF as usize);
        let Some(max_nodes) = max_nodes else {
            return Err(ForestError::InvalidParams("trees x sample_size too large for 32-bit node indices"));
        };

        let mut forest = IsolationForest {
            params,
            dims,
            samples_per_tree: psi,
            normaliser: average_path_length(psi),
            roots: Vec::with_capacity(params.trees),
            depths: Vec::with_capacity(params.trees),
            nodes: Vec::with_capacity(max_nodes.min(1 << 20)),
            leaf_values: Vec::with_capacity(max_nodes.min(1 << 20)),
            sizes: Vec::with_capacity(max_nodes.min(1 << 20)),
            complete: CompleteTrees::default(),
        };
        let mut builder = TreeBuilder::new(psi, dims);
        for tree in 0..params.trees {
            let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
            rng.set_stream(tree as u64);
            builder.draw_sample(rows, n, &mut rng);
            forest.roots.push(forest.nodes.len() as u32);
            let depth =
                builder.grow(&mut rng, max_depth, &mut forest.nodes, &mut forest.leaf_values, &mut forest.sizes);
            forest.depths.push(depth as u32);
        }
        forest.complete = CompleteTrees::new(&forest);
        Ok(forest)
    }

    /// The anomaly score `2^(-E(h)/c(ψ))` of one row, in `(0, 1]`.
    ///
    /// A row whose length differs from [`dims`](Self::dims) scores NaN. NaN features follow
    /// the left branch (a split sends a row right when `x > t`, which is false for NaN, so NaN
    /// is treated as below every threshold), which keeps scoring total and deterministic.
    pub fn score(&self, row: &[f64]) -> f64 {
        if row.len() != self.dims {
            return f64::NAN;
        }
        let mut total = 0.0;
        for &root in &self.roots {
            total += self.path_length_in(root as usize, row);
        }
        self.finish(total)
    }

    /// Scores many rows (row-major), bit-identical to [`score`](Self::score) on each row but
    /// faster: each tree scores a block of rows while it is in cache, walking the trees'
    /// complete-tree layout with the block's values as order keys.
    pub fn score_batch(&self, rows: &[f64]) -> Result<Vec<f64>, ForestError> {
        if !rows.len().is_multiple_of(self.dims) {
            return Err(ForestError::RaggedRows { len: rows.len(), dims: self.dims });
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the processor supports AVX2.
            return Ok(unsafe { self.score_rows_avx2(rows) });
        }
        Ok(self.score_rows::<false>(rows))
    }

    /// [`score_rows`](Self::score_rows) compiled for AVX2, whose 64-bit vector comparisons make
    /// evaluating the top three levels of a tree for a whole block cheap.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn score_rows_avx2(&self, rows: &[f64]) -> Vec<f64> {
        self.score_rows::<true>(rows)
    }

    /// The scores of `rows` (a whole number of rows); `WIDE` as in
    /// [`add_complete_path_lengths`](Self::add_complete_path_lengths).
    #[inline(always)]
    fn score_rows<const WIDE: bool>(&self, rows: &[f64]) -> Vec<f64> {
        let mut scores = Vec::with_capacity(rows.len() / self.dims);
        let mut totals = [0.0f64; BATCH_BLOCK];
        // `block_keys[f * BATCH_BLOCK + r]`: the order key of feature `f` of the block's row `r`;
        // rows past the end of a short last block keep stale keys and their walks are dropped.
        let mut block_keys = if self.complete.any() { vec![0i64; BATCH_BLOCK * self.dims] } else { Vec::new() };
        let mut first = [0usize; BATCH_BLOCK];
        for block in rows.chunks(BATCH_BLOCK * self.dims) {
            let count = block.len() / self.dims;
            totals.fill(0.0);
            if !block_keys.is_empty() {
                for (r, row) in block.chunks_exact(self.dims).enumerate() {
                    for (f, &value) in row.iter().enumerate() {
                        block_keys[f * BATCH_BLOCK + r] = order_key(value);
                    }
                }
            }
            for (tree, (&root, &depth)) in self.roots.iter().zip(&self.depths).enumerate() {
                match self.complete.starts[tree] {
                    Some(start) => {
                        self.add_complete_path_lengths::<WIDE>(start, depth, &block_keys, &mut first, &mut totals)
                    }
                    None => self.add_node_path_lengths(root as usize, depth, block, &mut totals[..count]),
                }
            }
            scores.extend(totals[..count].iter().map(|&t| self.finish(t)));
        }
        scores
    }

    /// Adds to `totals` the path lengths of a block's rows (`block_keys`, laid out as in
    /// [`score_rows`](Self::score_rows)) in the complete tree of depth `depth` starting at
    /// `start`; totals of rows past the end of a short block take garbage and are dropped later.
    ///
    /// The top of a tree holds few positions, the same for every row, so it is evaluated for the
    /// whole block at once: the root alone, or with `WIDE` (vector comparisons available) every
    /// position of the top three levels, each row picking its path among them. The rest is
    /// walked [`LANES`] rows in lock-step; `first` is scratch space for where the walks start.
    #[inline(always)]
    fn add_complete_path_lengths<const WIDE: bool>(
        &self,
        start: (usize, usize),
        depth: u32,
        block_keys: &[i64],
        first: &mut [usize; BATCH_BLOCK],
        totals: &mut [f64; BATCH_BLOCK],
    ) {
        let bottom = 1usize << depth;
        let keys = &self.complete.keys[start.0..start.0 + bottom];
        let columns = &self.complete.columns[start.0..start.0 + bottom];
        let leaves = &self.complete.leaves[start.1..start.1 + bottom];
        assert_eq!(block_keys.len(), BATCH_BLOCK * self.dims);
        // The keys of the block's rows for the feature split at position `p`.
        let column = |p: usize| {
            let c = columns[p] as usize;
            &block_keys[c..c + BATCH_BLOCK]
        };
        // `first`: each row's position below the top levels.
        let top = if WIDE && depth >= 3 {
            let (x1, x2, x3, x4, x5, x6, x7) =
                (column(1), column(2), column(3), column(4), column(5), column(6), column(7));
            let (k1, k2, k3, k4, k5, k6, k7) = (keys[1], keys[2], keys[3], keys[4], keys[5], keys[6], keys[7]);
            // Every comparison is made, as a mask (0 or -1), and bit operations rather than
            // branches pick the ones on each row's path, so the loop vectorizes.
            let above = |x: i64, k: i64| -i64::from(x > k);
            for (r, first) in first.iter_mut().enumerate() {
                let m1 = above(x1[r], k1);
                let m2 = (m1 & above(x3[r], k3)) | (!m1 & above(x2[r], k2));
                let right = (m2 & above(x7[r], k7)) | (!m2 & above(x6[r], k6));
                let left = (m2 & above(x5[r], k5)) | (!m2 & above(x4[r], k4));
                let m3 = (m1 & right) | (!m1 & left);
                *first = (8 - 4 * m1 - 2 * m2 - m3) as usize;
            }
            3
        } else if depth >= 1 {
            let (x1, k1) = (column(1), keys[1]);
            for (first, &x) in first.iter_mut().zip(x1) {
                *first = 2 + usize::from(x > k1);
            }
            1
        } else {
            first.fill(1);
            0
        };
        for (group, totals) in totals.chunks_exact_mut(LANES).enumerate() {
            // Lane `l` reads the keys of feature `f` of its row at `lane_keys[f * BATCH_BLOCK + l]`.
            let lane_keys = &block_keys[group * LANES..];
            let mut at: [usize; LANES] = std::array::from_fn(|l| first[group * LANES + l]);
            for _ in top..depth {
                for (l, at) in at.iter_mut().enumerate() {
                    // SAFETY: a walk starts at a position of level `top` (every entry of `first` was
                    // set so above) and takes `depth - top` steps, so before each step
                    // `*at < bottom`, the length of `keys` and `columns`. Every column is
                    // `f * BATCH_BLOCK` with `f < dims` (`fit` draws features so, `try_from` checks
                    // them, pass-throughs hold 0), and `lane_keys` holds at least
                    // `(dims - 1) * BATCH_BLOCK + LANES` keys: `block_keys` holds
                    // `dims * BATCH_BLOCK` (asserted) and the block is whole lane groups.
                    *at = opaque(unsafe {
                        let key = *lane_keys.get_unchecked(*columns.get_unchecked(*at) as usize + l);
                        2 * *at + usize::from(key > *keys.get_unchecked(*at))
                    });
                }
            }
            for (total, &at) in totals.iter_mut().zip(&at) {
                // SAFETY: after the last step `bottom <= at < 2 * bottom`, and `leaves` holds
                // `bottom` path lengths.
                *total += unsafe { *leaves.get_unchecked(at - bottom) };
            }
        }
    }

    /// Adds the path lengths of `block`'s rows in the node-array tree at `root` of depth `depth`
    /// to `totals`, [`LANES`] rows in lock-step.
    fn add_node_path_lengths(&self, root: usize, depth: u32, block: &[f64], totals: &mut [f64]) {
        let mut lanes = block.chunks_exact(LANES * self.dims);
        let mut lane_totals = totals.chunks_exact_mut(LANES);
        for (rows, totals) in (&mut lanes).zip(&mut lane_totals) {
            // Lane `l` reads `rows[offset[l] + feature]`.
            let offset: [usize; LANES] = std::array::from_fn(|l| l * self.dims);
            let mut at = [root; LANES];
            for _ in 0..depth {
                for l in 0..LANES {
                    // SAFETY: `fit` builds, and `try_from` checks, that every node's
                    // `child` (and `child + 1` for a split) indexes `nodes` and every
                    // `feature` is below `dims`; `at[l]` starts at a root (checked the
                    // same way) and only ever takes a `next` value; `rows` holds `LANES`
                    // rows of `dims` values (`chunks_exact`).
                    unsafe {
                        let node = self.nodes.get_unchecked(at[l]);
                        let value = *rows.get_unchecked(offset[l] + node.feature as usize);
                        at[l] = node.child as usize + usize::from(value > node.threshold);
                    }
                    debug_assert!(at[l] < self.nodes.len());
                }
            }
            for l in 0..LANES {
                totals[l] += self.path_length_in(at[l], &rows[offset[l]..offset[l] + self.dims]);
            }
        }
        let rest = lanes.remainder().chunks_exact(self.dims);
        for (total, row) in lane_totals.into_remainder().iter_mut().zip(rest) {
            *total += self.path_length_in(root, row);
        }
    }

    /// The mean path length `E(h)` of a row over the trees (NaN for a row of the wrong length).
    pub fn mean_path_length(&self, row: &[f64]) -> f64 {
        if row.len() != self.dims {
            return f64::NAN;
        }
        let total: f64 = self.roots.iter().map(|&root| self.path_length_in(root as usize, row)).sum();
        total / self.roots.len() as f64
    }

    /// Per-feature contributions to the score of `row` by path-length attribution (see the
    /// [module documentation](self)): they sum to `1 + log2(score)`, and the largest names the
    /// features that isolated the row. Empty for a row of the wrong length.
    pub fn explain(&self, row: &[f64]) -> Vec<f64> {
        if row.len() != self.dims {
            return Vec::new();
        }
        let mut credit = vec![0.0; self.dims];
        for &root in &self.roots {
            let mut i = root as usize;
            loop {
                let node = self.nodes[i];
                if node.child as usize == i {
                    break;
                }
                let f = node.feature as usize;
                let next = node.next(row);
                let before = average_path_length(self.sizes[i] as usize);
                let after = 1.0 + average_path_length(self.sizes[next] as usize);
                credit[f] += before - after;
                i = next;
            }
        }
        let scale = self.roots.len() as f64 * self.normaliser;
        credit.iter_mut().for_each(|c| *c /= scale);
        credit
    }

    /// The training parameters, seed included.
    pub fn params(&self) -> &ForestParams {
        &self.params
    }

    /// Features per row.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// `ψ`: the rows each tree was grown on.
    pub fn samples_per_tree(&self) -> usize {
        self.samples_per_tree
    }

    /// Total nodes over all trees.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The path length of `row` from node `start` (a root, or a node part of the way down).
    #[inline]
    fn path_length_in(&self, start: usize, row: &[f64]) -> f64 {
        let mut i = start;
        loop {
            let next = self.nodes[i].next(row);
            if next == i {
                return self.leaf_values[i];
            }
            i = next;
        }
    }

    #[inline]
    fn finish(&self, total_path_length: f64) -> f64 {
        let mean = total_path_length / self.roots.len() as f64;
        libm::exp2(-mean / self.normaliser)
    }
}

/// Scratch space for growing trees: one tree's sample, column-major, and the row order of the
/// nodes being split.
struct TreeBuilder {
    psi: usize,
    dims: usize,
    chosen: Vec<usize>,
    seen: HashSet<usize>,
    /// `columns[f * psi + r]`: feature `f` of sampled row `r`.
    columns: Vec<f64>,
    order: Vec<u32>,
    features: Vec<u32>,
    /// (node index, first, end, depth) of the nodes still to split.
    stack: Vec<(usize, usize, usize, usize)>,
}

impl TreeBuilder {
    fn new(psi: usize, dims: usize) -> TreeBuilder {
        TreeBuilder {
            psi,
            dims,
            chosen: Vec::with_capacity(psi),
            seen: HashSet::with_capacity(psi),
            columns: vec![0.0; psi * dims],
            order: Vec::with_capacity(psi),
            features: (0..dims as u32).collect(),
            stack: Vec::new(),
        }
    }

    /// Draws `ψ` of the `n` rows without replacement (Floyd's algorithm, then sorted, so the
    /// sample is a set whatever the draw order) and gathers them column-major.
    fn draw_sample(&mut self, rows: &[f64], n: usize, rng: &mut ChaCha8Rng) {
        self.chosen.clear();
        if self.psi == n {
            self.chosen.extend(0..n);
        } else {
            self.seen.clear();
            for j in n - self.psi..n {
                let t = rng.random_range(0..=j);
                let pick = if self.seen.insert(t) { t } else { j };
                if pick == j {
                    self.seen.insert(j);
                }
                self.chosen.push(pick);
            }
            self.chosen.sort_unstable();
        }
        for (r, &row) in self.chosen.iter().enumerate() {
            let values = &rows[row * self.dims..(row + 1) * self.dims];
            for (f, &v) in values.iter().enumerate() {
                self.columns[f * self.psi + r] = v;
            }
        }
    }

    /// Grows one tree into the node arrays, depth first; returns its depth.
    fn grow(
        &mut self,
        rng: &mut ChaCha8Rng,
        max_depth: usize,
        nodes: &mut Vec<Node>,
        leaf_values: &mut Vec<f64>,
        sizes: &mut Vec<u32>,
    ) -> usize {
        self.order.clear();
        self.order.extend(0..self.psi as u32);
        let root = nodes.len();
        nodes.push(Node::leaf(root));
        leaf_values.push(0.0);
        sizes.push(self.psi as u32);
        self.stack.push((root, 0, self.psi, 0));
        let mut tree_depth = 0;
        while let Some((index, first, end, depth)) = self.stack.pop() {
            let split = if depth < max_depth && end - first > 1 { self.draw_split(rng, first, end) } else { None };
            let Some((feature, threshold)) = split else {
                leaf_values[index] = depth as f64 + average_path_length(end - first);
                tree_depth = tree_depth.max(depth);
                continue;
            };
            // Partition: rows with x <= threshold first.
            let column = &self.columns[feature * self.psi..(feature + 1) * self.psi];
            let range = &mut self.order[first..end];
            let mut left = 0;
            for k in 0..range.len() {
                if column[range[k] as usize] <= threshold {
                    range.swap(left, k);
                    left += 1;
                }
            }
            let child = nodes.len();
            nodes[index] = Node { threshold, feature: feature as u32, child: child as u32 };
            nodes.extend([Node::leaf(child), Node::leaf(child + 1)]);
            leaf_values.extend([0.0, 0.0]);
            sizes.push(left as u32);
            sizes.push((end - first - left) as u32);
            // Left subtree first in preorder.
            self.stack.push((child + 1, first + left, end, depth + 1));
            self.stack.push((child, first, first + left, depth + 1));
        }
        tree_depth
    }

    /// Picks a feature uniformly among those not constant on the node's rows (drawing without
    /// replacement until one varies, as scikit-learn does) and a threshold uniformly in
    /// `[min, max)`. `None` when every feature is constant.
    fn draw_split(&mut self, rng: &mut ChaCha8Rng, first: usize, end: usize) -> Option<(usize, f64)> {
        let rows = &self.order[first..end];
        for k in 0..self.dims {
            let pick = rng.random_range(k..self.dims);
            self.features.swap(k, pick);
            let feature = self.features[k] as usize;
            let column = &self.columns[feature * self.psi..(feature + 1) * self.psi];
            let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
            for &r in rows {
                let v = column[r as usize];
                min = min.min(v);
                max = max.max(v);
            }
            if min < max {
                let u: f64 = rng.random();
                let mut threshold = min + (max - min) * u;
                if threshold >= max {
                    threshold = min;
                }
                return Some((feature, threshold));
            }
        }
        None
    }
}

/// The saved form of a forest: flat arrays, floats as their IEEE bit patterns.
#[derive(Clone, Serialize, Deserialize)]
struct StoredForest {
    format_version: u32,
    params: ForestParams,
    dims: usize,
    samples_per_tree: usize,
    roots: Vec<u32>,
    /// Split feature, or `u32::MAX` for a leaf.
    features: Vec<u32>,
    /// Left child (right is the next node); 0 for a leaf.
    children: Vec<u32>,
    /// `f64::to_bits` of the threshold, or of a leaf's path length.
    values: Vec<u64>,
    /// Training rows that reached each node.
    sizes: Vec<u32>,
}

impl From<IsolationForest> for StoredForest {
    fn from(forest: IsolationForest) -> StoredForest {
        StoredForest {
            format_version: FORMAT_VERSION,
            params: forest.params,
            dims: forest.dims,
            samples_per_tree: forest.samples_per_tree,
            features: nodes_of(&forest, |i, n| if is_leaf(i, n) { LEAF } else { n.feature }),
            children: nodes_of(&forest, |i, n| if is_leaf(i, n) { 0 } else { n.child }),
            values: nodes_of(&forest, |i, n| if is_leaf(i, n) { forest.leaf_values[i] } else { n.threshold }.to_bits()),
            roots: forest.roots,
            sizes: forest.sizes,
        }
    }
}

impl TryFrom<StoredForest> for IsolationForest {
    type Error = ForestError;

    /// Checks everything scoring relies on, so a corrupt file fails here rather than panicking
    /// or looping later: children follow their parent, every index and feature is in range.
    fn try_from(stored: StoredForest) -> Result<IsolationForest, ForestError> {
        let invalid = |why: String| Err(ForestError::InvalidModel(why));
        if stored.format_version != FORMAT_VERSION {
            return invalid(format!("format version {} (expected {FORMAT_VERSION})", stored.format_version));
        }
        let len = stored.features.len();
        if stored.children.len() != len || stored.values.len() != len || stored.sizes.len() != len {
            return invalid("node arrays differ in length".into());
        }
        if stored.dims == 0 || stored.dims >= LEAF as usize || stored.samples_per_tree < 2 {
            return invalid("dims or samples_per_tree out of range".into());
        }
        if stored.roots.is_empty() || stored.roots.iter().any(|&r| r as usize >= len) {
            return invalid("root index out of range".into());
        }
        let mut nodes = Vec::with_capacity(len);
        let mut leaf_values = Vec::with_capacity(len);
        // Every node is the child of at most one split and no root is a child, so the trees
        // are disjoint and a walk visits each node once.
        let mut referenced = vec![false; len];
        for &root in &stored.roots {
            if std::mem::replace(&mut referenced[root as usize], true) {
                return invalid("a root is shared".into());
            }
        }
        for i in 0..len {
            let (feature, child, value) = (stored.features[i], stored.children[i], f64::from_bits(stored.values[i]));
            if !value.is_finite() {
                return invalid(format!("node {i} has a non-finite value"));
            }
            if feature == LEAF {
                nodes.push(Node::leaf(i));
                leaf_values.push(value);
                continue;
            }
            let child = child as usize;
            if feature as usize >= stored.dims || child <= i || child + 1 >= len {
                return invalid(format!("node {i} has an out-of-range feature or child"));
            }
            for c in [child, child + 1] {
                if std::mem::replace(&mut referenced[c], true) {
                    return invalid(format!("node {c} has two parents"));
                }
            }
            nodes.push(Node { threshold: value, feature, child: child as u32 });
            leaf_values.push(0.0);
        }
        let depths = stored.roots.iter().map(|&root| tree_depth(&nodes, root as usize)).collect();
        let mut forest = IsolationForest {
            params: stored.params,
            dims: stored.dims,
            samples_per_tree: stored.samples_per_tree,
            normaliser: average_path_length(stored.samples_per_tree),
            roots: stored.roots,
            depths,
            nodes,
            leaf_values,
            sizes: stored.sizes,
            complete: CompleteTrees::default(),
        };
        forest.complete = CompleteTrees::new(&forest);
        Ok(forest)
    }
}

fn is_leaf(index: usize, node: &Node) -> bool {
    node.child as usize == index
}

fn nodes_of<T>(forest: &IsolationForest, f: impl Fn(usize, &Node) -> T) -> Vec<T> {
    forest.nodes.iter().enumerate().map(|(i, n)| f(i, n)).collect()
}

/// The depth of the deepest leaf under `root`.
fn tree_depth(nodes: &[Node], root: usize) -> u32 {
    let mut deepest = 0;
    let mut stack = vec![(root, 0u32)];
    while let Some((i, depth)) = stack.pop() {
        let node = nodes[i];
        if is_leaf(i, &node) {
            deepest = deepest.max(depth);
        } else {
            stack.extend([(node.child as usize, depth + 1), (node.child as usize + 1, depth + 1)]);
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(n: usize, dims: usize, seed: u64) -> Vec<f64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n * dims).map(|_| rng.random::<f64>()).collect()
    }

    #[test]
    fn c_matches_known_values() {
        assert_eq!(average_path_length(1), 0.0);
        assert_eq!(average_path_length(2), 1.0);
        // scikit-learn's _average_path_length([256])
        assert!((average_path_length(256) - 10.244_770_920_119_917).abs() < 1e-12);
    }

    #[test]
    fn trees_respect_structure() {
        let rows = grid(1000, 3, 1);
        let forest = IsolationForest::fit(&rows, 3, ForestParams { trees: 10, ..Default::default() }).expect("fit");
        assert_eq!(forest.samples_per_tree(), 256);
        for (t, &root) in forest.roots.iter().enumerate() {
            assert_eq!(forest.sizes[root as usize], 256);
            let end = forest.roots.get(t + 1).map_or(forest.nodes.len(), |&r| r as usize);
            for i in root as usize..end {
                let node = forest.nodes[i];
                if is_leaf(i, &node) {
                    assert!(forest.leaf_values[i] >= 0.0);
                } else {
                    let c = node.child as usize;
                    assert_eq!(forest.sizes[c] + forest.sizes[c + 1], forest.sizes[i]);
                    assert!(forest.sizes[c] > 0 && forest.sizes[c + 1] > 0);
                }
            }
        }
    }

    #[test]
    fn identical_rows_make_single_leaf_trees() {
        let rows = vec![1.0; 20];
        let forest = IsolationForest::fit(&rows, 2, ForestParams { trees: 3, ..Default::default() }).expect("fit");
        assert_eq!(forest.node_count(), 3);
        assert_eq!(forest.score(&[1.0, 1.0]), 0.5);
    }

    #[test]
    fn batch_equals_single_and_is_seeded() {
        let rows = grid(700, 4, 2);
        let params = ForestParams { trees: 25, sample_size: 64, seed: 9, ..Default::default() };
        let forest = IsolationForest::fit(&rows, 4, params).expect("fit");
        let batch = forest.score_batch(&rows).expect("batch");
        for (row, s) in rows.chunks(4).zip(&batch) {
            assert_eq!(forest.score(row).to_bits(), s.to_bits());
        }
        let other = IsolationForest::fit(&rows, 4, ForestParams { seed: 10, ..params }).expect("fit");
        assert_ne!(other.score_batch(&rows).expect("batch"), batch);
    }

    /// Rows to score: random ones, then ones sitting exactly on the forest's thresholds (and
    /// their neighbours), then signed zeros, NaN and infinities; not a whole number of blocks.
    fn probe_rows(forest: &IsolationForest, seed: u64) -> Vec<f64> {
        let dims = forest.dims();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut rows: Vec<f64> = (0..(3 * BATCH_BLOCK + 5) * dims).map(|_| rng.random::<f64>() * 1.2 - 0.1).collect();
        let mut thresholds: Vec<f64> = (0..forest.node_count())
            .filter(|&i| !is_leaf(i, &forest.nodes[i]))
            .map(|i| forest.nodes[i].threshold)
            .collect();
        thresholds.push(0.5);
        let specials = [0.0, -0.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::MIN_POSITIVE, -f64::MIN_POSITIVE];
        for r in 0..BATCH_BLOCK + 3 {
            for f in 0..dims {
                let t = thresholds[rng.random_range(0..thresholds.len())];
                rows.push(match rng.random_range(0..6) {
                    0 => t.next_down(),
                    1 => t.next_up(),
                    2 => specials[(r + f) % specials.len()],
                    _ => t,
                });
            }
        }
        rows
    }

    /// Every scoring path against the node walk of `score`, bit for bit.
    fn assert_paths_agree(forest: &IsolationForest, rows: &[f64]) {
        let walked: Vec<u64> = rows.chunks(forest.dims()).map(|row| forest.score(row).to_bits()).collect();
        let bits = |scores: Vec<f64>| scores.iter().map(|s| s.to_bits()).collect::<Vec<u64>>();
        assert_eq!(bits(forest.score_batch(rows).expect("batch")), walked);
        assert_eq!(bits(forest.score_rows::<false>(rows)), walked);
        assert_eq!(bits(forest.score_rows::<true>(rows)), walked);
        assert_eq!(bits(forest.score_batch(&rows[..forest.dims() * 3]).expect("batch")), walked[..3]);
    }

    #[test]
    fn complete_layout_scores_like_the_node_walk() {
        let rows = grid(3000, 5, 5);
        // Depth limits around the three levels evaluated for a whole block, ψ below 256 and not a
        // power of two, and ψ = 3000 (depth 12, the deepest laid out).
        let variants = [
            (256, None),
            (100, None),
            (64, Some(3)),
            (256, Some(2)),
            (256, Some(1)),
            (256, Some(0)),
            (256, Some(5)),
            (3000, None),
        ];
        for (seed, (sample_size, max_depth)) in variants.into_iter().enumerate() {
            let params = ForestParams { trees: 12, sample_size, max_depth, seed: seed as u64 };
            let forest = IsolationForest::fit(&rows, 5, params).expect("fit");
            assert!(forest.complete.starts.iter().all(Option::is_some));
            assert_paths_agree(&forest, &probe_rows(&forest, seed as u64));
        }
        // Trees deeper than the layout takes, alone (ψ = 3000) and mixed with laid-out ones
        // (ψ = 100: depths 11 to 15), the depth limit raised out of the way.
        for (sample_size, seed) in [(3000, 1), (100, 3)] {
            let params = ForestParams { trees: 12, sample_size, max_depth: Some(30), seed };
            let deep = IsolationForest::fit(&rows, 5, params).expect("fit");
            assert!(deep.complete.starts.iter().any(Option::is_none));
            assert_eq!(deep.complete.any(), sample_size == 100);
            assert_paths_agree(&deep, &probe_rows(&deep, seed));
        }

        // Thresholds of +0.0 and -0.0 against signed zeros and tiny values.
        let forest = IsolationForest::fit(&rows, 5, ForestParams { trees: 6, ..Default::default() }).expect("fit");
        let mut stored = StoredForest::from(forest);
        for (i, feature) in stored.features.iter().enumerate() {
            if *feature != LEAF && i % 3 != 2 {
                stored.values[i] = if i % 3 == 0 { 0.0f64 } else { -0.0f64 }.to_bits();
            }
        }
        let zeros = IsolationForest::try_from(stored).expect("valid model");
        assert_paths_agree(&zeros, &probe_rows(&zeros, 2));

        // Too many features for keyed blocks: the node walk throughout.
        let dims = COMPLETE_MAX_DIMS + 1;
        let wide = IsolationForest::fit(&grid(40, dims, 6), dims, ForestParams { trees: 3, ..Default::default() });
        let wide = wide.expect("fit");
        assert!(!wide.complete.any());
        assert_paths_agree(&wide, &grid(BATCH_BLOCK + 9, dims, 7));
    }

    #[test]
    fn explanation_sums_to_log_score() {
        let rows = grid(500, 5, 3);
        let forest = IsolationForest::fit(&rows, 5, ForestParams::default()).expect("fit");
        for row in rows.chunks(5).take(50).chain([[0.5, 0.5, 9.0, 0.5, 0.5].as_slice()]) {
            let sum: f64 = forest.explain(row).iter().sum();
            assert!((sum - (1.0 + forest.score(row).log2())).abs() < 1e-9);
        }
        let why = forest.explain(&[0.5, 0.5, 9.0, 0.5, 0.5]);
        let top = why.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i);
        assert_eq!(top, Some(2));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let p = ForestParams::default();
        assert_eq!(IsolationForest::fit(&[1.0, 2.0, 3.0], 2, p), Err(ForestError::RaggedRows { len: 3, dims: 2 }));
        assert_eq!(IsolationForest::fit(&[1.0, 2.0], 2, p), Err(ForestError::TooFewRows(1)));
        assert_eq!(IsolationForest::fit(&[], 0, p), Err(ForestError::NoDimensions));
        assert!(matches!(
            IsolationForest::fit(&[1.0, f64::NAN, 0.0, 0.0], 2, p),
            Err(ForestError::NotFinite { row: 0, feature: 1 })
        ));
        let forest = IsolationForest::fit(&[1.0, 2.0, 3.0, 4.0], 2, p).expect("fit");
        assert!(forest.score(&[1.0]).is_nan());
        assert!(forest.explain(&[1.0]).is_empty());
        assert!(forest.score(&[f64::NAN, 1.0]).is_finite());
    }

    #[test]
    fn corrupt_models_are_rejected() {
        let rows = grid(100, 2, 4);
        let forest = IsolationForest::fit(&rows, 2, ForestParams { trees: 2, ..Default::default() }).expect("fit");
        let good = StoredForest::from(forest.clone());
        assert_eq!(IsolationForest::try_from(good.clone()).as_ref(), Ok(&forest));
        let mut cyclic = good.clone();
        let internal = cyclic.features.iter().position(|&f| f != LEAF).expect("a split");
        cyclic.children[internal] = internal as u32;
        assert!(IsolationForest::try_from(cyclic).is_err());
        let mut version = good.clone();
        version.format_version = 99;
        assert!(IsolationForest::try_from(version).is_err());
        let mut feature = good;
        feature.features[internal] = 7;
        assert!(IsolationForest::try_from(feature).is_err());
    }
}
