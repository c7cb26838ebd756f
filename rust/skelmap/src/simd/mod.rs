//! The CPU-specific builds of the frame renderer and the choice between them.
//!
//! The frame renderer ([`crate::render`]) is generic code compiled three times: portable,
//! for AVX2 + FMA and for AVX-512 (the `#[target_feature]` functions here); [`Simd::detect`]
//! picks the best one this CPU runs and [`render_frame`] dispatches to it. The intrinsic
//! kernels ([`avx2`], [`avx512`]) are `#[inline(always)]` functions without target features
//! of their own, so they inline into those builds; the portable code selects them with its
//! `FMA` / `AVX2` / `WIDE` const parameters. Every build gives the same bytes.

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;

use crate::params::Params;
use crate::render::{render_frame_inner, Frame, Workspace};

/// A compiled variant of the frame renderer (the same code, built for different CPUs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Simd {
    /// Baseline x86-64 / other architectures, no fused multiply-add.
    Generic,
    /// AVX2 + FMA.
    Avx2,
    /// AVX-512 (F, BW, VL, DQ) + FMA.
    Avx512,
}

impl Simd {
    /// The best variant this CPU runs. The environment variables `SCONET_SKELMAP_NO_SIMD`
    /// (generic) and `SCONET_SKELMAP_NO_AVX512` (at most AVX2) cap it, for testing.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::env::var_os("SCONET_SKELMAP_NO_SIMD").is_some() {
                return Self::Generic;
            }
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("fma")
                && std::env::var_os("SCONET_SKELMAP_NO_AVX512").is_none()
            {
                return Self::Avx512;
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                return Self::Avx2;
            }
        }
        Self::Generic
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Generic => "generic",
            Self::Avx2 => "avx2",
            Self::Avx512 => "avx512",
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn render_frame_avx2(frame: Frame<'_>, p: &Params, ws: &mut Workspace, out: &mut [u8]) {
    render_frame_inner::<true, false>(frame, p, ws, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
unsafe fn render_frame_avx512(frame: Frame<'_>, p: &Params, ws: &mut Workspace, out: &mut [u8]) {
    render_frame_inner::<true, true>(frame, p, ws, out)
}

/// Renders one frame with variant `simd`, which must come from [`Simd::detect`] (or be
/// `Generic`).
pub fn render_frame(frame: Frame<'_>, p: &Params, ws: &mut Workspace, out: &mut [u8], simd: Simd) {
    match simd {
        // SAFETY: these variants are only returned by Simd::detect when the CPU has the
        // features they are compiled for.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { render_frame_avx512(frame, p, ws, out) },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { render_frame_avx2(frame, p, ws, out) },
        _ => render_frame_inner::<false, false>(frame, p, ws, out),
    }
}

/// Each kernel against the portable code it replaces, where this CPU runs it.
#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use crate::lut;
    use crate::params::{CANVAS, OUT};
    use crate::resize::{self, AreaTab, MAXT, NEAR};

    /// The AVX-512 quantiser gives the portable quantiser's bytes: costs swept densely over the
    /// visible range and beyond, every block count (packed groups of four and the rest).
    #[test]
    fn quantiser_matches_portable() {
        use std::arch::is_x86_feature_detected as has;
        let avx512 = has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512dq");
        if !avx512 {
            eprintln!("no AVX-512 on this CPU: nothing to compare");
            return;
        }
        let mut costs: Vec<f32> = (0..400_000).map(|i| -2.0 + i as f32 * 2.5e-5).collect();
        // Around and beyond the AVX-512 clamp (+-14) and the portable one (-1, 87).
        costs.extend((0..20_000).map(|i| -16.0 + i as f32 * 1.6e-3));
        costs.extend((0..20_000).map(|i| 12.0 + i as f32 * 4e-4));
        costs.extend([
            -1e30, -87.5, -14.0, -1.0, -0.0, 0.0, 5.545, 5.55, 14.0, 87.0, 88.0, 1e30,
        ]);
        costs.resize(costs.len().next_multiple_of(16 * 8), 1e30);
        let blocks: Vec<[f32; 16]> = costs
            .chunks_exact(16)
            .map(|c| c.try_into().unwrap())
            .collect();
        for nb in (1..=12).chain([17, 24]) {
            for group in blocks.chunks_exact(nb) {
                let mut want = vec![0u8; 16 * nb];
                let mut got = vec![7u8; 16 * nb];
                let any = lut::quantise_blocks::<true, false>(group, &mut want, true);
                // SAFETY: the CPU features were checked above.
                assert_eq!(
                    unsafe { avx512::quantise_blocks::<false>(group, &mut got) },
                    any
                );
                assert_eq!(got, want, "{:?}", &group[0][..4]);
            }
        }
    }

    /// The AVX-512 and AVX2 horizontal passes give the portable bytes and near-integer flags
    /// for every source width, on rows of varied finite non-negative values (incl. values at
    /// and near integers, ties at .5 and values above 255).
    #[test]
    fn area_horizontal_matches_portable() {
        use std::arch::is_x86_feature_detected as has;
        let avx512 = has!("avx512f") && has!("avx512bw");
        if !has!("avx2") {
            eprintln!("no AVX2 on this CPU: nothing to compare");
            return;
        }
        #[target_feature(enable = "avx512f,avx512bw")]
        unsafe fn wide(tmp: &[f32; 2 * CANVAS], xt: &AreaTab, o: &mut [u8; OUT]) -> u64 {
            avx512::area_horizontal(tmp, xt, o)
        }
        #[target_feature(enable = "avx2")]
        unsafe fn narrow(tmp: &[f32; 2 * CANVAS], xt: &AreaTab, o: &mut [u8; OUT]) -> u64 {
            avx2::area_horizontal(tmp, xt, o)
        }
        let mut next = crate::testutil::xorshift(0x9e37_79b9_7f4a_7c15u64);
        let mut rnd = move || (next() >> 40) as f32 / (1u64 << 24) as f32;
        let mut flagged = 0;
        for w in OUT..=CANVAS {
            let xt = resize::tables().area[w].as_ref().unwrap();
            for trial in 0..60 {
                let mut tmp = [0.0f32; 2 * CANVAS];
                for v in tmp[..w].iter_mut() {
                    *v = match trial % 4 {
                        0 => (rnd() * 256.0).floor() + 0.5,
                        1 => rnd() * 300.0,
                        2 => (rnd() * 4.0).floor() * 85.0,
                        _ => (rnd() * 8.0).floor() + (rnd() - 0.5) * 4.0 * NEAR,
                    }
                    .max(0.0);
                }
                let (mut want, mut got) = ([0u8; OUT], [0u8; OUT]);
                let mut want_flags = 0u64;
                for (dx, o) in want.iter_mut().enumerate() {
                    let (level, near) = resize::horizontal_one(&tmp, xt, dx);
                    *o = level;
                    want_flags |= (near as u64) << dx;
                }
                flagged += want_flags.count_ones();
                // SAFETY: AVX2 checked above.
                let flags = unsafe { narrow(&tmp, xt, &mut got) };
                assert_eq!(got, want, "AVX2, source width {w}, trial {trial}");
                assert_eq!(
                    flags, want_flags,
                    "AVX2 flags, source width {w}, trial {trial}"
                );
                if avx512 {
                    got = [0; OUT];
                    // SAFETY: AVX-512 F and BW checked above.
                    let flags = unsafe { wide(&tmp, xt, &mut got) };
                    assert_eq!(got, want, "AVX-512, source width {w}, trial {trial}");
                    assert_eq!(flags, want_flags, "AVX-512 flags, width {w}, trial {trial}");
                }
            }
        }
        assert!(
            flagged > 1000,
            "the near-integer rows exercise the flags ({flagged})"
        );
    }

    /// The AVX-512 vertical pass gives the portable values (bit for bit) for every row length,
    /// with every source height's tap weights (two-tap rows among them), and writes nothing
    /// past the row.
    #[test]
    fn area_vertical_matches_portable() {
        use std::arch::is_x86_feature_detected as has;
        if !(has!("avx512f") && has!("avx512bw") && has!("avx512vl")) {
            eprintln!("no AVX-512 on this CPU: nothing to compare");
            return;
        }
        #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
        unsafe fn wide(rows: [&[u8]; MAXT], w: [f32; MAXT], dst: &mut [f32]) {
            avx512::area_vertical(rows, w, dst)
        }
        let mut next = crate::testutil::xorshift(0x2545_f491_4f6c_dd1du64);
        let mut rnd = move || (next() >> 56) as u8;
        let src: Vec<[u8; CANVAS]> = (0..MAXT).map(|_| std::array::from_fn(|_| rnd())).collect();
        let rows = [&src[0][..], &src[1][..], &src[2][..]];
        let mut two_taps = 0;
        for h in OUT..=CANVAS {
            let yt = resize::tables().area[h].as_ref().unwrap();
            for (dy, &w) in yt.w.iter().enumerate() {
                two_taps += (w[2] == 0.0) as usize;
                let n = 1 + (h * 31 + dy * 7) % CANVAS;
                let mut want = [-1.0f32; CANVAS];
                let mut got = [-1.0f32; CANVAS];
                resize::vertical(rows, w, &mut want[..n]);
                // SAFETY: AVX-512 F, BW and VL checked above.
                unsafe { wide(rows, w, &mut got[..n]) };
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "height {h}, row {dy}, length {n}");
            }
        }
        assert!(two_taps > 0);
    }
}
