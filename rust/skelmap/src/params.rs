//! Render settings shared by every stage of the pipeline, and their validation.

/// Number of COCO-17 keypoints.
pub const NUM_JOINTS: usize = 17;
/// The COCO-17 keypoint names, in keypoint order.
pub const JOINT_NAMES: [&str; NUM_JOINTS] = [
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
];
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
/// Channels of a rendered frame: the limb map, then the joint map.
pub const CHANNELS: usize = 2;
/// Bytes of one rendered frame.
pub const FRAME_BYTES: usize = CHANNELS * CHANNEL_BYTES;
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

/// Treatment of missing keypoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impute {
    /// Linear interpolation over time per joint of keypoints with x == 0 and y == 0 (see
    /// [`crate::impute`]).
    Linear,
    /// OpenGait's: scikit-learn's `KNNImputer` on every coordinate that is 0 (see
    /// [`crate::knn`]).
    Knn,
    /// Keypoints are used as given.
    None,
}

/// Keypoints 0..5 (nose, eyes, ears): the head, for [`Head`].
pub const HEAD: std::ops::Range<usize> = 0..5;

/// How the head keypoints take part in a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// As given: drawn where the representation says, counted in the height normalisation.
    Keep,
    /// Their scores are zeroed after imputation: drawn nowhere (nor any limb touching them),
    /// still counted in the height normalisation.
    ZeroScores,
    /// Removed after imputation: drawn nowhere and left out of the height normalisation.
    Remove,
}

/// A render setting given by name: its values and their names, in the order
/// `sconet.render` lists them (the `_skelmap` module exports the names).
pub trait Named: Copy + PartialEq + 'static {
    /// The argument's name, for messages.
    const WHAT: &'static str;
    const ALL: &'static [(&'static str, Self)];

    fn parse(s: &str) -> Result<Self, String> {
        match Self::ALL.iter().find(|(name, _)| *name == s) {
            Some(&(_, value)) => Ok(value),
            None => Err(format!(
                "{} must be {}, got {s:?}",
                Self::WHAT,
                one_of(Self::ALL)
            )),
        }
    }

    fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("", |(name, _)| name)
    }

    /// Every value's name.
    fn names() -> Vec<&'static str> {
        Self::ALL.iter().map(|(name, _)| *name).collect()
    }
}

/// `'a' or 'b'`, `'a', 'b' or 'c'`.
fn one_of<T>(all: &[(&str, T)]) -> String {
    let quoted: Vec<String> = all.iter().map(|(name, _)| format!("'{name}'")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        _ => quoted.concat(),
    }
}

impl Named for Geometry {
    const WHAT: &'static str = "geometry";
    const ALL: &'static [(&'static str, Self)] =
        &[("square", Self::Square), ("aspect", Self::Aspect)];
}

impl Named for Alignment {
    const WHAT: &'static str = "alignment";
    const ALL: &'static [(&'static str, Self)] =
        &[("shared", Self::Shared), ("per-channel", Self::PerChannel)];
}

impl Named for Impute {
    const WHAT: &'static str = "impute";
    const ALL: &'static [(&'static str, Self)] = &[
        ("linear", Self::Linear),
        ("knn", Self::Knn),
        ("none", Self::None),
    ];
}

impl Named for Head {
    const WHAT: &'static str = "head";
    const ALL: &'static [(&'static str, Self)] = &[
        ("keep", Self::Keep),
        ("zero-scores", Self::ZeroScores),
        ("remove", Self::Remove),
    ];
}

impl Head {
    /// The keypoints counted in the height normalisation.
    pub fn counted(self) -> [bool; NUM_JOINTS] {
        std::array::from_fn(|j| self != Self::Remove || !HEAD.contains(&j))
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
    pub head: Head,
}

impl Params {
    /// Validated settings; every error message says which argument is wrong.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        joints: &[u8],
        limbs: &[[i64; 2]],
        sigma_limb: f64,
        sigma_joint: f64,
        geometry: &str,
        alignment: &str,
        impute: &str,
        head: &str,
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
            head: Head::parse(head)?,
        })
    }

    /// The reference settings ([`REFERENCE`]) with the full body.
    pub fn reference() -> Self {
        let r = REFERENCE;
        Self {
            joints: [true; NUM_JOINTS],
            limbs: COCO_LIMBS.to_vec(),
            sigma_limb: r.sigma_limb,
            sigma_joint: r.sigma_joint,
            geometry: r.geometry,
            alignment: r.alignment,
            impute: r.impute,
            head: r.head,
        }
    }
}

/// The render settings besides the representation (joints and limbs drawn).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settings {
    pub sigma_limb: f64,
    pub sigma_joint: f64,
    pub geometry: Geometry,
    pub alignment: Alignment,
    pub impute: Impute,
    pub head: Head,
}

/// The default settings (`sconet.render.RenderConfig()`, the user's winning setup): limb sigma
/// 15, joint sigma 8, square, shared, linear imputation, head kept.
pub const DEFAULTS: Settings = Settings {
    sigma_limb: 15.0,
    sigma_joint: 8.0,
    geometry: Geometry::Square,
    alignment: Alignment::Shared,
    impute: Impute::Linear,
    head: Head::Keep,
};

/// The reference (OpenGait / SkeletonGait) settings used for parity
/// (`RenderConfig.reference()`): sigma 8 / 8, square, per-channel, no imputation, head kept.
pub const REFERENCE: Settings = Settings {
    sigma_limb: 8.0,
    sigma_joint: 8.0,
    geometry: Geometry::Square,
    alignment: Alignment::PerChannel,
    impute: Impute::None,
    head: Head::Keep,
};

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

/// Where flat `[T, 17, 3]` value `pos` lies, for messages: `frame f, keypoint k, x`.
pub fn position(pos: usize) -> String {
    let f = pos / FRAME_FLOATS;
    let k = (pos % FRAME_FLOATS) / KP_FLOATS;
    let c = ["x", "y", "confidence"][pos % KP_FLOATS];
    format!("frame {f}, keypoint {k}, {c}")
}

/// Checks one sequence (flat `[T, 17, 3]` data, float32 or float64): at least one frame,
/// every value finite.
pub fn check_sequence<T: Copy + Into<f64>>(data: &[T], frames: usize) -> Result<(), String> {
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
    if let Some(pos) = data.iter().position(|&v| !v.into().is_finite()) {
        return Err(format!(
            "non-finite value {} at {}",
            data[pos].into(),
            position(pos)
        ));
    }
    Ok(())
}

/// The largest float32 below [`EPS`]: a float64 confidence under `EPS` that float32 would round
/// up to `EPS` becomes this, so the "not drawn" decision stays the float64 one.
pub const BELOW_EPS: f32 = {
    let t = EPS as f32;
    if t as f64 >= EPS {
        f32::from_bits(t.to_bits() - 1)
    } else {
        t
    }
};

/// A confidence as the float32 the renderer draws with: rounded, except that a value under
/// [`EPS`] stays under it (the "not drawn" decision is the input's).
pub fn confidence_f32(c: f64) -> f32 {
    let w = c as f32;
    if c < EPS && w as f64 >= EPS {
        BELOW_EPS
    } else {
        w
    }
}

/// A checked float64 sequence as float32 (for the float32-only steps: linear imputation, PAV):
/// values rounded, confidences by [`confidence_f32`]. Err when a value leaves the float32
/// range.
pub fn to_f32(data: &[f64]) -> Result<Vec<f32>, String> {
    let mut out = Vec::with_capacity(data.len());
    for (pos, &v) in data.iter().enumerate() {
        let w = if pos % KP_FLOATS == 2 {
            confidence_f32(v)
        } else {
            v as f32
        };
        if !w.is_finite() {
            return Err(format!(
                "value {v} at {} is outside the float32 range",
                position(pos)
            ));
        }
        out.push(w);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_threshold_survives_float32() {
        assert!((BELOW_EPS as f64) < EPS);
        assert!(f32::from_bits(BELOW_EPS.to_bits() + 1) as f64 >= EPS);
        let just_below = 0.000_999_999_999_9_f64; // rounds up to 1e-3 in float32
        assert!(just_below as f32 as f64 >= EPS);
        let v = to_f32(&[1.0, 2.0, just_below, 1.0, 2.0, EPS, 1.0, 2.0, 0.5]).unwrap();
        assert!((v[2] as f64) < EPS, "still under the threshold");
        assert!(v[5] as f64 >= EPS, "1e-3 itself is drawn");
        assert_eq!(v[8], 0.5);
        let e = to_f32(&[1e300, 0.0, 0.5]).unwrap_err();
        assert!(e.contains("frame 0, keypoint 0, x"), "{e}");
    }

    #[test]
    fn names_parse_back() {
        assert_eq!(Alignment::names(), ["shared", "per-channel"]);
        for &(name, v) in Impute::ALL {
            assert_eq!(Impute::parse(name), Ok(v));
            assert_eq!(v.name(), name);
        }
        assert_eq!(
            Geometry::parse("round").unwrap_err(),
            "geometry must be 'square' or 'aspect', got \"round\""
        );
        assert_eq!(
            Impute::parse("cubic").unwrap_err(),
            "impute must be 'linear', 'knn' or 'none', got \"cubic\""
        );
    }

    #[test]
    fn head_modes() {
        assert_eq!(Head::parse("zero-scores"), Ok(Head::ZeroScores));
        assert!(Head::parse("drop").unwrap_err().contains("'remove'"));
        assert!(Impute::parse("knn").is_ok());
        assert!(Head::Keep.counted().iter().all(|&c| c));
        assert!(Head::ZeroScores.counted().iter().all(|&c| c));
        let removed = Head::Remove.counted();
        assert!(!removed[..5].iter().any(|&c| c) && removed[5..].iter().all(|&c| c));
    }
}
