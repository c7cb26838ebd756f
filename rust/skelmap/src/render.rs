//! One frame end to end (normalise, draw, quantise, crop, resize) and the parallel batch.

use std::borrow::Cow;

use rayon::prelude::*;

use crate::draw::{rasterise, Prims, Raster, RowSink, BLOCK};
use crate::geometry::{normalise_frame, Keypoint};
use crate::impute::impute_linear;
use crate::knn::{knn_impute, Outcome, Real, COLS};
use crate::lut::{low_formula_ok, quantise_blocks};
use crate::params::{
    check_sequence, to_f32, Alignment, Geometry, Head, Impute, Params, CANVAS, CHANNEL_BYTES,
    FRAME_BYTES, FRAME_FLOATS, HEAD, KP_FLOATS, NUM_JOINTS,
};
use crate::resize::{resize_area, warm_up, Crop, ResizeScratch};
use crate::simd::{self, Simd};

/// Per-worker buffers, reused from frame to frame.
#[derive(Default)]
pub struct Workspace {
    pub prims: [Prims; 2],
    pub raster: Raster,
    pub grey: [Grey; 2],
    pub scratch: ResizeScratch,
}

/// One channel's 128 x 128 grey canvas (every row rewritten by each frame).
pub struct Grey {
    pub px: Vec<u8>,
    /// First and last rows holding a non-zero pixel.
    pub rows: Option<(usize, usize)>,
    /// Columns `[lo, hi)` outside which every pixel is 0 (multiples of 16; empty if `rows`
    /// is `None`).
    pub cols: (usize, usize),
}

impl Default for Grey {
    fn default() -> Self {
        Self {
            px: vec![0; CANVAS * CANVAS],
            rows: None,
            cols: (CANVAS, 0),
        }
    }
}

/// Quantises rows of costs (or scaled values) into a [`Grey`] canvas (matplotlib gray lookup
/// of `min(floor(256 e^a), 255)`), tracking its non-zero rows and the columns they span.
/// `WIDE`: the AVX-512 quantiser (only instantiated by the AVX-512 frame renderer).
struct Quantiser<'a, const FMA: bool, const WIDE: bool> {
    grey: &'a mut Grey,
    fast: bool,
}

impl<const FMA: bool, const WIDE: bool> RowSink for Quantiser<'_, FMA, WIDE> {
    #[inline(always)]
    fn row(&mut self, y: usize, x0: usize, costs: &[[f32; BLOCK]]) {
        self.put::<false>(y, x0, costs);
    }

    #[inline(always)]
    fn values(&mut self, y: usize, x0: usize, values: &[[f32; BLOCK]]) {
        self.put::<true>(y, x0, values);
    }
}

impl<const FMA: bool, const WIDE: bool> Quantiser<'_, FMA, WIDE> {
    /// Quantises row `y`'s costs, or with `VALUES` its scaled values (see [`RowSink`]).
    #[inline(always)]
    fn put<const VALUES: bool>(&mut self, y: usize, x0: usize, blocks: &[[f32; BLOCK]]) {
        let x1 = x0 + blocks.len() * BLOCK;
        let g: &mut [u8; CANVAS] = (&mut self.grey.px[y * CANVAS..(y + 1) * CANVAS])
            .try_into()
            .unwrap();
        *g = [0; CANVAS];
        let out = &mut g[x0..x1];
        #[cfg(target_arch = "x86_64")]
        // SAFETY: a WIDE quantiser is only made by `draw`, whose callers guarantee AVX-512;
        // `fast` is `low_formula_ok()`.
        let any = if WIDE && self.fast {
            unsafe { simd::avx512::quantise_blocks::<VALUES>(blocks, out) }
        } else {
            quantise_blocks::<FMA, VALUES>(blocks, out, self.fast)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let any = quantise_blocks::<FMA, VALUES>(blocks, out, self.fast);
        if any {
            self.grey.rows = Some(match self.grey.rows {
                None => (y, y),
                Some((first, _)) => (first, y),
            });
            let (lo, hi) = self.grey.cols;
            self.grey.cols = (lo.min(x0), hi.max(x1));
        }
    }
}

/// Draws plane `ch` of the frame's primitives onto its grey canvas; returns the first and last
/// non-zero rows. `WIDE` selects the AVX-512 quantiser.
///
/// # Safety
/// With `WIDE`, the CPU must have AVX-512 ([`Simd::detect`] returned [`Simd::Avx512`]).
#[inline(always)]
pub unsafe fn draw<const FMA: bool, const WIDE: bool>(
    ws: &mut Workspace,
    ch: usize,
) -> Option<(usize, usize)> {
    let grey = &mut ws.grey[ch];
    grey.rows = None;
    grey.cols = (CANVAS, 0);
    let mut sink = Quantiser::<FMA, WIDE> {
        grey,
        fast: low_formula_ok(),
    };
    rasterise::<FMA, _>(&ws.prims[ch], &mut ws.raster, &mut sink);
    ws.grey[ch].rows
}

/// The crop of rows `[top, bottom]` for a geometry.
#[inline(always)]
pub fn crop_of(top: usize, bottom: usize, geometry: Geometry) -> Crop {
    let h = bottom - top + 1;
    let centre = (CANVAS / 2) as isize;
    let c0 = centre - (h / 2) as isize;
    match geometry {
        Geometry::Square => {
            let start = c0.max(0);
            let end = (centre + (h / 2) as isize + 1).min(CANVAS as isize);
            Crop {
                top,
                h,
                c0: start,
                w: (end - start) as usize,
            }
        }
        Geometry::Aspect => Crop { top, h, c0, w: h },
    }
}

/// Renders one frame (see [`render_frame`]); `FMA` and `WIDE` select the build ([`simd`]).
#[inline(always)]
pub(crate) fn render_frame_inner<const FMA: bool, const WIDE: bool>(
    frame: Frame<'_>,
    p: &Params,
    ws: &mut Workspace,
    out: &mut [u8],
) {
    debug_assert_eq!(out.len(), FRAME_BYTES);
    let counted = p.head.counted();
    let normalised = match frame {
        Frame::F32(f) => normalise_frame(f, &counted),
        Frame::F64(f) => normalise_frame(f, &counted),
    };
    let Some(mut kps) = normalised else {
        out.fill(0);
        return;
    };
    if p.head != Head::Keep {
        for k in &mut kps[HEAD] {
            *k = Keypoint::new(k.x, k.y, 0.0); // drawn nowhere
        }
    }
    ws.prims[0].reset(p.sigma_limb);
    for &(a, b) in &p.limbs {
        ws.prims[0].limb(kps[a], kps[b]);
    }
    ws.prims[1].reset(p.sigma_joint);
    for (j, k) in kps.iter().enumerate().take(NUM_JOINTS) {
        if p.joints[j] {
            ws.prims[1].point(*k);
        }
    }
    // SAFETY: WIDE is only set by the AVX-512 build (`simd::render_frame`), chosen after
    // `Simd::detect` found AVX-512.
    let mut rows = unsafe { [draw::<FMA, WIDE>(ws, 0), draw::<FMA, WIDE>(ws, 1)] };
    if p.alignment == Alignment::Shared {
        if let (Some(a), Some(b)) = (rows[0], rows[1]) {
            let union = (a.0.min(b.0), a.1.max(b.1));
            rows = [Some(union), Some(union)];
        }
    }
    for (ch, r) in rows.iter().enumerate() {
        let o = &mut out[ch * CHANNEL_BYTES..(ch + 1) * CHANNEL_BYTES];
        match r {
            Some((top, bottom)) => {
                let crop = crop_of(*top, *bottom, p.geometry);
                // SAFETY: as for `draw` above; the FMA variants are compiled for AVX2 CPUs only.
                let g = &ws.grey[ch];
                unsafe { resize_area::<FMA, WIDE>(&g.px, g.cols, crop, o, &mut ws.scratch) };
            }
            None => o.fill(0),
        }
    }
}

/// One frame `[17, 3]` in its input float type.
#[derive(Clone, Copy, Debug)]
pub enum Frame<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

impl<'a> From<&'a [f32]> for Frame<'a> {
    fn from(f: &'a [f32]) -> Self {
        Self::F32(f)
    }
}

impl<'a> From<&'a [f64]> for Frame<'a> {
    fn from(f: &'a [f64]) -> Self {
        Self::F64(f)
    }
}

/// Renders one frame `[17, 3]` (already imputed, float32 or float64) into `out`
/// (`[2, 64, 64]`) with the given variant, which must come from [`Simd::detect`] (or be
/// `Generic`).
pub fn render_frame<'a>(
    frame: impl Into<Frame<'a>>,
    p: &Params,
    ws: &mut Workspace,
    out: &mut [u8],
    simd: Simd,
) {
    crate::simd::render_frame(frame.into(), p, ws, out, simd)
}

/// Flat `[T, 17, 3]` values in the input's float type.
pub enum Coords<'a> {
    F32(Cow<'a, [f32]>),
    F64(Cow<'a, [f64]>),
}

/// A sequence to render: flat `[T, 17, 3]` data.
pub struct Sequence<'a> {
    pub data: Coords<'a>,
    pub frames: usize,
}

impl<'a> Sequence<'a> {
    /// A float32 sequence.
    pub fn f32(data: impl Into<Cow<'a, [f32]>>, frames: usize) -> Self {
        Self {
            data: Coords::F32(data.into()),
            frames,
        }
    }

    /// A float64 sequence.
    pub fn f64(data: impl Into<Cow<'a, [f64]>>, frames: usize) -> Self {
        Self {
            data: Coords::F64(data.into()),
            frames,
        }
    }

    /// The checked values as float32 (a float64 sequence rounded, [`to_f32`]).
    pub fn checked_f32(&self) -> Result<Cow<'_, [f32]>, String> {
        match &self.data {
            Coords::F32(d) => {
                check_sequence(d, self.frames)?;
                Ok(Cow::Borrowed(&d[..]))
            }
            Coords::F64(d) => {
                check_sequence(d, self.frames)?;
                to_f32(d).map(Cow::Owned)
            }
        }
    }
}

/// An error about one sequence of a batch.
#[derive(Debug)]
pub struct SeqError {
    pub index: usize,
    pub message: String,
}

/// Runs `f` on a fresh pool of `threads` workers (0 = all cores), or inline for 1 thread.
pub fn with_pool<T: Send>(threads: usize, f: impl FnOnce(bool) -> T + Send) -> Result<T, String> {
    let n = if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        threads
    };
    if n <= 1 {
        return Ok(f(false));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("skelmap-{i}"))
        .build()
        .map_err(|e| format!("cannot start {n} render threads: {e}"))?;
    Ok(pool.install(|| f(true)))
}

/// Whether any keypoint of a flat `[T, 17, 3]` sequence is missing (x == 0 and y == 0).
fn has_missing(data: &[f32]) -> bool {
    data.chunks_exact(3).any(|k| k[0] == 0.0 && k[1] == 0.0)
}

/// OpenGait's KNN imputation of a flat `[T, 17, 3]` sequence in its float type: the imputed
/// copy, or `None` when it stays as it is (nothing missing, or a coordinate missing in every
/// frame: see [`crate::knn`]).
pub fn impute_knn<F: Real>(data: &[F], frames: usize) -> Option<Vec<F>> {
    let coords: Vec<F> = data
        .chunks_exact(KP_FLOATS)
        .flat_map(|k| [k[0], k[1]])
        .collect();
    debug_assert_eq!(coords.len(), frames * COLS);
    match knn_impute(&coords, frames) {
        Outcome::Imputed(xy) => {
            let mut out = data.to_vec();
            for (k, xy) in out.chunks_exact_mut(KP_FLOATS).zip(xy.chunks_exact(2)) {
                k[..2].copy_from_slice(xy);
            }
            Some(out)
        }
        Outcome::Complete | Outcome::AllMissingColumn(_) => None,
    }
}

/// A sequence ready to draw: checked and imputed, in the float type it is drawn from.
pub enum Prepared<'a> {
    F32(Cow<'a, [f32]>),
    F64(Cow<'a, [f64]>),
}

impl Prepared<'_> {
    /// Its frames.
    pub fn frames(&self) -> Vec<Frame<'_>> {
        match self {
            Self::F32(d) => d.chunks_exact(FRAME_FLOATS).map(Frame::F32).collect(),
            Self::F64(d) => d.chunks_exact(FRAME_FLOATS).map(Frame::F64).collect(),
        }
    }
}

/// One sequence checked and imputed (`impute`): float32 input stays float32, float64 stays
/// float64 (linear imputation works in float32: its result is float32).
pub fn prepare_one<'a>(s: &'a Sequence<'a>, impute: Impute) -> Result<Prepared<'a>, String> {
    if let (Coords::F64(d), Impute::Knn | Impute::None) = (&s.data, impute) {
        check_sequence(d, s.frames)?;
        return Ok(Prepared::F64(match impute_knn_if(impute, d, s.frames) {
            Some(imputed) => Cow::Owned(imputed),
            None => Cow::Borrowed(&d[..]),
        }));
    }
    let data = s.checked_f32()?;
    Ok(Prepared::F32(match impute {
        Impute::Linear if has_missing(&data) => Cow::Owned(impute_linear(&data, s.frames)?),
        _ => match impute_knn_if(impute, &data, s.frames) {
            Some(imputed) => Cow::Owned(imputed),
            None => data,
        },
    }))
}

/// [`impute_knn`] when `impute` is KNN.
fn impute_knn_if<F: Real>(impute: Impute, data: &[F], frames: usize) -> Option<Vec<F>> {
    (impute == Impute::Knn)
        .then(|| impute_knn(data, frames))
        .flatten()
}

/// Validates and (optionally) imputes every sequence; errors name the first bad sequence.
pub fn prepare<'a>(
    seqs: &'a [Sequence<'a>],
    impute: Impute,
    parallel: bool,
) -> Result<Vec<Prepared<'a>>, SeqError> {
    let one = |(i, s): (usize, &'a Sequence<'a>)| -> Result<Prepared<'a>, SeqError> {
        prepare_one(s, impute).map_err(|message| SeqError { index: i, message })
    };
    let results: Vec<_> = if parallel {
        seqs.par_iter().enumerate().map(one).collect()
    } else {
        seqs.iter().enumerate().map(one).collect()
    };
    results.into_iter().collect()
}

/// A zeroed buffer for the rendered frames. On Linux its interior is advised onto transparent
/// huge pages (`MADV_HUGEPAGE`, honoured where the system allows it): a batch of maps is
/// written once, front to back, and 2 MiB pages save a page fault per 4 KiB written.
fn zeroed_output(len: usize) -> Vec<u8> {
    let out = vec![0u8; len]; // calloc: pages are zeroed when first touched
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let base = out.as_ptr() as usize;
        let (start, end) = (base.next_multiple_of(HUGE), (base + len) / HUGE * HUGE);
        if end > start {
            // SAFETY: advice only (the contents are unchanged), on whole pages inside `out`.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
    out
}

/// Renders all frames of all sequences, concatenated: `[sum T, 2, 64, 64]` flat.
pub fn render_batch(
    seqs: &[Sequence<'_>],
    p: &Params,
    threads: usize,
) -> Result<Vec<u8>, SeqError> {
    let frames: usize = seqs.iter().map(|s| s.frames).sum();
    let mut out = zeroed_output(frames * FRAME_BYTES);
    render_batch_into(seqs, p, threads, &mut out)?;
    Ok(out)
}

/// [`render_batch`] into `out` (`sum T * FRAME_BYTES` bytes, e.g. a buffer reused from batch to
/// batch: fresh memory costs a page fault and the kernel's zeroing per page). Every sequence is
/// validated before the first byte is written, so a bad batch leaves `out` untouched.
pub fn render_batch_into(
    seqs: &[Sequence<'_>],
    p: &Params,
    threads: usize,
    out: &mut [u8],
) -> Result<(), SeqError> {
    let total: usize = seqs.iter().map(|s| s.frames).sum();
    if out.len() != total * FRAME_BYTES {
        return Err(SeqError {
            index: usize::MAX,
            message: format!(
                "output buffer holds {} bytes, {total} frames need {}",
                out.len(),
                total * FRAME_BYTES
            ),
        });
    }
    warm_up();
    let simd = Simd::detect();
    let job = |parallel: bool| -> Result<(), SeqError> {
        let data = prepare(seqs, p.impute, parallel)?;
        let frames: Vec<Frame<'_>> = data.iter().flat_map(|d| d.frames()).collect();
        if parallel {
            out.par_chunks_mut(FRAME_BYTES)
                .zip(frames.par_iter())
                .with_min_len(16)
                .for_each_init(Workspace::default, |ws, (o, &f)| {
                    render_frame(f, p, ws, o, simd)
                });
        } else {
            let mut ws = Workspace::default();
            for (o, &f) in out.chunks_exact_mut(FRAME_BYTES).zip(&frames) {
                render_frame(f, p, &mut ws, o, simd);
            }
        }
        Ok(())
    };
    with_pool(threads, job).map_err(|message| SeqError {
        index: usize::MAX,
        message,
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walker(frames: usize) -> Vec<f32> {
        crate::walker::walker(frames, false)
    }

    #[test]
    fn variants_agree() {
        let data = walker(8);
        let p = Params::reference();
        let mut ws = Workspace::default();
        let mut a = vec![0u8; FRAME_BYTES];
        let mut b = vec![0u8; FRAME_BYTES];
        for f in data.chunks_exact(FRAME_FLOATS) {
            render_frame(f, &p, &mut ws, &mut a, Simd::Generic);
            render_frame(f, &p, &mut ws, &mut b, Simd::detect());
            let d = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (*x as i32 - *y as i32).abs())
                .max()
                .unwrap();
            assert!(d <= 1, "variants differ by {d}");
            assert!(a.iter().any(|&v| v > 0));
        }
    }

    #[test]
    fn degenerate_frame_is_empty() {
        let mut data = walker(1);
        for j in 0..NUM_JOINTS {
            data[j * 3 + 1] = 7.0;
        }
        let seqs = [Sequence::f32(&data[..], 1)];
        let out = render_batch(&seqs, &Params::reference(), 1).unwrap();
        assert!(out.iter().all(|&v| v == 0));
    }

    #[test]
    fn threads_give_identical_output() {
        let data = walker(40);
        let seqs = [
            Sequence::f32(&data[..], 40),
            Sequence::f32(&data[..FRAME_FLOATS * 3], 3),
        ];
        let p = Params::reference();
        let a = render_batch(&seqs, &p, 1).unwrap();
        let b = render_batch(&seqs, &p, 2).unwrap();
        assert_eq!(a.len(), 43 * FRAME_BYTES);
        assert!(a == b);
        let mut c = vec![7u8; a.len()];
        render_batch_into(&seqs, &p, 2, &mut c).unwrap();
        assert!(a == c, "rendering into a used buffer rewrites every byte");
    }

    #[test]
    fn bad_sequence_is_reported_by_index() {
        let data = walker(2);
        let mut bad = data.clone();
        bad[5] = f32::NAN;
        let seqs = [Sequence::f32(&data[..], 2), Sequence::f32(&bad[..], 2)];
        let e = render_batch(&seqs, &Params::reference(), 1).unwrap_err();
        assert_eq!(e.index, 1);
        assert!(e.message.contains("non-finite"), "{}", e.message);
        let mut out = vec![7u8; 4 * FRAME_BYTES];
        let e = render_batch_into(&seqs, &Params::reference(), 2, &mut out).unwrap_err();
        assert_eq!(e.index, 1);
        assert!(
            out.iter().all(|&v| v == 7),
            "a bad batch leaves the buffer untouched"
        );
        let e = render_batch_into(&seqs, &Params::reference(), 1, &mut out[1..]).unwrap_err();
        assert!(e.message.contains("output buffer"), "{}", e.message);
    }

    /// `head`: zeroed scores hide the head but keep its height in the normalisation; removal
    /// also drops it from the normalisation (a taller body on the canvas).
    #[test]
    fn head_modes() {
        let data = walker(1);
        let mut p = Params::reference();
        let render = |p: &Params| {
            let mut ws = Workspace::default();
            let mut out = vec![0u8; FRAME_BYTES];
            render_frame(&data[..], p, &mut ws, &mut out, Simd::Generic);
            out
        };
        let keep = render(&p);
        p.head = Head::ZeroScores;
        let zeroed = render(&p);
        // The same frame with the head scores zeroed by hand.
        let mut by_hand = data.clone();
        for j in HEAD {
            by_hand[j * KP_FLOATS + 2] = 0.0;
        }
        let mut ws = Workspace::default();
        let mut want = vec![0u8; FRAME_BYTES];
        render_frame(
            &by_hand[..],
            &Params::reference(),
            &mut ws,
            &mut want,
            Simd::Generic,
        );
        assert_eq!(zeroed, want);
        assert_ne!(zeroed, keep);
        p.head = Head::Remove;
        let removed = render(&p);
        assert_ne!(removed, zeroed);
        // Removed, the body keypoints alone span the 85 px (with the head, fewer).
        let extent = |head: Head| {
            let k = normalise_frame(&data, &head.counted()).unwrap();
            let ys = k[5..].iter().map(|k| k.y);
            ys.clone().fold(f64::MIN, f64::max) - ys.fold(f64::MAX, f64::min)
        };
        assert!(
            (extent(Head::Remove) - 85.0).abs() < 1e-4,
            "float32 arithmetic"
        );
        assert!(extent(Head::ZeroScores) < 80.0);
        assert!(removed.iter().any(|&v| v > 0));
    }

    /// KNN imputation runs on float64 input in float64 and on float32 in float32; complete
    /// sequences render nearly alike from either dtype (normalised in their own precision).
    #[test]
    fn knn_in_both_dtypes() {
        let data = walker(12);
        let wide: Vec<f64> = data.iter().map(|&v| v as f64).collect();
        let mut p = Params::reference();
        p.impute = Impute::Knn;
        let a = render_batch(&[Sequence::f32(&data[..], 12)], &p, 1).unwrap();
        let b = render_batch(&[Sequence::f64(&wide[..], 12)], &p, 1).unwrap();
        let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert!(a.iter().zip(&b).all(|(&x, &y)| x.abs_diff(y) <= 1));
        assert!(differ * 10_000 < a.len(), "{differ} pixels differ");
        let mut holes = data.clone();
        holes[3 * FRAME_FLOATS + 9 * 3] = 0.0; // frame 3, x of keypoint 9
        let imputed = impute_knn(&holes, 12).expect("imputed");
        assert!(imputed[3 * FRAME_FLOATS + 9 * 3] > 0.0);
        assert_eq!(
            imputed[3 * FRAME_FLOATS + 9 * 3 + 1],
            holes[3 * FRAME_FLOATS + 9 * 3 + 1]
        );
        let none = render_batch(&[Sequence::f32(&holes[..], 12)], &Params::reference(), 1);
        let knn = render_batch(&[Sequence::f32(&holes[..], 12)], &p, 1);
        assert!(
            none.unwrap() != knn.unwrap(),
            "the hole is filled before drawing"
        );
    }
}
