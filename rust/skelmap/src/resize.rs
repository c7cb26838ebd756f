//! OpenGait's last step: OpenCV `INTER_AREA` resize of a grey crop to 64 x 64 in float64 on
//! `level / 255`, stored as `uint8(value * 255)` by truncation.
//!
//! OpenGait (`HeatmapAlignment`) divides the uint8 grey canvas by 255, resizes the crop with
//! `cv2.resize(crop, (64, 64), interpolation=INTER_AREA)` on those float64 values and stores
//! `(x * 255).astype(uint8)`. OpenCV's float64 arithmetic, which this module reproduces:
//! - same size: a copy;
//! - both scales integer (`src = k * 64`): block sums in OpenCV's order (`((p00 + p01) + p10)
//!   + p11` for 2 x 2 blocks) times `float(1 / area)`;
//! - both scales >= 1: per axis, the covered source cells with float32 weights
//!   (`computeResizeAreaTab`: partial first/last cells by their covered fraction, pieces
//!   <= 1e-3 skipped); each source row is reduced horizontally (taps in order, from 0), then
//!   the output row accumulates its source rows (`b0 h0`, `+ b1 h1`, `+ b2 h2`), all in float64;
//! - otherwise (a side grows): OpenCV's area-flavoured bilinear, float32 coefficients, float64
//!   arithmetic.
//!
//! The stored level is a truncation, so a sum that should be exactly `L / 255` (a constant
//! region) lands on `L` or `L - 1` depending on float64 rounding: only OpenCV's exact order of
//! operations gives OpenGait's level there. To stay fast, the 2 x 2 and area paths first
//! compute every pixel cheaply (integer block sums; an f32 pass on the levels, rows first) and
//! recompute in float64, in OpenCV's order, only the pixels whose level that pass cannot
//! settle: those within [`NEAR`] of an integer (a 2 x 2 block sum divisible by 4). Every other
//! pixel's true value is far enough from an integer that any accurate sum truncates alike.
//!
//! The crop is a window of the 128 x 128 grey canvas: rows `[top, top + h)`, columns
//! `[c0, c0 + w)`; columns outside the canvas read as 0 (zero padding).

use std::sync::OnceLock;

use crate::params::{CANVAS, OUT};
#[cfg(target_arch = "x86_64")]
use crate::simd::{avx2, avx512};

/// Most source pixels an output pixel reads per axis.
pub(crate) const MAXT: usize = 3;
const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23

/// Margin (grey levels) around an integer within which the f32 area pass does not decide the
/// truncated level: its error is below 2e-4 levels (a few f32 roundings of sums up to 255 with
/// weights summing to 1), OpenCV's float64 error below 1e-10.
pub const NEAR: f32 = 1.0 / 1024.0;

/// `fl(level / 255)` for every grey level: OpenGait's float64 input to the resize.
pub static UNIT: [f64; 256] = {
    let mut t = [0.0f64; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = i as f64 / 255.0;
        i += 1;
    }
    t
};

/// `2^-64`: a level's byte repeated eight times, as an integer, times this is [`UNIT`]'s
/// entry (`level / 255 = 0.LLLLLLLL...` in binary, `L` the level's 8 bits).
pub const UNIT_SCALE: f64 = 1.0 / 18_446_744_073_709_551_616.0;

/// OpenGait's stored level of a resized float64 value: `uint8(value * 255)` (truncation).
/// `v` is a weighted mean of `level / 255` values: in [0, 1] up to float rounding.
#[inline(always)]
pub fn store(v: f64) -> u8 {
    let x = v * 255.0;
    assert!(
        (0.0..256.0).contains(&x),
        "resized value {v} outside [0, 256 / 255)"
    );
    // SAFETY: 0 <= x < 256 (checked above; the check compiles to two compares).
    unsafe { x.to_int_unchecked::<i32>() as u8 }
}

/// `rint` (ties to even) for 0 <= v < 2^22, without a libm call.
#[inline(always)]
fn rint(v: f32) -> f32 {
    (v + MAGIC) - MAGIC
}

/// `floor(x)` for 0 <= x < 2^22, without a libm call (vectorises).
#[inline(always)]
fn floor_nb(x: f32) -> f32 {
    let r = rint(x);
    if r > x {
        r - 1.0
    } else {
        r
    }
}

/// The f32 area pass's verdict on a level `v >= 0`: `floor(max(v - NEAR, 0))` (saturated at
/// 255), and whether an integer lies in `(v - NEAR, v + NEAR]` (the two floors differ; then
/// the exact pass decides). Elsewhere that floor is `floor(v)`. Branch-free (vectorises); the
/// SIMD passes do the same operations.
#[inline(always)]
fn split_level(v: f32) -> (u8, bool) {
    let lo = floor_nb((v - NEAR).max(0.0));
    let hi = floor_nb(v + NEAR);
    let level = if lo > 255.0 { 255.0 } else { lo };
    // SAFETY: 0 <= level <= 255.
    (unsafe { level.to_int_unchecked::<i32>() } as u8, lo != hi)
}

/// Area taps of every output pixel for one source size: `w[d][j]` weighs source `start[d] + j`
/// (also stored transposed, `wt[j][d]` with `[u32]` starts, for the vectorised horizontal pass);
/// unused taps weigh 0.
pub(crate) struct AreaTab {
    pub(crate) start: [usize; OUT],
    pub(crate) w: [[f32; MAXT]; OUT],
    pub(crate) start32: [u32; OUT],
    pub(crate) wt: [[f32; OUT]; MAXT],
    /// Per group of 16 outputs: the first tap's source `base`, each output's first tap relative
    /// to it (below 48 - MAXT: 16 outputs span at most 31 sources), and per tap the outputs
    /// whose source lies 32 or more past `base`.
    pub(crate) base: [u32; OUT / 16],
    pub(crate) rel: [[u32; 16]; OUT / 16],
    pub(crate) far: [[u16; MAXT]; OUT / 16],
    /// The same for groups of 8 outputs (the AVX2 pass): `base8`, and `rel8` below 24 - MAXT
    /// (8 outputs span at most 15 sources).
    pub(crate) base8: [u32; OUT / 8],
    pub(crate) rel8: [[i32; 8]; OUT / 8],
}

/// Output `dx` of the f32 horizontal pass over the row `tmp`: its weighted taps, split into
/// floor and near-integer flag ([`split_level`]).
#[inline(always)]
pub(crate) fn horizontal_one(tmp: &[f32; 2 * CANVAS], xt: &AreaTab, dx: usize) -> (u8, bool) {
    let i = (xt.start32[dx] & (CANVAS as u32 - 1)) as usize;
    let v = tmp[i] * xt.wt[0][dx] + tmp[i + 1] * xt.wt[1][dx] + tmp[i + 2] * xt.wt[2][dx];
    split_level(v)
}

/// The vertical pass over one row: `dst[i] = w0 r0[i] + w1 r1[i] + w2 r2[i]` in f32 (a
/// zero-weight tap adds +0 and is read from a valid row; the third is left out when its weight
/// is 0).
#[inline(always)]
pub(crate) fn vertical([r0, r1, r2]: [&[u8]; MAXT], [b0, b1, b2]: [f32; MAXT], dst: &mut [f32]) {
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

/// OpenCV's `INTER_AREA` bilinear coefficients (used when a side grows) for `ssize -> 64`:
/// first source per output and float32 weights `(1 - f, f)`. Horizontally, outputs from
/// `end` on read one source pixel as is (OpenCV's `xmax`).
struct LinTab {
    src: [usize; OUT],
    c: [[f32; 2]; OUT],
    end: usize,
}

pub(crate) struct Tables {
    pub(crate) area: Vec<Option<AreaTab>>,
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
            !taps.is_empty() && taps.len() <= MAXT && taps.iter().all(|t| t.1 > 0.0),
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

/// OpenCV's `INTER_AREA` bilinear coefficients for `ssize -> 64` (`cv::resize`, `area_mode`);
/// only the horizontal direction (`is_x`) clamps the last source pixel and sets `end`.
fn lin_tab(ssize: usize, is_x: bool) -> LinTab {
    let inv_scale = OUT as f64 / ssize as f64;
    let scale = 1.0 / inv_scale;
    let mut tab = LinTab {
        src: [0; OUT],
        c: [[0.0; 2]; OUT],
        end: OUT,
    };
    for d in 0..OUT {
        let mut s = (d as f64 * scale).floor() as i64;
        let mut f = ((d + 1) as f64 - (s + 1) as f64 * inv_scale) as f32;
        f = if f <= 0.0 { 0.0 } else { f - f.floor() };
        if is_x && s + 1 >= ssize as i64 {
            tab.end = tab.end.min(d);
            if s >= ssize as i64 - 1 {
                s = ssize as i64 - 1;
                f = 0.0;
            }
        }
        tab.src[d] = s.max(0) as usize;
        tab.c[d] = [1.0 - f, f];
    }
    tab
}

pub(crate) fn tables() -> &'static Tables {
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

/// The crop's grey levels: `at(y, x)` for `y < h`, `x < w` (0 outside the canvas columns).
#[derive(Clone, Copy)]
struct View<'a> {
    grey: &'a [u8],
    crop: Crop,
}

impl View<'_> {
    #[inline(always)]
    fn at(&self, y: usize, x: usize) -> u8 {
        let c = self.crop.c0 + x as isize;
        if (0..CANVAS as isize).contains(&c) {
            self.grey[(self.crop.top + y) * CANVAS + c as usize]
        } else {
            0
        }
    }

    #[inline(always)]
    fn unit(&self, y: usize, x: usize) -> f64 {
        UNIT[self.at(y, x) as usize]
    }
}

/// Output `(dx, dy)` of the area path in float64, in OpenCV's order: each source row's taps
/// summed from 0 (`h = 0 + S0 a0 + S1 a1 + S2 a2`), then the rows (`b0 h0 + b1 h1 + b2 h2`).
/// Unused taps weigh 0 and add +0 (exact); they read a clamped row or any column.
#[inline(always)]
fn exact_area(v: View<'_>, xt: &AreaTab, yt: &AreaTab, dx: usize, dy: usize) -> u8 {
    let (c0, x0, y0) = (v.crop.c0, xt.start[dx], yt.start[dy]);
    let [a0, a1, a2] = xt.w[dx].map(|a| a as f64);
    let cols = [0, 1, 2].map(|k| (c0 + (x0 + k) as isize) as usize); // off the canvas: huge
    let mut sum = 0.0f64;
    for (j, &b) in yt.w[dy].iter().enumerate() {
        let row = &v.grey[(v.crop.top + (y0 + j).min(v.crop.h - 1)) * CANVAS..][..CANVAS];
        let s = cols.map(|c| {
            if c < CANVAS {
                UNIT[row[c] as usize]
            } else {
                0.0
            }
        });
        sum += b as f64 * (s[0] * a0 + s[1] * a1 + s[2] * a2);
    }
    store(sum)
}

/// Both scales integer: OpenCV's `resizeAreaFast_` on float64 (`sum += S0 + S1 + S2 + S3` by
/// groups of four, then the rest one by one, times `float(1 / area)`).
fn exact_block(v: View<'_>, sx: usize, sy: usize, out: &mut [u8]) {
    let area = sx * sy;
    let scale = (1.0f32 / area as f32) as f64;
    let ofs: Vec<(usize, usize)> = (0..sy).flat_map(|y| (0..sx).map(move |x| (y, x))).collect();
    for dy in 0..OUT {
        for dx in 0..OUT {
            let s = |k: usize| v.unit(dy * sy + ofs[k].0, dx * sx + ofs[k].1);
            let mut sum = 0.0f64;
            let mut k = 0;
            while k + 4 <= area {
                sum += s(k) + s(k + 1) + s(k + 2) + s(k + 3);
                k += 4;
            }
            while k < area {
                sum += s(k);
                k += 1;
            }
            out[dy * OUT + dx] = store(sum * scale);
        }
    }
}

/// 2 x 2 blocks (a 128 x 128 crop on the canvas, rows from `top`): OpenCV's
/// `((p00 + p01) + p10) + p11` times 0.25. The block's level sum `n` settles every pixel but
/// those with `n` a positive multiple of 4 (true value exactly `n / 4`), recomputed in float64;
/// four equal levels `L` always give `L` (every level checked: [`tests::equal_blocks_keep_level`]),
/// so the plateaus of wide heatmaps skip the float64 pass.
/// `AVX2`: the block sums in AVX2 ([`avx2::blocks_2x2_16`], the same bytes); `WIDE`: the block
/// sums in AVX-512 ([`avx512::blocks_2x2_row`]) and the float64 pass too, on each group of 8
/// outputs of a row that has a flagged pixel ([`avx512::blocks_2x2_exact_8`]).
///
/// # Safety
/// With `AVX2`, the CPU must have AVX2; with `WIDE`, AVX-512 (F, BW, VL, DQ).
#[inline(always)]
unsafe fn blocks_2x2<const AVX2: bool, const WIDE: bool>(grey: &[u8], top: usize, out: &mut [u8]) {
    assert!(grey.len() >= (top + 2 * OUT) * CANVAS && out.len() == OUT * OUT);
    for dy in 0..OUT {
        let r0: &[u8; CANVAS] = grey[(top + 2 * dy) * CANVAS..][..CANVAS]
            .try_into()
            .unwrap();
        let r1: &[u8; CANVAS] = grey[(top + 2 * dy + 1) * CANVAS..][..CANVAS]
            .try_into()
            .unwrap();
        let o: &mut [u8; OUT] = (&mut out[dy * OUT..(dy + 1) * OUT]).try_into().unwrap();
        let mut flags = 0u64;
        #[cfg(target_arch = "x86_64")]
        if WIDE {
            // SAFETY: the caller guarantees AVX-512 with WIDE.
            flags = unsafe { avx512::blocks_2x2_row(r0, r1, o) };
        } else if AVX2 {
            for g in 0..OUT / 16 {
                // SAFETY: the caller guarantees AVX2; slices of 32, 32 and 16 bytes.
                let f =
                    unsafe { avx2::blocks_2x2_16(&r0[32 * g..], &r1[32 * g..], &mut o[16 * g..]) };
                flags |= (f as u64) << (16 * g);
            }
        }
        if !AVX2 || cfg!(not(target_arch = "x86_64")) {
            for (dx, o) in o.iter_mut().enumerate() {
                let [p, q] = [[r0[2 * dx], r0[2 * dx + 1]], [r1[2 * dx], r1[2 * dx + 1]]];
                let n = p[0] as u16 + p[1] as u16 + q[0] as u16 + q[1] as u16;
                *o = (n >> 2) as u8;
                let same = p == q && p[0] == p[1];
                flags |= ((n & 3 == 0 && n != 0 && !same) as u64) << dx;
            }
        }
        #[cfg(target_arch = "x86_64")]
        if WIDE {
            while flags != 0 {
                let g = flags.trailing_zeros() as usize / 8;
                let mask = (flags >> (8 * g)) as u8;
                flags &= !(0xff << (8 * g));
                // SAFETY: the caller guarantees AVX-512 with WIDE; slices of 16, 16 and 8 bytes.
                unsafe {
                    avx512::blocks_2x2_exact_8(&r0[16 * g..], &r1[16 * g..], &mut o[8 * g..], mask)
                };
            }
        }
        while flags != 0 {
            let dx = flags.trailing_zeros() as usize & (OUT - 1);
            flags &= flags - 1;
            let u = |r: &[u8; CANVAS], x: usize| UNIT[r[x & (CANVAS - 1)] as usize];
            let sum = ((u(r0, 2 * dx) + u(r0, 2 * dx + 1)) + u(r1, 2 * dx)) + u(r1, 2 * dx + 1);
            o[dx] = store(sum * 0.25);
        }
    }
}

/// A side grows: OpenCV's area-mode bilinear on float64 (`resizeGeneric_` with float32
/// coefficients): per source row `S[s] a0 + S[s + 1] a1` (or `S[s]` from `end` on), then
/// `h0 b0 + h1 b1` over rows `s` and `min(s + 1, h - 1)`.
fn exact_linear(v: View<'_>, out: &mut [u8]) {
    let t = tables();
    let (xt, yt) = (&t.lin_x[v.crop.w], &t.lin_y[v.crop.h]);
    let hrow = |y: usize| -> [f64; OUT] {
        std::array::from_fn(|dx| {
            let s = xt.src[dx];
            if dx < xt.end {
                v.unit(y, s) * xt.c[dx][0] as f64 + v.unit(y, s + 1) * xt.c[dx][1] as f64
            } else {
                v.unit(y, s)
            }
        })
    };
    for dy in 0..OUT {
        let s = yt.src[dy].min(v.crop.h - 1);
        let (h0, h1) = (hrow(s), hrow((s + 1).min(v.crop.h - 1)));
        let [b0, b1] = yt.c[dy].map(|b| b as f64);
        for dx in 0..OUT {
            out[dy * OUT + dx] = store(h0[dx] * b0 + h1[dx] * b1);
        }
    }
}

/// Resizes `crop` of the 128 x 128 `grey` canvas into `out` (64 x 64, row-major) as OpenGait
/// does (module docs); every pixel of the crop's rows outside the canvas columns `[lo, hi)` of
/// `nonzero` is 0 (the passes skip them). `WIDE` selects the AVX-512 area passes
/// ([`avx512::area_horizontal`], [`avx512::area_vertical`]), else `AVX2` the AVX2 horizontal
/// pass ([`avx2::area_horizontal`]), else the
/// portable loops: the same bytes.
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
    let view = View { grey, crop };
    if (h, w) == (OUT, OUT) {
        for (i, o) in out.iter_mut().enumerate() {
            *o = store(view.unit(i / OUT, i % OUT));
        }
        return;
    }
    if h < OUT || w < OUT {
        exact_linear(view, out);
        return;
    }
    // Columns of the crop that lie on the canvas.
    let x_lo = (-crop.c0).clamp(0, w as isize) as usize;
    let x_hi = (CANVAS as isize - crop.c0).clamp(0, w as isize) as usize;
    let inv_sx = OUT as f64 / w as f64;
    let inv_sy = OUT as f64 / h as f64;
    let (sx, sy) = (1.0 / inv_sx, 1.0 / inv_sy);
    let (isx, isy) = (sx.round(), sy.round());
    if (sx - isx).abs() < f64::EPSILON && (sy - isy).abs() < f64::EPSILON {
        if isx == 2.0 && isy == 2.0 && crop.c0 == 0 {
            // SAFETY: the caller guarantees AVX2 with AVX2.
            unsafe { blocks_2x2::<AVX2, WIDE>(grey, crop.top, out) };
        } else {
            exact_block(view, isx as usize, isy as usize, out);
        }
        return;
    }
    let row = |y: usize| -> &[u8] { &grey[(crop.top + y) * CANVAS..(crop.top + y + 1) * CANVAS] };
    let col = |x: usize| (crop.c0 + x as isize) as usize; // valid for x in [x_lo, x_hi)
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
            let rows = [st, (st + 1).min(h - 1), (st + 2).min(h - 1)].map(|y| &row(y)[cs..cs + n]);
            let dst = &mut tmp[x_lo..x_lo + n];
            #[cfg(target_arch = "x86_64")]
            if WIDE {
                // SAFETY: the caller guarantees AVX-512 with WIDE.
                unsafe { avx512::area_vertical(rows, yt.w[dy], dst) };
            } else {
                vertical(rows, yt.w[dy], dst);
            }
            #[cfg(not(target_arch = "x86_64"))]
            vertical(rows, yt.w[dy], dst);
        }
        let o: &mut [u8; OUT] = (&mut out[dy * OUT..(dy + 1) * OUT]).try_into().unwrap();
        let mut flags = 0u64;
        #[cfg(target_arch = "x86_64")]
        if WIDE {
            // SAFETY: the caller guarantees AVX-512 with WIDE.
            flags = unsafe { avx512::area_horizontal(tmp, xt, o) };
        } else if AVX2 {
            // SAFETY: the caller guarantees AVX2 with AVX2.
            flags = unsafe { avx2::area_horizontal(tmp, xt, o) };
        } else {
            for (dx, o) in o.iter_mut().enumerate() {
                let (level, near) = horizontal_one(tmp, xt, dx);
                *o = level;
                flags |= (near as u64) << dx;
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        for (dx, o) in o.iter_mut().enumerate() {
            let (level, near) = horizontal_one(tmp, xt, dx);
            *o = level;
            flags |= (near as u64) << dx;
        }
        while flags != 0 {
            let dx = flags.trailing_zeros() as usize;
            flags &= flags - 1;
            o[dx] = exact_area(view, xt, yt, dx, dy);
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

    /// A 2 x 2 block of four equal levels resizes to that level in OpenCV's float64 order:
    /// the premise of the block pass's shortcut.
    #[test]
    fn equal_blocks_keep_level() {
        for level in 0..=255u8 {
            let u = UNIT[level as usize];
            assert_eq!(store((((u + u) + u) + u) * 0.25), level, "level {level}");
        }
    }

    /// `level * 0x0101010101010101` (the level's byte repeated: `level / 255`'s binary
    /// fraction, 64 bits of it) converted to float64 and scaled by 2^-64 is `fl(level / 255)`
    /// for every level: the AVX-512 block pass's way to [`UNIT`] ([`avx512::blocks_2x2_exact_8`]).
    #[test]
    fn unit_by_repeated_byte() {
        for level in 0..=255u8 {
            let x = (level as u64 * 0x0101_0101_0101_0101) as f64 * UNIT_SCALE;
            assert_eq!(x.to_bits(), UNIT[level as usize].to_bits(), "level {level}");
        }
    }

    /// The 2 x 2 pass of every build against the plain float64 computation where its float64
    /// step decides: blocks whose levels sum to a multiple of 4 and differ by a few levels
    /// (the slopes of wide heatmaps), in every order, at every level.
    #[test]
    fn block_pass_matches_float64_near_plateaus() {
        let mut next = crate::testutil::xorshift(0x9e37_79b9_7f4a_7c15u64);
        let mut scratch = ResizeScratch::default();
        let crop = Crop {
            top: 0,
            h: CANVAS,
            c0: 0,
            w: CANVAS,
        };
        let mut recomputed = 0;
        for round in 0..24 {
            let mut grey = vec![0u8; CANVAS * CANVAS];
            for by in 0..OUT {
                for bx in 0..OUT {
                    let m = 1 + (next() % 254) as i32;
                    let spread = 1 + round % 4;
                    // Three random offsets and the fourth that brings the sum back to 4 m.
                    let mut d = [0i32; 4];
                    for x in d.iter_mut().take(3) {
                        *x = (next() % (2 * spread as u64 + 1)) as i32 - spread;
                    }
                    d[3] = -(d[0] + d[1] + d[2]);
                    let v = d.map(|x| (m + x).clamp(0, 255) as u8);
                    for (k, &level) in v.iter().enumerate() {
                        grey[(2 * by + k / 2) * CANVAS + 2 * bx + k % 2] = level;
                    }
                }
            }
            let want = brute(&grey, crop);
            let mut out = vec![0u8; OUT * OUT];
            // SAFETY: each variant only where the CPU has its features.
            unsafe {
                resize_area::<false, false>(&grey, (0, CANVAS), crop, &mut out, &mut scratch)
            };
            assert!(out == want, "portable, round {round}");
            #[cfg(target_arch = "x86_64")]
            {
                use std::arch::is_x86_feature_detected as has;
                if has!("avx2") && has!("fma") {
                    unsafe {
                        resize_area::<true, false>(&grey, (0, CANVAS), crop, &mut out, &mut scratch)
                    };
                    assert!(out == want, "AVX2, round {round}");
                }
                if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512dq") {
                    unsafe {
                        resize_area::<true, true>(&grey, (0, CANVAS), crop, &mut out, &mut scratch)
                    };
                    assert!(out == want, "AVX-512, round {round}");
                }
            }
            // Pixels the float64 step put one level below n / 4.
            recomputed += (0..OUT * OUT)
                .filter(|&i| {
                    let (y, x) = (2 * (i / OUT) * CANVAS, 2 * (i % OUT));
                    let n: u32 = [y + x, y + x + 1, y + CANVAS + x, y + CANVAS + x + 1]
                        .iter()
                        .map(|&j| grey[j] as u32)
                        .sum();
                    n.is_multiple_of(4) && (want[i] as u32) < n / 4
                })
                .count();
        }
        assert!(recomputed > 100, "float64 drops exercised: {recomputed}");
    }

    /// `floor` and the near-integer flag of single levels.
    #[test]
    fn split_level_floors_and_flags() {
        assert_eq!(split_level(0.0), (0, false));
        assert_eq!(split_level(0.0004), (0, false), "0 needs no exact pass");
        assert_eq!(split_level(0.99), (0, false));
        assert_eq!(
            split_level(0.9999),
            (0, true),
            "may be exactly 1 in float64"
        );
        assert_eq!(split_level(3.0), (2, true));
        assert_eq!(split_level(3.0 - NEAR / 2.0), (2, true));
        assert_eq!(split_level(3.0 + NEAR / 2.0), (2, true));
        assert_eq!(split_level(3.0 + 2.0 * NEAR), (3, false));
        assert_eq!(split_level(3.0 - 2.0 * NEAR), (2, false));
        assert_eq!(split_level(3.5), (3, false));
        assert_eq!(split_level(254.9), (254, false));
        assert_eq!(split_level(255.0001), (254, true));
        assert_eq!(split_level(300.5), (255, false));
    }

    /// OpenGait's resize, written plainly: every pixel in float64 in OpenCV's order (the
    /// paths of `cv::resize(..., INTER_AREA)` on CV_64F), then `uint8(v * 255)`.
    fn brute(grey: &[u8], crop: Crop) -> Vec<u8> {
        let v = View { grey, crop };
        let (h, w) = (crop.h, crop.w);
        let mut out = vec![0u8; OUT * OUT];
        let (sx, sy) = (1.0 / (OUT as f64 / w as f64), 1.0 / (OUT as f64 / h as f64));
        if (h, w) == (OUT, OUT) {
            for (i, o) in out.iter_mut().enumerate() {
                *o = store(v.unit(i / OUT, i % OUT));
            }
        } else if sx < 1.0 || sy < 1.0 {
            exact_linear(v, &mut out);
        } else if (sx - sx.round()).abs() < f64::EPSILON && (sy - sy.round()).abs() < f64::EPSILON {
            exact_block(v, sx.round() as usize, sy.round() as usize, &mut out);
        } else {
            let (xt, yt) = (area_tab(w).unwrap(), area_tab(h).unwrap());
            // Rows reduced horizontally first, then accumulated: OpenCV's ResizeArea_Invoker.
            let hsum: Vec<[f64; OUT]> = (0..h)
                .map(|y| {
                    std::array::from_fn(|dx| {
                        let mut acc = 0.0;
                        for k in 0..MAXT {
                            if xt.w[dx][k] != 0.0 {
                                acc += v.unit(y, xt.start[dx] + k) * xt.w[dx][k] as f64;
                            }
                        }
                        acc
                    })
                })
                .collect();
            for dy in 0..OUT {
                let mut sum = [0.0f64; OUT];
                for j in 0..MAXT {
                    let b = yt.w[dy][j] as f64;
                    if b != 0.0 {
                        for dx in 0..OUT {
                            sum[dx] += b * hsum[yt.start[dy] + j][dx];
                        }
                    }
                }
                for dx in 0..OUT {
                    out[dy * OUT + dx] = store(sum[dx]);
                }
            }
        }
        out
    }

    /// Every build of the resize gives OpenGait's bytes (the plain float64 computation above)
    /// for crops of every path: random levels, smooth blobs, and constant regions (where
    /// float64 rounding alone decides between `L` and `L - 1`).
    #[test]
    fn matches_plain_float64() {
        let mut next = crate::testutil::xorshift(0x1234_5678_9abc_def1u64);
        let mut scratch = ResizeScratch::default();
        let mut heights: Vec<usize> = vec![1, 2, 40, 63, 64, 65, 85, 100, 117, 127, 128];
        heights.extend((0..20).map(|_| 1 + (next() % 128) as usize));
        let mut settled = [0usize; 2];
        for (i, &h) in heights.iter().enumerate() {
            for kind in 0..4 {
                let mut grey = vec![0u8; CANVAS * CANVAS];
                let level = 1 + (next() % 255) as u8;
                for (p, g) in grey.iter_mut().enumerate() {
                    let (y, x) = ((p / CANVAS) as f64, (p % CANVAS) as f64);
                    *g = match kind {
                        0 => (next() >> 56) as u8,
                        1 => level,
                        2 => {
                            (255.0 * (-((y - 64.0).powi(2) + (x - 60.0).powi(2)) / 900.0).exp())
                                as u8
                        }
                        _ => [0, level, level / 2][(next() % 3) as usize],
                    };
                }
                let top = (CANVAS - h) / 2;
                let centre = (CANVAS / 2) as isize;
                let square = {
                    let start = (centre - (h / 2) as isize).max(0);
                    let end = (centre + (h / 2) as isize + 1).min(CANVAS as isize);
                    (start, (end - start) as usize)
                };
                let crops = [
                    Crop {
                        top,
                        h,
                        c0: square.0,
                        w: square.1,
                    },
                    Crop {
                        top,
                        h,
                        c0: centre - (h / 2) as isize,
                        w: h,
                    },
                    Crop {
                        top,
                        h,
                        c0: 0,
                        w: (h + 7 * i).clamp(1, CANVAS),
                    },
                ];
                for crop in crops {
                    let want = brute(&grey, crop);
                    let mut variants: Vec<Vec<u8>> = Vec::new();
                    let mut run = |f: &dyn Fn(&mut [u8], &mut ResizeScratch)| {
                        let mut out = vec![7u8; OUT * OUT];
                        f(&mut out, &mut scratch);
                        variants.push(out);
                    };
                    // SAFETY: each variant only where the CPU has its features.
                    run(&|o, s| unsafe {
                        resize_area::<false, false>(&grey, (0, CANVAS), crop, o, s)
                    });
                    #[cfg(target_arch = "x86_64")]
                    {
                        use std::arch::is_x86_feature_detected as has;
                        if has!("avx2") && has!("fma") {
                            run(&|o, s| unsafe {
                                resize_area::<true, false>(&grey, (0, CANVAS), crop, o, s)
                            });
                        }
                        if has!("avx512f") && has!("avx512bw") && has!("avx512vl") {
                            run(&|o, s| unsafe {
                                resize_area::<true, true>(&grey, (0, CANVAS), crop, o, s)
                            });
                        }
                    }
                    for got in &variants {
                        let bad = got.iter().zip(&want).position(|(a, b)| a != b);
                        assert!(bad.is_none(), "crop {crop:?}, kind {kind}, pixel {bad:?}");
                    }
                    if kind == 1 {
                        // A constant region: float64 rounding alone puts pixels on L - 1.
                        settled[0] += want.iter().filter(|&&v| v == level).count();
                        settled[1] += want.iter().filter(|&&v| v + 1 == level).count();
                    }
                }
            }
        }
        assert!(
            settled[0] > 0 && settled[1] > 0,
            "levels L and L - 1: {settled:?}"
        );
    }
}
