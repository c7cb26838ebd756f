//! AVX2 kernels of the resize: the area path's horizontal pass and the 2 x 2 block sums.
//!
//! Each gives the portable code's bytes. Neither is a `#[target_feature]` function: they inline
//! into the AVX2 frame renderer ([`super::render_frame`]), whose target features compile them
//! in place.

use std::arch::x86_64::*;

use crate::params::{CANVAS, OUT};
use crate::resize::{AreaTab, MAXT, NEAR};

/// The f32 horizontal pass over one row in AVX2 (see [`super::avx512::area_horizontal`]): per group of 8
/// outputs, the taps are picked from three vector loads of `tmp` (24 sources from the group's
/// first) by one-register permutes and blends; the same operations in the same order as
/// [`crate::resize::horizontal_one`], so the same bytes and flags. Returns the near-integer flags.
///
/// # Safety
/// The CPU must have AVX2.
#[inline(always)]
pub(crate) unsafe fn area_horizontal(
    tmp: &[f32; 2 * CANVAS],
    xt: &AreaTab,
    o: &mut [u8; OUT],
) -> u64 {
    let (zero, near) = (_mm256_setzero_ps(), _mm256_set1_ps(NEAR));
    let (seven, fifteen) = (_mm256_set1_epi32(7), _mm256_set1_epi32(15));
    let mut flags = 0u64;
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
        const DOWN: i32 = _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC;
        let lo = _mm256_round_ps::<DOWN>(_mm256_max_ps(_mm256_sub_ps(v, near), zero));
        let hi = _mm256_round_ps::<DOWN>(_mm256_add_ps(v, near));
        flags |=
            (_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_NEQ_UQ>(lo, hi)) as u32 as u64) << (8 * g);
        // Levels as i32 -> u8 (saturated at 255) within each 128-bit half, then the halves'
        // first 4 bytes side by side.
        let f = _mm256_cvttps_epi32(lo);
        let b = _mm256_packus_epi16(_mm256_packus_epi32(f, f), _mm256_setzero_si256());
        let lo = _mm_cvtsi128_si32(_mm256_castsi256_si128(b)) as u32;
        let hi = _mm_cvtsi128_si32(_mm256_extracti128_si256::<1>(b)) as u32;
        o[8 * g..8 * g + 8].copy_from_slice(&((lo as u64) | ((hi as u64) << 32)).to_le_bytes());
    }
    flags
}

/// The levels `n >> 2` of 16 outputs of a 2 x 2 pass (`r0`, `r1`: 32 source columns of two
/// rows) into `o`; returns the outputs whose block sum `n` is a positive multiple of 4 and
/// whose four levels are not all equal (bit i), as [`crate::resize`]'s portable loop.
///
/// # Safety
/// The CPU must have AVX2; `r0`, `r1` hold 32 bytes and `o` 16.
#[inline(always)]
pub(crate) unsafe fn blocks_2x2_16(r0: &[u8], r1: &[u8], o: &mut [u8]) -> u32 {
    assert!(r0.len() >= 32 && r1.len() >= 32 && o.len() >= 16);
    let ones = _mm256_set1_epi8(1);
    let a = _mm256_loadu_si256(r0.as_ptr().cast());
    let b = _mm256_loadu_si256(r1.as_ptr().cast());
    // Adjacent bytes summed into 16-bit words (at most 510: no saturation), in order.
    let n = _mm256_add_epi16(_mm256_maddubs_epi16(a, ones), _mm256_maddubs_epi16(b, ones));
    let zero = _mm256_setzero_si256();
    let q = _mm256_packus_epi16(_mm256_srli_epi16::<2>(n), zero);
    let q = _mm256_permute4x64_epi64::<0b1000>(q);
    _mm_storeu_si128(o.as_mut_ptr().cast(), _mm256_castsi256_si128(q));
    let four = _mm256_cmpeq_epi16(_mm256_and_si256(n, _mm256_set1_epi16(3)), zero);
    let flag = _mm256_andnot_si256(_mm256_cmpeq_epi16(n, zero), four);
    // Blocks of four equal levels are settled (their level): both rows' pairs equal, and the
    // pair's two bytes equal (the word equals its byte swap).
    let swap = _mm256_or_si256(_mm256_slli_epi16::<8>(a), _mm256_srli_epi16::<8>(a));
    let same = _mm256_and_si256(_mm256_cmpeq_epi16(a, b), _mm256_cmpeq_epi16(a, swap));
    let flag = _mm256_andnot_si256(same, flag);
    let flag = _mm256_permute4x64_epi64::<0b1000>(_mm256_packs_epi16(flag, zero));
    _mm256_movemask_epi8(flag) as u32 & 0xffff
}
