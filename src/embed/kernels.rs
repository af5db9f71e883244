//! CPU compute kernels for the native runtime: f32 GEMM (via the `gemm` crate), an int8
//! GEMM with AVX-512 VNNI and a portable fallback, and the element-wise ops of a BERT layer
//! (LayerNorm, GELU, softmax), compiled for AVX-512/AVX2 and picked at run time.

use rayon::prelude::*;

/// `y[m, n] = sum_k x[m, k] * w[n, k] + bias[n]` for row-major `x` (`[m, k]`) and `w` (`[n, k]`).
pub fn gemm_f32_bias(x: &[f32], w: &[f32], bias: &[f32], y: &mut [f32], m: usize, n: usize, k: usize) {
    debug_assert_eq!(x.len(), m * k);
    debug_assert_eq!(w.len(), n * k);
    debug_assert_eq!(y.len(), m * n);
    for row in y.chunks_exact_mut(n) {
        row.copy_from_slice(bias);
    }
    let par = if m * n * k >= 1 << 18 { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
    // SAFETY: the slices cover the strided extents described (checked above).
    unsafe {
        gemm::gemm(
            m, n, k,
            y.as_mut_ptr(), 1, n as isize, true,
            x.as_ptr(), 1, k as isize,
            w.as_ptr(), k as isize, 1,
            1.0, 1.0, false, false, false, par,
        );
    }
}

/// Strided single-threaded GEMM `c = a * b` (with `a`: `[m, k]`, `b`: `[k, n]`), for attention.
#[allow(clippy::too_many_arguments)]
pub fn gemm_f32_strided(
    m: usize, n: usize, k: usize,
    c: &mut [f32], c_rs: usize,
    a: &[f32], a_rs: usize, a_cs: usize,
    b: &[f32], b_rs: usize, b_cs: usize,
) {
    // SAFETY: callers pass slices that contain every strided element.
    unsafe {
        gemm::gemm(
            m, n, k,
            c.as_mut_ptr(), 1, c_rs as isize, false,
            a.as_ptr(), a_cs as isize, a_rs as isize,
            b.as_ptr(), b_cs as isize, b_rs as isize,
            0.0, 1.0, false, false, false, gemm::Parallelism::None,
        );
    }
}

// ---------------------------------------------------------------------------------------
// int8 GEMM
// ---------------------------------------------------------------------------------------

/// Columns per packed block (one 512-bit register of i32 lanes).
const NR: usize = 16;

/// Weights of one Linear layer, int8, packed for the VNNI microkernel:
/// blocks of 16 output channels, each stored as `[k/4][16][4]` bytes.
pub struct PackedI8 {
    pub n: usize,
    pub k: usize,
    /// `k` rounded up to a multiple of 4.
    kp: usize,
    data: Vec<i8>,
    /// Per-output-channel scale.
    scales: Vec<f32>,
    /// `128 * sum_k w[n, k]`: corrects for feeding activations as `u8 = i8 + 128`.
    col_corr: Vec<i32>,
}

impl PackedI8 {
    /// Packs row-major `[n, k]` int8 weights with per-row scales.
    pub fn pack(w: &[i8], scales: &[f32], n: usize, k: usize) -> Self {
        let kp = k.div_ceil(4) * 4;
        let nblocks = n.div_ceil(NR);
        let mut data = vec![0i8; nblocks * kp * NR];
        for nb in 0..nblocks {
            for g in 0..kp / 4 {
                for j in 0..NR {
                    let col = nb * NR + j;
                    for t in 0..4 {
                        let kk = g * 4 + t;
                        if col < n && kk < k {
                            data[((nb * (kp / 4) + g) * NR + j) * 4 + t] = w[col * k + kk];
                        }
                    }
                }
            }
        }
        let col_corr = (0..n).map(|c| 128 * w[c * k..(c + 1) * k].iter().map(|&v| v as i32).sum::<i32>()).collect();
        PackedI8 { n, k, kp, data, scales: scales.to_vec(), col_corr }
    }

    /// Reads back `w[col, kk]` from the packed layout.
    fn at(&self, col: usize, kk: usize) -> i8 {
        let (nb, j, g, t) = (col / NR, col % NR, kk / 4, kk % 4);
        self.data[((nb * (self.kp / 4) + g) * NR + j) * 4 + t]
    }
}

/// Activations quantized per row: `u8 = round(x / scale) + 128`, rows padded to `kp`.
pub struct QuantRows {
    pub data: Vec<u8>,
    pub scales: Vec<f32>,
    pub kp: usize,
}

pub fn quantize_rows(x: &[f32], m: usize, k: usize) -> QuantRows {
    let kp = k.div_ceil(4) * 4;
    let mut data = vec![128u8; m * kp];
    let mut scales = vec![0f32; m];
    data.par_chunks_mut(kp * 16).zip(scales.par_chunks_mut(16)).enumerate().for_each(|(t, (out, s))| {
        for (i, (o, sc)) in out.chunks_exact_mut(kp).zip(s.iter_mut()).enumerate() {
            let r = t * 16 + i;
            *sc = quantize_row(&x[r * k..(r + 1) * k], &mut o[..k]);
        }
    });
    QuantRows { data, scales, kp }
}

/// `y[m, n] = dequant(xq[m, :] . w[n, :]) + bias[n]`.
pub fn gemm_i8_bias(xq: &QuantRows, w: &PackedI8, bias: &[f32], y: &mut [f32], m: usize) {
    assert_eq!(xq.kp, w.kp);
    assert_eq!(y.len(), m * w.n);
    const ROWS_PER_TASK: usize = 8;
    let n = w.n;
    let vnni = has_vnni();
    y.par_chunks_mut(ROWS_PER_TASK * n).enumerate().for_each(|(t, ychunk)| {
        let r0 = t * ROWS_PER_TASK;
        let rows = ychunk.len() / n;
        #[cfg(target_arch = "x86_64")]
        if vnni {
            // SAFETY: the CPU supports the features (checked by has_vnni).
            unsafe { vnni::tile(xq, w, bias, ychunk, r0, rows) };
            return;
        }
        let _ = vnni;
        portable_tile(xq, w, bias, ychunk, r0, rows);
    });
}

fn portable_tile(xq: &QuantRows, w: &PackedI8, bias: &[f32], y: &mut [f32], r0: usize, rows: usize) {
    let n = w.n;
    // Unpack the weights of one column at a time into a contiguous buffer.
    let mut col = vec![0i32; w.kp];
    for c in 0..n {
        for (kk, v) in col.iter_mut().enumerate() {
            *v = if kk < w.k { w.at(c, kk) as i32 } else { 0 };
        }
        for r in 0..rows {
            let x = &xq.data[(r0 + r) * xq.kp..(r0 + r + 1) * xq.kp];
            let acc: i32 = x.iter().zip(&col).map(|(&a, &b)| a as i32 * b).sum();
            y[r * n + c] = (acc - w.col_corr[c]) as f32 * xq.scales[r0 + r] * w.scales[c] + bias[c];
        }
    }
}

pub fn has_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static FLAG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *FLAG.get_or_init(|| {
            std::env::var_os("PONDER_NO_SIMD").is_none()
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::{PackedI8, QuantRows, NR};
    use std::arch::x86_64::*;

    /// Rows `r0..r0+rows` of the output, all columns.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn tile(xq: &QuantRows, w: &PackedI8, bias: &[f32], y: &mut [f32], r0: usize, rows: usize) {
        let n = w.n;
        let groups = w.kp / 4;
        let nblocks = n.div_ceil(NR);
        let mut r = 0;
        while r < rows {
            let mr = (rows - r).min(4);
            let mut nb = 0;
            while nb < nblocks {
                let two = nb + 1 < nblocks;
                let mut acc = [[_mm512_setzero_si512(); 2]; 4];
                let w0 = w.data.as_ptr().add(nb * groups * NR * 4);
                let w1 = if two { w0.add(groups * NR * 4) } else { w0 };
                let xp: [*const u8; 4] =
                    std::array::from_fn(|i| xq.data.as_ptr().add((r0 + r + i.min(mr - 1)) * xq.kp));
                for g in 0..groups {
                    let wa = _mm512_loadu_si512(w0.add(g * 64) as *const _);
                    let wb = _mm512_loadu_si512(w1.add(g * 64) as *const _);
                    for i in 0..4 {
                        if i < mr {
                            let xb = _mm512_set1_epi32((xp[i].add(g * 4) as *const i32).read_unaligned());
                            acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], xb, wa);
                            acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], xb, wb);
                        }
                    }
                }
                for (half, block) in [(0usize, nb), (1, nb + 1)] {
                    if half == 1 && !two {
                        break;
                    }
                    let c0 = block * NR;
                    let cols = (n - c0).min(NR);
                    let mask: __mmask16 = if cols == NR { 0xffff } else { (1u16 << cols) - 1 };
                    let corr = _mm512_maskz_loadu_epi32(mask, w.col_corr.as_ptr().add(c0));
                    let ws = _mm512_maskz_loadu_ps(mask, w.scales.as_ptr().add(c0));
                    let bv = _mm512_maskz_loadu_ps(mask, bias.as_ptr().add(c0));
                    for (i, acc_row) in acc.iter().enumerate().take(mr) {
                        let sx = _mm512_set1_ps(xq.scales[r0 + r + i]);
                        let v = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc_row[half], corr));
                        let out = _mm512_fmadd_ps(v, _mm512_mul_ps(ws, sx), bv);
                        _mm512_mask_storeu_ps(y.as_mut_ptr().add((r + i) * n + c0), mask, out);
                    }
                }
                nb += if two { 2 } else { 1 };
            }
            r += mr;
        }
    }
}

// ---------------------------------------------------------------------------------------
// element-wise
// ---------------------------------------------------------------------------------------

/// Dispatches a function body, compiled once per instruction set, on the CPU's features.
macro_rules! simd_dispatch {
    (fn $name:ident($($arg:ident : $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx2,fma")]
                unsafe fn v512($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn v256($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
                    // SAFETY: feature checked.
                    return unsafe { v512($($arg),*) };
                }
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    // SAFETY: features checked.
                    return unsafe { v256($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

/// exp(x) for x <= 0 (softmax inputs after max subtraction); relative error < 2e-7.
#[inline(always)]
fn exp_neg(x: f32) -> f32 {
    let x = x.max(-87.0);
    let t = x * std::f32::consts::LOG2_E;
    let fi = (t + 0.5).floor();
    let f = t - fi;
    // 2^f for f in [-0.5, 0.5): degree-6 Taylor series of e^(f ln 2), error < 2e-7.
    let p = 1.0
        + f * (0.693_147_2
            + f * (0.240_226_5 + f * (0.055_504_11 + f * (0.009_618_129 + f * (0.001_333_355_8 + f * 0.000_154_035_3)))));
    let bits = ((fi as i32 + 127) as u32) << 23;
    p * f32::from_bits(bits)
}

/// Folds `x` with `op` over 16 independent lanes (then across them), so that the compiler can
/// vectorize reductions that strict float semantics would otherwise keep sequential.
#[inline(always)]
fn fold_lanes(x: &[f32], init: f32, op: impl Fn(f32, f32) -> f32) -> f32 {
    let mut acc = [init; 16];
    let chunks = x.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..16 {
            acc[i] = op(acc[i], c[i]);
        }
    }
    acc.iter().chain(rest).fold(init, |a, &b| op(a, b))
}

#[inline(always)]
fn sum_lanes(x: &[f32]) -> f32 {
    fold_lanes(x, 0.0, |a, b| a + b)
}

simd_dispatch! {
    fn softmax_rows(x: &mut [f32], row_len: usize, scale: f32) {
        for row in x.chunks_exact_mut(row_len) {
            let m = fold_lanes(row, f32::NEG_INFINITY, f32::max);
            for v in row.iter_mut() {
                *v = exp_neg((*v - m) * scale);
            }
            let inv = 1.0 / sum_lanes(row);
            for v in row.iter_mut() {
                *v *= inv;
            }
        }
    }
}

// One row to `u8 = round(x / scale) + 128`; returns the scale.
simd_dispatch! {
    fn quantize_row(row: &[f32], out: &mut [u8]) -> f32 {
        let amax = fold_lanes(row, 0.0, |a, b| a.max(b.abs()));
        let scale = if amax > 0.0 { amax / 127.0 } else { 1.0 };
        let inv = 1.0 / scale;
        for (o, v) in out.iter_mut().zip(row) {
            let q = (v * inv).clamp(-127.0, 127.0);
            // Round half away from zero without a libm call, so the loop vectorizes.
            *o = ((q + 0.5f32.copysign(q)) as i32 + 128) as u8;
        }
        scale
    }
}

/// LayerNorm of one row in place; `sq` is scratch of the row's length.
#[inline(always)]
fn normalize_row(row: &mut [f32], sq: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let h = row.len() as f32;
    let mean = sum_lanes(row) / h;
    for (d, v) in sq.iter_mut().zip(row.iter()) {
        *d = (*v - mean) * (*v - mean);
    }
    let inv = 1.0 / (sum_lanes(sq) / h + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

simd_dispatch! {
    fn add_layer_norm(x: &mut [f32], residual: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
        let h = gamma.len();
        let mut sq = vec![0f32; h];
        for (row, res) in x.chunks_exact_mut(h).zip(residual.chunks_exact(h)) {
            for (v, r) in row.iter_mut().zip(res) {
                *v += *r;
            }
            normalize_row(row, &mut sq, gamma, beta, eps);
        }
    }
}

simd_dispatch! {
    fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
        let h = gamma.len();
        let mut sq = vec![0f32; h];
        for row in x.chunks_exact_mut(h) {
            normalize_row(row, &mut sq, gamma, beta, eps);
        }
    }
}

/// erf(x), Abramowitz & Stegun 7.1.26 refined: absolute error < 1.5e-7.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let s = x.signum();
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let y = 1.0
        - (((((1.061_405_4 * t - 1.453_152_1) * t) + 1.421_413_8) * t - 0.284_496_74) * t + 0.254_829_6)
            * t
            * exp_neg(-a * a);
    s * y
}

simd_dispatch! {
    fn gelu_erf(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

simd_dispatch! {
    fn gelu_tanh(x: &mut [f32]) {
        for v in x.iter_mut() {
            let u = 0.797_884_6 * (*v + 0.044_715 * *v * *v * *v);
            // tanh(u) = 1 - 2 / (exp(2u) + 1), with exp of a non-positive argument.
            let e = exp_neg(-2.0 * u.abs());
            let th = (1.0 - e) / (1.0 + e);
            *v = 0.5 * *v * (1.0 + th.copysign(u));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn exp_and_erf_are_accurate() {
        for i in 0..2000 {
            let x = -(i as f32) * 0.02;
            let rel = (exp_neg(x) - x.exp()).abs() / x.exp().max(1e-30);
            assert!(rel < 5e-6, "exp({x}) rel err {rel}");
        }
        for (x, want) in [(0.0f32, 0.0f32), (0.5, 0.520_499_9), (1.0, 0.842_700_8), (-2.0, -0.995_322_3)] {
            assert!((erf(x) - want).abs() < 2e-7, "erf({x})");
        }
    }

    #[test]
    fn int8_gemm_matches_f32_reference_on_every_path() {
        let (m, n, k) = (13, 37, 70); // ragged on every axis
        let mut seed = 7;
        let x: Vec<f32> = (0..m * k).map(|_| lcg(&mut seed)).collect();
        let wf: Vec<f32> = (0..n * k).map(|_| lcg(&mut seed) * 0.1).collect();
        let bias: Vec<f32> = (0..n).map(|_| lcg(&mut seed)).collect();
        let (wq, ws) = crate::model::quant::quantize_rows_i8(&wf, n, k);
        let packed = PackedI8::pack(&wq, &ws, n, k);
        let xq = quantize_rows(&x, m, k);
        // Exact integer reference of what the kernels compute.
        let mut want = vec![0f32; m * n];
        for r in 0..m {
            for c in 0..n {
                let acc: i32 = (0..k).map(|kk| (xq.data[r * xq.kp + kk] as i32 - 128) * wq[c * k + kk] as i32).sum();
                want[r * n + c] = acc as f32 * xq.scales[r] * ws[c] + bias[c];
            }
        }
        let mut y = vec![0f32; m * n];
        gemm_i8_bias(&xq, &packed, &bias, &mut y, m);
        let mut yp = vec![0f32; m * n];
        portable_tile(&xq, &packed, &bias, &mut yp, 0, m);
        for i in 0..m * n {
            assert!((y[i] - want[i]).abs() < 1e-4, "dispatch path at {i}: {} vs {}", y[i], want[i]);
            assert!((yp[i] - want[i]).abs() < 1e-4, "portable path at {i}");
        }
        // And the quantized product stays close to the f32 product.
        let mut yf = vec![0f32; m * n];
        gemm_f32_bias(&x, &wf, &bias, &mut yf, m, n, k);
        let err = yf.iter().zip(&y).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(err < 0.05, "int8 vs f32 max err {err}");
    }

    #[test]
    fn softmax_rows_sum_to_one() {
        let mut x = vec![1.0, 2.0, 3.0, -1e9, 0.5, 0.5, 0.5, 0.5];
        softmax_rows(&mut x, 4, 1.0);
        assert!((x[..4].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(x[3] < 1e-30);
        assert!((x[4] - 0.25).abs() < 1e-6);
    }
}
