//! Linear imputation of missing keypoints over time.
//!
//! A keypoint is missing when both its coordinates are exactly 0. Per joint, the coordinates of
//! missing frames are interpolated linearly between the nearest observed frames, and held
//! constant before the first / after the last observation (numpy's `np.interp`, computed in
//! f64). A joint never observed in the sequence is placed, per frame, at the mean of the
//! keypoints observed in that frame, or, when the frame has none, at the mean of the frame's
//! interpolated keypoints. Confidences are left as they are. A sequence without any observed
//! keypoint is an error.

use crate::params::{FRAME_FLOATS, KP_FLOATS, NUM_JOINTS};

#[inline]
fn is_missing(x: f32, y: f32) -> bool {
    x == 0.0 && y == 0.0
}

/// Imputes a flat `[T, 17, 3]` sequence; returns the new data.
pub fn impute_linear(data: &[f32], frames: usize) -> Result<Vec<f32>, String> {
    debug_assert_eq!(data.len(), frames * FRAME_FLOATS);
    let at = |t: usize, j: usize, c: usize| t * FRAME_FLOATS + j * KP_FLOATS + c;
    let observed = |t: usize, j: usize| !is_missing(data[at(t, j, 0)], data[at(t, j, 1)]);

    let mut out = data.to_vec();
    let mut seen = [false; NUM_JOINTS];
    let mut obs: Vec<usize> = Vec::with_capacity(frames);
    for (j, seen_j) in seen.iter_mut().enumerate() {
        obs.clear();
        obs.extend((0..frames).filter(|&t| observed(t, j)));
        if obs.is_empty() {
            continue;
        }
        *seen_j = true;
        if obs.len() == frames {
            continue;
        }
        for c in 0..2 {
            let value = |t: usize| data[at(t, j, c)] as f64;
            let first = obs[0];
            let last = obs[obs.len() - 1];
            for t in 0..first {
                out[at(t, j, c)] = value(first) as f32;
            }
            for t in last + 1..frames {
                out[at(t, j, c)] = value(last) as f32;
            }
            for w in obs.windows(2) {
                let (t0, t1) = (w[0], w[1]);
                if t1 == t0 + 1 {
                    continue;
                }
                let (f0, f1) = (value(t0), value(t1));
                let slope = (f1 - f0) / (t1 as f64 - t0 as f64);
                for t in t0 + 1..t1 {
                    out[at(t, j, c)] = (slope * (t as f64 - t0 as f64) + f0) as f32;
                }
            }
        }
    }
    if !seen.iter().any(|&s| s) {
        return Err("no observed keypoint (every x and y is 0): nothing to impute from".into());
    }
    if seen.iter().all(|&s| s) {
        return Ok(out);
    }
    for t in 0..frames {
        let (mut sx, mut sy, mut n) = (0.0f64, 0.0f64, 0usize);
        for j in 0..NUM_JOINTS {
            if observed(t, j) {
                sx += data[at(t, j, 0)] as f64;
                sy += data[at(t, j, 1)] as f64;
                n += 1;
            }
        }
        if n == 0 {
            for j in (0..NUM_JOINTS).filter(|&j| seen[j]) {
                sx += out[at(t, j, 0)] as f64;
                sy += out[at(t, j, 1)] as f64;
                n += 1;
            }
        }
        let (mx, my) = ((sx / n as f64) as f32, (sy / n as f64) as f32);
        for j in (0..NUM_JOINTS).filter(|&j| !seen[j]) {
            out[at(t, j, 0)] = mx;
            out[at(t, j, 1)] = my;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(frames: usize) -> Vec<f32> {
        let mut d = vec![0.0f32; frames * FRAME_FLOATS];
        for t in 0..frames {
            for j in 0..NUM_JOINTS {
                d[t * FRAME_FLOATS + j * 3] = 10.0 + j as f32;
                d[t * FRAME_FLOATS + j * 3 + 1] = 20.0 + t as f32;
                d[t * FRAME_FLOATS + j * 3 + 2] = 0.9;
            }
        }
        d
    }

    #[test]
    fn fills_gap_linearly_and_holds_ends() {
        let mut d = seq(6);
        for t in [0usize, 2, 3, 5] {
            d[t * FRAME_FLOATS + 4 * 3] = 0.0;
            d[t * FRAME_FLOATS + 4 * 3 + 1] = 0.0;
        }
        let out = impute_linear(&d, 6).unwrap();
        let y = |t: usize| out[t * FRAME_FLOATS + 4 * 3 + 1];
        assert_eq!(y(0), 21.0); // held from frame 1
        assert_eq!(y(2), 22.0);
        assert_eq!(y(3), 23.0);
        assert_eq!(y(5), 24.0); // held from frame 4
        assert_eq!(out[2 * FRAME_FLOATS + 4 * 3 + 2], 0.9);
    }

    #[test]
    fn never_observed_joint_goes_to_frame_mean() {
        let mut d = seq(2);
        for t in 0..2 {
            d[t * FRAME_FLOATS] = 0.0;
            d[t * FRAME_FLOATS + 1] = 0.0;
        }
        let out = impute_linear(&d, 2).unwrap();
        let mean_x = (1..17).map(|j| 10.0 + j as f64).sum::<f64>() / 16.0;
        assert!((out[0] as f64 - mean_x).abs() < 1e-5);
        assert_eq!(out[1], 20.0);
    }

    #[test]
    fn all_missing_is_an_error() {
        let d = vec![0.0f32; 3 * FRAME_FLOATS];
        assert!(impute_linear(&d, 3).is_err());
    }
}
