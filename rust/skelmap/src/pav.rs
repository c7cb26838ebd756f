//! Postural Asymmetry Vector: a sequence-level 8 x 3 descriptor (see `sconet.render`).
//!
//! Rows: the symmetric COCO pairs eyes, ears, shoulders, elbows, wrists, hips, knees, ankles.
//! Columns: height difference `|y_l - y_r|`, midline deviation `|(x_l + x_r)/2 - mean x|`, tilt
//! angle `atan2(|dy|, |dx|)` in degrees, all after scaling the frame so that the vertical extent
//! of its valid keypoints (confidence > 0, not at (0, 0)) is 128. Frames with fewer than two
//! valid keypoints or a zero extent give no value. Per (pair, metric) the values over frames
//! inside `[Q1 - 1.5 IQR, Q3 + 1.5 IQR]` (numpy's linear quartiles) are averaged; no value -> 0.

use crate::params::{FRAME_FLOATS, KP_FLOATS, NUM_JOINTS};

/// Symmetric (left, right) keypoint pairs, the PAV rows, head to ankle.
pub const PAIRS: [(usize, usize); 8] = [
    (1, 2),
    (3, 4),
    (5, 6),
    (7, 8),
    (9, 10),
    (11, 12),
    (13, 14),
    (15, 16),
];
/// Names of the [`PAIRS`].
pub const PAIR_NAMES: [&str; PAIRS.len()] = [
    "eyes",
    "ears",
    "shoulders",
    "elbows",
    "wrists",
    "hips",
    "knees",
    "ankles",
];
/// Names of the PAV columns.
pub const METRIC_NAMES: [&str; METRICS] =
    ["height_difference", "midline_deviation", "tilt_degrees"];
pub const METRICS: usize = 3;
pub const PAV_LEN: usize = PAIRS.len() * METRICS;
const SCALE: f64 = 128.0;

/// Per-frame values `[8][3]`, `None` where the pair (or the frame) has no value.
pub fn frame_values(frame: &[f32]) -> [[Option<f64>; METRICS]; 8] {
    let mut out = [[None; METRICS]; 8];
    let x = |j: usize| frame[j * KP_FLOATS] as f64;
    let y = |j: usize| frame[j * KP_FLOATS + 1] as f64;
    let valid: Vec<bool> = (0..NUM_JOINTS)
        .map(|j| frame[j * KP_FLOATS + 2] > 0.0 && !(x(j) == 0.0 && y(j) == 0.0))
        .collect();
    let n = valid.iter().filter(|&&v| v).count();
    if n < 2 {
        return out;
    }
    let (mut lo, mut hi, mut sx) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    for j in (0..NUM_JOINTS).filter(|&j| valid[j]) {
        lo = lo.min(y(j));
        hi = hi.max(y(j));
        sx += x(j);
    }
    let extent = hi - lo;
    if extent.is_nan() || extent <= 0.0 {
        return out;
    }
    let scale = SCALE / extent;
    let mid_x = sx / n as f64;
    for (p, &(l, r)) in PAIRS.iter().enumerate() {
        if !(valid[l] && valid[r]) {
            continue;
        }
        let dy = (y(l) - y(r)) * scale;
        let dx = (x(l) - x(r)) * scale;
        out[p][0] = Some(dy.abs());
        out[p][1] = Some((((x(l) + x(r)) / 2.0 - mid_x) * scale).abs());
        out[p][2] = Some(dy.abs().atan2(dx.abs()).to_degrees());
    }
    out
}

/// numpy's linear interpolation between `a` and `b` (`_lerp`).
fn lerp(a: f64, b: f64, t: f64) -> f64 {
    let diff = b - a;
    if t >= 0.5 {
        b - diff * (1.0 - t)
    } else {
        a + diff * t
    }
}

/// `np.percentile(sorted, q)` with the default linear method.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    let virt = q / 100.0 * (n - 1) as f64;
    let prev = virt.floor();
    let i = (prev as usize).min(n - 1);
    let j = (i + 1).min(n - 1);
    lerp(sorted[i], sorted[j], virt - prev)
}

/// Mean of the values inside `[Q1 - 1.5 IQR, Q3 + 1.5 IQR]`; 0 when there is none.
pub fn iqr_mean(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let q1 = percentile(&sorted, 25.0);
    let q3 = percentile(&sorted, 75.0);
    let iqr = q3 - q1;
    let (lo, hi) = (q1 - 1.5 * iqr, q3 + 1.5 * iqr);
    let (mut sum, mut n) = (0.0f64, 0usize);
    for &v in values.iter() {
        if v >= lo && v <= hi {
            sum += v;
            n += 1;
        }
    }
    if n == 0 {
        0.0
    } else {
        sum / n as f64
    }
}

/// PAV of one flat `[T, 17, 3]` sequence, row-major `[8][3]`.
pub fn pav(data: &[f32], frames: usize) -> [f32; PAV_LEN] {
    let mut cols: Vec<Vec<f64>> = (0..PAV_LEN).map(|_| Vec::with_capacity(frames)).collect();
    for t in 0..frames {
        let v = frame_values(&data[t * FRAME_FLOATS..(t + 1) * FRAME_FLOATS]);
        for p in 0..PAIRS.len() {
            for m in 0..METRICS {
                if let Some(x) = v[p][m] {
                    cols[p * METRICS + m].push(x);
                }
            }
        }
    }
    let mut out = [0.0f32; PAV_LEN];
    for (o, col) in out.iter_mut().zip(cols.iter_mut()) {
        *o = iqr_mean(col) as f32;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_matches_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0, 10.0];
        assert_eq!(percentile(&v, 25.0), 2.0);
        assert_eq!(percentile(&v, 75.0), 4.0);
        let v = [1.0, 2.0];
        assert_eq!(percentile(&v, 25.0), 1.25);
        assert_eq!(percentile(&v, 75.0), 1.75);
    }

    #[test]
    fn iqr_drops_outliers() {
        let mut v = vec![1.0, 1.1, 0.9, 1.0, 1.05, 0.95, 50.0];
        let m = iqr_mean(&mut v);
        assert!((m - 1.0).abs() < 1e-9, "{m}");
        assert_eq!(iqr_mean(&mut []), 0.0);
    }
}
