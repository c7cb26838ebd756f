//! OpenGait's imputation of missing coordinates: scikit-learn's
//! `KNNImputer(missing_values=0.0, n_neighbors=4, weights="distance")`, fitted and applied on
//! the `[T, 34]` coordinate matrix of one sequence (x and y of each joint are separate columns,
//! rows are frames; confidences are not part of it).
//!
//! scikit-learn's rules, reproduced in its dtype (float32 input stays float32, float64 stays
//! float64; [`Real`]):
//! - a coordinate exactly 0 is missing, column by column (an x clamped to 0 at the image edge
//!   is missing even when its y is not);
//! - if a column is missing in every frame, scikit-learn drops it and OpenGait's reshape back
//!   fails, so the sequence is kept **un-imputed** ([`Outcome::AllMissingColumn`]);
//! - distances between a frame with a missing value and every frame: `nan_euclidean` over the
//!   coordinates both have, `sqrt(34 / present * squared distance)`, computed as scikit-learn
//!   does (`-2 x.y + |x|^2 + |y|^2` in float64, cast to the dtype, minus the squares of the
//!   coordinates one of the two lacks, clipped at 0); no shared coordinate: NaN;
//! - per missing value (column by column), the donors are the frames that have that column;
//!   the 4 nearest (NaN distances last) are averaged with weights `1 / distance`, or, when one
//!   of them is at distance 0 (weight infinite), the frames at distance 0 alone with weight 1;
//!   a frame with no distance to any donor (all NaN) gets the column's mean.
//!
//! Where the result can differ from scikit-learn's in the last bits: scikit-learn's distances
//! come from BLAS (its summation order, and in float64 its fused multiply-adds), these from
//! sequential sums; numpy's `argpartition` picks among donors tied at the 4th distance and
//! orders the 4 (their weighted sum's order) in a CPU-dependent way (x86-simd-sort's network
//! sorts rows without NaN, `std::nth_element` the others), here ties go to the earlier frame
//! and the 4 are summed nearest first.

use std::ops::{Add, Div, Mul, Sub};

/// Columns of the coordinate matrix: x and y of 17 joints.
pub const COLS: usize = 34;
/// Neighbours averaged per missing value.
pub const NEIGHBOURS: usize = 4;

/// The float types scikit-learn keeps.
pub trait Real:
    Copy
    + PartialOrd
    + Add<Output = Self>
    + Sub<Output = Self>
    + Mul<Output = Self>
    + Div<Output = Self>
{
    const ZERO: Self;
    const ONE: Self;
    const NAN: Self;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;
    fn sqrt(self) -> Self;
    fn is_nan(self) -> bool;
    fn is_infinite(self) -> bool;
}

macro_rules! real {
    ($t:ty) => {
        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NAN: Self = <$t>::NAN;
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn is_nan(self) -> bool {
                <$t>::is_nan(self)
            }
            #[inline(always)]
            fn is_infinite(self) -> bool {
                <$t>::is_infinite(self)
            }
        }
    };
}
real!(f32);
real!(f64);

/// What the imputer did with a sequence.
#[derive(Debug, PartialEq)]
pub enum Outcome<F> {
    /// No coordinate is missing: nothing to do.
    Complete,
    /// Column `c` (joint `c / 2`, x if even) is missing in every frame: scikit-learn drops it
    /// and OpenGait keeps the whole sequence un-imputed.
    AllMissingColumn(usize),
    /// The imputed `[T, 34]` matrix.
    Imputed(Vec<F>),
}

/// numpy's pairwise summation (`pairwise_sum`: 8 accumulators over blocks of at most 128,
/// halves above), in the dtype: what `ndarray.sum()` gives for a contiguous 1-D array.
pub fn pairwise_sum<F: Real>(a: &[F]) -> F {
    let n = a.len();
    if n < 8 {
        a.iter().fold(F::ZERO, |s, &v| s + v)
    } else if n <= 128 {
        let mut r = [F::ZERO; 8];
        r.copy_from_slice(&a[..8]);
        let whole = n - n % 8;
        for chunk in a[8..whole].chunks_exact(8) {
            for (r, &v) in r.iter_mut().zip(chunk) {
                *r = *r + v;
            }
        }
        let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &a[whole..] {
            res = res + v;
        }
        res
    } else {
        let half = n / 2;
        let half = half - half % 8;
        pairwise_sum(&a[..half]) + pairwise_sum(&a[half..])
    }
}

/// scikit-learn's `nan_euclidean_distances` from frame `r` to frame `j` of the matrix `x`
/// (`miss`: its missing mask, `norms`: the rows' squared norms in float64).
fn distance<F: Real>(x: &[F], miss: &[bool], norms: &[f64], r: usize, j: usize) -> F {
    let (xr, xj) = (&x[r * COLS..][..COLS], &x[j * COLS..][..COLS]);
    let (mr, mj) = (&miss[r * COLS..][..COLS], &miss[j * COLS..][..COLS]);
    let dot = xr
        .iter()
        .zip(xj)
        .fold(0.0f64, |s, (&a, &b)| s + a.to_f64() * b.to_f64());
    let d0 = F::from_f64((-2.0 * dot + norms[r] + norms[j]).max(0.0));
    let mut lack_j = F::ZERO; // squares of r's coordinates that j lacks
    let mut lack_r = F::ZERO;
    let mut present = 0usize;
    for c in 0..COLS {
        if mj[c] {
            lack_j = lack_j + xr[c] * xr[c];
        }
        if mr[c] {
            lack_r = lack_r + xj[c] * xj[c];
        }
        present += (!mr[c] && !mj[c]) as usize;
    }
    if present == 0 {
        return F::NAN;
    }
    let d = (d0 - lack_j) - lack_r;
    let d = if d < F::ZERO { F::ZERO } else { d };
    let d = F::from_f64(d.to_f64() / present as f64) * F::from_f64(COLS as f64);
    d.sqrt()
}

/// Whether distance `a` sorts before `b` (NaN last, as numpy's sort order).
#[inline(always)]
fn nearer<F: Real>(a: F, b: F) -> bool {
    a < b || (b.is_nan() && !a.is_nan())
}

/// The weighted mean of the nearest donors (module docs); `dists[i]` is the distance to the
/// donor of value `values[i]`; at least one distance is not NaN.
fn donor_mean<F: Real>(dists: &[F], values: &[F]) -> F {
    // The (at most) 4 nearest, nearest first; a tie keeps the earlier donor.
    let mut near: [usize; NEIGHBOURS] = [0; NEIGHBOURS];
    let mut n = 0;
    for (i, &d) in dists.iter().enumerate() {
        let mut k = n.min(NEIGHBOURS - 1);
        if n == NEIGHBOURS && !nearer(d, dists[near[k]]) {
            continue;
        }
        while k > 0 && nearer(d, dists[near[k - 1]]) {
            near[k] = near[k - 1];
            k -= 1;
        }
        near[k] = i;
        n = (n + 1).min(NEIGHBOURS);
    }
    let near = &near[..n];
    let mut w = [F::ZERO; NEIGHBOURS];
    for (w, &i) in w.iter_mut().zip(near) {
        *w = F::ONE / dists[i];
    }
    if w[..n].iter().any(|v| v.is_infinite()) {
        for v in w.iter_mut() {
            *v = if v.is_infinite() { F::ONE } else { F::ZERO };
        }
    }
    let (mut total, mut weighted) = (F::ZERO, F::ZERO);
    for (&i, &w) in near.iter().zip(&w) {
        let w = if w.is_nan() { F::ZERO } else { w };
        total = total + w;
        weighted = weighted + values[i] * w;
    }
    weighted / total
}

/// Imputes the `[frames, 34]` coordinate matrix `x` as scikit-learn's `KNNImputer` fitted on
/// it (module docs).
pub fn knn_impute<F: Real>(x: &[F], frames: usize) -> Outcome<F> {
    assert_eq!(x.len(), frames * COLS, "a [T, 34] coordinate matrix");
    let miss: Vec<bool> = x.iter().map(|&v| v == F::ZERO).collect();
    if let Some(c) = (0..COLS).find(|&c| (0..frames).all(|t| miss[t * COLS + c])) {
        return Outcome::AllMissingColumn(c);
    }
    let receivers: Vec<usize> = (0..frames)
        .filter(|&t| miss[t * COLS..][..COLS].iter().any(|&m| m))
        .collect();
    if receivers.is_empty() {
        return Outcome::Complete;
    }
    let norms: Vec<f64> = x
        .chunks_exact(COLS)
        .map(|row| row.iter().fold(0.0, |s, &v| s + v.to_f64() * v.to_f64()))
        .collect();
    // Distances from every receiver to every frame, row by row.
    let dist: Vec<F> = receivers
        .iter()
        .flat_map(|&r| (0..frames).map(move |j| (r, j)))
        .map(|(r, j)| distance(x, &miss, &norms, r, j))
        .collect();
    let mut out = x.to_vec();
    let (mut ds, mut vs) = (Vec::with_capacity(frames), Vec::with_capacity(frames));
    for c in 0..COLS {
        let donors: Vec<usize> = (0..frames).filter(|&t| !miss[t * COLS + c]).collect();
        let mut mean = None;
        for (i, &r) in receivers.iter().enumerate() {
            if !miss[r * COLS + c] {
                continue;
            }
            ds.clear();
            vs.clear();
            for &j in &donors {
                ds.push(dist[i * frames + j]);
                vs.push(x[j * COLS + c]);
            }
            out[r * COLS + c] = if ds.iter().all(|d| d.is_nan()) {
                // numpy.ma's mean: the float sum of the column with missing values as +0,
                // divided by the count in float64.
                *mean.get_or_insert_with(|| {
                    let col: Vec<F> = (0..frames)
                        .map(|t| {
                            if miss[t * COLS + c] {
                                F::ZERO
                            } else {
                                x[t * COLS + c]
                            }
                        })
                        .collect();
                    F::from_f64(pairwise_sum(&col).to_f64() / donors.len() as f64)
                })
            } else {
                donor_mean(&ds, &vs)
            };
        }
    }
    Outcome::Imputed(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `[frames, 34]` matrix with distinct smooth values.
    fn matrix(frames: usize) -> Vec<f64> {
        (0..frames * COLS)
            .map(|i| 100.0 + (i % COLS) as f64 * 10.0 + (i / COLS) as f64 * 1.5)
            .collect()
    }

    #[test]
    fn complete_and_all_missing_column_are_left_alone() {
        let x = matrix(5);
        assert_eq!(knn_impute(&x, 5), Outcome::Complete);
        let mut y = x.clone();
        for t in 0..5 {
            y[t * COLS + 7] = 0.0;
        }
        y[2 * COLS] = 0.0;
        assert_eq!(knn_impute(&y, 5), Outcome::AllMissingColumn(7));
        // One frame: any missing coordinate is missing in every frame.
        let mut z = matrix(1);
        z[3] = 0.0;
        assert_eq!(knn_impute(&z, 1), Outcome::AllMissingColumn(3));
    }

    /// Hand-computed: frame 0 lacks column 0; distances to frames 1..5 over the 33 shared
    /// columns grow with the frame; the 4 nearest average with weights 1 / distance.
    #[test]
    fn distance_weighted_mean_of_four_nearest() {
        let frames = 6;
        let mut x = matrix(frames);
        x[0] = 0.0;
        let Outcome::Imputed(out) = knn_impute(&x, frames) else {
            panic!("imputed")
        };
        // Frame j differs from frame 0 by 1.5 j in each of the 33 shared columns:
        // d = sqrt(34 / 33 * 33 (1.5 j)^2) = 1.5 j sqrt(34).
        let w: Vec<f64> = (1..=4)
            .map(|j| 1.0 / (1.5 * j as f64 * 34f64.sqrt()))
            .collect();
        let v: Vec<f64> = (1..=4).map(|j| x[j * COLS]).collect();
        let want = w.iter().zip(&v).map(|(w, v)| w * v).sum::<f64>() / w.iter().sum::<f64>();
        assert!((out[0] - want).abs() < 1e-9, "{} vs {want}", out[0]);
        assert_eq!(&out[1..], &x[1..], "only the missing value changes");
    }

    /// A donor at distance 0 (a duplicated frame) takes all the weight.
    #[test]
    fn exact_match_alone() {
        let frames = 5;
        let mut x = matrix(frames);
        let dup: Vec<f64> = x[3 * COLS..4 * COLS].to_vec();
        x[..COLS].copy_from_slice(&dup);
        x[3 * COLS + 5] += 40.0; // frame 3 keeps a different value in column 5 ...
        x[5] = 0.0; // ... which frame 0 lacks: still at distance 0 over the rest
        let Outcome::Imputed(out) = knn_impute(&x, frames) else {
            panic!("imputed")
        };
        assert_eq!(out[5], x[3 * COLS + 5]);
    }

    /// A frame sharing no coordinate with any donor gets the column mean (numpy's).
    #[test]
    fn no_shared_coordinate_gives_column_mean() {
        let frames = 4;
        let mut x = matrix(frames);
        x[..COLS].fill(0.0); // frame 0: nothing observed
        let Outcome::Imputed(out) = knn_impute(&x, frames) else {
            panic!("imputed")
        };
        for c in 0..COLS {
            let mean = (1..frames).map(|t| x[t * COLS + c]).sum::<f64>() / 3.0;
            assert!((out[c] - mean).abs() < 1e-12);
        }
    }

    /// Only the 4 nearest count; ties keep the earlier frame; NaN distances come last.
    #[test]
    fn nearest_four_with_ties_and_nan() {
        let d = [5.0f32, f32::NAN, 1.0, 3.0, 1.0, 2.0, 0.5];
        let v = [10.0f32, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0];
        // Nearest: 0.5 (70), 1.0 (30), 1.0 (50), 2.0 (60).
        let w = [2.0f32, 1.0, 1.0, 0.5];
        let want = (70.0 * 2.0 + 30.0 + 50.0 + 60.0 * 0.5) / w.iter().sum::<f32>();
        assert!((donor_mean(&d, &v) - want).abs() < 1e-4);
        // Fewer than 4 usable: NaN weights are 0.
        let d = [f32::NAN, 2.0, f32::NAN];
        assert_eq!(donor_mean(&d, &[1.0, 8.0, 3.0]), 8.0);
    }

    #[test]
    fn pairwise_sum_matches_numpy_blocks() {
        // Exact in any order: integers.
        let a: Vec<f32> = (1..=300).map(|i| i as f32).collect();
        assert_eq!(pairwise_sum(&a), 45150.0);
        // Order-dependent: one large value then many small ones, summed in float32 by 8
        // accumulators (numpy) the small ones survive partly; sequentially none would.
        let mut b = vec![1.0f32; 64];
        b[0] = 1.0e8;
        assert_eq!(pairwise_sum(&b), 1.0e8 + 56.0);
        assert_eq!(b.iter().fold(0.0f32, |s, &v| s + v), 1.0e8);
    }
}
