//! Grey conversion: matplotlib's `gray` lookup table and a vectorisable `exp` (the AVX-512
//! quantiser is [`crate::simd::avx512::quantise_blocks`]).

use std::sync::OnceLock;

/// The uint8 lookup of matplotlib's `gray` colormap, computed with the same f64 operations as
/// matplotlib (`xind = 255 * linspace(0, 1, 256)`, `lut = xind / 255`, `(lut * 255)` truncated):
/// 24 of the 256 entries come out one level low (e.g. entry 33 is 32).
pub fn gray_lut() -> &'static [u8; 256] {
    static LUT: OnceLock<[u8; 256]> = OnceLock::new();
    LUT.get_or_init(|| {
        let n = 256usize;
        let step = 1.0f64 / (n - 1) as f64; // numpy.linspace: arange(n) * (delta / div)
        let mut lut = [0u8; 256];
        for (i, v) in lut.iter_mut().enumerate() {
            let y = if i == n - 1 { 1.0 } else { i as f64 * step };
            let xind = (n - 1) as f64 * y;
            let value = if i == 0 {
                0.0
            } else if i == n - 1 {
                1.0
            } else {
                (xind - 0.0) / ((n - 1) as f64 - 0.0) * (1.0 - 0.0) + 0.0
            };
            *v = (value.clamp(0.0, 1.0) * 255.0) as u8;
        }
        lut
    })
}

/// The lowest quantisation level whose grey value is not 0.
pub fn first_visible_level() -> usize {
    gray_lut().iter().position(|&g| g > 0).unwrap_or(256)
}

/// Below this exponent argument a pixel always quantises to level 0 (`256 * e^a < 1`, with a
/// margin far above the error of [`exp_f32`]); drawing may skip such pixels.
pub const ARG_FLOOR: f32 = -5.545_177_5 - 1e-3; // ln(1/256) - margin

pub(crate) const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `1.5 * 2^23`: adding it rounds to an integer (ties to even).
pub(crate) const MAGIC: f32 = 12_582_912.0;
/// `ln 2` split in two (Cody-Waite): `r = x - n LN2_HI + n LN2_LO` stays accurate.
pub(crate) const LN2_HI: f32 = 0.693_359_4;
pub(crate) const LN2_LO: f32 = 2.121_944_4e-4;
/// The Cephes `expf` polynomial, highest degree first: `e^r = 1 + r + r^2 P(r)`.
pub(crate) const EXP_P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// `a b + c`, fused (one rounding) when `FMA` (the variants compiled for CPUs with FMA).
#[inline(always)]
pub(crate) fn fmadd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `e^x = y * 2^n` for `x` in [-87, 88]: the Cephes `expf` polynomial `y` and the integer
/// exponent `n` (branch-free, so loops over it vectorise). `FMA` selects fused multiply-adds.
#[inline(always)]
fn exp_parts<const FMA: bool>(x: f32) -> (f32, i32) {
    let t = fmadd::<FMA>(x, LOG2E, MAGIC);
    let n = t - MAGIC;
    let r = fmadd::<FMA>(n, -LN2_HI, x);
    let r = fmadd::<FMA>(n, LN2_LO, r);
    let r2 = r * r;
    let p = EXP_P[1..]
        .iter()
        .fold(EXP_P[0], |p, &c| fmadd::<FMA>(p, r, c));
    let y = fmadd::<FMA>(p, r2, r) + 1.0;
    let ni = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    (y, ni)
}

/// `e^x` for `x` in about [-87, 88] (clamped), relative error ~2 ulp.
#[inline(always)]
pub fn exp_f32<const FMA: bool>(x: f32) -> f32 {
    let (y, ni) = exp_parts::<FMA>(x.clamp(-87.0, 88.0));
    y * f32::from_bits(((ni + 127) << 23) as u32)
}

/// Quantisation level of an exponent argument: `min(floor(256 * e^a), 255)`.
#[inline(always)]
pub fn level_of<const FMA: bool>(a: f32) -> i32 {
    let v = exp_f32::<FMA>(a) * 256.0; // >= 0
    let v = if v > 255.0 { 255.0 } else { v };
    // SAFETY: v is finite and in [0, 255].
    unsafe { v.to_int_unchecked::<i32>() }
}

/// 1 where the gray lookup is one level low, as integer arithmetic (vectorises, unlike a table
/// lookup): in each octave `[32, 64)`, `[64, 128)`, `[128, 256)` the levels congruent to
/// 1 mod 4, 2 mod 8 and 4 mod 16 respectively (33, 37, ..., 61, 66, 74, ..., 122, 132, 148,
/// ..., 244). Checked against [`gray_lut`] before use (see [`low_formula_ok`]).
#[inline(always)]
pub(crate) fn low_bit(l: i32) -> i32 {
    let hi = l >= 128;
    let mid = l >= 64;
    let mask = if hi {
        15
    } else if mid {
        7
    } else {
        3
    };
    let off = (mask + 1) >> 2;
    ((l >= 32) & ((l & mask) == off)) as i32
}

/// [`low_bit`] of a level held as an f32 (an integer in [0, 255]), from its bits: in octave
/// `[2^E, 2^(E+1))` the mantissa keeps the integer's low bits at positions `23 - E + j`, so
/// `l & (2^(E-3) - 1) == 2^(E-5)` (E = 5, 6, 7) reads as "mantissa bits 0..20 equal 1 << 18",
/// which no level below 32 satisfies. Branch-free and cheap in SIMD.
#[inline(always)]
fn low_bit_f(lf: f32) -> i32 {
    ((lf.to_bits() & 0xF_FFFF) == 0x4_0000) as i32
}

/// Whether [`low_bit`] and [`low_bit_f`] reproduce [`gray_lut`] exactly (they do on IEEE-754
/// f64 / f32).
pub fn low_formula_ok() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        (0..256).all(|l| {
            let g = gray_lut()[l as usize] as i32;
            g == l - low_bit(l) && g == l - low_bit_f(l as f32)
        })
    })
}

/// `256 e^-cost` for `cost >= -1` (smaller costs are clamped to -1: the result is then above
/// 255), equal to `exp_f32(-cost) * 256.0`: the power of two is folded into the exponent bits
/// (both products are exact for the results that matter, above 2^-100), and the clamp is on
/// the cost side so that the negation folds into the reduction's fused multiply-adds.
#[inline(always)]
fn exp256<const FMA: bool>(cost: f32) -> f32 {
    // `if` forms compile to single min/max instructions (costs are never NaN).
    let c = if cost < -1.0 { -1.0 } else { cost };
    let c = if c > 87.0 { 87.0 } else { c };
    let (y, ni) = exp_parts::<FMA>(-c);
    y * f32::from_bits(((ni + 127 + 8) << 23) as u32)
}

/// Grey values of one block of 16 costs (negated exponent arguments), or with `VALUES` of 16
/// scaled values (see [`quantise_blocks`]).
#[inline(always)]
fn quantise_block<const FMA: bool, const VALUES: bool>(x: &[f32; 16], out: &mut [u8; 16]) {
    for i in 0..16 {
        let v = if VALUES { x[i] } else { exp256::<FMA>(x[i]) }; // >= 0
        let v = if v > 255.0 { 255.0 } else { v };
        // SAFETY: v is finite and in [0, 255].
        let l = unsafe { v.to_int_unchecked::<i32>() };
        let low = low_bit_f(l as f32) != 0;
        out[i] = (if low { l - 1 } else { l }) as u8;
    }
}

/// Grey values of blocks of 16 costs `a` (negated exponent arguments: level
/// `min(floor(256 e^-a), 255)`) into `out` (`16 * x.len()` bytes), or with `VALUES` of scaled
/// values `v = 256 e^-a >= 0` (level `min(floor(v), 255)`); returns whether any is non-zero.
/// `fast` (see [`low_formula_ok`]) selects the branch-free path, else the lookup table is used.
#[inline(always)]
pub fn quantise_blocks<const FMA: bool, const VALUES: bool>(
    x: &[[f32; 16]],
    out: &mut [u8],
    fast: bool,
) -> bool {
    debug_assert_eq!(x.len() * 16, out.len());
    if fast {
        for (g, a) in out.chunks_exact_mut(16).zip(x) {
            quantise_block::<FMA, VALUES>(a, g.try_into().unwrap());
        }
    } else {
        let lut = gray_lut();
        for (g, &a) in out.iter_mut().zip(x.iter().flatten()) {
            let level = if VALUES {
                a.min(255.0) as i32
            } else {
                level_of::<FMA>(-a)
            };
            *g = lut[level as usize];
        }
    }
    // One pass over the bytes (cheaper than folding every block into a flag).
    out.iter().fold(0u8, |acc, &g| acc | g) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lut_has_24_low_entries() {
        let lut = gray_lut();
        let low: Vec<usize> = (0..256).filter(|&i| lut[i] as usize != i).collect();
        assert_eq!(low.len(), 24);
        assert_eq!(low[0], 33);
        assert!(low.iter().all(|&i| lut[i] as usize == i - 1));
        assert_eq!(first_visible_level(), 1);
        assert!(low_formula_ok());
        let mut g = [0u8; 16];
        let lv = |l: f32| ((l + 0.5) / 256.0).ln();
        let mut acc = [[1e30f32; 16]];
        let args = [
            -1e30,
            lv(34.0),
            lv(200.0),
            0.0,
            lv(33.0),
            lv(244.0),
            lv(66.0),
            lv(1.0),
        ];
        for (c, a) in acc[0].iter_mut().zip(args) {
            *c = -a;
        }
        for fast in [true, false] {
            assert!(quantise_blocks::<false, false>(&acc, &mut g, fast));
            assert_eq!(g[..8], [0, 34, 200, 255, 32, 243, 65, 1]);
            assert!(!quantise_blocks::<false, false>(
                &[[1e30; 16]],
                &mut g,
                fast
            ));
        }
    }

    #[test]
    fn exp256_matches_exp_times_256() {
        let mut a = -30.0f32;
        while a < 3.0 {
            let want = (exp_f32::<false>(a) * 256.0).min(255.0);
            assert_eq!(exp256::<false>(-a).min(255.0), want, "{a}");
            assert_eq!(
                exp256::<true>(-a).min(255.0),
                (exp_f32::<true>(a) * 256.0).min(255.0)
            );
            a += 0.000_31;
        }
        assert!(exp256::<false>(1e30) < 1e-20);
        assert!(exp256::<false>(-1e30) > 255.0);
    }

    /// Scaled values quantise to `gray[min(floor(v), 255)]` on every path (portable fast and
    /// lookup, AVX-512): integers and their neighbours, large values, every block count.
    #[test]
    fn values_quantise_by_floor() {
        let lut = gray_lut();
        let mut vals: Vec<f32> = (0..=300)
            .flat_map(|l| {
                let l = l as f32;
                [l, l.next_down().max(0.0), l.next_up(), l + 0.5]
            })
            .collect();
        vals.extend([0.0, 1e-30, 254.999_98, 255.0, 1e9, 3e38]);
        vals.resize(vals.len().next_multiple_of(16 * 8), 0.0);
        let blocks: Vec<[f32; 16]> = vals
            .chunks_exact(16)
            .map(|c| c.try_into().unwrap())
            .collect();
        let want: Vec<u8> = vals
            .iter()
            .map(|&v| lut[(v.floor().min(255.0)) as usize])
            .collect();
        for fast in [true, false] {
            let mut got = vec![7u8; want.len()];
            assert!(quantise_blocks::<false, true>(&blocks, &mut got, fast));
            assert_eq!(got, want);
        }
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512dq") {
                for nb in (1..=9).chain([24]) {
                    for (group, w) in blocks.chunks_exact(nb).zip(want.chunks_exact(16 * nb)) {
                        let mut got = vec![7u8; 16 * nb];
                        // SAFETY: the CPU features were checked above.
                        let any = unsafe {
                            crate::simd::avx512::quantise_blocks::<true>(group, &mut got)
                        };
                        assert_eq!(got, w);
                        assert_eq!(any, w.iter().any(|&g| g > 0));
                    }
                }
            }
        }
    }

    #[test]
    fn exp_is_accurate() {
        let mut a = -20.0f32;
        while a < 2.0 {
            let got = exp_f32::<false>(a) as f64;
            let want = (a as f64).exp();
            assert!(((got - want) / want).abs() < 5e-7, "{a}: {got} vs {want}");
            a += 0.000_37;
        }
        assert!(exp_f32::<false>(-1e30) < 1e-37);
        assert_eq!(level_of::<false>(-1e30), 0);
        assert_eq!(level_of::<false>(0.0), 255);
        assert_eq!(level_of::<false>(5.0), 255);
    }
}
