//! Per-frame normalisation onto the 128 x 128 canvas.

use crate::params::{CANVAS, KP_FLOATS, NUM_JOINTS};

/// Vertical extent of the normalised skeleton: `128 // 1.5 = 85` px.
pub const TARGET_HEIGHT: f64 = 85.0;
/// The hip midpoint lands on this canvas coordinate (x and y).
pub const CENTRE: f64 = (CANVAS / 2) as f64;

/// A keypoint on the canvas: position (f64), confidence, and the log of the confidence.
#[derive(Clone, Copy, Debug, Default)]
pub struct Keypoint {
    pub x: f64,
    pub y: f64,
    pub c: f32,
    /// `ln(c)` (in f64, rounded to f32), taken once per keypoint: a limb's peak `min(c_a, c_b)`
    /// has the log `min(lnc_a, lnc_b)` exactly (both functions are monotone).
    pub lnc: f32,
}

impl Keypoint {
    /// A keypoint at `(x, y)` with confidence `c` (and its log).
    pub fn new(x: f64, y: f64, c: f32) -> Self {
        Self {
            x,
            y,
            c,
            lnc: (c as f64).ln() as f32,
        }
    }
}

/// `(p - hip) * (85 / (y_max - y_min)) + 64` for all 17 keypoints, where `hip` is the midpoint of
/// keypoints 11 and 12 and the extent is taken over all keypoints whatever their score.
///
/// Returns `None` (the frame is rendered empty) when the vertical extent is 0 or a normalised
/// coordinate is not finite.
pub fn normalise_frame(frame: &[f32]) -> Option<[Keypoint; NUM_JOINTS]> {
    let x = |j: usize| frame[j * KP_FLOATS] as f64;
    let y = |j: usize| frame[j * KP_FLOATS + 1] as f64;
    let hip_x = (x(11) + x(12)) / 2.0;
    let hip_y = (y(11) + y(12)) / 2.0;
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for j in 0..NUM_JOINTS {
        lo = lo.min(y(j));
        hi = hi.max(y(j));
    }
    let extent = hi - lo;
    if extent.is_nan() || extent <= 0.0 {
        return None;
    }
    let scale = TARGET_HEIGHT / extent;
    let mut out = [Keypoint::default(); NUM_JOINTS];
    for (j, k) in out.iter_mut().enumerate() {
        *k = Keypoint::new(
            (x(j) - hip_x) * scale + CENTRE,
            (y(j) - hip_y) * scale + CENTRE,
            frame[j * KP_FLOATS + 2],
        );
        if !(k.x.is_finite() && k.y.is_finite()) {
            return None;
        }
    }
    Some(out)
}
