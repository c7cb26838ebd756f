//! Gaussian joint and limb heat planes, kept in the log domain.
//!
//! A plane holds, per pixel, the minimum over its primitives of the cost
//! `d^2 / (2 sigma^2) - ln(c)`; since `max_l c_l e^{-d_l^2/2s^2} = e^{-min_l cost_l}`, one `exp`
//! per pixel at quantisation time gives the reference's max-merged value.
//!
//! Every primitive (a joint, a limb, or a limb shorter than 1 px drawn as a point) is evaluated
//! over exactly the reference window (OpenGait: bounds `max(int(lo - 3 sigma), 0)` ..
//! `min(int(hi + 3 sigma) + 1, 128)`, `int()` truncating toward zero), minus the rows where it
//! cannot reach quantisation level 1 (they would be 0 anyway). Coordinates are pre-scaled by
//! `1 / (sigma sqrt 2)` so the cost is `|p - q|^2 - ln(c)`, `q` the nearest point of the
//! primitive (for a segment: the projection clamped to its ends).
//!
//! The plane is built row by row and handed to a [`RowSink`] (the quantiser, or a float plane
//! in tests) without ever being stored whole. A row covers the blocks of 16 pixels spanned by
//! the primitives that reach it; every such primitive is evaluated on every block of the span
//! without per-pixel branches, with the running minima of all blocks in registers (a row has at most 8
//! blocks; the span's block count is a compile-time constant of the kernel). A pixel outside a
//! primitive's window gets a per-column offset pushing its cost beyond [`FAR`], so the reference
//! windows hold exactly.

use crate::geometry::Keypoint;
use crate::lut::{fmadd, ARG_FLOOR};
use crate::params::{CANVAS, EPS};

/// Cost of a pixel no primitive reaches (quantises to 0).
const FAR: f32 = 1.0e30;
/// Pixels per block; spans are multiples of it.
pub const BLOCK: usize = 16;

/// Receives a plane row by row, every row in order: costs (negated exponent arguments) of the
/// pixels `[x0, x0 + 16 * costs.len())` of row `y`; pixels of the row outside that span are 0
/// (a row no primitive reaches comes with no costs).
pub trait RowSink {
    fn row(&mut self, y: usize, x0: usize, costs: &[[f32; BLOCK]]);
}

/// Scratch buffers of [`rasterise`], reused from frame to frame.
pub struct Raster {
    /// Per-primitive column terms, `CANVAS` per primitive.
    cols: Vec<f32>,
    /// Per-primitive row terms `c1`, then `c2` (see [`segment_block`]), `CANVAS` each.
    rows: Vec<f32>,
    prims: Vec<KPrim>,
    /// Per row, the pixel columns `[lo, hi)` (multiples of 16) its primitives' blocks span.
    lo: [u8; CANVAS],
    hi: [u8; CANVAS],
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
    /// `ax ex` and `ax ey` (row constants).
    axex: f32,
    axey: f32,
    /// Reference window (canvas pixels).
    x0: usize,
    x1: usize,
    y0: usize,
    y1: usize,
    /// Canvas y range of the primitive (for the per-row reachability test).
    ylo: f64,
    yhi: f64,
}

/// What the row kernel reads of a primitive: its rows, its direction and length, and the offset
/// of its column and row terms.
#[derive(Clone, Copy, Debug, Default)]
struct KPrim {
    /// Rows `[ya, yb)` where it can reach quantisation level 1.
    ya: u32,
    yb: u32,
    ex: f32,
    ey: f32,
    len: f32,
    /// Offset of the primitive's column terms in [`Raster::cols`] (half that of its row terms).
    col: u32,
}

impl Default for Raster {
    fn default() -> Self {
        Self {
            cols: Vec::new(),
            rows: Vec::new(),
            prims: Vec::new(),
            lo: [0; CANVAS],
            hi: [0; CANVAS],
        }
    }
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
        let ax = (mx * self.scale) as f32;
        self.prims.push(Prim {
            ax,
            ay: (my * self.scale) as f32,
            ex: 1.0,
            ey: 0.0,
            len: 0.0,
            lnc: (c as f64).ln() as f32,
            axex: ax,
            axey: ax * 0.0,
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
        let (ax, ex, ey) = ((a.x * s) as f32, (ux / len) as f32, (uy / len) as f32);
        self.prims.push(Prim {
            ax,
            ay: (a.y * s) as f32,
            ex,
            ey,
            len: (len * s) as f32,
            lnc: value.ln() as f32,
            axex: ax * ex,
            axey: ax * ey,
            x0,
            x1,
            y0,
            y1,
            ylo: a.y.min(b.y),
            yhi: a.y.max(b.y),
        });
    }
}

/// Column term of a segment outside its window (pushes the cost beyond [`FAR`]).
const OUTSIDE: f32 = 1.0e36;
/// Scaled x offset of a column outside a point's window (its square exceeds [`FAR`]).
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

/// Min-merges one segment's cost into a block of 16 pixels at scaled x `xs`; `col` is
/// `-ln(c)` inside the window and [`OUTSIDE`] beyond it.
///
/// `along = x ex + c1`, `perp = x ey + c2` (position along / across the segment relative to
/// its start), cost `perp^2 + (along - clamp(along, 0, len))^2 - ln(c)`.
#[inline(always)]
fn segment_block<const FMA: bool>(
    m: &mut [f32; BLOCK],
    xs: &[f32; BLOCK],
    col: &[f32; BLOCK],
    (c1, c2, ex, ey, len): (f32, f32, f32, f32, f32),
) {
    for i in 0..BLOCK {
        let x = xs[i];
        let along = fmadd::<FMA>(x, ex, c1);
        let perp = fmadd::<FMA>(x, ey, c2);
        // along - clamp(along, 0, len), as max(along - len, min(along, 0)) (same values).
        let lo = if along < 0.0 { along } else { 0.0 };
        let hi = along - len;
        let e = if hi > lo { hi } else { lo };
        let v = fmadd::<FMA>(perp, perp, fmadd::<FMA>(e, e, col[i]));
        m[i] = if v < m[i] { v } else { m[i] };
    }
}

/// What the row kernel reads: the primitives, their column and row terms, the columns' scaled x.
#[derive(Clone, Copy)]
struct Terms<'a> {
    prims: &'a [KPrim],
    cols: &'a [f32],
    rows: &'a [f32],
    xs: &'a [f32; CANVAS],
}

/// The costs of `NB` blocks of row `y` from column `x0` into `m`: every primitive reaching the
/// row on every block (row terms from `rows`, column terms from `cols`).
#[inline(always)]
fn row_kernel<const FMA: bool, const POINTS: bool, const NB: usize>(
    m: &mut [[f32; BLOCK]; NB],
    Terms {
        prims,
        cols,
        rows,
        xs,
    }: Terms<'_>,
    y: usize,
    x0: usize,
) {
    *m = [[FAR; BLOCK]; NB];
    let xs = &xs[x0..x0 + NB * BLOCK];
    for p in prims {
        if (y as u32) < p.ya || (y as u32) >= p.yb {
            continue;
        }
        let col = p.col as usize;
        let c = &cols[col + x0..col + x0 + NB * BLOCK];
        let (c1, c2) = (rows[2 * col + y], rows[2 * col + CANVAS + y]);
        let consts = (c1, c2, p.ex, p.ey, p.len);
        for (b, mb) in m.iter_mut().enumerate() {
            let cb: &[f32; BLOCK] = c[b * BLOCK..(b + 1) * BLOCK].try_into().unwrap();
            if POINTS {
                point_block::<FMA>(mb, cb, c1);
            } else {
                let xb: &[f32; BLOCK] = xs[b * BLOCK..(b + 1) * BLOCK].try_into().unwrap();
                segment_block::<FMA>(mb, xb, cb, consts);
            }
        }
    }
}

/// [`row_kernel`] for a span of `nb` blocks (1..=8).
#[inline(always)]
fn row<const FMA: bool, const POINTS: bool>(
    m: &mut [[f32; BLOCK]; CANVAS / BLOCK],
    terms: Terms<'_>,
    y: usize,
    x0: usize,
    nb: usize,
) {
    macro_rules! go {
        ($n:literal) => {
            row_kernel::<FMA, POINTS, $n>((&mut m[..$n]).try_into().unwrap(), terms, y, x0)
        };
    }
    match nb {
        1 => go!(1),
        2 => go!(2),
        3 => go!(3),
        4 => go!(4),
        5 => go!(5),
        6 => go!(6),
        7 => go!(7),
        8 => go!(8),
        _ => unreachable!("a row has at most {} blocks", CANVAS / BLOCK),
    }
}

/// Renders the primitives row by row into `sink` (see the module documentation).
#[inline(always)]
pub fn rasterise<const FMA: bool, S: RowSink>(prims: &Prims, raster: &mut Raster, sink: &mut S) {
    let floor = ARG_FLOOR as f64;
    let k = prims.k;
    let points = prims.points_only;
    let n = prims.prims.len();
    if raster.cols.len() < n * CANVAS {
        raster.cols.resize(n * CANVAS, 0.0);
        raster.rows.resize(2 * n * CANVAS, 0.0);
    }
    raster.prims.clear();
    raster.lo = [CANVAS as u8; CANVAS];
    raster.hi = [0; CANVAS];
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
        for y in ya..yb {
            raster.lo[y] = raster.lo[y].min(s0 as u8);
            raster.hi[y] = raster.hi[y].max(s1 as u8);
        }
        raster.prims.push(KPrim {
            ya: ya as u32,
            yb: yb as u32,
            ex: p.ex,
            ey: p.ey,
            len: p.len,
            col: (i * CANVAS) as u32,
        });
        // Row terms of every row: points, `c1 = yy^2 - ln(c)`; segments, `c1`, `c2` of
        // `segment_block` (`yy` the row's scaled y relative to `a`).
        let (c1s, c2s) = raster.rows[2 * i * CANVAS..2 * (i + 1) * CANVAS].split_at_mut(CANVAS);
        for ((c1, c2), &ys) in c1s.iter_mut().zip(c2s.iter_mut()).zip(&prims.xs) {
            // ys = (y s) as f32, exactly as the columns' scaled x.
            let yy = ys - p.ay;
            if points {
                *c1 = yy * yy - p.lnc;
            } else {
                *c1 = yy * p.ey - p.axex;
                *c2 = -yy * p.ex - p.axey;
            }
        }
        // Column terms over the whole row (a primitive is evaluated on every block of a row's
        // span): points, the masked offset `x - ax`; segments, `-ln(c)` inside the window and
        // OUTSIDE beyond it.
        let col: &mut [f32; CANVAS] = (&mut raster.cols[i * CANVAS..(i + 1) * CANVAS])
            .try_into()
            .unwrap();
        let (ax, neg_lnc) = (p.ax, -p.lnc);
        if points {
            for (x, (c, &xs)) in col.iter_mut().zip(&prims.xs).enumerate() {
                let inside = (x >= a) & (x < b);
                *c = if inside { xs - ax } else { OUT_D };
            }
        } else {
            for (x, c) in col.iter_mut().enumerate() {
                let inside = (x >= a) & (x < b);
                *c = if inside { neg_lnc } else { OUTSIDE };
            }
        }
    }
    let terms = Terms {
        prims: &raster.prims,
        cols: &raster.cols,
        rows: &raster.rows,
        xs: &prims.xs,
    };
    let mut m = [[FAR; BLOCK]; CANVAS / BLOCK];
    for y in 0..CANVAS {
        let (lo, hi) = (raster.lo[y] as usize, raster.hi[y] as usize);
        if lo >= hi {
            sink.row(y, 0, &[]);
            continue;
        }
        let nb = (hi - lo) / BLOCK;
        if points {
            row::<FMA, true>(&mut m, terms, y, lo, nb);
        } else {
            row::<FMA, false>(&mut m, terms, y, lo, nb);
        }
        sink.row(y, lo, &m[..nb]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A whole plane of values `e^{-cost}` (0 where no row was passed).
    struct Values(Vec<f64>);

    impl RowSink for Values {
        fn row(&mut self, y: usize, x0: usize, costs: &[[f32; BLOCK]]) {
            for (i, &c) in costs.iter().flatten().enumerate() {
                self.0[y * CANVAS + x0 + i] = (-c as f64).exp();
            }
        }
    }

    fn draw_limb(a: Keypoint, b: Keypoint, sigma: f64) -> Values {
        let mut prims = Prims::default();
        prims.reset(sigma);
        prims.limb(a, b);
        let mut v = Values(vec![0.0; CANVAS * CANVAS]);
        rasterise::<false, _>(&prims, &mut Raster::default(), &mut v);
        v
    }

    fn value(p: &Values, x: usize, y: usize) -> f64 {
        p.0[y * CANVAS + x]
    }

    #[test]
    fn limb_matches_distance_to_segment() {
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
        let p = draw_limb(a, b, sigma);
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

    /// Many overlapping primitives (more than a skeleton has, short limbs among them) give the
    /// max-merge of the brute-force Gaussians, each inside its own reference window.
    #[test]
    fn many_primitives_merge_by_max() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for (points, sigma, n) in [
            (false, 8.0, 90),
            (false, 15.0, 12),
            (false, 4.0, 12),
            (true, 8.0, 90),
            (true, 3.0, 12),
        ] {
            let mut prims = Prims::default();
            prims.reset(sigma);
            let mut shapes = Vec::new(); // (a, b, peak) in canvas pixels
            for i in 0..n {
                let a = Keypoint {
                    x: rnd() * 160.0 - 16.0,
                    y: rnd() * 160.0 - 16.0,
                    c: (0.05 + rnd()) as f32,
                };
                let mut b = Keypoint {
                    x: a.x + rnd() * 60.0 - 30.0,
                    y: a.y + rnd() * 60.0 - 30.0,
                    c: (0.05 + rnd()) as f32,
                };
                if i % 9 == 0 {
                    b.x = a.x + 0.4; // shorter than 1 px: a point at a
                }
                if points {
                    prims.point(a.x, a.y, a.c);
                    shapes.push((a, a, a.c as f64));
                } else {
                    prims.limb(a, b);
                    let short = (b.x - a.x).powi(2) + (b.y - a.y).powi(2) < 1.0;
                    let peak = if short { a.c } else { a.c.min(b.c) } as f64;
                    shapes.push((a, if short { a } else { b }, peak));
                }
            }
            let mut got = Values(vec![0.0; CANVAS * CANVAS]);
            rasterise::<false, _>(&prims, &mut Raster::default(), &mut got);
            for y in 0..CANVAS {
                for x in 0..CANVAS {
                    let (px, py) = (x as f64, y as f64);
                    let mut want = 0.0f64;
                    for &(a, b, peak) in &shapes {
                        let (x0, x1) = window(a.x.min(b.x), a.x.max(b.x), sigma);
                        let (y0, y1) = window(a.y.min(b.y), a.y.max(b.y), sigma);
                        if !((x0..x1).contains(&x) && (y0..y1).contains(&y)) {
                            continue;
                        }
                        let (ux, uy) = (b.x - a.x, b.y - a.y);
                        let l2 = ux * ux + uy * uy;
                        let t = if l2 > 0.0 {
                            (((px - a.x) * ux + (py - a.y) * uy) / l2).clamp(0.0, 1.0)
                        } else {
                            0.0
                        };
                        let d2 = (px - a.x - t * ux).powi(2) + (py - a.y - t * uy).powi(2);
                        want = want.max(peak * (-d2 / (2.0 * sigma * sigma)).exp());
                    }
                    let v = value(&got, x, y);
                    if want * 256.0 > 1.01 {
                        assert!(
                            (v - want).abs() < 2e-5 * want.max(1.0),
                            "({x},{y}) {v} vs {want}"
                        );
                    } else {
                        assert!(v * 256.0 < 1.02, "({x},{y}) {v} vs {want}");
                    }
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
