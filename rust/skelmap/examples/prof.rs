//! Profiling driver (development aid): `cargo run --release --example prof -- [parity|default] [reps]`.
use std::time::Instant;

use _skelmap::params::{
    Alignment, Geometry, Impute, Params, COCO_LIMBS, FRAME_BYTES, FRAME_FLOATS,
};
use _skelmap::render::{render_frame, Simd, Workspace};

fn walker(frames: usize) -> Vec<f32> {
    let base: [(f32, f32); 17] = [
        (0.0, -80.0),
        (-3.0, -83.0),
        (3.0, -83.0),
        (-6.0, -81.0),
        (6.0, -81.0),
        (-12.0, -65.0),
        (12.0, -65.0),
        (-14.0, -45.0),
        (14.0, -45.0),
        (-15.0, -28.0),
        (15.0, -28.0),
        (-8.0, -20.0),
        (8.0, -20.0),
        (-9.0, 20.0),
        (9.0, 20.0),
        (-9.0, 58.0),
        (9.0, 58.0),
    ];
    let mut d = Vec::with_capacity(frames * FRAME_FLOATS);
    for t in 0..frames {
        for (j, (x, y)) in base.iter().enumerate() {
            let s = ((t as f32) * 0.35).sin();
            let sway = ((t as f32) * 0.3 + j as f32).sin() * 3.0;
            let dx = match j {
                9 => 12.0 * s,
                10 => -12.0 * s,
                15 => -18.0 * s,
                16 => 18.0 * s,
                _ => 0.0,
            };
            d.extend_from_slice(&[
                x * 2.0 + 300.0 + sway + dx * 2.0,
                y * 2.0 + 400.0,
                0.4 + 0.6 * ((t * 7 + j * 3) % 11) as f32 / 10.0,
            ]);
        }
    }
    d
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map(|s| s.as_str()).unwrap_or("parity");
    let reps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20);
    let data = walker(600);
    let mut p = Params::reference();
    if which == "default" {
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
    }
    if std::env::var_os("STATS").is_some() {
        crop_stats(&data, &p);
    }
    let simd = Simd::detect();
    let mut ws = Workspace::default();
    let mut out = vec![0u8; FRAME_BYTES];
    let mut chk = 0u64;
    let t0 = Instant::now();
    for _ in 0..reps {
        for f in data.chunks_exact(FRAME_FLOATS) {
            render_frame(f, &p, &mut ws, &mut out, simd);
            chk = chk
                .wrapping_mul(31)
                .wrapping_add(out.iter().map(|&v| v as u64).sum::<u64>());
        }
    }
    let n = reps * 600;
    let dt = t0.elapsed().as_secs_f64();
    println!(
        "{which} {}: {:.2} us/frame, {:.0} fps, chk {chk}",
        simd.name(),
        dt / n as f64 * 1e6,
        n as f64 / dt
    );
}

#[allow(dead_code)]
pub fn crop_stats(data: &[f32], p: &Params) {
    use _skelmap::draw::rasterise;
    use _skelmap::geometry::normalise_frame;
    use _skelmap::render::{crop_of, quantise};
    let mut ws = Workspace::default();
    let mut hist = std::collections::BTreeMap::new();
    for f in data.chunks_exact(FRAME_FLOATS) {
        let kps = normalise_frame(f).unwrap();
        ws.prims[0].reset(p.sigma_limb);
        for &(a, b) in &p.limbs {
            ws.prims[0].limb(kps[a], kps[b]);
        }
        ws.prims[1].reset(p.sigma_joint);
        for (j, k) in kps.iter().enumerate() {
            if p.joints[j] {
                ws.prims[1].point(k.x, k.y, k.c);
            }
        }
        rasterise::<false>(&mut ws.planes[0], &ws.prims[0]);
        rasterise::<false>(&mut ws.planes[1], &ws.prims[1]);
        for ch in 0..2 {
            if let Some((t, b)) = quantise::<false>(&mut ws, ch) {
                let c = crop_of(t, b, p.geometry);
                *hist.entry((ch, c.h, c.w, c.c0)).or_insert(0) += 1;
            }
        }
    }
    println!("{hist:?}");
}
