//! Gaussian joint and limb heat planes.
//!
//! A plane of segments (the limb plane) is kept in the log domain: it holds, per pixel, the
//! minimum over its primitives of the cost `d^2 / (2 sigma^2) - ln(c)`; since
//! `max_l c_l e^{-d_l^2/2s^2} = e^{-min_l cost_l}`, one `exp` per pixel at quantisation time
//! gives the reference's max-merged value. A plane of points only (the joint plane) is
//! separable instead: a point's value is `c e^{-dy^2/2s^2}` (one factor per row) times
//! `e^{-dx^2/2s^2}` (one per column), so it is max-merged directly as values, with the `exp`s
//! taken per row and column of each point's window, not per pixel.
//!
//! Every primitive (a joint, a limb, or a limb shorter than 1 px drawn as a point) is evaluated
//! over exactly the reference window (OpenGait: bounds `max(int(lo - 3 sigma), 0)` ..
//! `min(int(hi + 3 sigma) + 1, 128)`, `int()` truncating toward zero), minus the rows where it
//! cannot reach quantisation level 1 (they would be 0 anyway). Coordinates are pre-scaled by
//! `1 / (sigma sqrt 2)` so the cost is `|p - q|^2 - ln(c)`, `q` the nearest point of the
//! primitive (for a segment: the projection clamped to its ends).
//!
//! The plane is handed row by row to a [`RowSink`] (the quantiser, or a float plane in tests)
//! without ever being stored whole. A row covers the blocks of 16 pixels spanned by the
//! primitives that reach it. A pixel outside a primitive's window gets a per-column offset
//! pushing its cost beyond [`FAR`], so the reference windows hold exactly; every primitive is
//! evaluated without per-pixel branches, with the running minima in registers.
//!
//! - Points (the joint plane): every point reaching a row on every block of the row's span
//!   (at most 8 blocks; the span's block count is a compile-time constant of the kernel), as
//!   the product of its row and column factors (0 outside its window), max-merged; the row is
//!   handed on as scaled values `256 x value` ([`RowSink::values`]).
//! - Segments (the limb plane, where sigma 15 windows overlap widely): tiles of 8 rows x 16
//!   pixels. Per tile, each segment's cost is bounded both ways from the distance of the
//!   tile's centre (the distance changes by at most half the tile's diagonal inside it), and
//!   only the segments whose lower bound does not exceed the tile's best upper bound (or the
//!   cost of level 0) are evaluated: the others can lose every pixel's minimum only, so the
//!   quantised plane is exactly the same (docs/performance.md: how many blocks this saves).

use crate::geometry::Keypoint;
use crate::lut::{exp_f32, fmadd, ARG_FLOOR};
use crate::params::{CANVAS, EPS};

/// Cost of a pixel no primitive reaches (quantises to 0).
const FAR: f32 = 1.0e30;
/// Pixels per block; spans are multiples of it.
pub const BLOCK: usize = 16;

/// Receives a plane row by row, every row in order: costs (negated exponent arguments) of the
/// pixels `[x0, x0 + 16 * costs.len())` of row `y`; pixels of the row outside that span are 0
/// (a row no primitive reaches comes with no costs). A plane of points comes as scaled values
/// instead (`256 e^-cost`, [`RowSink::values`]).
pub trait RowSink {
    fn row(&mut self, y: usize, x0: usize, costs: &[[f32; BLOCK]]);
    fn values(&mut self, y: usize, x0: usize, values: &[[f32; BLOCK]]);
}

/// Rows of a band: the plane is built in tiles of `TH` rows x 16 pixels.
const TH: usize = 8;
const BANDS: usize = CANVAS / TH;
const TCOLS: usize = CANVAS / BLOCK;
const TILES: usize = BANDS * TCOLS;

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
    /// Segments only: per primitive and tile, a lower bound of its cost over the tile (+inf:
    /// it does not reach the tile), less the primitive's rounding margin.
    lb: Vec<f32>,
    /// Per tile, a cost that no pixel's minimum exceeds, or beyond which it quantises to 0.
    ub: [f32; TILES],
    /// Per group of 32 primitives and tile, the bits of the primitives evaluated on the tile.
    masks: Vec<u32>,
    /// The costs of one band.
    band: [[[f32; BLOCK]; TCOLS]; TH],
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
            lb: Vec::new(),
            ub: [0.0; TILES],
            masks: Vec::new(),
            band: [[[FAR; BLOCK]; TCOLS]; TH],
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
    /// Scaled centre of every tile, and half a tile's diagonal (scaled).
    tx: [f32; TILES],
    ty: [f32; TILES],
    half: f32,
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
            tx: [0.0; TILES],
            ty: [0.0; TILES],
            half: 0.0,
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
            let (hx, hy) = ((BLOCK - 1) as f64 / 2.0, (TH - 1) as f64 / 2.0);
            for t in 0..TILES {
                let (b, j) = (t / TCOLS, t % TCOLS);
                self.tx[t] = (((j * BLOCK) as f64 + hx) * self.scale) as f32;
                self.ty[t] = (((b * TH) as f64 + hy) * self.scale) as f32;
            }
            self.half = (hx.hypot(hy) * self.scale) as f32;
        }
        self.prims.clear();
        self.points_only = true;
    }

    /// A joint: `c * exp(-d^2 / (2 sigma^2))` around `k`; skipped when `c < 1e-3`.
    pub fn point(&mut self, k: Keypoint) {
        let (mx, my, c) = (k.x, k.y, k.c);
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
            lnc: k.lnc,
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
            self.point(a);
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
            lnc: a.lnc.min(b.lnc),
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

/// A constant table of `len` entries, entry `i` given by `value` (const-evaluable).
macro_rules! table {
    ($len:expr, |$i:ident| $value:expr) => {{
        let mut a = [0; $len];
        let mut $i = 0;
        while $i < $len {
            a[$i] = $value;
            $i += 1;
        }
        a
    }};
}

/// Every row index as a byte.
const ROW_U8: [u8; CANVAS] = table!(CANVAS, |i| i as u8);
/// Every row (column) index as a u32 (window tests in 32-bit lanes, beside f32 terms).
const IDX_U32: [u32; CANVAS] = table!(CANVAS, |i| i as u32);
/// Band and tile column of every tile.
const TILE_BAND: [u32; TILES] = table!(TILES, |t| (t / TCOLS) as u32);
const TILE_COL: [u32; TILES] = table!(TILES, |t| (t % TCOLS) as u32);

/// Column term of a segment outside its window (pushes the cost beyond [`FAR`]).
const OUTSIDE: f32 = 1.0e36;
/// Row term `c2` of a segment on a row it does not reach (its square exceeds [`FAR`]).
const OUT_D: f32 = 1.0e18;

/// Max-merges one point's scaled values `g r` into a block of 16 pixels: `g` the columns'
/// factors `e^-(x - ax)^2` (0 outside the window), `r` the row's `256 c e^-(y - ay)^2`.
///
/// The product is written as `fmadd(g, r, 0)` (the same value, as `g r >= +0`) so that the
/// loop vectorises inside the frame renderers.
#[inline(always)]
fn point_block<const FMA: bool>(m: &mut [f32; BLOCK], g: &[f32; BLOCK], r: f32) {
    for i in 0..BLOCK {
        let v = fmadd::<FMA>(g[i], r, 0.0);
        m[i] = if v > m[i] { v } else { m[i] };
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

/// What the kernels read: the primitives, their column and row terms, the columns' scaled x.
#[derive(Clone, Copy)]
struct Terms<'a> {
    prims: &'a [KPrim],
    cols: &'a [f32],
    rows: &'a [f32],
    xs: &'a [f32; CANVAS],
}

/// The scaled values of `NB` blocks of row `y` from column `x0` into `m`: every point reaching
/// the row on every block (row factors from `rows`, column factors from `cols`).
#[inline(always)]
fn row_kernel<const FMA: bool, const NB: usize>(
    m: &mut [[f32; BLOCK]; NB],
    Terms {
        prims, cols, rows, ..
    }: Terms<'_>,
    y: usize,
    x0: usize,
) {
    *m = [[0.0; BLOCK]; NB];
    for p in prims {
        if (y as u32) < p.ya || (y as u32) >= p.yb {
            continue;
        }
        let col = p.col as usize;
        let c = &cols[col + x0..col + x0 + NB * BLOCK];
        let c1 = rows[2 * col + y];
        for (b, mb) in m.iter_mut().enumerate() {
            let cb: &[f32; BLOCK] = c[b * BLOCK..(b + 1) * BLOCK].try_into().unwrap();
            point_block::<FMA>(mb, cb, c1);
        }
    }
}

/// [`row_kernel`] for a span of `nb` blocks (1..=8).
#[inline(always)]
fn row<const FMA: bool>(
    m: &mut [[f32; BLOCK]; CANVAS / BLOCK],
    terms: Terms<'_>,
    y: usize,
    x0: usize,
    nb: usize,
) {
    macro_rules! go {
        ($n:literal) => {
            row_kernel::<FMA, $n>((&mut m[..$n]).try_into().unwrap(), terms, y, x0)
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

/// Min-merges segment `p`'s costs into the tile of `TH` rows from `y0` and 16 pixels from
/// column `x0`.
#[inline(always)]
fn tile_kernel<const FMA: bool>(
    acc: &mut [[f32; BLOCK]; TH],
    Terms { cols, rows, xs, .. }: Terms<'_>,
    p: &KPrim,
    y0: usize,
    x0: usize,
) {
    let col = p.col as usize;
    let cb: &[f32; BLOCK] = cols[col + x0..col + x0 + BLOCK].try_into().unwrap();
    let xb: &[f32; BLOCK] = xs[x0..x0 + BLOCK].try_into().unwrap();
    let c1s: &[f32; TH] = rows[2 * col + y0..2 * col + y0 + TH].try_into().unwrap();
    let c2s: &[f32; TH] = rows[2 * col + CANVAS + y0..2 * col + CANVAS + y0 + TH]
        .try_into()
        .unwrap();
    for (r, m) in acc.iter_mut().enumerate() {
        segment_block::<FMA>(m, xb, cb, (c1s[r], c2s[r], p.ex, p.ey, p.len));
    }
}

/// The costs of tile `t` (rows from `y0`, pixels from `x0`): the segments selected for it
/// (bit `i` of `masks[g * TILES + t]`: segment `32 g + i`), min-merged.
#[inline(always)]
fn tile<const FMA: bool>(
    terms: Terms<'_>,
    masks: &[u32],
    t: usize,
    y0: usize,
    x0: usize,
) -> [[f32; BLOCK]; TH] {
    let mut acc = [[FAR; BLOCK]; TH];
    for (g, group) in masks.chunks_exact(TILES).enumerate() {
        let mut m = group[t];
        while m != 0 {
            let p = &terms.prims[g * 32 + m.trailing_zeros() as usize];
            m &= m - 1;
            tile_kernel::<FMA>(&mut acc, terms, p, y0, x0);
        }
    }
    acc
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
        raster.lb.resize(n * TILES, 0.0);
    }
    raster.prims.clear();
    raster.lo = [CANVAS as u8; CANVAS];
    raster.hi = [0; CANVAS];
    // No pixel's cost needs to be known beyond the point where it quantises to 0.
    raster.ub = [-ARG_FLOOR; TILES];
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
        // Over all rows, branch-free in bytes (vectorises; a loop over `ya..yb` does not, and
        // a usize row test takes 64-bit lanes): `y - ya < yb - ya` wrapping is `ya <= y < yb`.
        let (ya8, n8, s0, s1) = (ya as u8, yb.saturating_sub(ya) as u8, s0 as u8, s1 as u8);
        for ((lo, hi), &y) in raster.lo.iter_mut().zip(raster.hi.iter_mut()).zip(&ROW_U8) {
            let on = y.wrapping_sub(ya8) < n8;
            *lo = if on { (*lo).min(s0) } else { *lo };
            *hi = if on { (*hi).max(s1) } else { *hi };
        }
        raster.prims.push(KPrim {
            ya: ya as u32,
            yb: yb as u32,
            ex: p.ex,
            ey: p.ey,
            len: p.len,
            col: (i * CANVAS) as u32,
        });
        // Row terms: points, the factor `256 c e^-yy^2` of the rows it reaches (`yy` the row's
        // scaled y relative to `a`); segments, `c1`, `c2` of `segment_block` on every row, with
        // `c2` pushing the cost beyond FAR on the rows the segment does not reach (a tile
        // evaluates all its rows).
        let (c1s, c2s) = raster.rows[2 * i * CANVAS..2 * (i + 1) * CANVAS].split_at_mut(CANVAS);
        let (ay, ex, ey, axex, axey, lnc) = (p.ay, p.ex, p.ey, p.axex, p.axey, p.lnc);
        // Column terms over the whole row (a primitive is evaluated on every block of a row's
        // span or a tile): points, the factor `e^-(x - ax)^2` inside the window and 0 beyond
        // it; segments, `-ln(c)` inside the window and OUTSIDE beyond it.
        let col: &mut [f32; CANVAS] = (&mut raster.cols[i * CANVAS..(i + 1) * CANVAS])
            .try_into()
            .unwrap();
        let (ax, neg_lnc) = (p.ax, -p.lnc);
        if points {
            // ys = (y s) as f32, exactly as the columns' scaled x. The exponent is capped at
            // 80 so that no factor overflows: it only bites for peaks c > e^80, and a capped
            // row still gives level 255 wherever `dx^2 < 80`, i.e. on the whole window for
            // sigma >= 0.12 px. `* 256` is exact.
            let rows = ya..yb.max(ya);
            for (c1, &ys) in c1s[rows.clone()].iter_mut().zip(&prims.xs[rows]) {
                let yy = ys - ay;
                *c1 = exp_f32::<FMA>((lnc - yy * yy).min(80.0)) * 256.0;
            }
            *col = [0.0; CANVAS];
            for (c, &xs) in col[a..b].iter_mut().zip(&prims.xs[a..b]) {
                let d = xs - ax;
                *c = exp_f32::<FMA>(-(d * d));
            }
        } else {
            // Window tests as `i - lo < hi - lo` (wrapping) on u32 indices: a usize test
            // takes 64-bit lanes.
            let (ya32, ny32) = (ya as u32, yb.saturating_sub(ya) as u32);
            for (((c1, c2), &ys), &y) in c1s
                .iter_mut()
                .zip(c2s.iter_mut())
                .zip(&prims.xs)
                .zip(&IDX_U32)
            {
                let yy = ys - ay;
                let on = y.wrapping_sub(ya32) < ny32;
                *c1 = yy * ey - axex;
                *c2 = if on { -yy * ex - axey } else { OUT_D };
            }
            let (a32, nx32) = (a as u32, b.saturating_sub(a) as u32);
            for (c, &x) in col.iter_mut().zip(&IDX_U32) {
                let inside = x.wrapping_sub(a32) < nx32;
                *c = if inside { neg_lnc } else { OUTSIDE };
            }
            let lb = &mut raster.lb[i * TILES..(i + 1) * TILES];
            tile_bounds(prims, p, (ya, yb), lb, &mut raster.ub);
        }
    }
    if points {
        draw_rows::<FMA, S>(raster, &prims.xs, sink);
    } else {
        draw_tiles::<FMA, S>(raster, &prims.xs, n, sink);
    }
}

/// A plane of points (the joint plane): row by row in scaled values, every point reaching a row
/// on all blocks of its span.
#[inline(always)]
fn draw_rows<const FMA: bool, S: RowSink>(raster: &Raster, xs: &[f32; CANVAS], sink: &mut S) {
    let terms = Terms {
        prims: &raster.prims,
        cols: &raster.cols,
        rows: &raster.rows,
        xs,
    };
    let mut m = [[0.0; BLOCK]; CANVAS / BLOCK];
    for y in 0..CANVAS {
        let (lo, hi) = (raster.lo[y] as usize, raster.hi[y] as usize);
        if lo >= hi {
            sink.row(y, 0, &[]);
            continue;
        }
        let nb = (hi - lo) / BLOCK;
        row::<FMA>(&mut m, terms, y, lo, nb);
        sink.values(y, lo, &m[..nb]);
    }
}

/// The limb plane: band by band, each tile evaluating the segments selected for it (those
/// whose lower bound there does not exceed the tile's upper bound; the others lose every
/// pixel's minimum, or leave it beyond level 0).
#[inline(always)]
fn draw_tiles<const FMA: bool, S: RowSink>(
    raster: &mut Raster,
    xs: &[f32; CANVAS],
    n: usize,
    sink: &mut S,
) {
    raster.masks.clear();
    raster.masks.resize(n.div_ceil(32) * TILES, 0);
    for (i, lb) in raster.lb[..n * TILES].chunks_exact(TILES).enumerate() {
        let (bit, masks) = (
            1u32 << (i % 32),
            &mut raster.masks[i / 32 * TILES..][..TILES],
        );
        for ((m, &l), &u) in masks.iter_mut().zip(lb).zip(&raster.ub) {
            *m |= if l <= u { bit } else { 0 };
        }
    }
    let terms = Terms {
        prims: &raster.prims,
        cols: &raster.cols,
        rows: &raster.rows,
        xs,
    };
    for band in 0..BANDS {
        let y0 = band * TH;
        let (mut lo, mut hi) = (CANVAS, 0);
        for y in y0..y0 + TH {
            if raster.lo[y] < raster.hi[y] {
                lo = lo.min(raster.lo[y] as usize);
                hi = hi.max(raster.hi[y] as usize);
            }
        }
        for j in lo / BLOCK..hi / BLOCK {
            let acc = tile::<FMA>(terms, &raster.masks, band * TCOLS + j, y0, j * BLOCK);
            for (row, a) in raster.band.iter_mut().zip(acc) {
                row[j] = a;
            }
        }
        for (r, row) in raster.band.iter().enumerate() {
            let y = y0 + r;
            let (lo, hi) = (raster.lo[y] as usize, raster.hi[y] as usize);
            if lo < hi {
                sink.row(y, lo, &row[lo / BLOCK..hi / BLOCK]);
            } else {
                sink.row(y, 0, &[]);
            }
        }
    }
}

/// Per tile, a lower bound of primitive `p`'s cost there into `lb` (+inf where it does not
/// reach the tile), and its upper bound into `ub` where it covers the tile and is lower. The
/// distance to a primitive changes by at most half the tile's diagonal within the tile, so
/// the distance from the tile's centre bounds it both ways; both bounds are widened by a
/// margin for the rounding of the f32 costs (from the primitive's coordinate magnitudes), and
/// a primitive too far out for a meaningful margin is evaluated on every tile it reaches.
#[inline(always)]
fn tile_bounds(
    prims: &Prims,
    p: &Prim,
    (ya, yb): (usize, usize),
    lb: &mut [f32],
    ub: &mut [f32; TILES],
) {
    // Bit b / j: the primitive reaches (covers) band b / tile column j, i.e. the cells
    // `[i size, (i + 1) size)` that meet (lie inside) `[lo, hi)`.
    let bits = |size: usize, lo: usize, hi: usize, cover: bool| -> u32 {
        let (first, end) = if cover {
            (lo.div_ceil(size), hi / size)
        } else {
            (lo / size, hi.div_ceil(size))
        };
        let ones = |k: usize| if k >= 32 { u32::MAX } else { (1u32 << k) - 1 };
        if end > first {
            ones(end) & !ones(first)
        } else {
            0
        }
    };
    let reach_rows = bits(TH, ya, yb, false);
    let cover_rows = bits(TH, ya, yb, true);
    let reach_cols = bits(BLOCK, p.x0, p.x1, false);
    let cover_cols = bits(BLOCK, p.x0, p.x1, true);
    // Whether the primitive reaches (covers) a tile, from its band and column bits (in u32
    // lanes: a usize tile index would take 64-bit lanes).
    let on = |rows: u32, cols: u32, band: u32, col: u32| ((rows >> band) & (cols >> col) & 1) != 0;
    let size = (p.ax.abs().max(p.ay.abs()) + p.len) as f64 + CANVAS as f64 * prims.scale;
    let margin =
        1e-4 + 32.0 * f32::EPSILON as f64 * (size * size + 12.0 + 3.0 * (p.lnc as f64).abs());
    if margin.is_nan() || margin >= 1.0 {
        for (l, (&band, &col)) in lb.iter_mut().zip(TILE_BAND.iter().zip(&TILE_COL)) {
            *l = if on(reach_rows, reach_cols, band, col) {
                f32::NEG_INFINITY
            } else {
                f32::INFINITY
            };
        }
        return;
    }
    let (margin, half) = (margin as f32, prims.half);
    // Fields read once (read in the loop, the compiler may gather them on every lane).
    let (ax, ay, ex, ey, len, lnc) = (p.ax, p.ay, p.ex, p.ey, p.len, p.lnc);
    // Only the bands the primitive reaches: beyond them it bounds nothing (+inf).
    let (t0, t1) = if reach_rows == 0 {
        (0, 0)
    } else {
        let first = reach_rows.trailing_zeros() as usize;
        let end = (u32::BITS - reach_rows.leading_zeros()) as usize;
        (first * TCOLS, end * TCOLS)
    };
    lb[..t0].fill(f32::INFINITY);
    lb[t1..].fill(f32::INFINITY);
    let tiles = prims.tx[t0..t1]
        .iter()
        .zip(&prims.ty[t0..t1])
        .zip(TILE_BAND[t0..t1].iter().zip(&TILE_COL[t0..t1]));
    for ((l, u), ((&tx, &ty), (&band, &col))) in
        lb[t0..t1].iter_mut().zip(&mut ub[t0..t1]).zip(tiles)
    {
        let dx = tx - ax;
        let dy = ty - ay;
        let along = dx * ex + dy * ey;
        let perp = dy * ex - dx * ey;
        let e = along - along.max(0.0).min(len);
        let d = (perp * perp + e * e).sqrt();
        let near = (d - half).max(0.0);
        let far = d + half;
        let lo = near * near - lnc - margin;
        *l = if on(reach_rows, reach_cols, band, col) {
            lo
        } else {
            f32::INFINITY
        };
        let hi = far * far - lnc + margin;
        let lower = on(cover_rows, cover_cols, band, col) & (hi < *u);
        *u = if lower { hi } else { *u };
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

        fn values(&mut self, y: usize, x0: usize, values: &[[f32; BLOCK]]) {
            for (i, &v) in values.iter().flatten().enumerate() {
                self.0[y * CANVAS + x0 + i] = v as f64 / 256.0;
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
        let a = Keypoint::new(40.3, 30.7, 0.8);
        let b = Keypoint::new(70.1, 90.2, 0.9);
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

    /// Draws `shapes` (limbs, or points at their `a`) and checks every pixel against the
    /// brute-force max-merge of their Gaussians, each inside its own reference window.
    fn assert_matches_brute_force(points: bool, sigma: f64, shapes: &[(Keypoint, Keypoint)]) {
        let mut prims = Prims::default();
        prims.reset(sigma);
        let mut want_shapes = Vec::new(); // (a, b, peak) in canvas pixels
        for &(a, b) in shapes {
            if points {
                prims.point(a);
                want_shapes.push((a, a, a.c as f64));
            } else {
                prims.limb(a, b);
                let short = (b.x - a.x).powi(2) + (b.y - a.y).powi(2) < 1.0;
                let peak = if short { a.c } else { a.c.min(b.c) } as f64;
                want_shapes.push((a, if short { a } else { b }, peak));
            }
        }
        let mut got = Values(vec![0.0; CANVAS * CANVAS]);
        rasterise::<false, _>(&prims, &mut Raster::default(), &mut got);
        for y in 0..CANVAS {
            for x in 0..CANVAS {
                let (px, py) = (x as f64, y as f64);
                let mut want = 0.0f64;
                for &(a, b, peak) in &want_shapes {
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

    fn rng(seed: u64) -> impl FnMut() -> f64 {
        let mut next = crate::testutil::xorshift(seed);
        move || (next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Many overlapping primitives (more than a skeleton has, so more than one group of 32
    /// segments per tile; short limbs among them) give the brute-force max-merge.
    #[test]
    fn many_primitives_merge_by_max() {
        let mut rnd = rng(0x2545_f491_4f6c_dd1d);
        for (points, sigma, n) in [
            (false, 8.0, 90),
            (false, 15.0, 12),
            (false, 4.0, 12),
            (true, 8.0, 90),
            (true, 3.0, 12),
        ] {
            let shapes: Vec<_> = (0..n)
                .map(|i| {
                    let a = Keypoint::new(
                        rnd() * 160.0 - 16.0,
                        rnd() * 160.0 - 16.0,
                        (0.05 + rnd()) as f32,
                    );
                    let mut b = Keypoint::new(
                        a.x + rnd() * 60.0 - 30.0,
                        a.y + rnd() * 60.0 - 30.0,
                        (0.05 + rnd()) as f32,
                    );
                    if i % 9 == 0 {
                        b.x = a.x + 0.4; // shorter than 1 px: a point at a
                    }
                    (a, b)
                })
                .collect();
            assert_matches_brute_force(points, sigma, &shapes);
        }
    }

    /// Segments reaching far off the canvas (large rounding margins on their tile bounds, or
    /// none: evaluated on every tile they reach) beside ordinary ones, and peaks far above 1,
    /// still give the brute-force max-merge; so do points with those peaks.
    #[test]
    fn far_and_bright_segments_merge_by_max() {
        let mut rnd = rng(0x9e37_79b9_7f4a_7c15);
        for sigma in [15.0, 8.0, 2.0] {
            let mut shapes = Vec::new();
            for i in 0..24 {
                let a = Keypoint::new(
                    rnd() * 128.0,
                    rnd() * 128.0,
                    (0.05 + rnd() * if i % 5 == 0 { 50.0 } else { 1.0 }) as f32,
                );
                let far = [1e3, -3e4, 2e6, 0.0][i % 4];
                let b = Keypoint::new(
                    a.x + rnd() * 40.0 - 20.0 + far,
                    a.y + rnd() * 40.0 - 20.0 - 0.5 * far,
                    (0.05 + rnd()) as f32,
                );
                shapes.push((a, b));
            }
            assert_matches_brute_force(false, sigma, &shapes);
            assert_matches_brute_force(true, sigma, &shapes);
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
