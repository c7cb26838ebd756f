//! OpenCV `INTER_AREA` resize of a uint8 crop to 64 x 64.
//!
//! Semantics follow `cv::resize(src, dst, Size(64, 64), 0, 0, INTER_AREA)` on CV_8UC1:
//! - same size: copy;
//! - both scales integer (`src = k * 64`): block means, `(a + b + c + d + 2) >> 2` for 2 x 2
//!   blocks, `rint(sum * (1 / area))` otherwise;
//! - both scales >= 1: separable area weights (`computeResizeAreaTab`, float32), rounded to
//!   nearest. OpenCV accumulates columns first; this port accumulates rows first (cheaper,
//!   vectorises), which can move a result sitting on a .5 tie by one level;
//! - otherwise (a side grows): OpenCV's area-flavoured bilinear in 11-bit fixed point, with the
//!   rounding of its SIMD vertical pass (bit-exact).
//!
//! The crop is a window of the 128 x 128 grey canvas: rows `[top, top + h)`, columns
//! `[c0, c0 + w)`; columns outside the canvas read as 0 (zero padding).

use std::sync::OnceLock;

use crate::params::{CANVAS, OUT};

const MAXT: usize = 3;
const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23

/// `rint` (ties to even) for 0 <= v < 2^22, without a libm call.
#[inline(always)]
fn rint(v: f32) -> f32 {
    (v + MAGIC) - MAGIC
}

#[inline(always)]
fn sat_u8(v: f32) -> u8 {
    let r = rint(v);
    if r <= 0.0 {
        0
    } else if r >= 255.0 {
        255
    } else {
        r as u8
    }
}

/// [`sat_u8`] for `v >= 0`, branch-free (vectorises).
#[inline(always)]
fn sat_u8_nb(v: f32) -> u8 {
    let r = rint(v);
    let r = if r > 255.0 { 255.0 } else { r };
    // SAFETY: 0 <= r <= 255.
    unsafe { r.to_int_unchecked::<i32>() as u8 }
}

/// Area taps of every output pixel for one source size: `w[d][j]` weighs source `start[d] + j`
/// (also stored transposed, `wt[j][d]` with `[u32]` starts, for the vectorised horizontal pass).
struct AreaTab {
    start: [usize; OUT],
    w: [[f32; MAXT]; OUT],
    start32: [u32; OUT],
    wt: [[f32; OUT]; MAXT],
    /// Per group of 16 outputs: the first tap's source `base`, each output's first tap relative
    /// to it (below 48 - MAXT: 16 outputs span at most 31 sources), and per tap the outputs
    /// whose source lies 32 or more past `base`.
    base: [u32; OUT / 16],
    rel: [[u32; 16]; OUT / 16],
    far: [[u16; MAXT]; OUT / 16],
    /// The same for groups of 8 outputs (the AVX2 pass): `base8`, and `rel8` below 24 - MAXT
    /// (8 outputs span at most 15 sources).
    base8: [u32; OUT / 8],
    rel8: [[i32; 8]; OUT / 8],
}

/// Output `dx` of the horizontal pass over the row `tmp`: its weighted taps, rounded to u8.
#[inline(always)]
fn horizontal_one(tmp: &[f32; 2 * CANVAS], xt: &AreaTab, dx: usize) -> u8 {
    let i = (xt.start32[dx] & (CANVAS as u32 - 1)) as usize;
    let v = tmp[i] * xt.wt[0][dx] + tmp[i + 1] * xt.wt[1][dx] + tmp[i + 2] * xt.wt[2][dx];
    sat_u8_nb(v)
}

/// The horizontal pass over one row in AVX-512: per group of 16 outputs, the taps are picked
/// from three vector loads of `tmp` (48 sources from the group's first) by permutes (the
/// compiler vectorises the portable loop with gathers, about 2 us more per frame); the same
/// operations in the same order, so the same bytes.
///
/// # Safety
/// The CPU must have AVX-512 F and BW. Not a `#[target_feature]` function, so that it inlines
/// into the AVX-512 frame renderer (see [`crate::lut::quantise_blocks_avx512`]).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn horizontal_avx512(tmp: &[f32; 2 * CANVAS], xt: &AreaTab, o: &mut [u8; OUT]) {
    use std::arch::x86_64::*;
    let (magic, top) = (_mm512_set1_ps(MAGIC), _mm512_set1_ps(255.0));
    for g in 0..OUT / 16 {
        let src = &tmp[xt.base[g] as usize..xt.base[g] as usize + 48]; // base < 128
        let t0 = _mm512_loadu_ps(src.as_ptr());
        let t1 = _mm512_loadu_ps(src[16..].as_ptr());
        let t2 = _mm512_loadu_ps(src[32..].as_ptr());
        let rel = _mm512_loadu_si512(xt.rel[g].as_ptr().cast());
        // (No closure: it would not inherit the caller's target features.)
        let mut x = [t0; MAXT];
        let mut w = [t0; MAXT];
        for j in 0..MAXT {
            let idx = _mm512_add_epi32(rel, _mm512_set1_epi32(j as i32));
            let near = _mm512_permutex2var_ps(t0, idx, t1); // sources base + [0, 32)
            x[j] = _mm512_mask_permutexvar_ps(near, xt.far[g][j], idx, t2); // + [32, 48)
            w[j] = _mm512_loadu_ps(xt.wt[j][16 * g..].as_ptr());
        }
        let v = _mm512_add_ps(
            _mm512_add_ps(_mm512_mul_ps(x[0], w[0]), _mm512_mul_ps(x[1], w[1])),
            _mm512_mul_ps(x[2], w[2]),
        );
        let r = _mm512_min_ps(_mm512_sub_ps(_mm512_add_ps(v, magic), magic), top);
        let bytes = _mm512_cvtepi32_epi8(_mm512_cvttps_epi32(r));
        _mm_storeu_si128(o[16 * g..].as_mut_ptr().cast(), bytes);
    }
}

/// The vertical pass over one row: `dst[i] = w0 r0[i] + w1 r1[i] + w2 r2[i]`, the same
/// operations in the same order as accumulating the taps one by one into a zeroed row (a
/// zero-weight tap adds +0 and is read from a valid row); the third tap is left out when its
/// weight is 0 (it would add +0 to a sum >= +0).
#[inline(always)]
fn vertical([r0, r1, r2]: [&[u8]; MAXT], [b0, b1, b2]: [f32; MAXT], dst: &mut [f32]) {
    if b2 == 0.0 {
        for ((d, &s0), &s1) in dst.iter_mut().zip(r0).zip(r1) {
            *d = b0 * s0 as f32 + b1 * s1 as f32;
        }
    } else {
        for (((d, &s0), &s1), &s2) in dst.iter_mut().zip(r0).zip(r1).zip(r2) {
            *d = b0 * s0 as f32 + b1 * s1 as f32 + b2 * s2 as f32;
        }
    }
}

/// The vertical pass over one row in AVX-512: `dst[i] = w0 r0[i] + w1 r1[i] (+ w2 r2[i])`
/// (the third tap left out when its weight is 0: it would add +0), 16 columns at a time with
/// the last, shorter group under a mask (the compiler's loop ends in a 4-wide and a scalar
/// tail); the same operations in the same order, so the same values.
///
/// # Safety
/// The CPU must have AVX-512 F, BW and VL; every row holds at least `dst.len()` bytes. Not a
/// `#[target_feature]` function (see [`horizontal_avx512`]).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn vertical_avx512(rows: [&[u8]; MAXT], w: [f32; MAXT], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = dst.len();
    assert!(rows.iter().all(|r| r.len() >= n));
    let (w0, w1, w2) = (
        _mm512_set1_ps(w[0]),
        _mm512_set1_ps(w[1]),
        _mm512_set1_ps(w[2]),
    );
    let three = w[2] != 0.0;
    for i in (0..n).step_by(16) {
        let m: __mmask16 = if n - i >= 16 {
            u16::MAX
        } else {
            (1u16 << (n - i)) - 1
        };
        // (No closure: it would not inherit the caller's target features.)
        let mut x = [_mm512_setzero_ps(); MAXT];
        for (x, r) in x.iter_mut().zip(rows).take(if three { 3 } else { 2 }) {
            let bytes = _mm_maskz_loadu_epi8(m, r[i..].as_ptr().cast());
            *x = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(bytes));
        }
        let mut v = _mm512_add_ps(_mm512_mul_ps(w0, x[0]), _mm512_mul_ps(w1, x[1]));
        if three {
            v = _mm512_add_ps(v, _mm512_mul_ps(w2, x[2]));
        }
        _mm512_mask_storeu_ps(dst[i..].as_mut_ptr(), m, v);
    }
}

/// The horizontal pass over one row in AVX2 (see [`horizontal_avx512`]): per group of 8
/// outputs, the taps are picked from three vector loads of `tmp` (24 sources from the group's
/// first) by one-register permutes and blends; the same operations in the same order, so the
/// same bytes.
///
/// # Safety
/// The CPU must have AVX2. Not a `#[target_feature]` function, so that it inlines into the
/// AVX2 frame renderer.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn horizontal_avx2(tmp: &[f32; 2 * CANVAS], xt: &AreaTab, o: &mut [u8; OUT]) {
    use std::arch::x86_64::*;
    let (magic, top) = (_mm256_set1_ps(MAGIC), _mm256_set1_ps(255.0));
    let (seven, fifteen) = (_mm256_set1_epi32(7), _mm256_set1_epi32(15));
    for g in 0..OUT / 8 {
        let src = &tmp[xt.base8[g] as usize..xt.base8[g] as usize + 24]; // base < 128
        let t0 = _mm256_loadu_ps(src.as_ptr());
        let t1 = _mm256_loadu_ps(src[8..].as_ptr());
        let t2 = _mm256_loadu_ps(src[16..].as_ptr());
        let rel = _mm256_loadu_si256(xt.rel8[g].as_ptr().cast());
        // (No closure: it would not inherit the caller's target features.)
        let mut x = [t0; MAXT];
        let mut w = [t0; MAXT];
        for j in 0..MAXT {
            let idx = _mm256_add_epi32(rel, _mm256_set1_epi32(j as i32));
            // Source base + idx: from t0, t1 or t2 (the permutes read idx mod 8).
            let v = _mm256_blendv_ps(
                _mm256_permutevar8x32_ps(t0, idx),
                _mm256_permutevar8x32_ps(t1, idx),
                _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, seven)),
            );
            x[j] = _mm256_blendv_ps(
                v,
                _mm256_permutevar8x32_ps(t2, idx),
                _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, fifteen)),
            );
            w[j] = _mm256_loadu_ps(xt.wt[j][8 * g..].as_ptr());
        }
        let v = _mm256_add_ps(
            _mm256_add_ps(_mm256_mul_ps(x[0], w[0]), _mm256_mul_ps(x[1], w[1])),
            _mm256_mul_ps(x[2], w[2]),
        );
        let r = _mm256_min_ps(_mm256_sub_ps(_mm256_add_ps(v, magic), magic), top);
        // Levels 0..=255 as i32 -> u8 within each 128-bit half, then the halves' first 4 bytes
        // side by side.
        let r = _mm256_cvttps_epi32(r);
        let b = _mm256_packus_epi16(_mm256_packus_epi32(r, r), _mm256_setzero_si256());
        let lo = _mm_cvtsi128_si32(_mm256_castsi256_si128(b)) as u32;
        let hi = _mm_cvtsi128_si32(_mm256_extracti128_si256::<1>(b)) as u32;
        o[8 * g..8 * g + 8].copy_from_slice(&((lo as u64) | ((hi as u64) << 32)).to_le_bytes());
    }
}

/// Bilinear (area-mode) coefficients for one source size, 11-bit fixed point.
struct LinTab {
    src: [usize; OUT],
    c: [[i32; 2]; OUT],
}

struct Tables {
    area: Vec<Option<AreaTab>>,
    lin_x: Vec<LinTab>,
    lin_y: Vec<LinTab>,
}

/// OpenCV `computeResizeAreaTab` for `ssize -> 64` (requires `ssize >= 64`).
fn area_tab(ssize: usize) -> Option<AreaTab> {
    if ssize < OUT {
        return None;
    }
    let scale = 1.0 / (OUT as f64 / ssize as f64);
    let mut tab = AreaTab {
        start: [0; OUT],
        w: [[0.0; MAXT]; OUT],
        start32: [0; OUT],
        wt: [[0.0; OUT]; MAXT],
        base: [0; OUT / 16],
        rel: [[0; 16]; OUT / 16],
        far: [[0; MAXT]; OUT / 16],
        base8: [0; OUT / 8],
        rel8: [[0; 8]; OUT / 8],
    };
    for dx in 0..OUT {
        let fsx1 = dx as f64 * scale;
        let fsx2 = fsx1 + scale;
        let cell = scale.min(ssize as f64 - fsx1);
        let mut sx2 = fsx2.floor() as i64;
        sx2 = sx2.min(ssize as i64 - 1);
        let sx1 = (fsx1.ceil() as i64).min(sx2);
        let mut taps: Vec<(i64, f32)> = Vec::with_capacity(MAXT);
        if sx1 as f64 - fsx1 > 1e-3 {
            taps.push((sx1 - 1, ((sx1 as f64 - fsx1) / cell) as f32));
        }
        for sx in sx1..sx2 {
            taps.push((sx, (1.0 / cell) as f32));
        }
        if fsx2 - sx2 as f64 > 1e-3 {
            taps.push((sx2, ((fsx2 - sx2 as f64).min(1.0).min(cell) / cell) as f32));
        }
        assert!(
            !taps.is_empty() && taps.len() <= MAXT,
            "area taps for size {ssize}"
        );
        tab.start[dx] = taps[0].0 as usize;
        tab.start32[dx] = taps[0].0 as u32;
        for (j, &(s, a)) in taps.iter().enumerate() {
            debug_assert_eq!(s as usize, tab.start[dx] + j);
            tab.w[dx][j] = a;
            tab.wt[j][dx] = a;
        }
    }
    for g in 0..OUT / 16 {
        let base = tab.start[16 * g];
        tab.base[g] = base as u32;
        for k in 0..16 {
            let rel = tab.start[16 * g + k] - base;
            assert!(rel + MAXT <= 48, "area taps for size {ssize}");
            tab.rel[g][k] = rel as u32;
            for j in 0..MAXT {
                tab.far[g][j] |= ((rel + j >= 32) as u16) << k;
            }
        }
    }
    for g in 0..OUT / 8 {
        let base = tab.start[8 * g];
        tab.base8[g] = base as u32;
        for k in 0..8 {
            let rel = tab.start[8 * g + k] - base;
            assert!(rel + MAXT <= 24, "area taps for size {ssize}");
            tab.rel8[g][k] = rel as i32;
        }
    }
    Some(tab)
}

/// OpenCV's `INTER_AREA` bilinear coefficients for `ssize -> 64`; only the horizontal direction
/// snaps the last source pixel to weights (2048, 0).
fn lin_tab(ssize: usize, is_x: bool) -> LinTab {
    let inv_scale = OUT as f64 / ssize as f64;
    let scale = 1.0 / inv_scale;
    let mut tab = LinTab {
        src: [0; OUT],
        c: [[0; 2]; OUT],
    };
    for d in 0..OUT {
        let mut s = (d as f64 * scale).floor() as i64;
        let mut f = ((d + 1) as f64 - (s + 1) as f64 * inv_scale) as f32;
        f = if f <= 0.0 { 0.0 } else { f - f.floor() };
        if is_x && s >= ssize as i64 - 1 {
            s = ssize as i64 - 1;
            f = 0.0;
        }
        tab.src[d] = s.max(0) as usize;
        tab.c[d] = [rint((1.0 - f) * 2048.0) as i32, rint(f * 2048.0) as i32];
    }
    tab
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| Tables {
        area: (0..=CANVAS).map(area_tab).collect(),
        lin_x: (0..=CANVAS).map(|s| lin_tab(s.max(1), true)).collect(),
        lin_y: (0..=CANVAS).map(|s| lin_tab(s.max(1), false)).collect(),
    })
}

/// Builds the tables now (so the first frame does not pay for it inside a worker).
pub fn warm_up() {
    let _ = tables();
}

/// A crop of the grey canvas: rows `[top, top + h)`, columns `[c0, c0 + w)`.
#[derive(Clone, Copy, Debug)]
pub struct Crop {
    pub top: usize,
    pub h: usize,
    pub c0: isize,
    pub w: usize,
}

/// Scratch for [`resize_area`]: one f32 row of the crop (plus zero padding for spare taps).
pub struct ResizeScratch {
    tmp: Box<[f32; 2 * CANVAS]>,
}

impl Default for ResizeScratch {
    fn default() -> Self {
        Self {
            tmp: Box::new([0.0; 2 * CANVAS]),
        }
    }
}

/// Resizes `crop` of the 128 x 128 `grey` canvas into `out` (64 x 64, row-major); every pixel
/// of the crop's rows outside the canvas columns `[lo, hi)` of `nonzero` is 0 (the vertical
/// pass skips them: it would make +0 of them). `WIDE`
/// selects the AVX-512 horizontal pass (`horizontal_avx512`), else `AVX2` the AVX2 one
/// (`horizontal_avx2`), else the portable loop: the same bytes.
///
/// # Safety
/// With `WIDE`, the CPU must have AVX-512 (F, BW, VL); with `AVX2`, AVX2.
#[inline(always)]
pub unsafe fn resize_area<const AVX2: bool, const WIDE: bool>(
    grey: &[u8],
    nonzero: (usize, usize),
    crop: Crop,
    out: &mut [u8],
    scratch: &mut ResizeScratch,
) {
    debug_assert!(crop.h >= 1 && crop.h <= CANVAS && crop.w >= 1 && crop.w <= CANVAS);
    debug_assert!(crop.top + crop.h <= CANVAS);
    let (h, w) = (crop.h, crop.w);
    // Columns of the crop that lie on the canvas.
    let x_lo = (-crop.c0).clamp(0, w as isize) as usize;
    let x_hi = (CANVAS as isize - crop.c0).clamp(0, w as isize) as usize;
    let row = |y: usize| -> &[u8] { &grey[(crop.top + y) * CANVAS..(crop.top + y + 1) * CANVAS] };
    let col = |x: usize| (crop.c0 + x as isize) as usize; // valid for x in [x_lo, x_hi)

    if h >= OUT && w >= OUT {
        let inv_sx = OUT as f64 / w as f64;
        let inv_sy = OUT as f64 / h as f64;
        let (sx, sy) = (1.0 / inv_sx, 1.0 / inv_sy);
        let (isx, isy) = (sx.round(), sy.round());
        if (sx - isx).abs() < f64::EPSILON && (sy - isy).abs() < f64::EPSILON {
            let (isx, isy) = (isx as usize, isy as usize);
            let px = |y: usize, x: usize| -> u32 {
                if x >= x_lo && x < x_hi {
                    row(y)[col(x)] as u32
                } else {
                    0
                }
            };
            if isx == 2 && isy == 2 && x_lo == 0 && x_hi == w {
                let c0 = crop.c0 as usize;
                for dy in 0..OUT {
                    let (r0, r1) = (&row(2 * dy)[c0..c0 + w], &row(2 * dy + 1)[c0..c0 + w]);
                    let o = &mut out[dy * OUT..(dy + 1) * OUT];
                    for (o, (a, b)) in o.iter_mut().zip(r0.chunks_exact(2).zip(r1.chunks_exact(2)))
                    {
                        let s = a[0] as u16 + a[1] as u16 + b[0] as u16 + b[1] as u16;
                        *o = ((s + 2) >> 2) as u8;
                    }
                }
            } else {
                let area = (isx * isy) as u32;
                let scale = 1.0f32 / area as f32;
                for dy in 0..OUT {
                    for dx in 0..OUT {
                        let mut s = 0u32;
                        for y in dy * isy..(dy + 1) * isy {
                            for x in dx * isx..(dx + 1) * isx {
                                s += px(y, x);
                            }
                        }
                        out[dy * OUT + dx] = sat_u8(s as f32 * scale);
                    }
                }
            }
            return;
        }
        let t = tables();
        let (xt, yt) = (t.area[w].as_ref().unwrap(), t.area[h].as_ref().unwrap());
        let tmp = &mut scratch.tmp;
        // Only the crop's columns on the canvas that may be non-zero go through the vertical
        // pass; the others, and the spare taps past the crop, read as 0.
        let clip = |c: usize| (c as isize - crop.c0).clamp(0, w as isize) as usize;
        let (x_lo, x_hi) = (x_lo.max(clip(nonzero.0)), x_hi.min(clip(nonzero.1)));
        let x_hi = x_hi.max(x_lo);
        tmp[..x_lo].fill(0.0);
        tmp[x_hi..].fill(0.0);
        let n = x_hi.saturating_sub(x_lo);
        let cs = if n > 0 { col(x_lo) } else { 0 };
        for dy in 0..OUT {
            if n > 0 {
                let st = yt.start[dy];
                let rows =
                    [st, (st + 1).min(h - 1), (st + 2).min(h - 1)].map(|y| &row(y)[cs..cs + n]);
                let dst = &mut tmp[x_lo..x_lo + n];
                #[cfg(target_arch = "x86_64")]
                if WIDE {
                    // SAFETY: the caller guarantees AVX-512 with WIDE.
                    unsafe { vertical_avx512(rows, yt.w[dy], dst) };
                } else {
                    vertical(rows, yt.w[dy], dst);
                }
                #[cfg(not(target_arch = "x86_64"))]
                vertical(rows, yt.w[dy], dst);
            }
            let o: &mut [u8; OUT] = (&mut out[dy * OUT..(dy + 1) * OUT]).try_into().unwrap();
            #[cfg(target_arch = "x86_64")]
            if WIDE {
                // SAFETY: the caller guarantees AVX-512 with WIDE.
                unsafe { horizontal_avx512(tmp, xt, o) };
                continue;
            }
            #[cfg(target_arch = "x86_64")]
            if AVX2 {
                // SAFETY: the caller guarantees AVX2 with AVX2.
                unsafe { horizontal_avx2(tmp, xt, o) };
                continue;
            }
            for (dx, o) in o.iter_mut().enumerate() {
                *o = horizontal_one(tmp, xt, dx);
            }
        }
        return;
    }

    // Upscaling in some direction: OpenCV's fixed-point bilinear path.
    let t = tables();
    let (xt, yt) = (&t.lin_x[w], &t.lin_y[h]);
    let px = |y: usize, x: usize| -> i32 {
        if x >= x_lo && x < x_hi {
            row(y)[col(x)] as i32
        } else {
            0
        }
    };
    for dy in 0..OUT {
        let r0 = yt.src[dy].min(h - 1);
        let r1 = (yt.src[dy] + 1).min(h - 1);
        let [b0, b1] = yt.c[dy];
        for dx in 0..OUT {
            let s = xt.src[dx];
            let s1 = (s + 1).min(w - 1);
            let [a0, a1] = xt.c[dx];
            let h0 = px(r0, s) * a0 + px(r0, s1) * a1;
            let h1 = px(r1, s) * a0 + px(r1, s1) * a1;
            let v = (((h0 >> 4) * b0) >> 16) + (((h1 >> 4) * b1) >> 16);
            out[dy * OUT + dx] = ((v + 2) >> 2).clamp(0, 255) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Declaring the canvas's zero columns (`nonzero`) changes no byte: crops of every height,
    /// square and off-canvas (`aspect`) widths, non-zero column ranges inside, across and
    /// beside the crop, on every build this CPU runs.
    #[test]
    fn nonzero_columns_change_nothing() {
        let mut next = crate::testutil::xorshift(0x853c_49e6_748f_ea9bu64);
        let mut byte = move || (next() >> 56) as u8;
        let mut scratch = ResizeScratch::default();
        for (lo, hi) in [
            (0, CANVAS),
            (32, 96),
            (48, 64),
            (0, 16),
            (112, 128),
            (64, 64),
        ] {
            let mut grey = vec![0u8; CANVAS * CANVAS];
            for (i, g) in grey.iter_mut().enumerate() {
                if (lo..hi).contains(&(i % CANVAS)) {
                    *g = byte();
                }
            }
            for h in (1..=CANVAS).step_by(7).chain([63, 64, 65, 127, 128]) {
                let top = (CANVAS - h) / 2;
                for (c0, w) in [(0, h), ((CANVAS - h) as isize / 2, h), (-9, h.max(20))] {
                    let w = w.min(CANVAS);
                    let crop = Crop { top, h, c0, w };
                    let run = |nonzero, scratch: &mut ResizeScratch| {
                        let mut out = [[0u8; OUT * OUT]; 3];
                        // SAFETY: each variant only where the CPU has its features.
                        unsafe {
                            resize_area::<false, false>(&grey, nonzero, crop, &mut out[0], scratch);
                            #[cfg(target_arch = "x86_64")]
                            {
                                use std::arch::is_x86_feature_detected as has;
                                if has!("avx2") && has!("fma") {
                                    resize_area::<true, false>(
                                        &grey,
                                        nonzero,
                                        crop,
                                        &mut out[1],
                                        scratch,
                                    );
                                }
                                if has!("avx512f") && has!("avx512bw") && has!("avx512vl") {
                                    resize_area::<true, true>(
                                        &grey,
                                        nonzero,
                                        crop,
                                        &mut out[2],
                                        scratch,
                                    );
                                }
                            }
                        }
                        out
                    };
                    let all = run((0, CANVAS), &mut scratch);
                    let declared = run((lo, hi), &mut scratch);
                    assert!(all == declared, "columns [{lo}, {hi}), crop {crop:?}");
                }
            }
        }
    }

    /// The AVX-512 and AVX2 horizontal passes give the portable bytes for every source width,
    /// on rows of varied finite non-negative values (incl. ties at .5 and values above 255).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_horizontal_matches_portable() {
        use std::arch::is_x86_feature_detected as has;
        let avx512 = has!("avx512f") && has!("avx512bw");
        if !has!("avx2") {
            eprintln!("no AVX2 on this CPU: nothing to compare");
            return;
        }
        #[target_feature(enable = "avx512f,avx512bw")]
        unsafe fn wide(tmp: &[f32; 2 * CANVAS], xt: &AreaTab, o: &mut [u8; OUT]) {
            horizontal_avx512(tmp, xt, o)
        }
        #[target_feature(enable = "avx2")]
        unsafe fn avx2(tmp: &[f32; 2 * CANVAS], xt: &AreaTab, o: &mut [u8; OUT]) {
            horizontal_avx2(tmp, xt, o)
        }
        let mut next = crate::testutil::xorshift(0x9e37_79b9_7f4a_7c15u64);
        let mut rnd = move || (next() >> 40) as f32 / (1u64 << 24) as f32;
        for w in OUT..=CANVAS {
            let xt = tables().area[w].as_ref().unwrap();
            for trial in 0..50 {
                let mut tmp = [0.0f32; 2 * CANVAS];
                for v in tmp[..w].iter_mut() {
                    *v = match trial % 3 {
                        0 => (rnd() * 256.0).floor() + 0.5,
                        1 => rnd() * 300.0,
                        _ => (rnd() * 4.0).floor() * 85.0,
                    };
                }
                let (mut want, mut got) = ([0u8; OUT], [0u8; OUT]);
                for (dx, o) in want.iter_mut().enumerate() {
                    *o = horizontal_one(&tmp, xt, dx);
                }
                // SAFETY: AVX2 checked above.
                unsafe { avx2(&tmp, xt, &mut got) };
                assert_eq!(got, want, "AVX2, source width {w}, trial {trial}");
                if avx512 {
                    got = [0; OUT];
                    // SAFETY: AVX-512 F and BW checked above.
                    unsafe { wide(&tmp, xt, &mut got) };
                    assert_eq!(got, want, "AVX-512, source width {w}, trial {trial}");
                }
            }
        }
    }

    /// The AVX-512 vertical pass gives the portable values (bit for bit) for every row length,
    /// with every source height's tap weights (two-tap rows among them), and writes nothing
    /// past the row.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_vertical_matches_portable() {
        use std::arch::is_x86_feature_detected as has;
        if !(has!("avx512f") && has!("avx512bw") && has!("avx512vl")) {
            eprintln!("no AVX-512 on this CPU: nothing to compare");
            return;
        }
        #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
        unsafe fn wide(rows: [&[u8]; MAXT], w: [f32; MAXT], dst: &mut [f32]) {
            vertical_avx512(rows, w, dst)
        }
        let mut next = crate::testutil::xorshift(0x2545_f491_4f6c_dd1du64);
        let mut rnd = move || (next() >> 56) as u8;
        let src: Vec<[u8; CANVAS]> = (0..MAXT).map(|_| std::array::from_fn(|_| rnd())).collect();
        let rows = [&src[0][..], &src[1][..], &src[2][..]];
        let mut two_taps = 0;
        for h in OUT..=CANVAS {
            let yt = tables().area[h].as_ref().unwrap();
            for (dy, &w) in yt.w.iter().enumerate() {
                two_taps += (w[2] == 0.0) as usize;
                let n = 1 + (h * 31 + dy * 7) % CANVAS;
                let mut want = [-1.0f32; CANVAS];
                let mut got = [-1.0f32; CANVAS];
                vertical(rows, w, &mut want[..n]);
                // SAFETY: AVX-512 F, BW and VL checked above.
                unsafe { wide(rows, w, &mut got[..n]) };
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "height {h}, row {dy}, length {n}");
            }
        }
        assert!(two_taps > 0);
    }
}
