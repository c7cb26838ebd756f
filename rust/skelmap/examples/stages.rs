//! Stage timings of the frame renderer (development aid):
//! `cargo run --release --example stages` (per frame, microseconds, one thread, best of 30;
//! `POSES=file` times other poses, see [`poses`]).
//!
//! The stages are this example's own instance of the renderer's code; `whole frames` times the
//! library's entry point [`render_frame`], the figure that counts (the compiler may build the
//! two instances differently). `SPLIT=1` also times whole frames with only joints, only limbs,
//! or nothing to draw; `WHOLE=n` times only whole frames of the reference settings (`SETTINGS=default`:
//! the default settings), `n` passes (for a profiler).
use std::time::Instant;

use _skelmap::geometry::normalise_frame;
use _skelmap::params::{Alignment, Geometry, Impute, Params, COCO_LIMBS, FRAME_FLOATS};
use _skelmap::render::{crop_of, draw, render_frame, Workspace};
use _skelmap::resize::resize_area;
use _skelmap::simd::Simd;

#[path = "../src/walker.rs"]
mod walker;
use walker::walker;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
unsafe fn run512(data: &[f32], p: &Params, reps: usize) {
    run::<true, true>(data, p, reps)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run256(data: &[f32], p: &Params, reps: usize) {
    run::<true, false>(data, p, reps)
}

fn run_all(data: &[f32], p: &Params) {
    match Simd::detect() {
        // SAFETY: Simd::detect checked the CPU features.
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe {
            print!("avx512:  ");
            run512(data, p, 30);
            print!("avx2:    ");
            run256(data, p, 30);
        },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe {
            print!("avx2:    ");
            run256(data, p, 30);
        },
        _ => {}
    }
    print!("generic: ");
    run::<false, false>(data, p, 30);
}

/// Per-frame stage times, the best of `reps` passes over the sequence (the machine may be
/// shared: the minimum is the least disturbed figure).
#[inline(always)]
fn run<const FMA: bool, const WIDE: bool>(data: &[f32], p: &Params, reps: usize) {
    let mut ws = Workspace::default();
    let mut out = vec![0u8; 8192];
    let mut best = [f64::INFINITY; 4];
    let mut total = f64::INFINITY;
    let n = data.len() / FRAME_FLOATS;
    for _ in 0..reps {
        let mut t = [0f64; 4];
        for f in data.chunks_exact(FRAME_FLOATS) {
            let t0 = Instant::now();
            let Some(kps) = normalise_frame(f, &p.head.counted()) else {
                continue; // a degenerate frame renders empty
            };
            ws.prims[0].reset(p.sigma_limb);
            for &(a, b) in &p.limbs {
                ws.prims[0].limb(kps[a], kps[b]);
            }
            ws.prims[1].reset(p.sigma_joint);
            for (j, k) in kps.iter().enumerate() {
                if p.joints[j] {
                    ws.prims[1].point(*k);
                }
            }
            let t1 = Instant::now();
            // SAFETY: WIDE only from `run512`, which `run_all` calls on AVX-512 CPUs.
            let r0 = unsafe { draw::<FMA, WIDE>(&mut ws, 0) };
            let t2 = Instant::now();
            let r1 = unsafe { draw::<FMA, WIDE>(&mut ws, 1) };
            let t3 = Instant::now();
            let mut rows = [r0, r1];
            if let (Alignment::Shared, Some(a), Some(b)) = (p.alignment, r0, r1) {
                rows = [Some((a.0.min(b.0), a.1.max(b.1))); 2]; // as `render_frame` does
            }
            for (ch, rows) in rows.into_iter().enumerate() {
                if let Some((top, bot)) = rows {
                    let c = crop_of(top, bot, p.geometry);
                    // SAFETY: as for `draw`.
                    unsafe {
                        resize_area::<FMA, WIDE>(
                            &ws.grey[ch].px,
                            ws.grey[ch].cols,
                            c,
                            &mut out[ch * 4096..(ch + 1) * 4096],
                            &mut ws.scratch,
                        )
                    };
                }
            }
            // The maps are never read: without this the compiler drops work that makes them.
            std::hint::black_box(&mut out);
            let t4 = Instant::now();
            for (i, (a, b)) in [(t0, t1), (t1, t2), (t2, t3), (t3, t4)].iter().enumerate() {
                t[i] += (*b - *a).as_secs_f64();
            }
        }
        total = total.min(t.iter().sum::<f64>() / n as f64 * 1e6);
        for (b, t) in best.iter_mut().zip(t) {
            *b = b.min(t / n as f64 * 1e6);
        }
    }
    println!(
        "prims {:.2} us, limbs {:.2}, joints {:.2} (drawn and quantised), resize {:.2}; \
         sum {:.2} us/frame (best pass {:.2})",
        best[0],
        best[1],
        best[2],
        best[3],
        best.iter().sum::<f64>(),
        total
    );
}

/// The poses to time: a raw little-endian float32 `[T, 17, 3]` file named by `$POSES` (e.g.
/// `np.asarray(poses, np.float32).tofile(path)`), else a 300-frame synthetic walk.
fn poses() -> Vec<f32> {
    match std::env::var("POSES") {
        Ok(path) => std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Err(_) => walker(300, true),
    }
}

/// Whole frames through `render_frame` (the dispatching entry point), best of `reps` passes:
/// the figure the sum of the stage minima underestimates.
fn whole(data: &[f32], p: &Params, simd: Simd, reps: usize) -> f64 {
    let mut ws = Workspace::default();
    let mut out = vec![0u8; 8192];
    let n = data.len() / FRAME_FLOATS;
    (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            for f in data.chunks_exact(FRAME_FLOATS) {
                render_frame(f, p, &mut ws, &mut out, simd);
            }
            t0.elapsed().as_secs_f64() / n as f64 * 1e6
        })
        .fold(f64::INFINITY, f64::min)
}

/// The default settings of `RenderConfig()`: body-only, sigma 15 / 8, square, shared.
fn default_settings() -> Params {
    let mut p = Params::reference();
    p.joints = [false; 17];
    for j in 5..17 {
        p.joints[j] = true;
    }
    p.limbs = COCO_LIMBS
        .iter()
        .copied()
        .filter(|&(a, b)| a >= 5 && b >= 5)
        .collect();
    p.sigma_limb = 15.0;
    p.geometry = Geometry::Square;
    p.alignment = Alignment::Shared;
    p.impute = Impute::Linear;
    p
}

fn main() {
    let data = poses();
    let mut p = Params::reference();
    if let Some(n) = std::env::var("WHOLE").ok().and_then(|n| n.parse().ok()) {
        let default = std::env::var("SETTINGS").is_ok_and(|s| s == "default");
        if default {
            p = default_settings();
        }
        let t = whole(&data, &p, Simd::detect(), n);
        let which = if default { "default" } else { "reference" };
        println!(
            "whole frames only, {which} settings ({n} passes, for profilers): {t:.2} us/frame"
        );
        return;
    }
    println!("reference settings (full-body, sigma 8/8, per-channel)");
    run_all(&data, &p);
    let time = |q: &Params| whole(&data, q, Simd::detect(), 30);
    println!(
        "whole frames ({}): {:.2} us/frame",
        Simd::detect().name(),
        time(&p)
    );
    if std::env::var_os("SPLIT").is_some() {
        let mut q = p.clone();
        q.limbs.clear();
        println!("whole, joints only: {:.2}", time(&q));
        let mut q = p.clone();
        q.joints = [false; 17];
        println!("whole, limbs only: {:.2}", time(&q));
        q.limbs.clear();
        println!("whole, nothing: {:.2}", time(&q));
    }
    let p = default_settings();
    println!("default settings (body-only, sigma 15/8, shared)");
    run_all(&data, &p);
    let t = whole(&data, &p, Simd::detect(), 30);
    println!("whole frames ({}): {t:.2} us/frame", Simd::detect().name());
}
