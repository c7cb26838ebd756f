//! Render settings shared by every stage of the pipeline, and their validation.

/// Number of COCO-17 keypoints.
pub const NUM_JOINTS: usize = 17;
/// Floats per keypoint: x, y, confidence.
pub const KP_FLOATS: usize = 3;
/// Floats per frame.
pub const FRAME_FLOATS: usize = NUM_JOINTS * KP_FLOATS;
/// Side of the square rendering canvas (px).
pub const CANVAS: usize = 128;
/// Side of the stored map (px).
pub const OUT: usize = 64;
/// Bytes of one rendered channel.
pub const CHANNEL_BYTES: usize = OUT * OUT;
/// Bytes of one rendered frame (limb map then joint map).
pub const FRAME_BYTES: usize = 2 * CHANNEL_BYTES;
/// Keypoints (limbs) with a confidence below this are not drawn.
pub const EPS: f64 = 1e-3;

/// Crop geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Geometry {
    /// The reference crop: rows first..last non-zero (`h`), columns `[64 - h/2, 64 + h/2 + 1)`
    /// clipped to the canvas, resized to 64 x 64 (an `h x (h+1)` crop is slightly squeezed).
    Square,
    /// An `h x h` square starting at column `64 - h/2`, zero-padded outside the canvas: no warp.
    Aspect,
}

/// How the crop box is chosen for the two channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alignment {
    /// Each channel is cropped on its own non-zero rows (the reference).
    PerChannel,
    /// One box (the union of both channels' non-zero rows) is used for both channels.
    Shared,
}

/// Treatment of missing keypoints (x == 0 and y == 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impute {
    /// Linear interpolation over time per joint (see [`crate::impute`]).
    Linear,
    /// Keypoints are used as given.
    None,
}

impl Geometry {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "square" => Ok(Self::Square),
            "aspect" => Ok(Self::Aspect),
            _ => Err(format!("geometry must be 'square' or 'aspect', got {s:?}")),
        }
    }
}

impl Alignment {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "per-channel" => Ok(Self::PerChannel),
            "shared" => Ok(Self::Shared),
            _ => Err(format!(
                "alignment must be 'per-channel' or 'shared', got {s:?}"
            )),
        }
    }
}

impl Impute {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "linear" => Ok(Self::Linear),
            "none" => Ok(Self::None),
            _ => Err(format!("impute must be 'linear' or 'none', got {s:?}")),
        }
    }
}

/// Everything that defines how a frame is rendered.
#[derive(Clone, Debug)]
pub struct Params {
    /// Joints drawn on the joint map.
    pub joints: [bool; NUM_JOINTS],
    /// Limbs drawn on the limb map (pairs of keypoint indices).
    pub limbs: Vec<(usize, usize)>,
    pub sigma_limb: f64,
    pub sigma_joint: f64,
    pub geometry: Geometry,
    pub alignment: Alignment,
    pub impute: Impute,
}

impl Params {
    /// Validated settings; every error message says which argument is wrong.
    pub fn new(
        joints: &[u8],
        limbs: &[[i64; 2]],
        sigma_limb: f64,
        sigma_joint: f64,
        geometry: &str,
        alignment: &str,
        impute: &str,
    ) -> Result<Self, String> {
        if joints.len() != NUM_JOINTS {
            return Err(format!(
                "joints must be a mask of {NUM_JOINTS} values, got {}",
                joints.len()
            ));
        }
        let mut mask = [false; NUM_JOINTS];
        for (m, &j) in mask.iter_mut().zip(joints) {
            *m = j != 0;
        }
        let mut pairs = Vec::with_capacity(limbs.len());
        for (i, &[a, b]) in limbs.iter().enumerate() {
            let valid = |k: i64| (0..NUM_JOINTS as i64).contains(&k);
            if !valid(a) || !valid(b) {
                return Err(format!(
                    "limb {i} = ({a}, {b}): keypoint indices must be in 0..=16"
                ));
            }
            pairs.push((a as usize, b as usize));
        }
        for (name, s) in [("sigma_limb", sigma_limb), ("sigma_joint", sigma_joint)] {
            if !(s.is_finite() && s > 0.0) {
                return Err(format!("{name} must be a finite number > 0, got {s}"));
            }
        }
        Ok(Self {
            joints: mask,
            limbs: pairs,
            sigma_limb,
            sigma_joint,
            geometry: Geometry::parse(geometry)?,
            alignment: Alignment::parse(alignment)?,
            impute: Impute::parse(impute)?,
        })
    }

    /// The reference settings: full body, sigma 8 / 8, square, per-channel, no imputation.
    pub fn reference() -> Self {
        Self {
            joints: [true; NUM_JOINTS],
            limbs: COCO_LIMBS.to_vec(),
            sigma_limb: 8.0,
            sigma_joint: 8.0,
            geometry: Geometry::Square,
            alignment: Alignment::PerChannel,
            impute: Impute::None,
        }
    }
}

/// The 17 COCO limbs of SkeletonGait / PoseC3D.
pub const COCO_LIMBS: [(usize, usize); 17] = [
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),
    (0, 5),
    (5, 7),
    (7, 9),
    (0, 6),
    (6, 8),
    (8, 10),
    (5, 11),
    (11, 13),
    (13, 15),
    (6, 12),
    (12, 14),
    (14, 16),
    (11, 12),
];

/// Checks one sequence (flat `[T, 17, 3]` data): at least one frame, every value finite.
pub fn check_sequence(data: &[f32], frames: usize) -> Result<(), String> {
    if frames == 0 {
        return Err("empty sequence (T = 0)".into());
    }
    if data.len() != frames * FRAME_FLOATS {
        return Err(format!(
            "expected {} values, got {}",
            frames * FRAME_FLOATS,
            data.len()
        ));
    }
    if let Some(pos) = data.iter().position(|v| !v.is_finite()) {
        let f = pos / FRAME_FLOATS;
        let k = (pos % FRAME_FLOATS) / KP_FLOATS;
        let c = ["x", "y", "confidence"][pos % KP_FLOATS];
        return Err(format!(
            "non-finite value {} at frame {f}, keypoint {k}, {c}",
            data[pos]
        ));
    }
    Ok(())
}
