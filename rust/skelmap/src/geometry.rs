//! Per-frame normalisation onto the 128 x 128 canvas.

use crate::knn::Real;
use crate::params::{confidence_f32, CANVAS, KP_FLOATS, NUM_JOINTS};

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

/// OpenGait's `CenterAndScaleNormalizer` on one frame, in the frame's float type (float32 input
/// stays float32, float64 stays float64, as OpenGait's numpy arithmetic): `hip` = midpoint of
/// keypoints 11 and 12; `q = p - hip`; `q * (85 / (max q_y - min q_y)) + 64`, the extent taken
/// over the `counted` keypoints whatever their score (all 17 in OpenGait). Confidences become
/// float32 ([`confidence_f32`]).
///
/// Returns `None` (the frame is rendered empty) when the vertical extent is not positive or a
/// normalised coordinate is not finite.
pub fn normalise_frame<F: Real>(
    frame: &[F],
    counted: &[bool; NUM_JOINTS],
) -> Option<[Keypoint; NUM_JOINTS]> {
    let at = |j: usize, c: usize| frame[j * KP_FLOATS + c];
    let two = F::from_f64(2.0);
    let hip = [0, 1].map(|c| (at(11, c) + at(12, c)) / two);
    let centred = |j: usize, c: usize| at(j, c) - hip[c];
    let (mut lo, mut hi) = (F::from_f64(f64::INFINITY), F::from_f64(f64::NEG_INFINITY));
    for j in (0..NUM_JOINTS).filter(|&j| counted[j]) {
        let y = centred(j, 1);
        lo = if y < lo { y } else { lo };
        hi = if y > hi { y } else { hi };
    }
    let extent = hi - lo;
    if extent.is_nan() || extent <= F::ZERO {
        return None;
    }
    let scale = F::from_f64(TARGET_HEIGHT) / extent;
    let centre = F::from_f64(CENTRE);
    let mut out = [Keypoint::default(); NUM_JOINTS];
    for (j, k) in out.iter_mut().enumerate() {
        let [x, y] = [0, 1].map(|c| (centred(j, c) * scale + centre).to_f64());
        *k = Keypoint::new(x, y, confidence_f32(at(j, 2).to_f64()));
        if !(k.x.is_finite() && k.y.is_finite()) {
            return None;
        }
    }
    Some(out)
}
