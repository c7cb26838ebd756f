//! AVX-512 kernels (F, BW, VL, DQ): the quantiser, the resize's area passes and the float64
//! pass of its 2 x 2 blocks.
//!
//! Each gives the portable code's bytes, from the same float operations in the same order.
//! None is a `#[target_feature]` function: they inline into the AVX-512 frame renderer
//! ([`super::render_frame`]), whose target features compile them in place.

use std::arch::x86_64::*;

use crate::lut::{EXP_P, LN2_HI, LN2_LO, LOG2E, MAGIC};
use crate::params::{CANVAS, OUT};
use crate::resize::{AreaTab, MAXT, NEAR, UNIT_SCALE};

/// Quantisation levels of 16 costs as i32: `floor(256 e^-cost)` for costs in [-14, 14] (the
/// costs clamped there in one `vrangeps`), so above 255 where the portable quantiser's level
/// is 255 ([`pack_levels`] saturates them) and 0 wherever its level is 0. Otherwise the same
/// float operations as `exp256` and `exp_parts`, with `y 2^(n + 8)` taken as
/// `(256 q + 256) 2^n` (`y = q + 1`; both exact scalings of the same rounded sum).
///
/// # Safety
/// As [`quantise_blocks`].
#[inline(always)]
unsafe fn cost_levels(c: &[f32; 16]) -> __m512i {
    let ps = _mm512_set1_ps;
    let x = _mm512_loadu_ps(c.as_ptr());
    // imm 0b0010: the operand of smaller magnitude, with the sign of the first (`x`): a clamp
    // to [-14, 14].
    let x = _mm512_range_ps::<0b0010>(x, ps(14.0));
    let t = _mm512_fnmadd_ps(x, ps(LOG2E), ps(MAGIC)); // fma(-x, log2 e, MAGIC)
    let n = _mm512_sub_ps(t, ps(MAGIC));
    let r = _mm512_fnmsub_ps(n, ps(LN2_HI), x); // fma(n, -LN2_HI, -x)
    let r = _mm512_fmadd_ps(n, ps(LN2_LO), r);
    let r2 = _mm512_mul_ps(r, r);
    // Horner written out: a `fold` is a std function compiled without AVX-512, which the
    // intrinsics cannot be inlined into once the frame renderer outgrows the inliner's budget.
    let mut p = ps(EXP_P[0]);
    #[allow(clippy::needless_range_loop)] // indices, not an iterator (see above)
    for i in 1..EXP_P.len() {
        p = _mm512_fmadd_ps(p, r, ps(EXP_P[i]));
    }
    let q = _mm512_fmadd_ps(p, r2, r);
    // 256 round(q + 1), exactly; at most 256 e^14 < 2^31 after the scaling, so the
    // conversion never overflows.
    let y256 = _mm512_fmadd_ps(q, ps(256.0), ps(256.0));
    _mm512_cvttps_epi32(_mm512_scalef_ps(y256, n))
}

/// Quantisation levels of 16 scaled values `v >= 0` as i32: `floor(min(v, 255))`.
///
/// # Safety
/// As [`quantise_blocks`].
#[inline(always)]
unsafe fn value_levels(v: &[f32; 16]) -> __m512i {
    let v = _mm512_min_ps(_mm512_loadu_ps(v.as_ptr()), _mm512_set1_ps(255.0));
    _mm512_cvttps_epi32(v)
}

/// Four blocks of levels (non-negative i32) as 64 bytes in pixel order, saturated to 255: two
/// packs (signed to i16, then unsigned to u8) and a permute (packs work within 128-bit lanes,
/// after which lane `i` holds the blocks' dwords `4i..4i+4`; `order` puts them back).
///
/// # Safety
/// As [`quantise_blocks`].
#[inline(always)]
unsafe fn pack_levels(l: [__m512i; 4], order: __m512i) -> __m512i {
    let ab = _mm512_packs_epi32(l[0], l[1]);
    let cd = _mm512_packs_epi32(l[2], l[3]);
    _mm512_permutexvar_epi32(order, _mm512_packus_epi16(ab, cd))
}

/// Gray values of 64 levels (bytes): the levels where the lookup is one level low (see
/// [`crate::lut::low_bit`]) lose one. The octave's mask and remainder come from the level's high nibble
/// (`vpshufb` tables; levels below 32 get a remainder no masked value equals).
///
/// # Safety
/// As [`quantise_blocks`].
#[inline(always)]
unsafe fn gray_bytes(l: __m512i) -> __m512i {
    // Per high nibble 0..15: the octave's low-bit mask and the remainder of a low entry.
    let masks = _mm512_broadcast_i32x4(_mm_setr_epi8(
        0, 0, 3, 3, 7, 7, 7, 7, 15, 15, 15, 15, 15, 15, 15, 15,
    ));
    let rems = _mm512_broadcast_i32x4(_mm_setr_epi8(
        -1, -1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 4, 4, 4, 4, 4,
    ));
    let hi = _mm512_and_si512(_mm512_srli_epi16(l, 4), _mm512_set1_epi8(0x0F));
    let mask = _mm512_shuffle_epi8(masks, hi);
    let rem = _mm512_shuffle_epi8(rems, hi);
    let low = _mm512_cmpeq_epi8_mask(_mm512_and_si512(l, mask), rem);
    _mm512_mask_sub_epi8(l, low, l, _mm512_set1_epi8(1))
}

/// [`crate::lut::quantise_blocks`] (fast path) in AVX-512: the same bytes, from the same float
/// operations on every cost whose level is not saturated ([`cost_levels`]); the cap at 255 is
/// the packs' saturation, four blocks are narrowed to bytes at once ([`pack_levels`]) and the
/// lookup's low entries fixed on those 64 bytes ([`gray_bytes`]). With `VALUES`, the blocks
/// hold scaled values ([`value_levels`]).
///
/// # Safety
/// The CPU must support AVX-512 F, BW, VL and DQ, and [`crate::lut::low_formula_ok`] must hold.
#[inline(always)]
pub(crate) unsafe fn quantise_blocks<const VALUES: bool>(x: &[[f32; 16]], out: &mut [u8]) -> bool {
    debug_assert_eq!(x.len() * 16, out.len());
    // (A function pointer would not inherit the caller's target features either.)
    macro_rules! level {
        ($c:expr) => {
            if VALUES {
                value_levels($c)
            } else {
                cost_levels($c)
            }
        };
    }
    let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    let zero = _mm512_setzero_si512();
    let mut any = zero;
    // Groups of four blocks, then a last, shorter group padded with level 0 (gray 0) and
    // stored under a mask. Fixed-size groups keep the loop free of per-group bookkeeping.
    // (No closure: a closure would not inherit the caller's target features.)
    let groups = x.chunks_exact(4);
    let rest = groups.remainder();
    let (full, tail) = out.split_at_mut(x.len() / 4 * 64);
    for (c, o) in groups.zip(full.chunks_exact_mut(64)) {
        let l = [level!(&c[0]), level!(&c[1]), level!(&c[2]), level!(&c[3])];
        let gray = gray_bytes(pack_levels(l, order));
        _mm512_storeu_si512(o.as_mut_ptr().cast(), gray);
        any = _mm512_or_si512(any, gray);
    }
    if !rest.is_empty() {
        let mut l = [zero; 4];
        for (l, c) in l.iter_mut().zip(rest) {
            *l = level!(c);
        }
        let gray = gray_bytes(pack_levels(l, order));
        let keep = u64::MAX >> (64 - tail.len());
        _mm512_mask_storeu_epi8(tail.as_mut_ptr().cast(), keep, gray);
        any = _mm512_or_si512(any, gray);
    }
    _mm512_test_epi8_mask(any, any) != 0
}

/// The f32 horizontal pass over one row in AVX-512: per group of 16 outputs, the taps are
/// picked from three vector loads of `tmp` (48 sources from the group's first) by permutes;
/// the same operations in the same order as [`crate::resize::horizontal_one`], so the same bytes and flags.
/// Returns the near-integer flags (bit `dx`).
///
/// # Safety
/// The CPU must have AVX-512 F and BW.
#[inline(always)]
pub(crate) unsafe fn area_horizontal(
    tmp: &[f32; 2 * CANVAS],
    xt: &AreaTab,
    o: &mut [u8; OUT],
) -> u64 {
    let (zero, near) = (_mm512_setzero_ps(), _mm512_set1_ps(NEAR));
    let mut flags = 0u64;
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
            let lower = _mm512_permutex2var_ps(t0, idx, t1); // sources base + [0, 32)
            x[j] = _mm512_mask_permutexvar_ps(lower, xt.far[g][j], idx, t2); // + [32, 48)
            w[j] = _mm512_loadu_ps(xt.wt[j][16 * g..].as_ptr());
        }
        let v = _mm512_add_ps(
            _mm512_add_ps(_mm512_mul_ps(x[0], w[0]), _mm512_mul_ps(x[1], w[1])),
            _mm512_mul_ps(x[2], w[2]),
        );
        const DOWN: i32 = _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC;
        let lo = _mm512_roundscale_ps::<DOWN>(_mm512_max_ps(_mm512_sub_ps(v, near), zero));
        let hi = _mm512_roundscale_ps::<DOWN>(_mm512_add_ps(v, near));
        flags |= (_mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(lo, hi) as u64) << (16 * g);
        let bytes = _mm512_cvtusepi32_epi8(_mm512_cvttps_epi32(lo)); // saturated at 255
        _mm_storeu_si128(o[16 * g..].as_mut_ptr().cast(), bytes);
    }
    flags
}

/// The vertical pass over one row in AVX-512: `dst[i] = w0 r0[i] + w1 r1[i] (+ w2 r2[i])`,
/// 16 columns at a time with the last, shorter group under a mask; the same operations in the
/// same order as [`crate::resize::vertical`], so the same values.
///
/// # Safety
/// The CPU must have AVX-512 F, BW and VL; every row holds at least `dst.len()` bytes.
#[inline(always)]
pub(crate) unsafe fn area_vertical(rows: [&[u8]; MAXT], w: [f32; MAXT], dst: &mut [f32]) {
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

/// OpenGait's float64 value of 8 outputs of a 2 x 2 pass (`r0`, `r1`: 16 source columns of two
/// rows), stored into `o` where `mask` has their bit: the portable exact pass's operations in
/// its order, `((u00 + u01) + u10) + u11` times 0.25, times 255, truncated. Each `u` is taken
/// as its level's byte repeated in a 64-bit integer, converted to float64 (`u 2^64` exactly:
/// [`UNIT_SCALE`]); the sums scale with it exactly, and one product by `255 2^-66` (the 0.25
/// and the 2^-64 are powers of two) rounds as the portable `(sum 0.25) 255`.
///
/// # Safety
/// The CPU must have AVX-512 (F, BW, VL, DQ); `r0`, `r1` hold 16 bytes and `o` 8.
#[inline(always)]
pub(crate) unsafe fn blocks_2x2_exact_8(r0: &[u8], r1: &[u8], o: &mut [u8], mask: u8) {
    assert!(r0.len() >= 16 && r1.len() >= 16 && o.len() >= 8);
    // Output j (qword j, in 128-bit lane j / 2) repeats byte 2j (left column) or 2j + 1; every
    // lane holds the 16 source bytes, so the in-lane shuffle reaches them.
    const fn pick(odd: i64) -> [i64; 8] {
        let mut idx = [0i64; 8];
        let mut j = 0;
        while j < 8 {
            idx[j] = (2 * j as i64 + odd) * 0x0101_0101_0101_0101;
            j += 1;
        }
        idx
    }
    const LEFT: [i64; 8] = pick(0);
    const RIGHT: [i64; 8] = pick(1);
    let left = _mm512_loadu_si512(LEFT.as_ptr().cast());
    let right = _mm512_loadu_si512(RIGHT.as_ptr().cast());
    let a = _mm512_broadcast_i32x4(_mm_loadu_si128(r0.as_ptr().cast()));
    let b = _mm512_broadcast_i32x4(_mm_loadu_si128(r1.as_ptr().cast()));
    let s = _mm512_add_pd(
        _mm512_cvtepu64_pd(_mm512_shuffle_epi8(a, left)),
        _mm512_cvtepu64_pd(_mm512_shuffle_epi8(a, right)),
    );
    let s = _mm512_add_pd(s, _mm512_cvtepu64_pd(_mm512_shuffle_epi8(b, left)));
    let s = _mm512_add_pd(s, _mm512_cvtepu64_pd(_mm512_shuffle_epi8(b, right)));
    // `(s 2^-66) 255` rounds as `s (255 2^-66)`: a power-of-two scaling is exact.
    let v = _mm512_mul_pd(s, _mm512_set1_pd(255.0 * UNIT_SCALE * 0.25));
    let levels = _mm512_cvttpd_epi32(v); // 0 <= v < 256
    _mm_mask_storeu_epi8(
        o.as_mut_ptr().cast(),
        mask as u16,
        _mm256_cvtepi32_epi8(levels),
    );
}

/// One output row of the 2 x 2 pass (`r0`, `r1`: the two source rows) in AVX-512: the levels
/// `n >> 2` into `o`, and the outputs to recompute in float64 (bit i): block sum `n` a positive
/// multiple of 4 and the four levels not all equal, as [`crate::resize`]'s portable loop.
///
/// # Safety
/// The CPU must have AVX-512 (F, BW).
#[inline(always)]
pub(crate) unsafe fn blocks_2x2_row(
    r0: &[u8; CANVAS],
    r1: &[u8; CANVAS],
    o: &mut [u8; OUT],
) -> u64 {
    let (ones, three) = (_mm512_set1_epi8(1), _mm512_set1_epi16(3));
    let mut flags = 0u64;
    for half in 0..2 {
        let a = _mm512_loadu_si512(r0[64 * half..].as_ptr().cast());
        let b = _mm512_loadu_si512(r1[64 * half..].as_ptr().cast());
        // Word i: block i's pair sums (at most 510, no saturation), then the block sum.
        let n = _mm512_add_epi16(_mm512_maddubs_epi16(a, ones), _mm512_maddubs_epi16(b, ones));
        let levels = _mm512_cvtepi16_epi8(_mm512_srli_epi16::<2>(n));
        _mm256_storeu_si256(o[32 * half..].as_mut_ptr().cast(), levels);
        // Four equal levels: the rows' pairs equal, and each pair's bytes (a word equal to
        // its byte swap).
        let swap = _mm512_or_si512(_mm512_slli_epi16::<8>(a), _mm512_srli_epi16::<8>(a));
        let same = _mm512_cmpeq_epi16_mask(a, b) & _mm512_cmpeq_epi16_mask(a, swap);
        let four = _mm512_testn_epi16_mask(n, three) & _mm512_test_epi16_mask(n, n);
        flags |= ((four & !same) as u64) << (32 * half);
    }
    flags
}
