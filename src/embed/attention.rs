//! Rotary positions and general attention for the architectures beyond BERT: bidirectional,
//! sliding-window or causal masks and grouped-query heads, one packed sequence at a time.
//! (BERT's full bidirectional attention has its own AVX-512 kernel in `kernels.rs`.)

use rayon::prelude::*;

/// Which keys a query token may attend to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mask {
    /// Every token of the sequence.
    Full,
    /// Keys within `half` positions on either side (`|i - j| <= half`).
    Window { half: usize },
    /// Keys at or before the query (decoders).
    Causal,
}

impl Mask {
    fn range(self, i: usize, len: usize) -> (usize, usize) {
        match self {
            Mask::Full => (0, len),
            Mask::Window { half } => (i.saturating_sub(half), (i + half + 1).min(len)),
            Mask::Causal => (0, i + 1),
        }
    }
}

/// Applies rotary position embeddings in place, in the "rotate half" convention of Hugging
/// Face's Llama, Qwen and ModernBERT (dimension `d` pairs with `d + head_dim / 2`).
/// `x` holds `len` rows (positions `0..len`) of `heads × head_dim` values, with `stride`
/// values from one row to the next.
pub fn rotary(x: &mut [f32], len: usize, stride: usize, heads: usize, head_dim: usize, theta: f32) {
    let half = head_dim / 2;
    let inv: Vec<f64> = (0..half).map(|d| 1.0 / (theta as f64).powf(2.0 * d as f64 / head_dim as f64)).collect();
    for pos in 0..len {
        let (sin, cos): (Vec<f32>, Vec<f32>) = inv
            .iter()
            .map(|f| {
                let a = pos as f64 * f;
                (a.sin() as f32, a.cos() as f32)
            })
            .unzip();
        let row = &mut x[pos * stride..pos * stride + heads * head_dim];
        for h in row.chunks_exact_mut(head_dim) {
            for d in 0..half {
                let (a, b) = (h[d], h[d + half]);
                h[d] = a * cos[d] - b * sin[d];
                h[d + half] = b * cos[d] + a * sin[d];
            }
        }
    }
}

/// Scaled dot-product attention for one sequence of `len` tokens. `q` has `len` rows of
/// `heads × head_dim` (row stride `q_stride`), `k` and `v` have `len` rows of
/// `kv_heads × head_dim` (strides `k_stride`, `v_stride`); query head `h` reads key/value head
/// `h / (heads / kv_heads)`. Writes `len × heads × head_dim` values to `out`.
#[allow(clippy::too_many_arguments)]
pub fn attend(
    q: &[f32],
    q_stride: usize,
    k: &[f32],
    k_stride: usize,
    v: &[f32],
    v_stride: usize,
    len: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    mask: Mask,
    out: &mut [f32],
) {
    attend_keys(q, q_stride, k, k_stride, v, v_stride, len, heads, kv_heads, head_dim, mask, len, out)
}

/// `attend` with the keys further limited to the sequence's first `keys` tokens (every token
/// is still computed as a query): ColBERT queries whose expansion tokens are hidden from
/// attention. A query token that sees no key at all (a sliding window lying wholly past
/// `keys`) gets a zero context, as PyTorch's `scaled_dot_product_attention` gives a fully
/// masked row (PyLate's default attention in transformers).
#[allow(clippy::too_many_arguments)]
pub fn attend_keys(
    q: &[f32],
    q_stride: usize,
    k: &[f32],
    k_stride: usize,
    v: &[f32],
    v_stride: usize,
    len: usize,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    mask: Mask,
    keys: usize,
    out: &mut [f32],
) {
    assert!(kv_heads > 0 && heads % kv_heads == 0, "query heads must be a multiple of key/value heads");
    let group = heads / kv_heads;
    let scale = 1.0 / (head_dim as f32).sqrt();
    let width = heads * head_dim;
    out[..len * width].par_chunks_mut(width).enumerate().for_each(|(i, orow)| {
        let (lo, hi) = mask.range(i, len);
        let hi = hi.min(keys);
        if lo >= hi {
            orow.fill(0.0);
            return;
        }
        let mut scores = vec![0f32; hi - lo];
        for h in 0..heads {
            let kvh = h / group;
            let qh = &q[i * q_stride + h * head_dim..i * q_stride + (h + 1) * head_dim];
            let mut max = f32::NEG_INFINITY;
            for (s, j) in scores.iter_mut().zip(lo..hi) {
                let kh = &k[j * k_stride + kvh * head_dim..j * k_stride + (kvh + 1) * head_dim];
                *s = qh.iter().zip(kh).map(|(a, b)| a * b).sum::<f32>() * scale;
                max = max.max(*s);
            }
            let mut sum = 0f32;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            let o = &mut orow[h * head_dim..(h + 1) * head_dim];
            o.fill(0.0);
            for (s, j) in scores.iter().zip(lo..hi) {
                let vh = &v[j * v_stride + kvh * head_dim..j * v_stride + (kvh + 1) * head_dim];
                let p = s / sum;
                o.iter_mut().zip(vh).for_each(|(a, b)| *a += p * b);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotary_at_position_zero_is_identity_and_keeps_norms() {
        let mut x: Vec<f32> = (0..2 * 8).map(|i| i as f32 * 0.1 - 0.4).collect();
        let orig = x.clone();
        rotary(&mut x, 2, 8, 2, 4, 10000.0);
        assert_eq!(&x[..8], &orig[..8]);
        for (a, b) in x[8..].chunks(4).zip(orig[8..].chunks(4)) {
            let n = |v: &[f32]| v.iter().map(|t| t * t).sum::<f32>();
            assert!((n(a) - n(b)).abs() < 1e-5);
        }
        // Position 1, frequency 1 for d = 0: (a, b) rotated by one radian.
        let (a, b) = (orig[8], orig[10]);
        assert!((x[8] - (a * 1f32.cos() - b * 1f32.sin())).abs() < 1e-6);
    }

    #[test]
    fn masks_limit_what_each_token_sees() {
        // One head, head_dim 1: value j is j, all scores equal, so each output is the mean of
        // the visible positions.
        let len = 5;
        let q = vec![0f32; len];
        let k = vec![0f32; len];
        let v: Vec<f32> = (0..len).map(|j| j as f32).collect();
        let mut out = vec![0f32; len];
        attend(&q, 1, &k, 1, &v, 1, len, 1, 1, 1, Mask::Causal, &mut out);
        assert_eq!(out, vec![0.0, 0.5, 1.0, 1.5, 2.0]);
        attend(&q, 1, &k, 1, &v, 1, len, 1, 1, 1, Mask::Window { half: 1 }, &mut out);
        assert_eq!(out, vec![0.5, 1.0, 2.0, 3.0, 3.5]);
        attend(&q, 1, &k, 1, &v, 1, len, 1, 1, 1, Mask::Full, &mut out);
        assert!(out.iter().all(|&o| (o - 2.0).abs() < 1e-6));
        // Keys limited to the first 2 tokens: the window of token 4 (keys 3..5) sees none.
        attend_keys(&q, 1, &k, 1, &v, 1, len, 1, 1, 1, Mask::Window { half: 1 }, 2, &mut out);
        assert_eq!(out, vec![0.5, 0.5, 1.0, 0.0, 0.0]);
        attend_keys(&q, 1, &k, 1, &v, 1, len, 1, 1, 1, Mask::Full, 3, &mut out);
        assert!(out.iter().all(|&o| (o - 1.0).abs() < 1e-6));
    }
}
