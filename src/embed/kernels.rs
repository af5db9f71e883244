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
#[derive(Default)]
pub struct QuantRows {
    pub data: Vec<u8>,
    pub scales: Vec<f32>,
    pub kp: usize,
}

impl QuantRows {
    /// Sizes the buffers for `m` rows of width `k`, keeping their allocations.
    pub fn reset(&mut self, m: usize, k: usize) {
        self.kp = k.div_ceil(4) * 4;
        self.data.resize(m * self.kp, 128);
        self.scales.resize(m, 0.0);
    }
}

pub fn quantize_rows(x: &[f32], m: usize, k: usize) -> QuantRows {
    let mut q = QuantRows::default();
    quantize_rows_into(x, m, k, &mut q);
    q
}

/// Quantizes `m` rows of width `k` into `q` (reusing its buffers), 32 rows per task.
pub fn quantize_rows_into(x: &[f32], m: usize, k: usize, q: &mut QuantRows) {
    q.reset(m, k);
    let kp = q.kp;
    q.data.par_chunks_mut(kp * 32).zip(q.scales.par_chunks_mut(32)).zip(x.par_chunks(k * 32)).for_each(|((out, s), xc)| {
        quantize_block(xc, k, out, kp, s);
    });
}

/// Quantizes the rows of `x` (width `k`) into `out` (width `kp`, padding set to 128).
fn quantize_block(x: &[f32], k: usize, out: &mut [u8], kp: usize, scales: &mut [f32]) {
    for ((row, o), sc) in x.chunks_exact(k).zip(out.chunks_exact_mut(kp)).zip(scales.iter_mut()) {
        o[k..].fill(128);
        *sc = quantize_row(row, &mut o[..k]);
    }
}

/// Row-wise work fused after a GEMM, done by the task that computed the rows while they are
/// still in cache.
#[derive(Clone, Copy)]
pub enum Post<'a> {
    None,
    /// GELU: the erf form, or the tanh approximation.
    Gelu { tanh: bool },
    /// `y = LayerNorm(y + residual)`; `residual` has the whole output's rows.
    AddLayerNorm { residual: &'a [f32], gamma: &'a [f32], beta: &'a [f32], eps: f32 },
}

impl Post<'_> {
    /// Applies to rows `r0..` of an output with rows of width `n`.
    pub fn apply(&self, y: &mut [f32], r0: usize, n: usize) {
        match *self {
            Post::None => {}
            Post::Gelu { tanh: false } => gelu_erf(y),
            Post::Gelu { tanh: true } => gelu_tanh(y),
            Post::AddLayerNorm { residual, gamma, beta, eps } => {
                add_layer_norm(y, &residual[r0 * n..r0 * n + y.len()], gamma, beta, eps)
            }
        }
    }
}

/// A raw pointer that tasks writing disjoint parts of one buffer may share.
#[derive(Clone, Copy)]
struct SendPtr<T>(*mut T);
// SAFETY: only used for writes to disjoint ranges, one task each.
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

/// Output rows per int8 GEMM task: each task runs the whole row range through every column,
/// then its `Post` and quantization.
const TASK_ROWS: usize = 32;

/// `y[m, n] = dequant(xq[m, :] . w[n, :]) + bias[n]`.
pub fn gemm_i8_bias(xq: &QuantRows, w: &PackedI8, bias: &[f32], y: &mut [f32], m: usize) {
    gemm_i8(xq, w, bias, y, m, Post::None, None);
}

/// `y = post(dequant(xq . wᵀ) + bias)`; with `qout`, `y`'s rows are also quantized into it
/// (the next int8 GEMM's input) by the same task.
pub fn gemm_i8(xq: &QuantRows, w: &PackedI8, bias: &[f32], y: &mut [f32], m: usize, post: Post, qout: Option<&mut QuantRows>) {
    assert_eq!(xq.kp, w.kp);
    assert_eq!(y.len(), m * w.n);
    assert!(xq.scales.len() >= m && xq.data.len() >= m * xq.kp);
    let n = w.n;
    let q = qout.map(|q| {
        q.reset(m, n);
        (SendPtr(q.data.as_mut_ptr()), SendPtr(q.scales.as_mut_ptr()), q.kp)
    });
    let vnni = has_vnni();
    y.par_chunks_mut(TASK_ROWS * n).enumerate().for_each(|(t, ychunk)| {
        let r0 = t * TASK_ROWS;
        let rows = ychunk.len() / n;
        // SAFETY: rows r0..r0+rows of the quantized output belong to this task alone.
        let qrows = q.map(|(data, scales, kp)| unsafe {
            (
                std::slice::from_raw_parts_mut(data.0.add(r0 * kp), rows * kp),
                std::slice::from_raw_parts_mut(scales.0.add(r0), rows),
                kp,
            )
        });
        #[cfg(target_arch = "x86_64")]
        if vnni {
            // GELU is applied in the microkernel's epilogue, which also tracks each row's
            // largest magnitude, so quantizing afterwards is a single pass.
            let gelu = match post {
                Post::Gelu { tanh } => Some(tanh),
                _ => None,
            };
            let mut amax = [0f32; TASK_ROWS];
            // SAFETY: the CPU supports the features (checked by has_vnni).
            unsafe { vnni::tile(xq, w, bias, ychunk, r0, rows, gelu, &mut amax) };
            match (post, qrows) {
                (Post::AddLayerNorm { residual, gamma, beta, eps }, qr) => {
                    let res = &residual[r0 * n..r0 * n + ychunk.len()];
                    // SAFETY: has_vnni implies the AVX-512 features.
                    unsafe { avx512::layer_norm(ychunk, Some(res), gamma, beta, eps, qr) };
                }
                (_, Some((d, s, kp))) => {
                    for (i, ((row, o), sc)) in ychunk.chunks_exact(n).zip(d.chunks_exact_mut(kp)).zip(s.iter_mut()).enumerate() {
                        o[n..].fill(128);
                        // SAFETY: as above.
                        *sc = unsafe { avx512::quantize_row_amax(row, amax[i], &mut o[..n]) };
                    }
                }
                _ => {}
            }
            return;
        }
        let _ = vnni;
        portable_tile(xq, w, bias, ychunk, r0, rows);
        post.apply(ychunk, r0, n);
        if let Some((d, s, kp)) = qrows {
            quantize_block(ychunk, n, d, kp, s);
        }
    });
}

thread_local! {
    /// Per-thread FFN intermediate rows (f32 and quantized) of one task.
    static FFN_SCRATCH: std::cell::RefCell<(Vec<f32>, QuantRows)> = std::cell::RefCell::new((Vec::new(), QuantRows::default()));
}

/// A layer's feed-forward block on int8 weights, fused per task of `TASK_ROWS` rows:
/// `x = LayerNorm(a + down(gelu(up(a))))`, and `x` quantized into `xq` when given. The
/// intermediate rows (`TASK_ROWS × ffn`) never leave the task's cache. Returns false (doing
/// nothing) without the VNNI kernels; the caller then runs the layers one by one.
#[allow(clippy::too_many_arguments)]
pub fn ffn_i8(
    aq: &QuantRows, a: &[f32], up: &PackedI8, up_bias: &[f32], tanh: bool, down: &PackedI8, down_bias: &[f32],
    ln: (&[f32], &[f32], f32), x: &mut [f32], m: usize, xq: Option<&mut QuantRows>,
) -> bool {
    if !has_vnni() {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let (h, ffn) = (down.n, up.n);
        assert_eq!(aq.kp, up.kp);
        assert_eq!(down.k, ffn);
        assert!(a.len() == m * h && x.len() == m * h && aq.scales.len() >= m);
        let q = xq.map(|q| {
            q.reset(m, h);
            (SendPtr(q.data.as_mut_ptr()), SendPtr(q.scales.as_mut_ptr()), q.kp)
        });
        x.par_chunks_mut(TASK_ROWS * h).enumerate().for_each(|(t, xchunk)| {
            let r0 = t * TASK_ROWS;
            let rows = xchunk.len() / h;
            // SAFETY: rows r0..r0+rows of the quantized output belong to this task alone.
            let qrows = q.map(|(data, scales, kp)| unsafe {
                (
                    std::slice::from_raw_parts_mut(data.0.add(r0 * kp), rows * kp),
                    std::slice::from_raw_parts_mut(scales.0.add(r0), rows),
                    kp,
                )
            });
            FFN_SCRATCH.with(|sc| {
                let (u, uq) = &mut *sc.borrow_mut();
                u.resize(rows * ffn, 0.0);
                let mut amax = [0f32; TASK_ROWS];
                // SAFETY: has_vnni checked the features.
                unsafe { vnni::tile(aq, up, up_bias, u, r0, rows, Some(tanh), &mut amax) };
                uq.reset(rows, ffn);
                let kp = uq.kp;
                for (i, ((row, o), sc)) in u.chunks_exact(ffn).zip(uq.data.chunks_exact_mut(kp)).zip(uq.scales.iter_mut()).enumerate() {
                    o[ffn..].fill(128);
                    // SAFETY: as above.
                    *sc = unsafe { avx512::quantize_row_amax(row, amax[i], &mut o[..ffn]) };
                }
                // SAFETY: as above; uq holds this task's rows from row 0.
                unsafe {
                    vnni::tile(uq, down, down_bias, xchunk, 0, rows, None, &mut amax);
                    avx512::layer_norm(xchunk, Some(&a[r0 * h..r0 * h + xchunk.len()]), ln.0, ln.1, ln.2, qrows);
                }
            });
        });
        true
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (aq, a, up, up_bias, tanh, down, down_bias, ln, x, m, xq);
        unreachable!()
    }
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
                && is_x86_feature_detected!("avx512vl")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// AVX-512 F/BW for the hand-written element-wise kernels and attention.
fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static FLAG: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *FLAG.get_or_init(|| {
            is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vl")
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

    /// Rows per microkernel call.
    const MR: usize = 8;
    /// 16-column blocks per microkernel call (MR × NV accumulators).
    const NV: usize = 3;

    /// Rows `r0..r0+rows` of the output, all columns. Column panels outside, row groups
    /// inside, so that one panel of weights stays in L1 while the task's rows pass over it.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    /// `gelu` (Some(tanh form?)) is applied to the outputs; `amax[i]` receives the largest
    /// magnitude of output row `i`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn tile(
        xq: &QuantRows, w: &PackedI8, bias: &[f32], y: &mut [f32], r0: usize, rows: usize, gelu: Option<bool>,
        amax: &mut [f32],
    ) {
        let n = w.n;
        let nblocks = n.div_ceil(NR);
        let mut nb = 0;
        while nb < nblocks {
            let nv = (nblocks - nb).min(NV);
            let mut r = 0;
            while r < rows {
                let mr = (rows - r).min(MR);
                let am = &mut amax[r..r + mr];
                match nv {
                    3 => micro::<3>(xq, w, bias, y, r0, r, mr, nb, gelu, am),
                    2 => micro::<2>(xq, w, bias, y, r0, r, mr, nb, gelu, am),
                    _ => micro::<1>(xq, w, bias, y, r0, r, mr, nb, gelu, am),
                }
                r += mr;
            }
            nb += nv;
        }
    }

    /// Output rows `r..r+mr` (of the task starting at global row `r0`), column blocks
    /// `nb..nb+V`. Rows past `mr` repeat the last row and are not stored.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn micro<const V: usize>(
        xq: &QuantRows, w: &PackedI8, bias: &[f32], y: &mut [f32], r0: usize, r: usize, mr: usize, nb: usize,
        gelu: Option<bool>, amax: &mut [f32],
    ) {
        let n = w.n;
        let groups = w.kp / 4;
        let panel = groups * NR * 4;
        let wp: [*const i8; V] = std::array::from_fn(|v| w.data.as_ptr().add((nb + v) * panel));
        let xp: [*const u8; MR] = std::array::from_fn(|i| xq.data.as_ptr().add((r0 + r + i.min(mr - 1)) * xq.kp));
        let mut acc = [[_mm512_setzero_si512(); V]; MR];
        for g in 0..groups {
            let wv: [__m512i; V] = std::array::from_fn(|v| _mm512_loadu_si512(wp[v].add(g * 64) as *const _));
            for i in 0..MR {
                let xb = _mm512_set1_epi32((xp[i].add(g * 4) as *const i32).read_unaligned());
                for v in 0..V {
                    acc[i][v] = _mm512_dpbusd_epi32(acc[i][v], xb, wv[v]);
                }
            }
        }
        let mut big = [_mm512_setzero_ps(); MR];
        for v in 0..V {
            let c0 = (nb + v) * NR;
            let cols = (n - c0).min(NR);
            let mask: __mmask16 = if cols == NR { 0xffff } else { (1u16 << cols) - 1 };
            let corr = _mm512_maskz_loadu_epi32(mask, w.col_corr.as_ptr().add(c0));
            let ws = _mm512_maskz_loadu_ps(mask, w.scales.as_ptr().add(c0));
            let bv = _mm512_maskz_loadu_ps(mask, bias.as_ptr().add(c0));
            for (i, acc_row) in acc.iter().enumerate().take(mr) {
                let sx = _mm512_set1_ps(*xq.scales.get_unchecked(r0 + r + i));
                let val = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc_row[v], corr));
                let mut out = _mm512_fmadd_ps(val, _mm512_mul_ps(ws, sx), bv);
                if let Some(tanh) = gelu {
                    out = super::avx512::gelu_v(out, tanh);
                }
                big[i] = _mm512_max_ps(big[i], _mm512_maskz_mov_ps(mask, _mm512_abs_ps(out)));
                _mm512_mask_storeu_ps(y.as_mut_ptr().add((r + i) * n + c0), mask, out);
            }
        }
        for i in 0..mr {
            amax[i] = amax[i].max(_mm512_reduce_max_ps(big[i]));
        }
    }
}

// ---------------------------------------------------------------------------------------
// element-wise
// ---------------------------------------------------------------------------------------

/// Dispatches a function body, compiled once per instruction set, on the CPU's features.
macro_rules! simd_dispatch {
    (fn $name:ident($($arg:ident : $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        fn $name($($arg: $ty),*) $(-> $ret)? {
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
        + f * (std::f32::consts::LN_2
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
    fn softmax_rows_auto(x: &mut [f32], row_len: usize, scale: f32) {
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
    fn quantize_row_auto(row: &[f32], out: &mut [u8]) -> f32 {
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
    fn add_layer_norm_auto(x: &mut [f32], residual: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
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
    fn layer_norm_auto(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
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
    fn gelu_erf_auto(x: &mut [f32]) {
        for v in x.iter_mut() {
            *v = 0.5 * *v * (1.0 + erf(*v * std::f32::consts::FRAC_1_SQRT_2));
        }
    }
}

simd_dispatch! {
    fn gelu_tanh_auto(x: &mut [f32]) {
        for v in x.iter_mut() {
            let u = 0.797_884_6 * (*v + 0.044_715 * *v * *v * *v);
            // tanh(u) = 1 - 2 / (exp(2u) + 1), with exp of a non-positive argument.
            let e = exp_neg(-2.0 * u.abs());
            let th = (1.0 - e) / (1.0 + e);
            *v = 0.5 * *v * (1.0 + th.copysign(u));
        }
    }
}

pub fn softmax_rows(x: &mut [f32], row_len: usize, scale: f32) {
    softmax_rows_auto(x, row_len, scale)
}

/// One row to `u8 = round(x / scale) + 128`; returns the scale.
pub fn quantize_row(row: &[f32], out: &mut [u8]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: features checked.
        return unsafe { avx512::quantize_row(row, out) };
    }
    quantize_row_auto(row, out)
}

/// `x = LayerNorm(x + residual)` row by row (row width `gamma.len()`).
pub fn add_layer_norm(x: &mut [f32], residual: &[f32], gamma: &[f32], beta: &[f32], eps: f32) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: features checked.
        return unsafe { avx512::layer_norm(x, Some(residual), gamma, beta, eps, None) };
    }
    add_layer_norm_auto(x, residual, gamma, beta, eps)
}

pub fn layer_norm(x: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: features checked.
        return unsafe { avx512::layer_norm(x, None, gamma, beta, eps, None) };
    }
    layer_norm_auto(x, gamma, beta, eps)
}

pub fn gelu_erf(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: features checked.
        return unsafe { avx512::gelu(x, false) };
    }
    gelu_erf_auto(x)
}

pub fn gelu_tanh(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        // SAFETY: features checked.
        return unsafe { avx512::gelu(x, true) };
    }
    gelu_tanh_auto(x)
}

thread_local! {
    /// Per-thread attention scratch: one head's scaled Kᵀ and a block of score rows.
    static ATTN_SCRATCH: std::cell::RefCell<AttnScratch> = const {
        std::cell::RefCell::new(AttnScratch { kt: Vec::new(), v: Vec::new(), s: Vec::new() })
    };
}

/// One head's scaled Kᵀ, its V rows (contiguous) and a block of score rows.
struct AttnScratch {
    kt: Vec<f32>,
    v: Vec<f32>,
    s: Vec<f32>,
}

/// Multi-head self-attention over packed sequences: `qkv` rows are `[q | k | v]` (width `3h`),
/// `ctx` receives `[sum of lens, h]`. One task per (sequence, head), each writing its own
/// column block of its sequence's rows.
pub fn attention(qkv: &[f32], lens: &[usize], heads: usize, dh: usize, ctx: &mut [f32]) {
    attention_on(qkv, lens, heads, dh, ctx, has_avx512() && dh.is_multiple_of(16) && dh <= 64, None)
}

/// `attention` where every token of sequence `b` attends only to that sequence's first
/// `key_lens[b]` tokens (the rest are masked out as keys but still computed as queries), as
/// ColBERT query expansion without attention to the expansion tokens needs. Portable kernel.
pub fn attention_key_prefix(qkv: &[f32], lens: &[usize], key_lens: &[usize], heads: usize, dh: usize, ctx: &mut [f32]) {
    assert_eq!(lens.len(), key_lens.len());
    attention_on(qkv, lens, heads, dh, ctx, false, Some(key_lens))
}

/// `attention`, on the AVX-512 kernel (`fast`) or the portable one; `key_lens` (portable
/// only) limits each sequence's keys to its first tokens.
fn attention_on(qkv: &[f32], lens: &[usize], heads: usize, dh: usize, ctx: &mut [f32], fast: bool, key_lens: Option<&[usize]>) {
    let h = heads * dh;
    let total: usize = lens.iter().sum();
    assert_eq!(qkv.len(), total * 3 * h);
    assert_eq!(ctx.len(), total * h);
    let scale = 1.0 / (dh as f32).sqrt();
    let starts: Vec<usize> = lens.iter().scan(0, |s, &l| { let start = *s; *s += l; Some(start) }).collect();
    let out = SendPtr(ctx.as_mut_ptr());
    (0..lens.len() * heads).into_par_iter().for_each(|t| {
        let (b, hd) = (t / heads, t % heads);
        let (start, len) = (starts[b], lens[b]);
        if len == 0 {
            return;
        }
        let keys = key_lens.map_or(len, |k| k[b].clamp(1, len));
        let base = &qkv[start * 3 * h..(start + len) * 3 * h];
        // SAFETY: rows start..start+len, columns hd*dh..(hd+1)*dh of ctx are this task's alone.
        let dst = unsafe { out.get().add(start * h + hd * dh) };
        #[cfg(target_arch = "x86_64")]
        if fast && keys == len {
            ATTN_SCRATCH.with(|sc| {
                let sc = &mut *sc.borrow_mut();
                let p = base.as_ptr();
                // SAFETY: features checked; the pointers cover len rows of 3h (qkv) and h (ctx).
                unsafe {
                    avx512::attention_head(p.add(hd * dh), p.add(h + hd * dh), p.add(2 * h + hd * dh), 3 * h, len, dh, scale, dst, h, sc)
                };
            });
            return;
        }
        let _ = fast;
        let mut scores = vec![0f32; len * keys];
        // scores = Q K^T: Q rows at col hd*dh, K rows at col h + hd*dh, row stride 3h.
        gemm_f32_strided(len, keys, dh, &mut scores, keys, &base[hd * dh..], 3 * h, 1, &base[h + hd * dh..], 1, 3 * h);
        // softmax(scale * s): the max is taken before scaling, which is the same for scale > 0.
        softmax_rows(&mut scores, keys, scale);
        let mut o = vec![0f32; len * dh];
        gemm_f32_strided(len, dh, keys, &mut o, dh, &scores, keys, 1, &base[2 * h + hd * dh..], 3 * h, 1);
        for r in 0..len {
            // SAFETY: as above.
            unsafe { std::ptr::copy_nonoverlapping(o.as_ptr().add(r * dh), dst.add(r * h), dh) };
        }
    });
}

impl<T> SendPtr<T> {
    /// The pointer (a method, so that closures capture the whole `Send` wrapper).
    fn get(self) -> *mut T {
        self.0
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::AttnScratch;
    use std::arch::x86_64::*;

    #[inline(always)]
    fn tail_mask(left: usize) -> __mmask16 {
        if left >= 16 {
            0xffff
        } else {
            (1u16 << left) - 1
        }
    }

    /// exp(x) for x <= 0, as the scalar `exp_neg`: 2^round(t) · p(t - round(t)).
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn exp_neg(x: __m512) -> __m512 {
        let x = _mm512_max_ps(x, _mm512_set1_ps(-87.0));
        let t = _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E));
        let fi = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(t);
        let f = _mm512_sub_ps(t, fi);
        let mut p = _mm512_set1_ps(0.000_154_035_3);
        for c in [0.001_333_355_8, 0.009_618_129, 0.055_504_11, 0.240_226_5, std::f32::consts::LN_2, 1.0] {
            p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(c));
        }
        _mm512_scalef_ps(p, fi)
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub unsafe fn quantize_row(row: &[f32], out: &mut [u8]) -> f32 {
        let k = row.len();
        assert!(out.len() >= k);
        let p = row.as_ptr();
        let mut amax = _mm512_setzero_ps();
        let mut i = 0;
        while i < k {
            let v = _mm512_maskz_loadu_ps(tail_mask(k - i), p.add(i));
            amax = _mm512_max_ps(amax, _mm512_abs_ps(v));
            i += 16;
        }
        quantize_row_amax(row, _mm512_reduce_max_ps(amax), out)
    }

    /// `quantize_row` for a row whose largest magnitude is known.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub unsafe fn quantize_row_amax(row: &[f32], m: f32, out: &mut [u8]) -> f32 {
        let k = row.len();
        assert!(out.len() >= k);
        let p = row.as_ptr();
        let scale = if m > 0.0 { m / 127.0 } else { 1.0 };
        let inv = _mm512_set1_ps(1.0 / scale);
        let off = _mm512_set1_epi32(128);
        let half = _mm512_castps_si512(_mm512_set1_ps(0.5));
        let sign = _mm512_set1_epi32(i32::MIN);
        let o = out.as_mut_ptr() as *mut i8;
        let mut i = 0;
        while i < k {
            let mask = tail_mask(k - i);
            let v = _mm512_maskz_loadu_ps(mask, p.add(i));
            // Round half away from zero (as the scalar path): truncate q ± 0.5.
            let q = _mm512_mul_ps(v, inv);
            let q = _mm512_add_ps(q, _mm512_castsi512_ps(_mm512_or_si512(half, _mm512_and_si512(_mm512_castps_si512(q), sign))));
            let q = _mm512_add_epi32(_mm512_cvttps_epi32(q), off);
            _mm_mask_storeu_epi8(o.add(i), mask, _mm512_cvtusepi32_epi8(q));
            i += 16;
        }
        scale
    }

    /// Row-wise LayerNorm (of `x + residual` when given, which is also stored in `x` first).
    #[target_feature(enable = "avx512f,avx512bw")]
    /// With `q` (`u8` rows of width `kp`, scales), each normalised row is quantized too.
    #[allow(clippy::type_complexity)]
    pub unsafe fn layer_norm(
        x: &mut [f32], residual: Option<&[f32]>, gamma: &[f32], beta: &[f32], eps: f32,
        mut q: Option<(&mut [u8], &mut [f32], usize)>,
    ) {
        let h = gamma.len();
        assert!(beta.len() == h && x.len().is_multiple_of(h));
        if let Some(r) = residual {
            assert_eq!(r.len(), x.len());
        }
        let (g, b) = (gamma.as_ptr(), beta.as_ptr());
        for (ri, row) in x.chunks_exact_mut(h).enumerate() {
            let p = row.as_mut_ptr();
            let mut sum = _mm512_setzero_ps();
            let mut i = 0;
            while i < h {
                let mask = tail_mask(h - i);
                let mut v = _mm512_maskz_loadu_ps(mask, p.add(i));
                if let Some(r) = residual {
                    v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, r.as_ptr().add(ri * h + i)));
                    _mm512_mask_storeu_ps(p.add(i), mask, v);
                }
                sum = _mm512_add_ps(sum, v);
                i += 16;
            }
            let mean = _mm512_set1_ps(_mm512_reduce_add_ps(sum) / h as f32);
            let mut sq = _mm512_setzero_ps();
            let mut i = 0;
            while i < h {
                let mask = tail_mask(h - i);
                let d = _mm512_maskz_sub_ps(mask, _mm512_maskz_loadu_ps(mask, p.add(i)), mean);
                sq = _mm512_fmadd_ps(d, d, sq);
                i += 16;
            }
            let inv = _mm512_set1_ps(1.0 / (_mm512_reduce_add_ps(sq) / h as f32 + eps).sqrt());
            let mut big = _mm512_setzero_ps();
            let mut i = 0;
            while i < h {
                let mask = tail_mask(h - i);
                let d = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, p.add(i)), mean), inv);
                let out = _mm512_fmadd_ps(d, _mm512_maskz_loadu_ps(mask, g.add(i)), _mm512_maskz_loadu_ps(mask, b.add(i)));
                big = _mm512_max_ps(big, _mm512_maskz_mov_ps(mask, _mm512_abs_ps(out)));
                _mm512_mask_storeu_ps(p.add(i), mask, out);
                i += 16;
            }
            if let Some((data, scales, kp)) = q.as_mut() {
                let o = &mut data[ri * *kp..(ri + 1) * *kp];
                o[h..].fill(128);
                scales[ri] = quantize_row_amax(row, _mm512_reduce_max_ps(big), &mut o[..h]);
            }
        }
    }

    /// GELU in place: the erf form (erf as the scalar `erf`), or the tanh approximation.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn gelu(x: &mut [f32], tanh: bool) {
        let n = x.len();
        let p = x.as_mut_ptr();
        let mut i = 0;
        while i < n {
            let mask = tail_mask(n - i);
            let v = _mm512_maskz_loadu_ps(mask, p.add(i));
            _mm512_mask_storeu_ps(p.add(i), mask, gelu_v(v, tanh));
            i += 16;
        }
    }

    /// GELU of 16 values.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn gelu_v(v: __m512, tanh: bool) -> __m512 {
        let one = _mm512_set1_ps(1.0);
        let half = _mm512_set1_ps(0.5);
        let sign = _mm512_set1_epi32(i32::MIN);
        {
            let y = if tanh {
                let u = _mm512_mul_ps(
                    _mm512_set1_ps(0.797_884_6),
                    _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(0.044_715), v), _mm512_mul_ps(v, v), v),
                );
                let e = exp_neg(_mm512_mul_ps(_mm512_set1_ps(-2.0), _mm512_abs_ps(u)));
                _mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e))
            } else {
                let a = _mm512_abs_ps(_mm512_mul_ps(v, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2)));
                let d = _mm512_fmadd_ps(_mm512_set1_ps(0.327_591_1), a, one);
                // 1/d: rcp14 and one Newton step (relative error ~1e-8).
                let r = _mm512_rcp14_ps(d);
                let t = _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0)));
                let mut poly = _mm512_set1_ps(1.061_405_4);
                for c in [-1.453_152_1, 1.421_413_8, -0.284_496_74, 0.254_829_6] {
                    poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(c));
                }
                poly = _mm512_mul_ps(poly, t);
                let e = exp_neg(_mm512_sub_ps(_mm512_setzero_ps(), _mm512_mul_ps(a, a)));
                _mm512_fnmadd_ps(poly, e, one)
            };
            // erf/tanh carry the sign of x (u has the sign of x too).
            let y = _mm512_castsi512_ps(_mm512_or_si512(
                _mm512_castps_si512(y),
                _mm512_and_si512(_mm512_castps_si512(v), sign),
            ));
            _mm512_mul_ps(_mm512_mul_ps(half, v), _mm512_add_ps(one, y))
        }
    }

    /// Query rows per block.
    const MR: usize = 8;

    /// One (sequence, head): `out[r, :dh] = softmax(scale · q_r · Kᵀ) · V` for `len` rows.
    /// `q`, `k`, `v` point at row 0's head columns (rows `stride` apart), `out` likewise
    /// (rows `out_stride` apart). `dh` is a multiple of 16, at most 64. Scores of `MR` query
    /// rows at a time stay in L1 between QKᵀ, the softmax and PV; the softmax's division is
    /// applied to the `dh` outputs instead of the `len` probabilities.
    #[target_feature(enable = "avx512f,avx512bw")]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn attention_head(
        q: *const f32, k: *const f32, v: *const f32, stride: usize, len: usize, dh: usize, scale: f32,
        out: *mut f32, out_stride: usize, scratch: &mut AttnScratch,
    ) {
        let AttnScratch { kt, v: vbuf, s } = scratch;
        let lenp = len.div_ceil(16) * 16;
        kt.clear();
        kt.resize(dh * lenp, 0.0);
        // Kᵀ, scaled, 16 keys at a time with gathers (scalar stores get turned into scatters).
        let idx = _mm512_mullo_epi32(
            _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
            _mm512_set1_epi32(stride as i32),
        );
        let sv = _mm512_set1_ps(scale);
        let mut j = 0;
        while j < len {
            let mask = tail_mask(len - j);
            for d in 0..dh {
                let g = _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), mask, idx, k.add(j * stride + d));
                _mm512_storeu_ps(kt.as_mut_ptr().add(d * lenp + j), _mm512_mul_ps(g, sv));
            }
            j += 16;
        }
        // V rows of this head, contiguous (the strided rows of qkv alias in L1).
        vbuf.clear();
        vbuf.resize(len * dh, 0.0);
        for j in 0..len {
            for c in (0..dh).step_by(16) {
                _mm512_storeu_ps(vbuf.as_mut_ptr().add(j * dh + c), _mm512_loadu_ps(v.add(j * stride + c)));
            }
        }
        let v = vbuf.as_ptr();
        s.clear();
        s.resize(MR * lenp, 0.0);
        let sp = s.as_mut_ptr();
        let ktp = kt.as_ptr();
        let rows: [*mut f32; MR] = std::array::from_fn(|i| sp.add(i * lenp));
        let mut r = 0;
        while r < len {
            let mr = (len - r).min(MR);
            let qp: [*const f32; MR] = std::array::from_fn(|i| q.add((r + i.min(mr - 1)) * stride));
            let mut mx = [_mm512_set1_ps(f32::NEG_INFINITY); MR];
            let mut j = 0;
            while j + 48 <= lenp {
                qk::<3>(&qp, ktp.add(j), lenp, dh, &rows, j, len, &mut mx);
                j += 48;
            }
            while j < lenp {
                qk::<1>(&qp, ktp.add(j), lenp, dh, &rows, j, len, &mut mx);
                j += 16;
            }
            let mut inv = [0f32; MR];
            for i in 0..mr {
                inv[i] = softmax_row(rows[i], len, _mm512_reduce_max_ps(mx[i]));
            }
            let o: [*mut f32; MR] = std::array::from_fn(|i| out.add((r + i.min(mr - 1)) * out_stride));
            match dh / 16 {
                1 => pv::<1>(&rows, v, dh, len, &o, &inv, mr),
                2 => pv::<2>(&rows, v, dh, len, &o, &inv, mr),
                3 => pv::<3>(&rows, v, dh, len, &o, &inv, mr),
                _ => pv::<4>(&rows, v, dh, len, &o, &inv, mr),
            }
            r += mr;
        }
    }

    /// Scores of `MR` query rows against keys `j..j + 16V` (Kᵀ rows `lenp` apart).
    #[inline]
    #[target_feature(enable = "avx512f")]
    /// `mx[i]` keeps the lane-wise maximum of row `i`'s scores of real keys (`< len`).
    #[allow(clippy::too_many_arguments)]
    unsafe fn qk<const V: usize>(
        q: &[*const f32; MR], kt: *const f32, lenp: usize, dh: usize, s: &[*mut f32; MR], j: usize, len: usize,
        mx: &mut [__m512; MR],
    ) {
        let mut acc = [[_mm512_setzero_ps(); V]; MR];
        for d in 0..dh {
            let kv: [__m512; V] = std::array::from_fn(|t| _mm512_loadu_ps(kt.add(d * lenp + t * 16)));
            for i in 0..MR {
                let qb = _mm512_set1_ps(*q[i].add(d));
                for t in 0..V {
                    acc[i][t] = _mm512_fmadd_ps(qb, kv[t], acc[i][t]);
                }
            }
        }
        let masks: [__mmask16; V] = std::array::from_fn(|t| if j + t * 16 < len { tail_mask(len - j - t * 16) } else { 0 });
        for i in 0..MR {
            for t in 0..V {
                _mm512_storeu_ps(s[i].add(j + t * 16), acc[i][t]);
                mx[i] = _mm512_mask_max_ps(mx[i], masks[t], mx[i], acc[i][t]);
            }
        }
    }

    /// `row[..len] = exp(row - max)` (`max` of `row[..len]`); returns 1 / their sum.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn softmax_row(row: *mut f32, len: usize, max: f32) -> f32 {
        let m = _mm512_set1_ps(max);
        let mut sum = _mm512_setzero_ps();
        let mut i = 0;
        while i < len {
            let mask = tail_mask(len - i);
            let e = exp_neg(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, row.add(i)), m));
            let e = _mm512_maskz_mov_ps(mask, e);
            _mm512_mask_storeu_ps(row.add(i), mask, e);
            sum = _mm512_add_ps(sum, e);
            i += 16;
        }
        1.0 / _mm512_reduce_add_ps(sum)
    }

    /// `o[i] = inv[i] · Σ_j p[i][j] · V[j]` for the first `mr` of `MR` rows (`16V` columns).
    #[inline]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn pv<const V: usize>(
        p: &[*mut f32; MR], v: *const f32, stride: usize, len: usize, o: &[*mut f32; MR], inv: &[f32; MR], mr: usize,
    ) {
        let mut acc = [[_mm512_setzero_ps(); V]; MR];
        for j in 0..len {
            let vv: [__m512; V] = std::array::from_fn(|t| _mm512_loadu_ps(v.add(j * stride + t * 16)));
            for i in 0..MR {
                let pb = _mm512_set1_ps(*p[i].add(j));
                for t in 0..V {
                    acc[i][t] = _mm512_fmadd_ps(pb, vv[t], acc[i][t]);
                }
            }
        }
        for ((acc_row, &oi), &iv) in acc.iter().zip(o).zip(inv).take(mr) {
            let s = _mm512_set1_ps(iv);
            for (t, a) in acc_row.iter().enumerate() {
                _mm512_storeu_ps(oi.add(t * 16), _mm512_mul_ps(*a, s));
            }
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
    fn simd_elementwise_kernels_match_scalar() {
        let mut seed = 11;
        for n in [1usize, 15, 16, 37, 384] {
            let x: Vec<f32> = (0..n).map(|_| lcg(&mut seed) * 6.0).collect();
            for tanh in [false, true] {
                let (mut a, mut b) = (x.clone(), x.clone());
                if tanh {
                    gelu_tanh(&mut a);
                    gelu_tanh_auto(&mut b);
                } else {
                    gelu_erf(&mut a);
                    gelu_erf_auto(&mut b);
                }
                for (p, q) in a.iter().zip(&b) {
                    assert!((p - q).abs() < 1e-5, "gelu (tanh {tanh}) n {n}: {p} vs {q}");
                }
            }
            let (mut qa, mut qb) = (vec![0u8; n], vec![0u8; n]);
            let (sa, sb) = (quantize_row(&x, &mut qa), quantize_row_auto(&x, &mut qb));
            assert_eq!(sa, sb);
            assert_eq!(qa, qb, "quantize n {n}");
            let gamma: Vec<f32> = (0..n).map(|_| 1.0 + lcg(&mut seed) * 0.1).collect();
            let beta: Vec<f32> = (0..n).map(|_| lcg(&mut seed) * 0.1).collect();
            let res: Vec<f32> = (0..2 * n).map(|_| lcg(&mut seed)).collect();
            let x2: Vec<f32> = x.iter().chain(&x).map(|v| v * 0.5).collect();
            let (mut a, mut b) = (x2.clone(), x2.clone());
            add_layer_norm(&mut a, &res, &gamma, &beta, 1e-12);
            add_layer_norm_auto(&mut b, &res, &gamma, &beta, 1e-12);
            for (p, q) in a.iter().zip(&b) {
                assert!((p - q).abs() < 1e-4, "layer norm n {n}: {p} vs {q}");
            }
        }
    }

    #[test]
    fn attention_kernels_agree_on_ragged_lengths() {
        let mut seed = 5;
        for (heads, dh) in [(2usize, 16usize), (3, 32), (1, 64)] {
            let lens = [1usize, 17, 5, 48, 33];
            let total: usize = lens.iter().sum();
            let h = heads * dh;
            let qkv: Vec<f32> = (0..total * 3 * h).map(|_| lcg(&mut seed) * 2.0).collect();
            let (mut a, mut b) = (vec![0f32; total * h], vec![0f32; total * h]);
            attention_on(&qkv, &lens, heads, dh, &mut a, has_avx512(), None);
            attention_on(&qkv, &lens, heads, dh, &mut b, false, None);
            for (i, (p, q)) in a.iter().zip(&b).enumerate() {
                assert!((p - q).abs() < 1e-4, "heads {heads} dh {dh} at {i}: {p} vs {q}");
            }
        }
    }

    #[test]
    fn fused_ffn_matches_layer_by_layer() {
        let (m, h, ffn) = (45, 32, 64);
        let mut seed = 3;
        let mut rand = |n: usize, s: f32| -> Vec<f32> { (0..n).map(|_| lcg(&mut seed) * s).collect() };
        let a = rand(m * h, 1.0);
        let (wu, wd) = (rand(ffn * h, 0.2), rand(h * ffn, 0.2));
        let (bu, bd) = (rand(ffn, 0.1), rand(h, 0.1));
        let (gamma, beta) = (rand(h, 0.1).iter().map(|v| v + 1.0).collect::<Vec<_>>(), rand(h, 0.1));
        let pack = |w: &[f32], n: usize, k: usize| {
            let (q, s) = crate::model::quant::quantize_rows_i8(w, n, k);
            PackedI8::pack(&q, &s, n, k)
        };
        let (up, down) = (pack(&wu, ffn, h), pack(&wd, h, ffn));
        let aq = quantize_rows(&a, m, h);
        // Layer by layer.
        let mut u = vec![0f32; m * ffn];
        let mut uq = QuantRows::default();
        gemm_i8(&aq, &up, &bu, &mut u, m, Post::Gelu { tanh: false }, Some(&mut uq));
        let mut want = vec![0f32; m * h];
        let post = Post::AddLayerNorm { residual: &a, gamma: &gamma, beta: &beta, eps: 1e-12 };
        let mut want_q = QuantRows::default();
        gemm_i8(&uq, &down, &bd, &mut want, m, post, Some(&mut want_q));
        // Fused (where the CPU has the kernels).
        let mut got = vec![0f32; m * h];
        let mut got_q = QuantRows::default();
        if ffn_i8(&aq, &a, &up, &bu, false, &down, &bd, (&gamma, &beta, 1e-12), &mut got, m, Some(&mut got_q)) {
            for (i, (p, q)) in got.iter().zip(&want).enumerate() {
                assert!((p - q).abs() < 1e-4, "at {i}: {p} vs {q}");
            }
            assert_eq!(got_q.data, want_q.data);
        }
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
