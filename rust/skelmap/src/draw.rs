//! Gaussian joint and limb heat planes, kept in the log domain.
//!
//! A plane stores, per pixel, the minimum over its primitives of the cost
//! `d^2 / (2 sigma^2) - ln(c)`; since `max_l c_l e^{-d_l^2/2s^2} = e^{-min_l cost_l}`, one `exp`
//! per pixel at quantisation time gives the reference's max-merged value.
//!
//! Every primitive (a joint, a limb, or a limb shorter than 1 px drawn as a point) is evaluated
//! over exactly the reference window (OpenGait: bounds `max(int(lo - 3 sigma), 0)` ..
//! `min(int(hi + 3 sigma) + 1, 128)`, `int()` truncating toward zero), minus the rows where it
//! cannot reach quantisation level 1 (they would be 0 anyway). The plane is built row by row:
//! each 16-pixel block keeps its running minimum in registers over the primitives whose window
//! covers it (branch-free per pixel; window edges inside a block are masked by a per-column
//! offset pushing outside pixels beyond [`FAR`]), then is stored once. Coordinates are
//! pre-scaled by `1 / (sigma sqrt 2)` so the cost is
//! `|p - q|^2 - ln(c)`, `q` the nearest point of the primitive (for a segment: the projection
//! clamped to its ends).
//!
//! Each row keeps the span `[lo, hi)` (multiples of 16) of written pixels; pixels outside it
//! are 0.

use crate::geometry::Keypoint;
use crate::lut::ARG_FLOOR;
use crate::params::{CANVAS, EPS};

/// Cost of a pixel no primitive reaches (quantises to 0).
const FAR: f32 = 1.0e30;
/// Pixels per block; spans are multiples of it.
pub const BLOCK: usize = 16;

/// One 128 x 128 plane of costs (negated exponent arguments) with per-row spans.
pub struct Plane {
    pub acc: Vec<f32>,
    pub lo: [u16; CANVAS],
    pub hi: [u16; CANVAS],
    /// Per-primitive column terms (scratch of [`rasterise`]).
    cols: Vec<f32>,
}

impl Default for Plane {
    fn default() -> Self {
        Self {
            acc: vec![FAR; CANVAS * CANVAS],
            lo: [0; CANVAS],
            hi: [0; CANVAS],
            cols: vec![0.0; 32 * CANVAS],
        }
    }
}

/// A primitive in scaled coordinates: the segment from `a` along the unit direction `e` over
/// length `len` (`len = 0` for a point).
#[derive(Clone, Copy, Debug)]
struct Prim {
    ax: f32,
    ay: f32,
    ex: f32,
    ey: f32,
    len: f32,
    lnc: f32,
    /// Reference window (canvas pixels).
    x0: usize,
    x1: usize,
    y0: usize,
    y1: usize,
    /// Canvas y range of the primitive (for the per-row reachability test).
    ylo: f64,
    yhi: f64,
}

/// A primitive's constants on one row (see [`segment_block`]; points use `c1` only).
#[derive(Clone, Copy, Debug, Default)]
struct RowPrim {
    /// `along = x ex + c1`, `perp = x ey + c2`.
    c1: f32,
    c2: f32,
    neg_lnc: f32,
    ex: f32,
    ey: f32,
    len: f32,
    /// The primitive's blocks `[s0, s1)`, unmasked blocks `[f0, f1)`, column terms at `col`.
    s0: u32,
    s1: u32,
    f0: u32,
    f1: u32,
    col: u32,
}

/// The primitives of one plane (one sigma), built per frame.
pub struct Prims {
    sigma: f64,
    /// `k = 1 / (2 sigma^2)` and the coordinate scale `sqrt(k)`.
    k: f64,
    scale: f64,
    prims: Vec<Prim>,
    /// Scaled x of every column.
    xs: [f32; CANVAS],
    points_only: bool,
}

impl Default for Prims {
    fn default() -> Self {
        Self {
            sigma: 0.0,
            k: 0.0,
            scale: 0.0,
            prims: Vec::with_capacity(32),
            xs: [0.0; CANVAS],
            points_only: true,
        }
    }
}

/// The reference window `[max(int(lo - 3 sigma), 0), min(int(hi + 3 sigma) + 1, size))`.
#[inline(always)]
fn window(lo: f64, hi: f64, sigma: f64) -> (usize, usize) {
    const BIG: f64 = 1.0e9;
    let st = (lo - 3.0 * sigma).clamp(-BIG, BIG) as i64; // `as` truncates toward zero like int()
    let ed = (hi + 3.0 * sigma).clamp(-BIG, BIG) as i64 + 1;
    let size = CANVAS as i64;
    (st.clamp(0, size) as usize, ed.clamp(0, size) as usize)
}

impl Prims {
    /// Starts a new frame's primitives with this sigma.
    pub fn reset(&mut self, sigma: f64) {
        if sigma != self.sigma {
            self.sigma = sigma;
            self.k = 1.0 / (2.0 * sigma * sigma);
            self.scale = self.k.sqrt();
            for (i, x) in self.xs.iter_mut().enumerate() {
                *x = (i as f64 * self.scale) as f32;
            }
        }
        self.prims.clear();
        self.points_only = true;
    }

    /// A joint: `c * exp(-d^2 / (2 sigma^2))` around `(mx, my)`; skipped when `c < 1e-3`.
    pub fn point(&mut self, mx: f64, my: f64, c: f32) {
        if (c as f64) < EPS {
            return;
        }
        let (x0, x1) = window(mx, mx, self.sigma);
        let (y0, y1) = window(my, my, self.sigma);
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        let s = self.scale;
        self.prims.push(Prim {
            ax: (mx * s) as f32,
            ay: (my * s) as f32,
            ex: 1.0,
            ey: 0.0,
            len: 0.0,
            lnc: (c as f64).ln() as f32,
            x0,
            x1,
            y0,
            y1,
            ylo: my,
            yhi: my,
        });
    }

    /// A limb: `min(c_a, c_b) * exp(-d^2 / (2 sigma^2))`, `d` = distance to the segment
    /// `[a, b]` (to the nearer end beyond the ends), over the segment's bounding box grown by
    /// 3 sigma. Skipped when `min(c_a, c_b) < 1e-3`; a segment shorter than 1 px is drawn as a
    /// point at `a` with peak `c_a` (OpenGait).
    pub fn limb(&mut self, a: Keypoint, b: Keypoint) {
        let value = a.c.min(b.c) as f64;
        if value < EPS {
            return;
        }
        let (x0, x1) = window(a.x.min(b.x), a.x.max(b.x), self.sigma);
        let (y0, y1) = window(a.y.min(b.y), a.y.max(b.y), self.sigma);
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        let (ux, uy) = (b.x - a.x, b.y - a.y);
        let d2 = ux * ux + uy * uy;
        if d2 < 1.0 {
            self.point(a.x, a.y, a.c);
            return;
        }
        let s = self.scale;
        let len = d2.sqrt();
        self.points_only = false;
        self.prims.push(Prim {
            ax: (a.x * s) as f32,
            ay: (a.y * s) as f32,
            ex: (ux / len) as f32,
            ey: (uy / len) as f32,
            len: (len * s) as f32,
            lnc: value.ln() as f32,
            x0,
            x1,
            y0,
            y1,
            ylo: a.y.min(b.y),
            yhi: a.y.max(b.y),
        });
    }
}

#[inline(always)]
fn fmadd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// Offset that pushes a pixel outside a primitive's window beyond [`FAR`].
const OUTSIDE: f32 = 1.0e36;
/// Scaled x offset of a column outside a point's window (its square exceeds [`OUTSIDE`]).
const OUT_D: f32 = 1.0e18;

/// Min-merges one point's cost `d^2 + c1` into a block of 16 pixels, `d` the precomputed
/// (window-masked) scaled x offsets of the columns.
#[inline(always)]
fn point_block<const FMA: bool>(m: &mut [f32; BLOCK], d: &[f32; BLOCK], c1: f32) {
    for i in 0..BLOCK {
        let v = fmadd::<FMA>(d[i], d[i], c1);
        m[i] = if v < m[i] { v } else { m[i] };
    }
}

/// Min-merges one segment's cost into a block of 16 pixels at scaled x `xs`; `off` is 0 inside
/// the window and [`OUTSIDE`] beyond it.
///
/// `along = x ex + c1`, `perp = x ey + c2` (position along / across the segment relative to
/// its start), cost `perp^2 + (along - clamp(along, 0, len))^2 - ln(c)`.
#[inline(always)]
fn segment_block<const FMA: bool, const MASK: bool>(
    m: &mut [f32; BLOCK],
    xs: &[f32; BLOCK],
    off: &[f32; BLOCK],
    r: &RowPrim,
) {
    for i in 0..BLOCK {
        let x = xs[i];
        let along = fmadd::<FMA>(x, r.ex, r.c1);
        let perp = fmadd::<FMA>(x, r.ey, r.c2);
        // along - clamp(along, 0, len), as max(along - len, min(along, 0)) (same values).
        let lo = if along < 0.0 { along } else { 0.0 };
        let hi = along - r.len;
        let e = if hi > lo { hi } else { lo };
        let v = fmadd::<FMA>(perp, perp, fmadd::<FMA>(e, e, r.neg_lnc));
        let v = if MASK { v + off[i] } else { v };
        m[i] = if v < m[i] { v } else { m[i] };
    }
}

/// One primitive's extent for the row-major pass: rows `[ya, yb)`, blocks `[s0, s1)`.
#[derive(Clone, Copy, Debug, Default)]
struct Extent {
    ya: usize,
    yb: usize,
    s0: usize,
    s1: usize,
    /// Blocks `[f0, f1)` lie wholly inside the window (no masking).
    f0: usize,
    f1: usize,
}

/// Renders the primitives into `plane` (replacing its content), row by row: each block of 16
/// pixels keeps its running minimum in registers over the primitives that cover it.
#[inline(always)]
pub fn rasterise<const FMA: bool>(plane: &mut Plane, prims: &Prims) {
    const MAXP: usize = 64;
    plane.lo = [0; CANVAS];
    plane.hi = [0; CANVAS];
    let floor = ARG_FLOOR as f64;
    let (k, s) = (prims.k, prims.scale);
    let points = prims.points_only;
    let n = prims.prims.len();
    if n > MAXP {
        // Far more primitives than any skeleton has: one chunk at a time (min-merging).
        rasterise_chunks::<FMA>(plane, prims);
        return;
    }
    let mut ext = [Extent::default(); MAXP];
    if plane.cols.len() < n * CANVAS {
        plane.cols.resize(n * CANVAS, 0.0);
    }
    for (i, p) in prims.prims.iter().enumerate() {
        // Rows within the window where the vertical gap to the primitive still lets it reach
        // quantisation level 1.
        let reach = ((p.lnc as f64 - floor) / k).max(0.0).sqrt();
        let ya =
            p.y0.max((p.ylo - reach).ceil().clamp(0.0, CANVAS as f64) as usize);
        let yb =
            p.y1.min(((p.yhi + reach).floor() + 1.0).clamp(0.0, CANVAS as f64) as usize);
        let (a, b) = (p.x0, p.x1);
        let (s0, s1) = (a & !(BLOCK - 1), (b + BLOCK - 1) & !(BLOCK - 1));
        let (f0, f1) = ((a + BLOCK - 1) & !(BLOCK - 1), b & !(BLOCK - 1));
        ext[i] = Extent {
            ya,
            yb,
            s0,
            s1,
            f0,
            f1,
        };
        // Per-column terms over the primitive's blocks: points, the masked offset `x - ax`;
        // segments, 0 inside the window and OUTSIDE beyond it.
        let col = &mut plane.cols[i * CANVAS..(i + 1) * CANVAS];
        #[allow(clippy::needless_range_loop)]
        for x in s0..s1 {
            let inside = x >= a && x < b;
            col[x] = if points {
                if inside {
                    prims.xs[x] - p.ax
                } else {
                    OUT_D
                }
            } else if inside {
                0.0
            } else {
                OUTSIDE
            };
        }
    }
    let mut rows = [RowPrim::default(); MAXP];
    let cols = &plane.cols[..];
    for y in 0..CANVAS {
        let (mut lo, mut hi, mut na) = (CANVAS, 0, 0);
        for (i, (e, p)) in ext[..n].iter().zip(&prims.prims).enumerate() {
            if y < e.ya || y >= e.yb {
                continue;
            }
            let yy = (y as f64 * s) as f32 - p.ay;
            let mut r = if points {
                RowPrim {
                    c1: yy * yy - p.lnc,
                    ..RowPrim::default()
                }
            } else {
                RowPrim {
                    c1: yy * p.ey - p.ax * p.ex,
                    c2: -yy * p.ex - p.ax * p.ey,
                    neg_lnc: -p.lnc,
                    ex: p.ex,
                    ey: p.ey,
                    len: p.len,
                    ..RowPrim::default()
                }
            };
            r.s0 = e.s0 as u32;
            r.s1 = e.s1 as u32;
            r.f0 = e.f0 as u32;
            r.f1 = e.f1 as u32;
            r.col = (i * CANVAS) as u32;
            rows[na] = r;
            na += 1;
            lo = lo.min(e.s0);
            hi = hi.max(e.s1);
        }
        if na == 0 || lo >= hi {
            continue;
        }
        plane.lo[y] = lo as u16;
        plane.hi[y] = hi as u16;
        let row = &mut plane.acc[y * CANVAS..(y + 1) * CANVAS];
        for blk in (lo..hi).step_by(BLOCK) {
            let mut m = [FAR; BLOCK];
            let b32 = blk as u32;
            for r in &rows[..na] {
                if b32 < r.s0 || b32 >= r.s1 {
                    continue;
                }
                let c = r.col as usize + blk;
                let col: &[f32; BLOCK] = cols[c..c + BLOCK].try_into().unwrap();
                if points {
                    point_block::<FMA>(&mut m, col, r.c1);
                } else {
                    let x: &[f32; BLOCK] = prims.xs[blk..blk + BLOCK].try_into().unwrap();
                    if b32 >= r.f0 && b32 < r.f1 {
                        segment_block::<FMA, false>(&mut m, x, col, r);
                    } else {
                        segment_block::<FMA, true>(&mut m, x, col, r);
                    }
                }
            }
            let cell: &mut [f32; BLOCK] = (&mut row[blk..blk + BLOCK]).try_into().unwrap();
            *cell = m;
        }
    }
}

/// [`rasterise`] for very many primitives: chunks of them, min-merged into the plane.
#[cold]
fn rasterise_chunks<const FMA: bool>(plane: &mut Plane, prims: &Prims) {
    let mut sub = Prims {
        sigma: prims.sigma,
        k: prims.k,
        scale: prims.scale,
        prims: Vec::new(),
        xs: prims.xs,
        points_only: prims.points_only,
    };
    let mut tmp = Plane::default();
    let mut first = true;
    for chunk in prims.prims.chunks(32) {
        sub.prims.clear();
        sub.prims.extend_from_slice(chunk);
        rasterise::<FMA>(if first { &mut *plane } else { &mut tmp }, &sub);
        if first {
            first = false;
            continue;
        }
        for y in 0..CANVAS {
            let (tl, th) = (tmp.lo[y] as usize, tmp.hi[y] as usize);
            if tl >= th {
                continue;
            }
            let (pl, ph) = (plane.lo[y] as usize, plane.hi[y] as usize);
            let row = &mut plane.acc[y * CANVAS..(y + 1) * CANVAS];
            let (nl, nh) = if pl >= ph {
                (tl, th)
            } else {
                (pl.min(tl), ph.max(th))
            };
            #[allow(clippy::needless_range_loop)]
            for x in nl..nh {
                let old = if x >= pl && x < ph { row[x] } else { FAR };
                let new = if x >= tl && x < th {
                    tmp.acc[y * CANVAS + x]
                } else {
                    FAR
                };
                row[x] = if new < old { new } else { old };
            }
            plane.lo[y] = nl as u16;
            plane.hi[y] = nh as u16;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draw_limb(p: &mut Plane, a: Keypoint, b: Keypoint, sigma: f64) {
        let mut prims = Prims::default();
        prims.reset(sigma);
        prims.limb(a, b);
        rasterise::<false>(p, &prims);
    }

    fn value(p: &Plane, x: usize, y: usize) -> f64 {
        if (p.lo[y] as usize..p.hi[y] as usize).contains(&x) {
            (-p.acc[y * CANVAS + x] as f64).exp()
        } else {
            0.0
        }
    }

    #[test]
    fn limb_matches_distance_to_segment() {
        let mut p = Plane::default();
        let a = Keypoint {
            x: 40.3,
            y: 30.7,
            c: 0.8,
        };
        let b = Keypoint {
            x: 70.1,
            y: 90.2,
            c: 0.9,
        };
        let sigma = 8.0;
        draw_limb(&mut p, a, b, sigma);
        for y in 0..CANVAS {
            for x in 0..CANVAS {
                let (px, py) = (x as f64, y as f64);
                let (ux, uy) = (b.x - a.x, b.y - a.y);
                let t = (((px - a.x) * ux + (py - a.y) * uy) / (ux * ux + uy * uy)).clamp(0.0, 1.0);
                let d2 = (px - a.x - t * ux).powi(2) + (py - a.y - t * uy).powi(2);
                let want = 0.8 * (-d2 / (2.0 * sigma * sigma)).exp();
                let inside = (16..95).contains(&x) && (6..115).contains(&y);
                let got = value(&p, x, y);
                if inside && want * 256.0 > 1.01 {
                    assert!((got - want).abs() < 1e-5, "({x},{y}) {got} vs {want}");
                } else if !inside {
                    assert_eq!(got, 0.0, "({x},{y}) outside the window");
                }
            }
        }
    }

    #[test]
    fn window_truncates_toward_zero() {
        assert_eq!(window(-24.5, -24.5, 8.0), (0, 1)); // int(-0.5) + 1 = 1
        assert_eq!(window(-25.5, -25.5, 8.0), (0, 0));
        assert_eq!(window(64.0, 64.0, 8.0), (40, 89));
        assert_eq!(window(120.0, 120.0, 8.0), (96, 128));
    }
}
