//! A synthetic walking pose sequence: a test aid, compiled into the unit tests and included by
//! path into `examples/stages.rs` (so it depends on nothing in the crate).

/// Standing COCO-17 stick figure, hip midpoint near the origin (x right, y down).
const BASE: [(f32, f32); 17] = [
    (0.0, -80.0),
    (-3.0, -83.0),
    (3.0, -83.0),
    (-6.0, -81.0),
    (6.0, -81.0),
    (-12.0, -65.0),
    (12.0, -65.0),
    (-14.0, -45.0),
    (14.0, -45.0),
    (-15.0, -28.0),
    (15.0, -28.0),
    (-8.0, -20.0),
    (8.0, -20.0),
    (-9.0, 20.0),
    (9.0, 20.0),
    (-9.0, 58.0),
    (9.0, 58.0),
];

/// `frames` x 17 x (x, y, score), flattened: the figure at 2x scale around (300, 400) with a
/// per-joint sway. Scores are 0.9, or cycle through 0.6 / 0.75 / 0.9 with `varied_scores`.
pub fn walker(frames: usize, varied_scores: bool) -> Vec<f32> {
    let mut d = Vec::with_capacity(frames * BASE.len() * 3);
    for t in 0..frames {
        for (j, (x, y)) in BASE.iter().enumerate() {
            let sway = ((t as f32) * 0.3 + j as f32).sin() * 3.0;
            let score = if varied_scores {
                0.6 + 0.3 * ((t + j) % 3) as f32 / 2.0
            } else {
                0.9
            };
            d.extend_from_slice(&[x * 2.0 + 300.0 + sway, y * 2.0 + 400.0, score]);
        }
    }
    d
}
